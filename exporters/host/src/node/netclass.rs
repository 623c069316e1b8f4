//! node_exporter's `netclass` collector: each interface's attributes from
//! `<sysfs>/class/net/<iface>/` (speed, carrier, MTU, up, flags, info labels, ...).
//! Attributes the device does not expose (or refuses: EINVAL, EOPNOTSUPP, permission)
//! are left out, as the procfs library leaves them out; an interface that vanishes
//! between the listing and its reading makes the scrape "no data".

use std::collections::BTreeMap;
use std::path::PathBuf;

use prometheus_client::encoding::DescriptorEncoder;
use vigia_kit::{Source, SourceError};

use super::util::{go_int, sys_read, NameFilter};
use crate::config::HostConfig;
use crate::metrics::{write, Kind, Sample};

/// (attribute file, family suffix, kind) of the numeric attributes, as node_exporter
/// writes them.
const NUMERIC: [(&str, &str, Kind); 17] = [
    ("addr_assign_type", "address_assign_type", Kind::Gauge),
    ("carrier", "carrier", Kind::Gauge),
    ("carrier_changes", "carrier_changes_total", Kind::Counter),
    (
        "carrier_up_count",
        "carrier_up_changes_total",
        Kind::Counter,
    ),
    (
        "carrier_down_count",
        "carrier_down_changes_total",
        Kind::Counter,
    ),
    ("dev_id", "device_id", Kind::Gauge),
    ("dormant", "dormant", Kind::Gauge),
    ("flags", "flags", Kind::Gauge),
    ("ifindex", "iface_id", Kind::Gauge),
    ("iflink", "iface_link", Kind::Gauge),
    ("link_mode", "iface_link_mode", Kind::Gauge),
    ("mtu", "mtu_bytes", Kind::Gauge),
    ("name_assign_type", "name_assign_type", Kind::Gauge),
    ("netdev_group", "net_dev_group", Kind::Gauge),
    ("speed", "speed_bytes", Kind::Gauge),
    ("tx_queue_len", "transmit_queue_length", Kind::Gauge),
    ("type", "protocol_type", Kind::Gauge),
];

const TEXT: [&str; 5] = ["address", "broadcast", "duplex", "operstate", "ifalias"];

/// `IFF_UP` in `flags`.
const FLAG_UP: i64 = 1;

#[derive(Debug, Default)]
struct Iface {
    name: String,
    numbers: BTreeMap<&'static str, i64>,
    text: BTreeMap<&'static str, String>,
}

/// Errors the procfs library skips an attribute for rather than failing the device.
fn ignorable(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::NotFound
            | std::io::ErrorKind::PermissionDenied
            | std::io::ErrorKind::InvalidInput
    ) || matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP) | Some(libc::EINVAL)
    )
}

pub struct Netclass {
    sysfs_root: PathBuf,
    ignored: NameFilter,
    ignore_invalid_speed: bool,
}

impl Netclass {
    pub fn new(config: &HostConfig) -> Self {
        Self {
            sysfs_root: config.sysfs_root.clone(),
            ignored: NameFilter::excluding(&config.netclass.ignored_devices),
            ignore_invalid_speed: config.netclass.ignore_invalid_speed,
        }
    }

    fn read(&self) -> Result<Vec<Iface>, std::io::Error> {
        let dir = self.sysfs_root.join("class/net");
        let mut names: Vec<String> = std::fs::read_dir(&dir)?
            .filter_map(Result::ok)
            .filter(|e| !e.file_type().map(|t| t.is_file()).unwrap_or(false))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !self.ignored.ignored(n))
            .collect();
        names.sort();
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let path = dir.join(&name);
            // The device must be listable (it may have vanished since the listing).
            std::fs::read_dir(&path)?;
            let mut iface = Iface {
                name,
                ..Iface::default()
            };
            for (file, _, _) in NUMERIC {
                match sys_read(&path.join(file)) {
                    // A value that does not parse reads as 0, as the procfs library's
                    // `PInt64` returns it.
                    Ok(v) => {
                        iface.numbers.insert(file, go_int(&v).unwrap_or(0));
                    }
                    Err(e) if ignorable(&e) => {}
                    Err(e) => return Err(e),
                }
            }
            for file in TEXT {
                match sys_read(&path.join(file)) {
                    Ok(v) => {
                        iface.text.insert(file, v);
                    }
                    Err(e) if ignorable(&e) => {}
                    Err(e) => return Err(e),
                }
            }
            out.push(iface);
        }
        Ok(out)
    }
}

impl Source for Netclass {
    fn name(&self) -> &'static str {
        "netclass"
    }

    fn collect(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
        let ifaces = match self.read() {
            Ok(i) => i,
            Err(e) if super::util::absent_or_denied(&e) => {
                return Err(SourceError::no_data(format!(
                    "could not read netclass file: {e}"
                )))
            }
            Err(e) => return Err(anyhow::anyhow!("could not get net class info: {e}").into()),
        };
        fn text<'a>(i: &'a Iface, k: &str) -> &'a str {
            i.text.get(k).map(String::as_str).unwrap_or("")
        }
        let admin: Vec<&str> = ifaces
            .iter()
            .map(|i| match i.numbers.get("flags") {
                None => "unknown",
                Some(f) if f & FLAG_UP == 1 => "up",
                Some(_) => "down",
            })
            .collect();
        write(
            enc,
            Kind::Gauge,
            "node_network_up",
            "Value is 1 if operstate is 'up', 0 otherwise.",
            &ifaces
                .iter()
                .map(|i| {
                    Sample::new(
                        vec![("device", i.name.as_str())],
                        f64::from(u8::from(text(i, "operstate") == "up")),
                    )
                })
                .collect::<Vec<_>>(),
        )?;
        write(
            enc,
            Kind::Gauge,
            "node_network_info",
            "Non-numeric data from /sys/class/net/<iface>, value is always 1.",
            &ifaces
                .iter()
                .zip(&admin)
                .map(|(i, a)| {
                    Sample::new(
                        vec![
                            ("device", i.name.as_str()),
                            ("address", text(i, "address")),
                            ("broadcast", text(i, "broadcast")),
                            ("duplex", text(i, "duplex")),
                            ("operstate", text(i, "operstate")),
                            ("adminstate", a),
                            ("ifalias", text(i, "ifalias")),
                        ],
                        1.0,
                    )
                })
                .collect::<Vec<_>>(),
        )?;
        for (file, suffix, kind) in NUMERIC {
            let samples: Vec<Sample<'_>> = ifaces
                .iter()
                .filter_map(|i| {
                    let mut v = *i.numbers.get(file)?;
                    if file == "speed" {
                        if v < 0 && self.ignore_invalid_speed {
                            return None;
                        }
                        // Mbit/s to bytes/s, in integers as node_exporter computes it.
                        v = v.saturating_mul(1000 * 1000) / 8;
                    }
                    Some(Sample::new(vec![("device", i.name.as_str())], v as f64))
                })
                .collect();
            write(
                enc,
                kind,
                &format!("node_network_{suffix}"),
                &format!("Network device property: {suffix}"),
                &samples,
            )?;
        }
        Ok(())
    }
}
