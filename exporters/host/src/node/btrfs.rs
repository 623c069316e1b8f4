//! node_exporter's `btrfs` collector, from sysfs: each filesystem under
//! `<sysfs>/fs/btrfs/<uuid>/` (label, commits, global reserve, space per block group type
//! and profile, device sizes). node_exporter also asks a mounted btrfs for per-device
//! error counters through ioctls (root only); vigia-host does not, so
//! `node_btrfs_device_errors_total` and `node_btrfs_device_unused_bytes` are not written
//! and `node_btrfs_device_size_bytes` carries `device` only, as node_exporter's own
//! fallback writes it.

use std::path::{Path, PathBuf};

use anyhow::Context;
use prometheus_client::encoding::DescriptorEncoder;
use vigia_kit::{Source, SourceError};

use super::util::{list, sys_read};
use crate::config::HostConfig;
use crate::metrics::{Families, Kind};

/// A sysfs value as the procfs library reads it: absent → 0, unreadable → error,
/// not a number → 0.
fn value(path: &Path) -> anyhow::Result<f64> {
    match sys_read(path) {
        Ok(v) => Ok(v.trim().parse::<u64>().map(|n| n as f64).unwrap_or(0.0)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0.0),
        Err(e) => Err(e).with_context(|| path.display().to_string()),
    }
}

fn text(path: &Path) -> anyhow::Result<String> {
    match sys_read(path) {
        Ok(v) => Ok(v),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(e).with_context(|| path.display().to_string()),
    }
}

fn ratio(profile: &str, devices: usize) -> f64 {
    let n = devices as f64;
    match profile {
        "single" | "raid0" => 1.0,
        "dup" | "raid1" | "raid10" => 2.0,
        "raid5" => n / (n - 1.0),
        "raid6" => n / (n - 2.0),
        _ => 0.0,
    }
}

pub struct Btrfs {
    sysfs_root: PathBuf,
}

impl Btrfs {
    pub fn new(config: &HostConfig) -> Self {
        Self {
            sysfs_root: config.sysfs_root.clone(),
        }
    }

    fn filesystem(&self, dir: &Path, out: &mut Families) -> anyhow::Result<()> {
        let devices =
            list(&dir.join("devices")).with_context(|| format!("{}/devices", dir.display()))?;
        let label = text(&dir.join("label"))?;
        let mut uuid = text(&dir.join("metadata_uuid"))?;
        if uuid.is_empty() {
            uuid = dir
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("")
                .to_string();
        }
        list(&dir.join("features")).with_context(|| format!("{}/features", dir.display()))?;
        let u = [("uuid", uuid.as_str())];
        out.add(
            Kind::Gauge,
            "node_btrfs_info",
            "Filesystem information",
            &[("uuid", &uuid), ("label", &label)],
            1.0,
        );
        out.add(
            Kind::Gauge,
            "node_btrfs_global_rsv_size_bytes",
            "Size of global reserve.",
            &u,
            value(&dir.join("allocation/global_rsv_size"))?,
        );
        let mut commits = [0.0; 4];
        match std::fs::read_to_string(dir.join("commit_stats")) {
            Ok(t) => {
                for line in t.lines() {
                    let parts: Vec<&str> = line.split_ascii_whitespace().collect();
                    anyhow::ensure!(parts.len() == 2, "invalid commit_stats line {line:?}");
                    let v: u64 = parts[1]
                        .parse()
                        .context("error parsing commit_stats line")?;
                    let i = match parts[0] {
                        "commits" => 0,
                        "last_commit_ms" => 1,
                        "max_commit_ms" => 2,
                        "total_commit_ms" => 3,
                        _ => continue,
                    };
                    commits[i] = v as f64;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).context("commit_stats"),
        }
        out.add(
            Kind::Counter,
            "node_btrfs_commits_total",
            "The total number of commits that have occurred.",
            &u,
            commits[0],
        );
        out.add(
            Kind::Gauge,
            "node_btrfs_last_commit_seconds",
            "Duration of the most recent commit, in seconds.",
            &u,
            commits[1] / 1000.0,
        );
        out.add(
            Kind::Gauge,
            "node_btrfs_max_commit_seconds",
            "Duration of the slowest commit, in seconds.",
            &u,
            commits[2] / 1000.0,
        );
        out.add(
            Kind::Counter,
            "node_btrfs_commit_seconds_total",
            "Sum of the duration of all commits, in seconds.",
            &u,
            commits[3] / 1000.0,
        );
        for group in ["data", "metadata", "system"] {
            let gdir = dir.join("allocation").join(group);
            let gl = [("uuid", uuid.as_str()), ("block_group_type", group)];
            out.add(
                Kind::Gauge,
                "node_btrfs_reserved_bytes",
                "Amount of space reserved for a data type",
                &gl,
                value(&gdir.join("bytes_reserved"))?,
            );
            for profile in list(&gdir).with_context(|| gdir.display().to_string())? {
                let p = gdir.join(&profile);
                if !p.is_dir() {
                    continue;
                }
                let ll = [
                    ("uuid", uuid.as_str()),
                    ("block_group_type", group),
                    ("mode", profile.as_str()),
                ];
                out.add(
                    Kind::Gauge,
                    "node_btrfs_used_bytes",
                    "Amount of used space by a layout/data type",
                    &ll,
                    value(&p.join("used_bytes"))?,
                );
                out.add(
                    Kind::Gauge,
                    "node_btrfs_size_bytes",
                    "Amount of space allocated for a layout/data type",
                    &ll,
                    value(&p.join("total_bytes"))?,
                );
                out.add(
                    Kind::Gauge,
                    "node_btrfs_allocation_ratio",
                    "Data allocation ratio for a layout/data type",
                    &ll,
                    ratio(&profile, devices.len()),
                );
            }
        }
        for d in &devices {
            out.add(
                Kind::Gauge,
                "node_btrfs_device_size_bytes",
                "Size of a device that is part of the filesystem.",
                &[("uuid", &uuid), ("device", d)],
                512.0 * value(&dir.join("devices").join(d).join("size"))?,
            );
        }
        Ok(())
    }
}

impl Source for Btrfs {
    fn name(&self) -> &'static str {
        "btrfs"
    }

    fn collect(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
        let base = self.sysfs_root.join("fs/btrfs");
        let mut out = Families::default();
        for name in list(&base)
            .unwrap_or_default()
            .into_iter()
            .filter(|n| n.contains('-'))
        {
            self.filesystem(&base.join(&name), &mut out)
                .context("failed to retrieve Btrfs stats from procfs")?;
        }
        out.write(enc)?;
        Ok(())
    }
}
