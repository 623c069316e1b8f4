//! node_exporter's `netstat` collector: the protocol counters of `<procfs>/net/netstat`,
//! `net/snmp` and `net/snmp6` (what `netstat -s` shows) whose `<Protocol>_<Name>` matches
//! `netstat.fields`, untyped, as node_exporter writes them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use prometheus_client::encoding::DescriptorEncoder;
use regex::Regex;
use vigia_kit::{Source, SourceError};

use crate::config::{HostConfig, DEFAULT_NETSTAT_FIELDS};
use crate::metrics::{one, untyped};

/// protocol → (name → value text).
pub type ProtocolStats = BTreeMap<String, BTreeMap<String, String>>;

/// `Proto: Name Name ...` / `Proto: value value ...` line pairs (single spaces, as the
/// kernel writes them).
pub fn parse_netstat(text: &str, file: &str) -> anyhow::Result<ProtocolStats> {
    let mut out = ProtocolStats::new();
    let mut lines = text.lines();
    while let Some(names) = lines.next() {
        let values = lines.next().unwrap_or("");
        let names: Vec<&str> = names.split(' ').collect();
        let values: Vec<&str> = values.split(' ').collect();
        let protocol = names[0]
            .strip_suffix(':')
            .unwrap_or(&names[0][..names[0].len().saturating_sub(1)]);
        anyhow::ensure!(
            names.len() == values.len(),
            "mismatch field count mismatch in {file}: {protocol}"
        );
        let entry = out.entry(protocol.to_string()).or_default();
        entry.clear();
        for (n, v) in names.iter().zip(&values).skip(1) {
            entry.insert(n.to_string(), v.to_string());
        }
    }
    Ok(out)
}

/// `Ip6InReceives 123` lines: the protocol is the name up to its first `6`.
pub fn parse_snmp6(text: &str) -> ProtocolStats {
    let mut out = ProtocolStats::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        if f.len() < 2 {
            continue;
        }
        if let Some(six) = f[0].find('6') {
            out.entry(f[0][..=six].to_string())
                .or_default()
                .insert(f[0][six + 1..].to_string(), f[1].to_string());
        }
    }
    out
}

fn read(path: &Path) -> std::io::Result<String> {
    std::fs::read_to_string(path)
}

pub struct Netstat {
    procfs_root: PathBuf,
    fields: Option<Regex>,
}

impl Netstat {
    pub fn new(config: &HostConfig) -> Self {
        let pattern = config
            .netstat
            .fields
            .as_deref()
            .unwrap_or(DEFAULT_NETSTAT_FIELDS);
        Self {
            procfs_root: config.procfs_root.clone(),
            fields: Regex::new(pattern).ok(),
        }
    }
}

impl Source for Netstat {
    fn name(&self) -> &'static str {
        "netstat"
    }

    fn collect(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
        let net = self.procfs_root.join("net");
        let mut stats = parse_netstat(
            &read(&net.join("netstat")).context("couldn't get netstats")?,
            "netstat",
        )?;
        let snmp = parse_netstat(
            &read(&net.join("snmp")).context("couldn't get SNMP stats")?,
            "snmp",
        )?;
        let snmp6 = match read(&net.join("snmp6")) {
            Ok(text) => parse_snmp6(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => ProtocolStats::new(),
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context("couldn't get SNMP6 stats")
                    .into())
            }
        };
        stats.extend(snmp);
        stats.extend(snmp6);
        let mut values = Vec::new();
        for (protocol, fields) in &stats {
            for (name, text) in fields {
                let v: f64 = text
                    .parse()
                    .with_context(|| format!("invalid value {text} in netstats"))?;
                let key = format!("{protocol}_{name}");
                if self.fields.as_ref().is_some_and(|r| r.is_match(&key)) {
                    values.push((key, format!("Statistic {protocol}{name}."), v));
                }
            }
        }
        for (key, help, v) in values {
            untyped(enc, &format!("node_netstat_{key}"), &help, &one(Some(v)))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_pairs_and_snmp6() {
        let s = super::parse_netstat(
            "Tcp: RtoMin ActiveOpens\nTcp: 200 12\nUdp: InDatagrams\nUdp: 5\n",
            "snmp",
        )
        .unwrap();
        assert_eq!(s["Tcp"]["ActiveOpens"], "12");
        assert_eq!(s["Udp"]["InDatagrams"], "5");
        assert!(super::parse_netstat("Tcp: A B\nTcp: 1\n", "snmp").is_err());
        let s6 =
            super::parse_snmp6("Ip6InReceives    10\nIcmp6InMsgs 3\nUdpLite6InErrors 0\nshort\n");
        assert_eq!(s6["Ip6"]["InReceives"], "10");
        assert_eq!(s6["UdpLite6"]["InErrors"], "0");
    }
}
