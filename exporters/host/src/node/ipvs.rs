//! node_exporter's `ipvs` collector: IP Virtual Server totals (`<procfs>/net/ip_vs_stats`)
//! and per-backend connections and weights (`<procfs>/net/ip_vs`), summed over the
//! configured label set (`ipvs.backend_labels`). No IPVS module loaded: no data.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use anyhow::Context;
use prometheus_client::encoding::DescriptorEncoder;
use vigia_kit::{Source, SourceError};

use crate::config::HostConfig;
use crate::metrics::{counter, gauge, one, Sample};

/// Every label a backend series can carry, in node_exporter's order.
pub const BACKEND_LABELS: [&str; 6] = [
    "local_address",
    "local_port",
    "remote_address",
    "remote_port",
    "proto",
    "local_mark",
];

/// `0A000001:0050` or `[2001:0db8:...]:0050` as written in ip_vs.
fn ip_port(s: &str) -> anyhow::Result<(String, u16)> {
    let ip = match s.len() {
        13 => {
            let v = u32::from_str_radix(&s[..8], 16).with_context(|| format!("IP:Port {s}"))?;
            IpAddr::V4(Ipv4Addr::from(v)).to_string()
        }
        46 => {
            let v6: Ipv6Addr = s[1..40]
                .parse()
                .with_context(|| format!("Invalid IPv6 addr {}", &s[1..40]))?;
            // Go writes an IPv4-mapped address as the IPv4 address.
            match v6.to_ipv4_mapped() {
                Some(v4) => v4.to_string(),
                None => v6.to_string(),
            }
        }
        _ => anyhow::bail!("Unexpected IP:Port {s}"),
    };
    let port =
        u16::from_str_radix(&s[s.len() - 4..], 16).with_context(|| format!("port of {s}"))?;
    Ok((ip, port))
}

#[derive(Debug, Clone, PartialEq)]
pub struct Backend {
    pub local_address: String,
    pub local_port: u16,
    pub local_mark: String,
    pub remote_address: String,
    pub remote_port: u16,
    pub proto: String,
    pub weight: f64,
    pub active: f64,
    pub inactive: f64,
}

pub fn parse_backends(text: &str) -> anyhow::Result<Vec<Backend>> {
    let mut out = Vec::new();
    let (mut proto, mut mark, mut local, mut local_port) =
        (String::new(), String::new(), String::new(), 0u16);
    for line in text.lines() {
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        if f.is_empty() {
            continue;
        }
        if f[0] == "IP" || f[0] == "Prot" || f.get(1) == Some(&"RemoteAddress:Port") {
            continue;
        }
        match f[0] {
            "TCP" | "UDP" if f.len() >= 2 => {
                proto = f[0].to_string();
                mark.clear();
                (local, local_port) = ip_port(f[1])?;
            }
            "FWM" if f.len() >= 2 => {
                proto = f[0].to_string();
                mark = f[1].to_string();
                local.clear();
                local_port = 0;
            }
            "->" if f.len() >= 6 => {
                let (remote, remote_port) = ip_port(f[1])?;
                let n = |i: usize| -> anyhow::Result<f64> {
                    Ok(f[i]
                        .parse::<u64>()
                        .with_context(|| format!("ip_vs line {line:?}"))?
                        as f64)
                };
                out.push(Backend {
                    local_address: local.clone(),
                    local_port,
                    local_mark: mark.clone(),
                    remote_address: remote,
                    remote_port,
                    proto: proto.clone(),
                    weight: n(3)?,
                    active: n(4)?,
                    inactive: n(5)?,
                });
            }
            _ => {}
        }
    }
    Ok(out)
}

/// (connections, incoming packets, outgoing packets, incoming bytes, outgoing bytes).
pub fn parse_totals(text: &str) -> anyhow::Result<[f64; 5]> {
    let lines: Vec<&str> = text.splitn(4, '\n').collect();
    anyhow::ensure!(lines.len() == 4, "ip_vs_stats corrupt: too short");
    let f: Vec<&str> = lines[2].split_ascii_whitespace().collect();
    anyhow::ensure!(
        f.len() == 5,
        "ip_vs_stats corrupt: unexpected number of fields"
    );
    let mut out = [0.0; 5];
    for (slot, v) in out.iter_mut().zip(f) {
        *slot =
            u64::from_str_radix(v, 16).with_context(|| format!("ip_vs_stats field {v:?}"))? as f64;
    }
    Ok(out)
}

pub struct Ipvs {
    procfs_root: PathBuf,
    labels: Vec<&'static str>,
}

impl Ipvs {
    pub fn new(config: &HostConfig) -> Self {
        let wanted: Vec<&str> = config.ipvs.backend_labels.split(',').collect();
        Self {
            procfs_root: config.procfs_root.clone(),
            labels: BACKEND_LABELS
                .iter()
                .copied()
                .filter(|l| wanted.contains(l))
                .collect(),
        }
    }
}

impl Source for Ipvs {
    fn name(&self) -> &'static str {
        "ipvs"
    }

    fn collect(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
        let stats_path = self.procfs_root.join("net/ip_vs_stats");
        let totals = match std::fs::read_to_string(&stats_path) {
            Ok(t) => parse_totals(&t).context("could not get IPVS stats")?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(SourceError::no_data(
                    "ipvs collector metrics are not available for this system",
                ))
            }
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context("could not get IPVS stats")
                    .into())
            }
        };
        for ((name, help), v) in [
            (
                "node_ipvs_connections_total",
                "The total number of connections made.",
            ),
            (
                "node_ipvs_incoming_packets_total",
                "The total number of incoming packets.",
            ),
            (
                "node_ipvs_outgoing_packets_total",
                "The total number of outgoing packets.",
            ),
            (
                "node_ipvs_incoming_bytes_total",
                "The total amount of incoming data.",
            ),
            (
                "node_ipvs_outgoing_bytes_total",
                "The total amount of outgoing data.",
            ),
        ]
        .iter()
        .zip(totals)
        {
            counter(enc, name, help, &one(Some(v)))?;
        }
        let backends = std::fs::read_to_string(self.procfs_root.join("net/ip_vs"))
            .map_err(anyhow::Error::from)
            .and_then(|t| parse_backends(&t))
            .context("could not get backend status")?;
        let mut sums: BTreeMap<Vec<String>, [f64; 3]> = BTreeMap::new();
        for b in &backends {
            let key: Vec<String> = self
                .labels
                .iter()
                .map(|l| match *l {
                    "local_address" => b.local_address.clone(),
                    "local_port" => b.local_port.to_string(),
                    "remote_address" => b.remote_address.clone(),
                    "remote_port" => b.remote_port.to_string(),
                    "proto" => b.proto.clone(),
                    _ => b.local_mark.clone(),
                })
                .collect();
            let s = sums.entry(key).or_default();
            s[0] += b.active;
            s[1] += b.inactive;
            s[2] += b.weight;
        }
        for (i, (name, help)) in [
            (
                "node_ipvs_backend_connections_active",
                "The current active connections by local and remote address.",
            ),
            (
                "node_ipvs_backend_connections_inactive",
                "The current inactive connections by local and remote address.",
            ),
            (
                "node_ipvs_backend_weight",
                "The current backend weight by local and remote address.",
            ),
        ]
        .iter()
        .enumerate()
        {
            let samples: Vec<Sample<'_>> = sums
                .iter()
                .map(|(k, v)| {
                    Sample::new(
                        self.labels
                            .iter()
                            .copied()
                            .zip(k.iter().map(String::as_str))
                            .collect(),
                        v[i],
                    )
                })
                .collect();
            gauge(enc, name, help, &samples)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_ip_vs() {
        let text = "IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port Forward Weight ActiveConn InActConn\nTCP  C0A80016:0CEA wlc\n  -> C0A85216:0CEA      Tunnel  100    248        2\nFWM  10001000 wlc\n  -> [2620:0000:0000:0000:0000:0000:0000:0001]:0050 Route 10 1 0\n";
        let b = super::parse_backends(text).unwrap();
        assert_eq!(b[0].local_address, "192.168.0.22");
        assert_eq!(b[0].local_port, 3306);
        assert_eq!(b[0].active, 248.0);
        assert_eq!(b[1].local_mark, "10001000");
        assert_eq!(b[1].remote_address, "2620::1");
        let t = super::parse_totals("Total Incoming Outgoing         Incoming         Outgoing\n   Conns  Packets  Packets            Bytes            Bytes\n 16AA370 E33656E5        0     51D8C8883AB3        0\n\n").unwrap();
        assert_eq!(t[0], 23765872.0);
    }
}
