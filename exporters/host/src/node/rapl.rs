//! node_exporter's `rapl` collector: RAPL energy counters per power zone from
//! `<sysfs>/class/powercap/*/{name,energy_uj}` (root only since CVE-2020-8694: for a
//! non-root vigia-host this is "no data", and the `energy` collector says why once).

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Context;
use prometheus_client::encoding::DescriptorEncoder;
use vigia_kit::{Source, SourceError};

use super::util::{list, read_attr};
use crate::config::HostConfig;
use crate::metrics::{counter, Sample};

#[derive(Debug, Clone, PartialEq)]
pub struct Zone {
    pub name: String,
    pub index: u64,
    pub path: String,
}

/// `package-0` → (0, package); another name gets the count of zones seen with it.
fn index_and_name(seen: &HashMap<String, u64>, name: &str) -> (u64, String) {
    if let Some((base, n)) = name.split_once('-') {
        if !n.contains('-') {
            if let Ok(i) = n.parse() {
                return (i, base.to_string());
            }
        }
    }
    (seen.get(name).copied().unwrap_or(0), name.to_string())
}

/// Any character outside `[a-zA-Z0-9:_]` becomes `_`.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == ':' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

pub struct Rapl {
    sysfs_root: PathBuf,
    zone_label: bool,
}

impl Rapl {
    pub fn new(config: &HostConfig) -> Self {
        Self {
            sysfs_root: config.sysfs_root.clone(),
            zone_label: config.rapl.enable_zone_label,
        }
    }

    fn zones(&self) -> std::io::Result<Vec<Zone>> {
        let dir = self.sysfs_root.join("class/powercap");
        let mut seen = HashMap::new();
        let mut zones = Vec::new();
        for entry in list(&dir)? {
            let zone_dir = dir.join(&entry);
            let Ok(raw) = std::fs::read_to_string(zone_dir.join("name")) else {
                continue;
            };
            let (index, name) = index_and_name(&seen, raw.trim());
            read_attr(&zone_dir.join("max_energy_range_uj"))?
                .parse::<u64>()
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            seen.insert(name.clone(), index + 1);
            zones.push(Zone {
                name,
                index,
                path: zone_dir.display().to_string(),
            });
        }
        Ok(zones)
    }
}

impl Source for Rapl {
    fn name(&self) -> &'static str {
        "rapl"
    }

    fn collect(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
        let zones = match self.zones() {
            Ok(z) => z,
            Err(e) if super::util::absent_or_denied(&e) => {
                return Err(SourceError::no_data(format!(
                    "no readable powercap zones: {e}"
                )))
            }
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context("failed to retrieve rapl stats")
                    .into())
            }
        };
        let mut readings = Vec::with_capacity(zones.len());
        for z in &zones {
            match std::fs::read_to_string(PathBuf::from(&z.path).join("energy_uj")) {
                Ok(v) => {
                    let uj: u64 = v
                        .trim()
                        .parse()
                        .with_context(|| format!("{}/energy_uj: {v:?}", z.path))?;
                    readings.push((z, uj as f64 / 1e6));
                }
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                    return Err(SourceError::no_data("energy_uj is readable by root only"))
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e)
                        .context(format!("{}/energy_uj", z.path))
                        .into())
                }
            }
        }
        let indexes: Vec<String> = readings.iter().map(|(z, _)| z.index.to_string()).collect();
        if self.zone_label {
            let samples: Vec<Sample<'_>> = readings
                .iter()
                .zip(&indexes)
                .map(|((z, j), i)| {
                    Sample::new(
                        vec![
                            ("index", i.as_str()),
                            ("path", z.path.as_str()),
                            ("rapl_zone", z.name.as_str()),
                        ],
                        *j,
                    )
                })
                .collect();
            counter(
                enc,
                "node_rapl_joules_total",
                "Current RAPL value in joules",
                &samples,
            )?;
            return Ok(());
        }
        let mut names: Vec<&str> = zones.iter().map(|z| z.name.as_str()).collect();
        names.dedup();
        let mut done = Vec::new();
        for name in names {
            if done.contains(&name) {
                continue;
            }
            done.push(name);
            let samples: Vec<Sample<'_>> = readings
                .iter()
                .zip(&indexes)
                .filter(|((z, _), _)| z.name == name)
                .map(|((z, j), i)| {
                    Sample::new(vec![("index", i.as_str()), ("path", z.path.as_str())], *j)
                })
                .collect();
            counter(
                enc,
                &format!("node_rapl_{}_joules_total", sanitize(name)),
                &format!("Current RAPL {name} value in joules"),
                &samples,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_names() {
        let mut seen = HashMap::new();
        assert_eq!(
            index_and_name(&seen, "package-1"),
            (1, "package".to_string())
        );
        assert_eq!(index_and_name(&seen, "core"), (0, "core".to_string()));
        seen.insert("core".to_string(), 1);
        assert_eq!(index_and_name(&seen, "core"), (1, "core".to_string()));
        assert_eq!(sanitize("dram-x"), "dram_x");
    }
}
