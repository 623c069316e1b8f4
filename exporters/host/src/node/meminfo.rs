//! `<procfs>/meminfo` as node_exporter's `meminfo` collector: every field, named as it
//! names them (`Active(anon)` → `node_memory_Active_anon_bytes`; kB fields in bytes).
//! node_exporter 1.5 wrote every field; 1.9 writes a fixed list of 48 of them (those its
//! procfs library knows). vigia-host writes every field, as 1.5 did, so the families of
//! both versions are there (`node_memory_KReclaimable_bytes`, `..._Zswap_bytes`, ...).

use std::path::{Path, PathBuf};

use crate::config::HostConfig;

use anyhow::Context;
use prometheus_client::encoding::DescriptorEncoder;
use vigia_kit::{Source, SourceError};

use crate::metrics::{gauge, Sample};

/// Fields in file order: (node_exporter's key, value in bytes or a plain count).
pub fn parse_meminfo(text: &str) -> anyhow::Result<Vec<(String, f64)>> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut parts = line.split_ascii_whitespace();
        let (Some(raw_key), Some(raw_value)) = (parts.next(), parts.next()) else {
            continue;
        };
        let key = raw_key.trim_end_matches(':');
        let value: f64 = raw_value
            .parse()
            .with_context(|| format!("meminfo field {key}: {raw_value:?}"))?;
        let mut name: String = key
            .chars()
            .filter_map(|c| match c {
                '(' => Some('_'),
                ')' => None,
                c if c.is_ascii_alphanumeric() || c == '_' => Some(c),
                _ => Some('_'),
            })
            .collect();
        let value = match parts.next() {
            Some(_unit) => {
                name.push_str("_bytes");
                value * 1024.0
            }
            None => value,
        };
        out.push((name, value));
    }
    if out.is_empty() {
        anyhow::bail!("no fields");
    }
    Ok(out)
}

pub fn read_meminfo(procfs_root: &Path) -> anyhow::Result<Vec<(String, f64)>> {
    let path = procfs_root.join("meminfo");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    parse_meminfo(&text).with_context(|| format!("parsing {}", path.display()))
}

pub struct Meminfo {
    procfs_root: PathBuf,
}

impl Meminfo {
    pub fn new(config: &HostConfig) -> Self {
        Self {
            procfs_root: config.procfs_root.clone(),
        }
    }
}

impl Source for Meminfo {
    fn name(&self) -> &'static str {
        "meminfo"
    }

    fn collect(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
        let fields = read_meminfo(&self.procfs_root)?;
        for (name, value) in &fields {
            gauge(
                enc,
                &format!("node_memory_{name}"),
                &format!("Memory information field {name}."),
                &[Sample::bare(*value)],
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_units_as_node_exporter() {
        let f = parse_meminfo(
            "MemTotal:       16000 kB\nMemAvailable:    4000 kB\nActive(anon):  10 kB\nHugePages_Total:       0\n",
        )
        .unwrap();
        assert_eq!(f[0], ("MemTotal_bytes".to_string(), 16000.0 * 1024.0));
        assert_eq!(f[2].0, "Active_anon_bytes");
        assert_eq!(f[3], ("HugePages_Total".to_string(), 0.0));
        assert!(parse_meminfo("MemTotal: lots kB\n").is_err());
        assert!(parse_meminfo("").is_err());
    }
}
