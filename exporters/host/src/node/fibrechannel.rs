//! node_exporter's `fibrechannel` collector: Fibre Channel HBAs from
//! `<sysfs>/class/fc_host/<host>/` (port state, speed, names as an info series) and
//! their `statistics/` counters.

use std::path::PathBuf;

use anyhow::Context;
use prometheus_client::encoding::DescriptorEncoder;
use vigia_kit::{Source, SourceError};

use super::util::{go_uint, list, sys_read};
use crate::config::HostConfig;
use crate::metrics::{Families, Kind};

/// (statistics file, family suffix, help).
const COUNTERS: [(&str, &str, &str); 14] = [
    (
        "dumped_frames",
        "dumped_frames_total",
        "Number of dumped frames",
    ),
    (
        "error_frames",
        "error_frames_total",
        "Number of errors in frames",
    ),
    (
        "invalid_crc_count",
        "invalid_crc_total",
        "Invalid Cyclic Redundancy Check count",
    ),
    ("rx_frames", "rx_frames_total", "Number of frames received"),
    (
        "rx_words",
        "rx_words_total",
        "Number of words received by host port",
    ),
    (
        "tx_frames",
        "tx_frames_total",
        "Number of frames transmitted by host port",
    ),
    (
        "tx_words",
        "tx_words_total",
        "Number of words transmitted by host port",
    ),
    (
        "seconds_since_last_reset",
        "seconds_since_last_reset_total",
        "Number of seconds since last host port reset",
    ),
    (
        "invalid_tx_word_count",
        "invalid_tx_words_total",
        "Number of invalid words transmitted by host port",
    ),
    (
        "link_failure_count",
        "link_failure_total",
        "Number of times the host port link has failed",
    ),
    (
        "loss_of_sync_count",
        "loss_of_sync_total",
        "Number of failures on either bit or transmission word boundaries",
    ),
    (
        "loss_of_signal_count",
        "loss_of_signal_total",
        "Number of times signal has been lost",
    ),
    (
        "nos_count",
        "nos_total",
        "Number Not_Operational Primitive Sequence received by host port",
    ),
    (
        "fcp_packet_aborts",
        "fcp_packet_aborts_total",
        "Number of aborted packets",
    ),
];

/// The attributes read, in the info series' label order after `fc_host`; names and ids
/// lose their `0x`.
const INFO: [&str; 10] = [
    "speed",
    "port_state",
    "port_type",
    "port_id",
    "port_name",
    "fabric_name",
    "symbolic_name",
    "supported_classes",
    "supported_speeds",
    "dev_loss_tmo",
];

pub struct Fibrechannel {
    sysfs_root: PathBuf,
}

impl Fibrechannel {
    pub fn new(config: &HostConfig) -> Self {
        Self {
            sysfs_root: config.sysfs_root.clone(),
        }
    }

    fn read(&self, out: &mut Families) -> anyhow::Result<()> {
        let base = self.sysfs_root.join("class/fc_host");
        for host in list(&base)? {
            let dir = base.join(&host);
            let mut info: Vec<(&str, String)> = Vec::new();
            for attr in INFO.iter().chain(["node_name"].iter()) {
                match sys_read(&dir.join(attr)) {
                    Ok(mut v) => {
                        if matches!(*attr, "node_name" | "port_id" | "port_name" | "fabric_name")
                            && v.len() > 2
                        {
                            v = v[2..].to_string();
                        }
                        info.push((attr, v));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        // node_exporter writes the info series from every attribute and
                        // fails on a host that lacks one.
                        if *attr != "node_name" {
                            anyhow::bail!("{}/{attr}: missing", dir.display());
                        }
                    }
                    Err(e) => {
                        return Err(e).with_context(|| {
                            format!("failed to read file {}/{attr}", dir.display())
                        })
                    }
                }
            }
            let mut labels: Vec<(&str, &str)> = vec![("fc_host", host.as_str())];
            for attr in INFO {
                let v = info
                    .iter()
                    .find(|(a, _)| *a == attr)
                    .map(|(_, v)| v.as_str())
                    .unwrap_or("");
                labels.push((attr, v));
            }
            out.add(
                Kind::Gauge,
                "node_fibrechannel_info",
                "Non-numeric data from /sys/class/fc_host/<host>, value is always 1.",
                &labels,
                1.0,
            );
            let stats = dir.join("statistics");
            let files = list(&stats).with_context(|| stats.display().to_string())?;
            for (file, suffix, help) in COUNTERS {
                if !files.iter().any(|f| f == file) {
                    continue;
                }
                let v = match sys_read(&stats.join(file)) {
                    Ok(v) => v,
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::NotFound | std::io::ErrorKind::InvalidInput
                        ) || e.raw_os_error() == Some(libc::EOPNOTSUPP) =>
                    {
                        continue
                    }
                    Err(e) => {
                        return Err(e).with_context(|| {
                            format!("failed to read file {}/{file}", stats.display())
                        })
                    }
                };
                // All ones: a counter the HBA firmware does not implement.
                let n =
                    go_uint(&v).with_context(|| format!("{}/{file}: {v:?}", stats.display()))?;
                // All ones: a counter the HBA firmware does not implement.
                if n == u64::MAX {
                    continue;
                }
                out.add(
                    Kind::Counter,
                    &format!("node_fibrechannel_{suffix}"),
                    help,
                    &[("fc_host", &host)],
                    n as f64,
                );
            }
        }
        Ok(())
    }
}

impl Source for Fibrechannel {
    fn name(&self) -> &'static str {
        "fibrechannel"
    }

    fn collect(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
        if !self.sysfs_root.join("class/fc_host").exists() {
            return Err(SourceError::no_data("fibrechannel statistics not found"));
        }
        let mut out = Families::default();
        self.read(&mut out)
            .context("error obtaining FibreChannel class info")?;
        out.write(enc)?;
        Ok(())
    }
}
