//! node_exporter's `sockstat` collector: sockets in use per protocol and state from
//! `<procfs>/net/sockstat` and `sockstat6` (either missing is skipped), with `mem` also
//! in bytes (pages × page size).

use std::path::{Path, PathBuf};

use anyhow::Context;
use prometheus_client::encoding::DescriptorEncoder;
use vigia_kit::{Source, SourceError};

use crate::config::HostConfig;
use crate::metrics::{gauge, one};

/// One protocol line: its name and the (state, value) pairs node_exporter keeps, in its
/// order (inuse, orphan, tw, alloc, mem, memory).
#[derive(Debug, Clone, PartialEq)]
pub struct Protocol {
    pub name: String,
    pub states: Vec<(&'static str, f64)>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sockstat {
    pub used: Option<f64>,
    pub protocols: Vec<Protocol>,
}

const STATES: [&str; 6] = ["inuse", "orphan", "tw", "alloc", "mem", "memory"];

pub fn parse_sockstat(text: &str) -> anyhow::Result<Sockstat> {
    let mut out = Sockstat::default();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        anyhow::ensure!(fields.len() >= 3, "Malformed sockstat line: {line:?}");
        let kvs = &fields[1..];
        anyhow::ensure!(
            kvs.len() % 2 == 0,
            "Odd number of fields in key/value pairs {line:?}"
        );
        let mut pairs = Vec::new();
        for kv in kvs.chunks(2) {
            let v: i64 = kv[1]
                .parse()
                .with_context(|| format!("sockstat line {line:?}"))?;
            pairs.push((kv[0], v as f64));
        }
        let proto = fields[0].trim_end_matches(':');
        if proto == "sockets" {
            out.used = Some(
                pairs
                    .iter()
                    .find(|(k, _)| *k == "used")
                    .map(|(_, v)| *v)
                    .unwrap_or(0.0),
            );
            continue;
        }
        let get = |k: &str| pairs.iter().rev().find(|(n, _)| *n == k).map(|(_, v)| *v);
        let mut states = vec![("inuse", get("inuse").unwrap_or(0.0))];
        for s in &STATES[1..] {
            if let Some(v) = get(s) {
                states.push((s, v));
            }
        }
        out.protocols.push(Protocol {
            name: proto.to_string(),
            states,
        });
    }
    Ok(out)
}

fn read_sockstat(path: &Path) -> anyhow::Result<Option<Sockstat>> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_sockstat(&text)
            .map(Some)
            .with_context(|| format!("sockstats from {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

pub struct SockstatCollector {
    procfs_root: PathBuf,
}

pub use SockstatCollector as Sockstats;

impl SockstatCollector {
    pub fn new(config: &HostConfig) -> Self {
        Self {
            procfs_root: config.procfs_root.clone(),
        }
    }
}

fn page_size() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if v > 0 {
        v as f64
    } else {
        4096.0
    }
}

impl Source for SockstatCollector {
    fn name(&self) -> &'static str {
        "sockstat"
    }

    fn collect(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
        let v4 = read_sockstat(&self.procfs_root.join("net/sockstat"))
            .context("failed to get IPv4 sockstat data")?;
        let v6 = read_sockstat(&self.procfs_root.join("net/sockstat6"))
            .context("failed to get IPv6 sockstat data")?;
        let page = page_size();
        if let Some(used) = v4.as_ref().and_then(|s| s.used) {
            gauge(
                enc,
                "node_sockstat_sockets_used",
                "Number of IPv4 sockets in use.",
                &one(Some(used)),
            )?;
        }
        for stat in [v4, v6].into_iter().flatten() {
            for p in &stat.protocols {
                let mut states = p.states.clone();
                if let Some((_, pages)) = p.states.iter().find(|(s, _)| *s == "mem") {
                    states.push(("mem_bytes", pages * page));
                }
                for (state, v) in states {
                    gauge(
                        enc,
                        &format!("node_sockstat_{}_{state}", p.name),
                        &format!("Number of {} sockets in state {state}.", p.name),
                        &one(Some(v)),
                    )?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_sockstat() {
        let s = super::parse_sockstat("sockets: used 229\nTCP: inuse 4 orphan 0 tw 4 alloc 17 mem 1\nUDP: inuse 0 mem 0\nFRAG: inuse 0 memory 0\n").unwrap();
        assert_eq!(s.used, Some(229.0));
        assert_eq!(
            s.protocols[0].states,
            vec![
                ("inuse", 4.0),
                ("orphan", 0.0),
                ("tw", 4.0),
                ("alloc", 17.0),
                ("mem", 1.0)
            ]
        );
        assert_eq!(s.protocols[2].states, vec![("inuse", 0.0), ("memory", 0.0)]);
        assert!(super::parse_sockstat("TCP: inuse\n").is_err());
        assert!(super::parse_sockstat("TCP: inuse x\n").is_err());
    }
}
