//! `<procfs>/net/dev` as node_exporter's `netdev` collector. Also used for a container's
//! interfaces, read through one of its processes (`<procfs>/<pid>/net/dev`).

use std::path::{Path, PathBuf};

use anyhow::Context;
use prometheus_client::encoding::DescriptorEncoder;
use vigia_kit::{Source, SourceError};

use super::util::{attr_f64, NameFilter};
use crate::config::HostConfig;

use crate::metrics::{counter, Sample};

/// The 16 columns of `/proc/net/dev`, named as node_exporter names them.
pub const COLUMNS: [&str; 16] = [
    "receive_bytes",
    "receive_packets",
    "receive_errs",
    "receive_drop",
    "receive_fifo",
    "receive_frame",
    "receive_compressed",
    "receive_multicast",
    "transmit_bytes",
    "transmit_packets",
    "transmit_errs",
    "transmit_drop",
    "transmit_fifo",
    "transmit_colls",
    "transmit_carrier",
    "transmit_compressed",
];

#[derive(Debug, Clone, PartialEq)]
pub struct Interface {
    pub device: String,
    pub counters: [f64; 16],
}

pub fn parse_net_dev(text: &str) -> Vec<Interface> {
    let mut out = Vec::new();
    // Two header lines, then `name: 16 numbers`.
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let mut counters = [0.0; 16];
        let mut n = 0;
        for (slot, f) in counters.iter_mut().zip(rest.split_ascii_whitespace()) {
            *slot = f.parse().unwrap_or(0.0);
            n += 1;
        }
        if n == 16 {
            out.push(Interface {
                device: name.trim().to_string(),
                counters,
            });
        }
    }
    out
}

pub fn read_net_dev(path: &Path) -> anyhow::Result<Vec<Interface>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(parse_net_dev(&text))
}

pub struct Netdev {
    procfs_root: PathBuf,
    sysfs_root: PathBuf,
    filter: NameFilter,
    netlink: bool,
}

impl Netdev {
    pub fn new(config: &HostConfig) -> Self {
        Self {
            procfs_root: config.procfs_root.clone(),
            sysfs_root: config.sysfs_root.clone(),
            filter: config.netdev.filter(),
            netlink: config.netdev.netlink,
        }
    }

    pub fn interfaces(&self) -> anyhow::Result<Vec<Interface>> {
        let mut all = read_net_dev(&self.procfs_root.join("net/dev"))?;
        all.retain(|i| !self.filter.ignored(&i.device));
        Ok(all)
    }
}

impl Source for Netdev {
    fn name(&self) -> &'static str {
        "netdev"
    }

    fn collect(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
        let ifaces = self.interfaces()?;
        // The kernel's link statistics (what node_exporter reads over netlink) hold one
        // counter /proc/net/dev lacks: packets no protocol handler took.
        let nohandler: Vec<(&str, f64)> = if self.netlink {
            ifaces
                .iter()
                .filter_map(|i| {
                    let dir = self
                        .sysfs_root
                        .join("class/net")
                        .join(&i.device)
                        .join("statistics");
                    Some((i.device.as_str(), attr_f64(&dir, "rx_nohandler")?))
                })
                .collect()
        } else {
            Vec::new()
        };
        for (col, column) in COLUMNS.iter().enumerate() {
            let samples: Vec<Sample<'_>> = ifaces
                .iter()
                .map(|i| Sample::new(vec![("device", i.device.as_str())], i.counters[col]))
                .collect();
            counter(
                enc,
                &format!("node_network_{column}_total"),
                &format!("Network device statistic {column}."),
                &samples,
            )?;
        }
        counter(
            enc,
            "node_network_receive_nohandler_total",
            "Network device statistic receive_nohandler.",
            &nohandler
                .iter()
                .map(|(d, v)| Sample::new(vec![("device", *d)], *v))
                .collect::<Vec<_>>(),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_dev() {
        let text = "Inter-|   Receive |  Transmit\n face |bytes packets|bytes\n\
    lo: 100 2 0 0 0 0 0 0 100 2 0 0 0 0 0 0\n\
  eth0: 5000 40 1 2 0 0 0 3 7000 50 0 4 0 0 0 0\n\
  bad: 1 2 3\n";
        let got = parse_net_dev(text);
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].device, "eth0");
        assert_eq!(got[1].counters[0], 5000.0);
        assert_eq!(got[1].counters[8], 7000.0);
        assert_eq!(got[1].counters[11], 4.0);
    }
}
