//! node_exporter's `arp` collector: neighbour entries per device from
//! `<procfs>/net/arp` (what node_exporter's netlink read returns too: the table of the
//! network namespace vigia-host runs in).

use std::collections::BTreeMap;
use std::path::PathBuf;

use prometheus_client::encoding::DescriptorEncoder;
use vigia_kit::{Source, SourceError};

use super::util::{read, NameFilter};
use crate::config::HostConfig;
use crate::metrics::{gauge, Sample};

/// Entries per device; the header line is skipped, the device is the last column.
pub fn parse_arp(text: &str) -> anyhow::Result<BTreeMap<String, f64>> {
    let mut out = BTreeMap::new();
    for line in text.lines().skip(1) {
        let cols: Vec<&str> = line.split_ascii_whitespace().collect();
        if cols.is_empty() {
            continue;
        }
        anyhow::ensure!(
            cols.len() >= 6,
            "could not get ARP entries: malformed line {line:?}"
        );
        *out.entry(cols[cols.len() - 1].to_string()).or_insert(0.0) += 1.0;
    }
    Ok(out)
}

pub struct Arp {
    procfs_root: PathBuf,
    filter: NameFilter,
}

impl Arp {
    pub fn new(config: &HostConfig) -> Self {
        Self {
            procfs_root: config.procfs_root.clone(),
            filter: HostConfig::filter(&config.arp, None),
        }
    }
}

impl Source for Arp {
    fn name(&self) -> &'static str {
        "arp"
    }

    fn collect(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
        let entries = parse_arp(&read(&self.procfs_root.join("net/arp"))?)?;
        let samples: Vec<Sample<'_>> = entries
            .iter()
            .filter(|(d, _)| !self.filter.ignored(d))
            .map(|(d, n)| Sample::new(vec![("device", d.as_str())], *n))
            .collect();
        gauge(enc, "node_arp_entries", "ARP entries by device", &samples)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_per_device() {
        let t = "IP address       HW type     Flags       HW address            Mask     Device\n\
192.0.2.1        0x1         0x2         02:00:00:00:00:01     *        eth0\n\
192.0.2.2        0x1         0x2         02:00:00:00:00:02     *        eth0\n\
198.51.100.1     0x1         0x0         00:00:00:00:00:00     *        eth1\n";
        let got = super::parse_arp(t).unwrap();
        assert_eq!(got["eth0"], 2.0);
        assert_eq!(got["eth1"], 1.0);
    }
}
