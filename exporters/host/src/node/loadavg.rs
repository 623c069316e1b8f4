//! `<procfs>/loadavg` as node_exporter's `loadavg` collector.

use std::path::{Path, PathBuf};

use crate::config::HostConfig;

use anyhow::Context;
use prometheus_client::encoding::DescriptorEncoder;
use vigia_kit::{Source, SourceError};

use crate::metrics::{gauge, Sample};

pub fn parse_loadavg(text: &str) -> anyhow::Result<[f64; 3]> {
    let mut out = [0.0; 3];
    let mut fields = text.split_ascii_whitespace();
    for slot in &mut out {
        let f = fields.next().context("fewer than three load averages")?;
        *slot = f.parse().with_context(|| format!("load average {f:?}"))?;
    }
    Ok(out)
}

pub fn read_loadavg(procfs_root: &Path) -> anyhow::Result<[f64; 3]> {
    let path = procfs_root.join("loadavg");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    parse_loadavg(&text)
}

pub struct Loadavg {
    procfs_root: PathBuf,
}

impl Loadavg {
    pub fn new(config: &HostConfig) -> Self {
        Self {
            procfs_root: config.procfs_root.clone(),
        }
    }
}

impl Source for Loadavg {
    fn name(&self) -> &'static str {
        "loadavg"
    }

    fn collect(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
        let [l1, l5, l15] = read_loadavg(&self.procfs_root)?;
        gauge(enc, "node_load1", "1m load average.", &[Sample::bare(l1)])?;
        gauge(enc, "node_load5", "5m load average.", &[Sample::bare(l5)])?;
        gauge(
            enc,
            "node_load15",
            "15m load average.",
            &[Sample::bare(l15)],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        assert_eq!(
            parse_loadavg("0.50 1.25 2.00 3/456 789\n").unwrap(),
            [0.5, 1.25, 2.0]
        );
        assert!(parse_loadavg("0.5 x 1").is_err());
        assert!(parse_loadavg("").is_err());
    }
}
