//! node_exporter's `nfs` collector: the NFS client's RPC counters from
//! `<procfs>/net/rpc/nfs` (absent without an NFS client module: no data). The parser
//! of `net/rpc/nfs` and `net/rpc/nfsd` lines is shared with `nfsd`.

use std::path::PathBuf;

use anyhow::Context;
use prometheus_client::encoding::DescriptorEncoder;
use vigia_kit::{Source, SourceError};

use crate::config::HostConfig;
use crate::metrics::{counter, one, Sample};

/// NFSv2 procedures, in `proc2` order (the procfs library's field names, which are
/// node_exporter's `method` labels).
pub const V2: [&str; 18] = [
    "Null", "GetAttr", "SetAttr", "Root", "Lookup", "ReadLink", "Read", "WrCache", "Write",
    "Create", "Remove", "Rename", "Link", "SymLink", "MkDir", "RmDir", "ReadDir", "FsStat",
];

/// NFSv3 procedures, in `proc3` order.
pub const V3: [&str; 22] = [
    "Null",
    "GetAttr",
    "SetAttr",
    "Lookup",
    "Access",
    "ReadLink",
    "Read",
    "Write",
    "Create",
    "MkDir",
    "SymLink",
    "MkNod",
    "Remove",
    "RmDir",
    "Rename",
    "Link",
    "ReadDir",
    "ReadDirPlus",
    "FsStat",
    "FsInfo",
    "PathConf",
    "Commit",
];

/// NFSv4 client operations, in `proc4` order.
pub const V4_CLIENT: [&str; 59] = [
    "Null",
    "Read",
    "Write",
    "Commit",
    "Open",
    "OpenConfirm",
    "OpenNoattr",
    "OpenDowngrade",
    "Close",
    "Setattr",
    "FsInfo",
    "Renew",
    "SetClientID",
    "SetClientIDConfirm",
    "Lock",
    "Lockt",
    "Locku",
    "Access",
    "Getattr",
    "Lookup",
    "LookupRoot",
    "Remove",
    "Rename",
    "Link",
    "Symlink",
    "Create",
    "Pathconf",
    "StatFs",
    "ReadLink",
    "ReadDir",
    "ServerCaps",
    "DelegReturn",
    "GetACL",
    "SetACL",
    "FsLocations",
    "ReleaseLockowner",
    "Secinfo",
    "FsidPresent",
    "ExchangeID",
    "CreateSession",
    "DestroySession",
    "Sequence",
    "GetLeaseTime",
    "ReclaimComplete",
    "LayoutGet",
    "GetDeviceInfo",
    "LayoutCommit",
    "LayoutReturn",
    "SecinfoNoName",
    "TestStateID",
    "FreeStateID",
    "GetDeviceList",
    "BindConnToSession",
    "DestroyClientID",
    "Seek",
    "Allocate",
    "DeAllocate",
    "LayoutStats",
    "Clone",
];

/// One `label n n n ...` line: the label and its numbers.
pub fn parse_lines(text: &str, what: &str) -> anyhow::Result<Vec<(String, Vec<u64>)>> {
    let mut out = Vec::new();
    for line in text.lines() {
        let parts: Vec<&str> = line.split_ascii_whitespace().collect();
        anyhow::ensure!(parts.len() >= 2, "invalid {what} metric line {line:?}");
        let take = if parts[0] == "th" {
            anyhow::ensure!(parts.len() >= 3, "invalid {what} th metric line {line:?}");
            &parts[1..3]
        } else {
            &parts[1..]
        };
        let values = take
            .iter()
            .map(|v| v.parse::<u64>())
            .collect::<Result<Vec<u64>, _>>()
            .with_context(|| format!("error parsing {what} metric line {line:?}"))?;
        out.push((parts[0].to_string(), values));
    }
    Ok(out)
}

/// `procN count v1 v2 ...`: the values after the count, which must match it and be at
/// least `min`; `pad` fills a shorter list with zeros (NFSv4 clients of older kernels).
pub fn procedures(v: &[u64], min: usize, pad: Option<usize>) -> anyhow::Result<Vec<u64>> {
    let count = *v.first().context("empty procedure line")? as usize;
    anyhow::ensure!(v.len() - 1 == count, "invalid procedure line {v:?}");
    let mut out = v[1..].to_vec();
    match pad {
        Some(n) if out.len() < n => out.resize(n, 0),
        _ => anyhow::ensure!(out.len() >= min, "invalid procedure line {v:?}"),
    }
    Ok(out)
}

/// Exactly `n` values.
pub fn exactly(v: &[u64], n: usize, what: &str) -> anyhow::Result<Vec<f64>> {
    anyhow::ensure!(v.len() == n, "invalid {what} line {v:?}");
    Ok(v.iter().map(|x| *x as f64).collect())
}

#[derive(Debug, Default, PartialEq)]
pub struct ClientStats {
    /// net: count, udp, tcp, tcp connections.
    pub net: [f64; 4],
    /// rpc: calls, retransmissions, authentication refreshes.
    pub rpc: [f64; 3],
    pub v2: Vec<u64>,
    pub v3: Vec<u64>,
    pub v4: Vec<u64>,
}

pub fn parse_client(text: &str) -> anyhow::Result<ClientStats> {
    let mut s = ClientStats {
        v2: vec![0; V2.len()],
        v3: vec![0; V3.len()],
        v4: vec![0; V4_CLIENT.len()],
        ..ClientStats::default()
    };
    for (label, v) in parse_lines(text, "NFS")? {
        match label.as_str() {
            "net" => s.net.copy_from_slice(&exactly(&v, 4, "Network")?),
            "rpc" => s.rpc.copy_from_slice(&exactly(&v, 3, "RPC")?),
            "proc2" => s.v2 = procedures(&v, 18, None)?,
            "proc3" => s.v3 = procedures(&v, 22, None)?,
            "proc4" => s.v4 = procedures(&v, 59, Some(59))?,
            other => anyhow::bail!("unknown NFS metric line {other:?}"),
        }
    }
    Ok(s)
}

pub struct Nfs {
    procfs_root: PathBuf,
}

impl Nfs {
    pub fn new(config: &HostConfig) -> Self {
        Self {
            procfs_root: config.procfs_root.clone(),
        }
    }
}

impl Source for Nfs {
    fn name(&self) -> &'static str {
        "nfs"
    }

    fn collect(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
        let text = match std::fs::read_to_string(self.procfs_root.join("net/rpc/nfs")) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(SourceError::no_data("Not collecting NFS metrics"))
            }
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context("failed to retrieve nfs stats")
                    .into())
            }
        };
        let s = parse_client(&text).context("failed to retrieve nfs stats")?;
        counter(
            enc,
            "node_nfs_packets_total",
            "Total NFSd network packets (sent+received) by protocol type.",
            &[
                Sample::new(vec![("protocol", "udp")], s.net[1]),
                Sample::new(vec![("protocol", "tcp")], s.net[2]),
            ],
        )?;
        counter(
            enc,
            "node_nfs_connections_total",
            "Total number of NFSd TCP connections.",
            &one(Some(s.net[3])),
        )?;
        counter(
            enc,
            "node_nfs_rpcs_total",
            "Total number of RPCs performed.",
            &one(Some(s.rpc[0])),
        )?;
        counter(
            enc,
            "node_nfs_rpc_retransmissions_total",
            "Number of RPC transmissions performed.",
            &one(Some(s.rpc[1])),
        )?;
        counter(
            enc,
            "node_nfs_rpc_authentication_refreshes_total",
            "Number of RPC authentication refreshes performed.",
            &one(Some(s.rpc[2])),
        )?;
        let mut requests = Vec::new();
        for (proto, names, values) in [
            ("2", &V2[..], &s.v2),
            ("3", &V3[..], &s.v3),
            ("4", &V4_CLIENT[..], &s.v4),
        ] {
            for (name, v) in names.iter().zip(values.iter()) {
                requests.push(Sample::new(
                    vec![("method", *name), ("proto", proto)],
                    *v as f64,
                ));
            }
        }
        counter(
            enc,
            "node_nfs_requests_total",
            "Number of NFS procedures invoked.",
            &requests,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_client_stats() {
        let text = "net 70 70 0 0\nrpc 70 0 0\nproc2 18 2 69 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\nproc3 22 1 4084749 29200 94754 32580 186 47747 7981 8639 0 6356 0 6962 0 7958 0 0 241 4 4 2 39\nproc4 61 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n";
        let s = super::parse_client(text).unwrap();
        assert_eq!(s.net[1], 70.0);
        assert_eq!(s.v3[1], 4084749);
        assert_eq!(s.v4.len(), 61);
        assert!(super::parse_client("bogus 1 2\n").is_err());
        let old = "proc4 3 1 2 3\n";
        assert_eq!(super::parse_client(old).unwrap().v4.len(), 59);
    }
}
