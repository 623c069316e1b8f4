//! `<procfs>/diskstats` as node_exporter's `diskstats` collector: I/O, discard and flush
//! counters per whole disk (partitions and pseudo devices left out by the same default
//! exclusion), `node_disk_info` with udev's properties of each disk
//! (`<udev_data_path>/b<major>:<minor>`) and `/sys/block/<disk>/queue/rotational`, and the
//! filesystem, device-mapper and ATA properties udev knows.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use prometheus_client::encoding::DescriptorEncoder;
use vigia_kit::{Source, SourceError};

use super::util::{read_attr, NameFilter};
use crate::config::{HostConfig, DEFAULT_DISK_DEVICE_EXCLUDE};
use crate::metrics::{write, Kind, Sample};

/// Sector size the kernel uses in diskstats, whatever the device's real sector size.
const SECTOR_BYTES: f64 = 512.0;

#[derive(Debug, Clone, PartialEq)]
pub struct Disk {
    pub major: u32,
    pub minor: u32,
    pub device: String,
    /// The counters after the name, as many as the kernel writes (11, 15 or 17).
    pub stats: Vec<f64>,
}

impl Disk {
    fn stat(&self, i: usize) -> f64 {
        self.stats.get(i).copied().unwrap_or(0.0)
    }

    pub fn read_bytes(&self) -> f64 {
        self.stat(2) * SECTOR_BYTES
    }

    pub fn written_bytes(&self) -> f64 {
        self.stat(6) * SECTOR_BYTES
    }
}

/// Parses diskstats as the procfs library does: lines with fewer than 11 counters are
/// skipped, a field that is not a number is an error.
pub fn parse_diskstats(text: &str) -> anyhow::Result<Vec<Disk>> {
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        if f.len() < 14 {
            continue;
        }
        let major = f[0]
            .parse()
            .with_context(|| format!("diskstats line {line:?}"))?;
        let minor = f[1]
            .parse()
            .with_context(|| format!("diskstats line {line:?}"))?;
        let stats = f[3..f.len().min(20)]
            .iter()
            .map(|v| v.parse::<u64>().map(|n| n as f64))
            .collect::<Result<Vec<f64>, _>>()
            .with_context(|| format!("diskstats line {line:?}"))?;
        out.push(Disk {
            major,
            minor,
            device: f[2].to_string(),
            stats,
        });
    }
    Ok(out)
}

pub fn read_diskstats(procfs_root: &Path, filter: &NameFilter) -> anyhow::Result<Vec<Disk>> {
    let path = procfs_root.join("diskstats");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("couldn't get diskstats: reading {}", path.display()))?;
    let mut disks = parse_diskstats(&text)?;
    disks.retain(|d| !filter.ignored(&d.device));
    Ok(disks)
}

/// The `E:KEY=value` lines of a udev database entry.
pub fn parse_udev(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("E:"))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The queue attributes the procfs library reads together: `rotational` counts only
/// when all of them read (else node_exporter reports 0).
const QUEUE_UINTS: [&str; 29] = [
    "add_random",
    "dax",
    "discard_granularity",
    "discard_max_hw_bytes",
    "discard_max_bytes",
    "hw_sector_size",
    "io_poll",
    "io_timeout",
    "iostats",
    "logical_block_size",
    "max_hw_sectors_kb",
    "max_integrity_segments",
    "max_sectors_kb",
    "max_segments",
    "max_segment_size",
    "minimum_io_size",
    "nomerges",
    "nr_requests",
    "optimal_io_size",
    "physical_block_size",
    "read_ahead_kb",
    "rotational",
    "rq_affinity",
    "write_same_max_bytes",
    "nr_zones",
    "chunk_sectors",
    "fua",
    "max_discard_segments",
    "write_zeroes_max_bytes",
];

fn rotational(queue: &Path) -> u64 {
    let mut rotational = 0;
    for name in QUEUE_UINTS {
        match read_attr(&queue.join(name))
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            Some(v) if name == "rotational" => rotational = v,
            Some(_) => {}
            None => return 0,
        }
    }
    for name in ["io_poll_delay", "wbt_lat_usec"] {
        if read_attr(&queue.join(name))
            .ok()
            .and_then(|v| v.trim().parse::<i64>().ok())
            .is_none()
        {
            return 0;
        }
    }
    for name in ["write_cache", "zoned"] {
        if read_attr(&queue.join(name)).is_err() {
            return 0;
        }
    }
    rotational
}

/// (name, help, kind, factor) of the counters, in diskstats column order.
const STATS: [(&str, &str, Kind, f64); 17] = [
    (
        "node_disk_reads_completed_total",
        "The total number of reads completed successfully.",
        Kind::Counter,
        1.0,
    ),
    (
        "node_disk_reads_merged_total",
        "The total number of reads merged.",
        Kind::Counter,
        1.0,
    ),
    (
        "node_disk_read_bytes_total",
        "The total number of bytes read successfully.",
        Kind::Counter,
        SECTOR_BYTES,
    ),
    (
        "node_disk_read_time_seconds_total",
        "The total number of seconds spent by all reads.",
        Kind::Counter,
        0.001,
    ),
    (
        "node_disk_writes_completed_total",
        "The total number of writes completed successfully.",
        Kind::Counter,
        1.0,
    ),
    (
        "node_disk_writes_merged_total",
        "The number of writes merged.",
        Kind::Counter,
        1.0,
    ),
    (
        "node_disk_written_bytes_total",
        "The total number of bytes written successfully.",
        Kind::Counter,
        SECTOR_BYTES,
    ),
    (
        "node_disk_write_time_seconds_total",
        "This is the total number of seconds spent by all writes.",
        Kind::Counter,
        0.001,
    ),
    (
        "node_disk_io_now",
        "The number of I/Os currently in progress.",
        Kind::Gauge,
        1.0,
    ),
    (
        "node_disk_io_time_seconds_total",
        "Total seconds spent doing I/Os.",
        Kind::Counter,
        0.001,
    ),
    (
        "node_disk_io_time_weighted_seconds_total",
        "The weighted # of seconds spent doing I/Os.",
        Kind::Counter,
        0.001,
    ),
    (
        "node_disk_discards_completed_total",
        "The total number of discards completed successfully.",
        Kind::Counter,
        1.0,
    ),
    (
        "node_disk_discards_merged_total",
        "The total number of discards merged.",
        Kind::Counter,
        1.0,
    ),
    (
        "node_disk_discarded_sectors_total",
        "The total number of sectors discarded successfully.",
        Kind::Counter,
        1.0,
    ),
    (
        "node_disk_discard_time_seconds_total",
        "This is the total number of seconds spent by all discards.",
        Kind::Counter,
        0.001,
    ),
    (
        "node_disk_flush_requests_total",
        "The total number of flush requests completed successfully",
        Kind::Counter,
        1.0,
    ),
    (
        "node_disk_flush_requests_time_seconds_total",
        "This is the total number of seconds spent by all flush requests.",
        Kind::Counter,
        0.001,
    ),
];

pub struct Diskstats {
    procfs_root: PathBuf,
    sysfs_root: PathBuf,
    /// `None` when the udev database is not there (logged once at start, as node_exporter).
    udev_data: Option<PathBuf>,
    filter: NameFilter,
}

impl Diskstats {
    pub fn new(config: &HostConfig) -> Self {
        let udev_data = if config.udev_data_path.is_dir() {
            Some(config.udev_data_path.clone())
        } else {
            tracing::info!(
                path = %config.udev_data_path.display(),
                field = "udev_data_path",
                "no udev database: node_disk_info without udev's labels, no node_disk_{{ata,filesystem,device_mapper}}_*"
            );
            None
        };
        Self {
            procfs_root: config.procfs_root.clone(),
            sysfs_root: config.sysfs_root.clone(),
            udev_data,
            filter: HostConfig::filter(&config.diskstats, Some(DEFAULT_DISK_DEVICE_EXCLUDE)),
        }
    }
}

struct Row {
    disk: Disk,
    major: String,
    minor: String,
    udev: HashMap<String, String>,
    rotational: String,
}

impl Source for Diskstats {
    fn name(&self) -> &'static str {
        "diskstats"
    }

    fn collect(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
        let disks = read_diskstats(&self.procfs_root, &self.filter)?;
        let rows: Vec<Row> = disks
            .into_iter()
            .map(|disk| {
                let udev = self
                    .udev_data
                    .as_ref()
                    .and_then(|d| {
                        std::fs::read_to_string(d.join(format!("b{}:{}", disk.major, disk.minor)))
                            .ok()
                    })
                    .map(|t| parse_udev(&t))
                    .unwrap_or_default();
                let queue = self
                    .sysfs_root
                    .join("block")
                    .join(&disk.device)
                    .join("queue");
                Row {
                    major: disk.major.to_string(),
                    minor: disk.minor.to_string(),
                    rotational: format!("{:b}", rotational(&queue)),
                    udev,
                    disk,
                }
            })
            .collect();
        let prop = |r: &'_ Row, k: &str| -> String { r.udev.get(k).cloned().unwrap_or_default() };
        let info: Vec<(Vec<String>, &Row)> = rows
            .iter()
            .map(|r| {
                let serial = Some(prop(r, "SCSI_IDENT_SERIAL"))
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| prop(r, "ID_SERIAL_SHORT"));
                (
                    vec![
                        prop(r, "ID_PATH"),
                        prop(r, "ID_WWN"),
                        prop(r, "ID_MODEL"),
                        serial,
                        prop(r, "ID_REVISION"),
                    ],
                    r,
                )
            })
            .collect();
        write(
            enc,
            Kind::Gauge,
            "node_disk_info",
            "Info of /sys/block/<block_device>.",
            &info
                .iter()
                .map(|(v, r)| {
                    Sample::new(
                        vec![
                            ("device", r.disk.device.as_str()),
                            ("major", r.major.as_str()),
                            ("minor", r.minor.as_str()),
                            ("path", v[0].as_str()),
                            ("wwn", v[1].as_str()),
                            ("model", v[2].as_str()),
                            ("serial", v[3].as_str()),
                            ("revision", v[4].as_str()),
                            ("rotational", r.rotational.as_str()),
                        ],
                        1.0,
                    )
                })
                .collect::<Vec<_>>(),
        )?;
        for (i, (name, help, kind, factor)) in STATS.iter().enumerate() {
            let samples: Vec<Sample<'_>> = rows
                .iter()
                .filter(|r| i < r.disk.stats.len())
                .map(|r| {
                    Sample::new(
                        vec![("device", r.disk.device.as_str())],
                        r.disk.stat(i) * factor,
                    )
                })
                .collect();
            write(enc, *kind, name, help, &samples)?;
        }
        let fs: Vec<(Vec<String>, &Row)> = rows
            .iter()
            .filter(|r| !prop(r, "ID_FS_TYPE").is_empty())
            .map(|r| {
                (
                    ["ID_FS_TYPE", "ID_FS_USAGE", "ID_FS_UUID", "ID_FS_VERSION"]
                        .iter()
                        .map(|k| prop(r, k))
                        .collect(),
                    r,
                )
            })
            .collect();
        write(
            enc,
            Kind::Gauge,
            "node_disk_filesystem_info",
            "Info about disk filesystem.",
            &fs.iter()
                .map(|(v, r)| {
                    Sample::new(
                        vec![
                            ("device", r.disk.device.as_str()),
                            ("type", v[0].as_str()),
                            ("usage", v[1].as_str()),
                            ("uuid", v[2].as_str()),
                            ("version", v[3].as_str()),
                        ],
                        1.0,
                    )
                })
                .collect::<Vec<_>>(),
        )?;
        let dm: Vec<(Vec<String>, &Row)> = rows
            .iter()
            .filter(|r| !prop(r, "DM_NAME").is_empty())
            .map(|r| {
                (
                    [
                        "DM_NAME",
                        "DM_UUID",
                        "DM_VG_NAME",
                        "DM_LV_NAME",
                        "DM_LV_LAYER",
                    ]
                    .iter()
                    .map(|k| prop(r, k))
                    .collect(),
                    r,
                )
            })
            .collect();
        write(
            enc,
            Kind::Gauge,
            "node_disk_device_mapper_info",
            "Info about disk device mapper.",
            &dm.iter()
                .map(|(v, r)| {
                    Sample::new(
                        vec![
                            ("device", r.disk.device.as_str()),
                            ("name", v[0].as_str()),
                            ("uuid", v[1].as_str()),
                            ("vg_name", v[2].as_str()),
                            ("lv_name", v[3].as_str()),
                            ("lv_layer", v[4].as_str()),
                        ],
                        1.0,
                    )
                })
                .collect::<Vec<_>>(),
        )?;
        for (key, name, help) in [
            (
                "ID_ATA_WRITE_CACHE",
                "node_disk_ata_write_cache",
                "ATA disk has a write cache.",
            ),
            (
                "ID_ATA_WRITE_CACHE_ENABLED",
                "node_disk_ata_write_cache_enabled",
                "ATA disk has its write cache enabled.",
            ),
            (
                "ID_ATA_ROTATION_RATE_RPM",
                "node_disk_ata_rotation_rate_rpm",
                "ATA disk rotation rate in RPMs (0 for SSDs).",
            ),
        ] {
            let samples: Vec<Sample<'_>> = rows
                .iter()
                .filter(|r| !prop(r, "ID_ATA").is_empty())
                .filter_map(|r| {
                    let v = r.udev.get(key)?.parse::<f64>().ok()?;
                    Some(Sample::new(vec![("device", r.disk.device.as_str())], v))
                })
                .collect();
            write(enc, Kind::Gauge, name, help, &samples)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_excludes_partitions() {
        let text = " 254       0 vda 1000 10 2048 500 200 20 4096 300 0 1500 800 0 0 0 0\n\
 254       1 vda1 900 0 2000 400 100 0 4000 200 0 1000 600\n\
   7       0 loop0 1 0 2 0 0 0 0 0 0 0 0\n\
 short line\n";
        let re = NameFilter::excluding(DEFAULT_DISK_DEVICE_EXCLUDE);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("diskstats"), text).unwrap();
        let disks = read_diskstats(dir.path(), &re).unwrap();
        assert_eq!(disks.len(), 1);
        let d = &disks[0];
        assert_eq!(d.device, "vda");
        assert_eq!(d.read_bytes(), 2048.0 * 512.0);
        assert_eq!(d.written_bytes(), 4096.0 * 512.0);
        assert_eq!(d.stats.len(), 15);
        assert!(parse_diskstats("8 0 sda 1 2 x 4 5 6 7 8 9 10 11\n").is_err());
        let udev = parse_udev("S:disk/by-id/x\nE:ID_MODEL=QEMU HARDDISK\nE:ID_FS_UUID=a=b\n");
        assert_eq!(udev["ID_MODEL"], "QEMU HARDDISK");
        assert_eq!(udev["ID_FS_UUID"], "a=b");
    }
}
