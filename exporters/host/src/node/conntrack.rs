//! node_exporter's `conntrack` collector: the connection-tracking table's size and limit
//! (`<procfs>/sys/net/netfilter/nf_conntrack_{count,max}`) and its statistics summed over
//! CPUs (`<procfs>/net/stat/nf_conntrack`). No module loaded (no files): no data.

use std::path::PathBuf;

use anyhow::Context;
use prometheus_client::encoding::DescriptorEncoder;
use vigia_kit::{Source, SourceError};

use super::util::{is_not_found, read, read_attr};
use crate::config::HostConfig;
use crate::metrics::{gauge, one};

/// (column in nf_conntrack, family, help) of the statistics node_exporter writes.
const STATS: [(usize, &str, &str); 8] = [
    (2, "node_nf_conntrack_stat_found", "Number of searched entries which were successful."),
    (4, "node_nf_conntrack_stat_invalid", "Number of packets seen which can not be tracked."),
    (5, "node_nf_conntrack_stat_ignore", "Number of packets seen which are already connected to a conntrack entry."),
    (8, "node_nf_conntrack_stat_insert", "Number of entries inserted into the list."),
    (9, "node_nf_conntrack_stat_insert_failed", "Number of entries for which list insertion was attempted but failed."),
    (10, "node_nf_conntrack_stat_drop", "Number of packets dropped due to conntrack failure."),
    (11, "node_nf_conntrack_stat_early_drop", "Number of dropped conntrack entries to make room for new ones, if maximum table size was reached."),
    (16, "node_nf_conntrack_stat_search_restart", "Number of conntrack table lookups which had to be restarted due to hashtable resizes."),
];

/// The per-CPU rows (hex) summed; a row must have 16 or 17 columns.
pub fn parse_conntrack_stat(text: &str) -> anyhow::Result<[f64; 17]> {
    let mut sums = [0.0; 17];
    for line in text.lines().skip(1) {
        let fields = line
            .split_ascii_whitespace()
            .map(|f| u64::from_str_radix(f, 16))
            .collect::<Result<Vec<u64>, _>>()
            .with_context(|| format!("Cannot parse entry: {line:?}"))?;
        anyhow::ensure!(
            (16..=17).contains(&fields.len()),
            "invalid conntrackstat entry, invalid number of fields: {}",
            fields.len()
        );
        for (sum, v) in sums.iter_mut().zip(&fields) {
            *sum += *v as f64;
        }
    }
    Ok(sums)
}

pub struct Conntrack {
    procfs_root: PathBuf,
}

impl Conntrack {
    pub fn new(config: &HostConfig) -> Self {
        Self {
            procfs_root: config.procfs_root.clone(),
        }
    }
}

/// node_exporter writes each value as it reads it, so a later file's absence still leaves
/// the earlier families (and makes the scrape "no data").
fn failed(e: anyhow::Error) -> SourceError {
    if is_not_found(&e) {
        SourceError::no_data("conntrack probably not loaded")
    } else {
        anyhow::anyhow!("failed to retrieve conntrack stats: {e:#}").into()
    }
}

impl Source for Conntrack {
    fn name(&self) -> &'static str {
        "conntrack"
    }

    fn collect(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
        let dir = self.procfs_root.join("sys/net/netfilter");
        let number = |f: &str| -> anyhow::Result<f64> {
            let text = read_attr(&dir.join(f)).with_context(|| format!("reading {f}"))?;
            Ok(text
                .parse::<u64>()
                .with_context(|| format!("parsing {f}"))? as f64)
        };
        let count = number("nf_conntrack_count").map_err(failed)?;
        gauge(
            enc,
            "node_nf_conntrack_entries",
            "Number of currently allocated flow entries for connection tracking.",
            &one(Some(count)),
        )?;
        let max = number("nf_conntrack_max").map_err(failed)?;
        gauge(
            enc,
            "node_nf_conntrack_entries_limit",
            "Maximum size of connection tracking table.",
            &one(Some(max)),
        )?;
        let stats = read(&self.procfs_root.join("net/stat/nf_conntrack"))
            .and_then(|t| parse_conntrack_stat(&t))
            .map_err(failed)?;
        for (col, name, help) in STATS {
            gauge(enc, name, help, &one(Some(stats[col])))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sums_cpus() {
        let text = "entries clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error expect_new expect_create expect_delete search_restart\n\
0000000a 00000000 00000001 00000000 00000002 00000000 00000000 00000000 00000003 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000010\n\
0000000a 00000000 00000001 00000000 00000002 00000000 00000000 00000000 00000003 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000010\n";
        let s = super::parse_conntrack_stat(text).unwrap();
        assert_eq!((s[2], s[4], s[8], s[16]), (2.0, 4.0, 6.0, 32.0));
        assert!(super::parse_conntrack_stat("h\n1 2 3\n").is_err());
    }
}
