//! node_exporter's `nfsd` collector: the NFS server's counters from
//! `<procfs>/net/rpc/nfsd` (reply cache, file handles, I/O, threads, read-ahead cache,
//! network, RPC errors, requests per procedure). No NFS server: no data.

use std::path::PathBuf;

use anyhow::Context;
use prometheus_client::encoding::DescriptorEncoder;
use vigia_kit::{Source, SourceError};

use super::nfs::{exactly, parse_lines, procedures, V2, V3};
use crate::config::HostConfig;
use crate::metrics::{counter, gauge, one, Sample};

/// NFSv4 server operations, in `proc4ops` order (the first three are placeholders).
const V4_OPS: [&str; 40] = [
    "Op0Unused",
    "Op1Unused",
    "Op2Future",
    "Access",
    "Close",
    "Commit",
    "Create",
    "DelegPurge",
    "DelegReturn",
    "GetAttr",
    "GetFH",
    "Link",
    "Lock",
    "Lockt",
    "Locku",
    "Lookup",
    "LookupRoot",
    "Nverify",
    "Open",
    "OpenAttr",
    "OpenConfirm",
    "OpenDgrd",
    "PutFH",
    "PutPubFH",
    "PutRootFH",
    "Read",
    "ReadDir",
    "ReadLink",
    "Remove",
    "Rename",
    "Renew",
    "RestoreFH",
    "SaveFH",
    "SecInfo",
    "SetAttr",
    "SetClientID",
    "SetClientIDConfirm",
    "Verify",
    "Write",
    "RelLockOwner",
];

/// The NFSv2 and v3 procedures node_exporter reports (not `Null`).
fn reported(names: &[&'static str]) -> Vec<&'static str> {
    names.iter().copied().filter(|n| *n != "Null").collect()
}

/// The NFSv4 operations node_exporter reports, in its order.
const V4_REPORTED: [&str; 35] = [
    "Access",
    "Close",
    "Commit",
    "Create",
    "DelegPurge",
    "DelegReturn",
    "GetAttr",
    "GetFH",
    "Link",
    "Lock",
    "Lockt",
    "Locku",
    "Lookup",
    "LookupRoot",
    "Nverify",
    "Open",
    "OpenAttr",
    "OpenConfirm",
    "OpenDgrd",
    "PutFH",
    "Read",
    "ReadDir",
    "ReadLink",
    "Remove",
    "Rename",
    "Renew",
    "RestoreFH",
    "SaveFH",
    "SecInfo",
    "SetAttr",
    "SetClientID",
    "SetClientIDConfirm",
    "Verify",
    "Write",
    "RelLockOwner",
];

#[derive(Debug, Default)]
struct ServerStats {
    rc: [f64; 3],
    fh: [f64; 5],
    io: [f64; 2],
    th: [f64; 2],
    ra_size: f64,
    ra_not_found: f64,
    net: [f64; 4],
    rpc: [f64; 5],
    v2: Vec<u64>,
    v3: Vec<u64>,
    v4ops: Vec<u64>,
    wdeleg_getattr: f64,
}

fn parse_server(text: &str) -> anyhow::Result<ServerStats> {
    let mut s = ServerStats {
        v2: vec![0; V2.len()],
        v3: vec![0; V3.len()],
        v4ops: vec![0; V4_OPS.len()],
        ..ServerStats::default()
    };
    for (label, v) in parse_lines(text, "NFSd")? {
        match label.as_str() {
            "rc" => s.rc.copy_from_slice(&exactly(&v, 3, "ReplyCache")?),
            "fh" => s.fh.copy_from_slice(&exactly(&v, 5, "FileHandles")?),
            "io" => s.io.copy_from_slice(&exactly(&v, 2, "InputOutput")?),
            "th" => s.th.copy_from_slice(&exactly(&v, 2, "Threads")?),
            "ra" => {
                let ra = exactly(&v, 12, "ReadAheadCache")?;
                s.ra_size = ra[0];
                s.ra_not_found = ra[11];
            }
            "net" => s.net.copy_from_slice(&exactly(&v, 4, "Network")?),
            "rpc" => s.rpc.copy_from_slice(&exactly(&v, 5, "RPC")?),
            "proc2" => s.v2 = procedures(&v, 18, None)?,
            "proc3" => s.v3 = procedures(&v, 22, None)?,
            "proc4" => {
                let p = procedures(&v, 2, None)?;
                anyhow::ensure!(p.len() == 2, "invalid V4Stats line {v:?}");
            }
            "proc4ops" => {
                let mut p = procedures(&v, 39, None)?;
                p.resize(V4_OPS.len().max(p.len()), 0);
                s.v4ops = p;
            }
            "wdeleg_getattr" => s.wdeleg_getattr = v[0] as f64,
            other => anyhow::bail!("unknown NFSd metric line {other:?}"),
        }
    }
    Ok(s)
}

pub struct Nfsd {
    procfs_root: PathBuf,
}

impl Nfsd {
    pub fn new(config: &HostConfig) -> Self {
        Self {
            procfs_root: config.procfs_root.clone(),
        }
    }
}

impl Source for Nfsd {
    fn name(&self) -> &'static str {
        "nfsd"
    }

    fn collect(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
        let text = match std::fs::read_to_string(self.procfs_root.join("net/rpc/nfsd")) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(SourceError::no_data("Not collecting NFSd metrics"))
            }
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context("failed to retrieve nfsd stats")
                    .into())
            }
        };
        let s = parse_server(&text).context("failed to retrieve nfsd stats")?;
        let c = |enc: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: f64| {
            counter(enc, name, help, &one(Some(v)))
        };
        c(
            enc,
            "node_nfsd_reply_cache_hits_total",
            "Total number of NFSd Reply Cache hits (client lost server response).",
            s.rc[0],
        )?;
        c(
            enc,
            "node_nfsd_reply_cache_misses_total",
            "Total number of NFSd Reply Cache an operation that requires caching (idempotent).",
            s.rc[1],
        )?;
        c(
            enc,
            "node_nfsd_reply_cache_nocache_total",
            "Total number of NFSd Reply Cache non-idempotent operations (rename/delete/…).",
            s.rc[2],
        )?;
        c(
            enc,
            "node_nfsd_file_handles_stale_total",
            "Total number of NFSd stale file handles",
            s.fh[0],
        )?;
        c(
            enc,
            "node_nfsd_disk_bytes_read_total",
            "Total NFSd bytes read.",
            s.io[0],
        )?;
        c(
            enc,
            "node_nfsd_disk_bytes_written_total",
            "Total NFSd bytes written.",
            s.io[1],
        )?;
        gauge(
            enc,
            "node_nfsd_server_threads",
            "Total number of NFSd kernel threads that are running.",
            &one(Some(s.th[0])),
        )?;
        gauge(
            enc,
            "node_nfsd_read_ahead_cache_size_blocks",
            "How large the read ahead cache is in blocks.",
            &one(Some(s.ra_size)),
        )?;
        c(
            enc,
            "node_nfsd_read_ahead_cache_not_found_total",
            "Total number of NFSd read ahead cache not found.",
            s.ra_not_found,
        )?;
        counter(
            enc,
            "node_nfsd_packets_total",
            "Total NFSd network packets (sent+received) by protocol type.",
            &[
                Sample::new(vec![("proto", "udp")], s.net[1]),
                Sample::new(vec![("proto", "tcp")], s.net[2]),
            ],
        )?;
        c(
            enc,
            "node_nfsd_connections_total",
            "Total number of NFSd TCP connections.",
            s.net[3],
        )?;
        counter(
            enc,
            "node_nfsd_rpc_errors_total",
            "Total number of NFSd RPC errors by error type.",
            &[
                Sample::new(vec![("error", "fmt")], s.rpc[2]),
                Sample::new(vec![("error", "auth")], s.rpc[3]),
                Sample::new(vec![("error", "cInt")], s.rpc[4]),
            ],
        )?;
        c(
            enc,
            "node_nfsd_server_rpcs_total",
            "Total number of NFSd RPCs.",
            s.rpc[0],
        )?;
        let mut requests = Vec::new();
        for (proto, all, values) in [("2", &V2[..], &s.v2), ("3", &V3[..], &s.v3)] {
            for name in reported(all) {
                let i = all.iter().position(|n| *n == name).unwrap_or(0);
                requests.push(Sample::new(
                    vec![("method", name), ("proto", proto)],
                    values.get(i).copied().unwrap_or(0) as f64,
                ));
            }
        }
        for name in V4_REPORTED.iter() {
            let i = V4_OPS.iter().position(|n| n == name).unwrap_or(0);
            requests.push(Sample::new(
                vec![("method", *name), ("proto", "4")],
                s.v4ops.get(i).copied().unwrap_or(0) as f64,
            ));
        }
        requests.push(Sample::new(
            vec![("method", "WdelegGetattr"), ("proto", "4")],
            s.wdeleg_getattr,
        ));
        counter(
            enc,
            "node_nfsd_requests_total",
            "Total number NFSd Requests by method and protocol.",
            &requests,
        )?;
        Ok(())
    }
}
