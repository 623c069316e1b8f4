//! `<procfs>/net/dev` as node_exporter's `netdev` collector. Also used for a container's
//! interfaces, read through one of its processes (`<procfs>/<pid>/net/dev`).

use std::path::{Path, PathBuf};

use anyhow::Context;
use prometheus_client::encoding::DescriptorEncoder;
use regex::Regex;
use vigia_kit::{Source, SourceError};

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

pub struct NetdevCollector {
    pub procfs_root: PathBuf,
    pub device_exclude: Option<Regex>,
}

impl NetdevCollector {
    pub fn interfaces(&self) -> anyhow::Result<Vec<Interface>> {
        let mut all = read_net_dev(&self.procfs_root.join("net/dev"))?;
        if let Some(re) = &self.device_exclude {
            all.retain(|i| !re.is_match(&i.device));
        }
        Ok(all)
    }
}

impl Source for NetdevCollector {
    fn name(&self) -> &'static str {
        "netdev"
    }

    fn collect(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
        let ifaces = self.interfaces()?;
        for (col, column) in COLUMNS.iter().enumerate() {
            let samples: Vec<Sample<'_>> = ifaces
                .iter()
                .map(|i| Sample::new(vec![("device", i.device.as_str())], i.counters[col]))
                .collect();
            counter(
                enc,
                &format!("node_network_{column}"),
                &format!("Network device statistic {column}"),
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
