//! node_exporter's `watchdog` collector: hardware watchdogs from
//! `<sysfs>/class/watchdog/<name>/` (timeouts, boot status, an info series).

use std::collections::BTreeMap;
use std::path::PathBuf;

use prometheus_client::encoding::DescriptorEncoder;
use vigia_kit::{Source, SourceError};

use super::util::{go_int, list};
use crate::config::HostConfig;
use crate::metrics::{gauge, Sample};

/// (file, family, numeric).
const FILES: [(&str, &str, bool); 12] = [
    ("bootstatus", "node_watchdog_bootstatus", true),
    ("options", "", false),
    ("fw_version", "node_watchdog_fw_version", true),
    ("identity", "", false),
    ("nowayout", "node_watchdog_nowayout", true),
    ("state", "", false),
    ("status", "", false),
    ("timeleft", "node_watchdog_timeleft_seconds", true),
    ("timeout", "node_watchdog_timeout_seconds", true),
    ("pretimeout", "node_watchdog_pretimeout_seconds", true),
    ("pretimeout_governor", "", false),
    ("access_cs0", "node_watchdog_access_cs0", true),
];

pub struct Watchdog {
    sysfs_root: PathBuf,
}

impl Watchdog {
    pub fn new(config: &HostConfig) -> Self {
        Self {
            sysfs_root: config.sysfs_root.clone(),
        }
    }

    fn read(&self) -> std::io::Result<Vec<(String, BTreeMap<&'static str, String>)>> {
        let dir = self.sysfs_root.join("class/watchdog");
        let mut out = Vec::new();
        for name in list(&dir)? {
            let mut values = BTreeMap::new();
            for (file, _, numeric) in FILES {
                match super::util::sys_read(&dir.join(&name).join(file)) {
                    Ok(v) => {
                        if numeric && go_int(&v).is_none() {
                            return Err(std::io::Error::new(
                                std::io::ErrorKind::InvalidData,
                                format!("{name}/{file}: {v:?} is not a number"),
                            ));
                        }
                        values.insert(file, v);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            out.push((name, values));
        }
        Ok(out)
    }
}

impl Source for Watchdog {
    fn name(&self) -> &'static str {
        "watchdog"
    }

    fn collect(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
        let dogs = match self.read() {
            Ok(d) => d,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound
                        | std::io::ErrorKind::PermissionDenied
                        | std::io::ErrorKind::InvalidInput
                ) =>
            {
                return Err(SourceError::no_data(format!(
                    "could not read watchdog stats: {e}"
                )))
            }
            Err(e) => return Err(anyhow::Error::new(e).into()),
        };
        for (file, family, numeric) in FILES {
            if !numeric {
                continue;
            }
            let samples: Vec<Sample<'_>> = dogs
                .iter()
                .filter_map(|(n, v)| {
                    let value = go_int(v.get(file)?)? as f64;
                    Some(Sample::new(vec![("name", n.as_str())], value))
                })
                .collect();
            gauge(
                enc,
                family,
                &format!("Value of /sys/class/watchdog/<watchdog>/{file}"),
                &samples,
            )?;
        }
        let get = |v: &'_ BTreeMap<&'static str, String>, k: &str| -> String {
            v.get(k).cloned().unwrap_or_default()
        };
        let info: Vec<(String, Vec<String>)> = dogs
            .iter()
            .map(|(n, v)| {
                (
                    n.clone(),
                    [
                        "options",
                        "identity",
                        "state",
                        "status",
                        "pretimeout_governor",
                    ]
                    .iter()
                    .map(|k| get(v, k))
                    .collect(),
                )
            })
            .collect();
        gauge(
            enc,
            "node_watchdog_info",
            "Info of /sys/class/watchdog/<watchdog>",
            &info
                .iter()
                .map(|(n, v)| {
                    Sample::new(
                        vec![
                            ("name", n.as_str()),
                            ("options", v[0].as_str()),
                            ("identity", v[1].as_str()),
                            ("state", v[2].as_str()),
                            ("status", v[3].as_str()),
                            ("pretimeout_governor", v[4].as_str()),
                        ],
                        1.0,
                    )
                })
                .collect::<Vec<_>>(),
        )?;
        Ok(())
    }
}
