//! `<procfs>/diskstats` as node_exporter's `diskstats` collector (whole disks only by the
//! same default exclusion: partitions, ram, loop and floppy devices are left out).

use std::path::{Path, PathBuf};

use anyhow::Context;
use prometheus_client::encoding::DescriptorEncoder;
use regex::Regex;
use vigia_kit::{Source, SourceError};

use crate::metrics::{counter, gauge, Sample};

/// Sector size the kernel uses in diskstats, whatever the device's real sector size.
const SECTOR_BYTES: f64 = 512.0;

#[derive(Debug, Clone, PartialEq)]
pub struct Disk {
    pub device: String,
    pub reads_completed: f64,
    pub reads_merged: f64,
    pub read_bytes: f64,
    pub read_time_seconds: f64,
    pub writes_completed: f64,
    pub writes_merged: f64,
    pub written_bytes: f64,
    pub write_time_seconds: f64,
    pub io_now: f64,
    pub io_time_seconds: f64,
    pub io_time_weighted_seconds: f64,
}

pub fn parse_diskstats(text: &str) -> Vec<Disk> {
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        if f.len() < 14 {
            continue;
        }
        let n = |i: usize| f[i].parse::<f64>().unwrap_or(0.0);
        out.push(Disk {
            device: f[2].to_string(),
            reads_completed: n(3),
            reads_merged: n(4),
            read_bytes: n(5) * SECTOR_BYTES,
            read_time_seconds: n(6) / 1000.0,
            writes_completed: n(7),
            writes_merged: n(8),
            written_bytes: n(9) * SECTOR_BYTES,
            write_time_seconds: n(10) / 1000.0,
            io_now: n(11),
            io_time_seconds: n(12) / 1000.0,
            io_time_weighted_seconds: n(13) / 1000.0,
        });
    }
    out
}

pub fn read_diskstats(procfs_root: &Path, exclude: Option<&Regex>) -> anyhow::Result<Vec<Disk>> {
    let path = procfs_root.join("diskstats");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut disks = parse_diskstats(&text);
    if let Some(re) = exclude {
        disks.retain(|d| !re.is_match(&d.device));
    }
    Ok(disks)
}

/// (name without `_total`, help, value).
type CounterSpec = (&'static str, &'static str, fn(&Disk) -> f64);

pub struct DiskstatsCollector {
    pub procfs_root: PathBuf,
    pub device_exclude: Option<Regex>,
}

impl Source for DiskstatsCollector {
    fn name(&self) -> &'static str {
        "diskstats"
    }

    fn collect(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
        let disks = read_diskstats(&self.procfs_root, self.device_exclude.as_ref())?;
        let family = |f: fn(&Disk) -> f64| -> Vec<Sample<'_>> {
            disks
                .iter()
                .map(|d| Sample::new(vec![("device", d.device.as_str())], f(d)))
                .collect()
        };
        let counters: [CounterSpec; 10] = [
            (
                "node_disk_reads_completed",
                "The total number of reads completed successfully",
                |d| d.reads_completed,
            ),
            (
                "node_disk_reads_merged",
                "The total number of reads merged",
                |d| d.reads_merged,
            ),
            (
                "node_disk_read_bytes",
                "The total number of bytes read successfully",
                |d| d.read_bytes,
            ),
            (
                "node_disk_read_time_seconds",
                "The total number of seconds spent by all reads",
                |d| d.read_time_seconds,
            ),
            (
                "node_disk_writes_completed",
                "The total number of writes completed successfully",
                |d| d.writes_completed,
            ),
            (
                "node_disk_writes_merged",
                "The number of writes merged",
                |d| d.writes_merged,
            ),
            (
                "node_disk_written_bytes",
                "The total number of bytes written successfully",
                |d| d.written_bytes,
            ),
            (
                "node_disk_write_time_seconds",
                "This is the total number of seconds spent by all writes",
                |d| d.write_time_seconds,
            ),
            (
                "node_disk_io_time_seconds",
                "Total seconds spent doing I/Os",
                |d| d.io_time_seconds,
            ),
            (
                "node_disk_io_time_weighted_seconds",
                "The weighted # of seconds spent doing I/Os",
                |d| d.io_time_weighted_seconds,
            ),
        ];
        for (name, help, f) in counters {
            counter(enc, name, help, &family(f))?;
        }
        gauge(
            enc,
            "node_disk_io_now",
            "The number of I/Os currently in progress",
            &family(|d| d.io_now),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{compile, DEFAULT_DISK_DEVICE_EXCLUDE};

    #[test]
    fn parses_units_and_excludes_partitions() {
        let text = " 254       0 vda 1000 10 2048 500 200 20 4096 300 0 1500 800 0 0 0 0\n\
 254       1 vda1 900 0 2000 400 100 0 4000 200 0 1000 600\n\
   7       0 loop0 1 0 2 0 0 0 0 0 0 0 0\n\
 short line\n";
        let re = compile(DEFAULT_DISK_DEVICE_EXCLUDE, "x").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("diskstats"), text).unwrap();
        let disks = read_diskstats(dir.path(), re.as_ref()).unwrap();
        assert_eq!(disks.len(), 1);
        let d = &disks[0];
        assert_eq!(d.device, "vda");
        assert_eq!(d.read_bytes, 2048.0 * 512.0);
        assert_eq!(d.written_bytes, 4096.0 * 512.0);
        assert_eq!(d.io_time_seconds, 1.5);
    }
}
