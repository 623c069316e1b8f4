//! node_exporter's `tapestats` collector: SCSI tape drives (`st<N>`) from
//! `<sysfs>/class/scsi_tape/<st>/stats/`.

use std::path::PathBuf;

use anyhow::Context;
use prometheus_client::encoding::DescriptorEncoder;
use vigia_kit::{Source, SourceError};

use super::util::{go_uint, list, sys_read, NameFilter};
use crate::config::HostConfig;
use crate::metrics::{Families, Kind};

/// (stats file, family, help, kind, factor).
const STATS: [(&str, &str, &str, Kind, f64); 10] = [
    ("in_flight", "node_tape_io_now", "The number of I/Os currently outstanding to this device.", Kind::Gauge, 1.0),
    ("io_ns", "node_tape_io_time_seconds_total", "The amount of time spent waiting for all I/O to complete (including read and write). This includes tape movement commands such as seeking between file or set marks and implicit tape movement such as when rewind on close tape devices are used.", Kind::Counter, 1e-9),
    ("other_cnt", "node_tape_io_others_total", "The number of I/Os issued to the tape drive other than read or write commands. The time taken to complete these commands uses the following calculation io_time_seconds_total-read_time_seconds_total-write_time_seconds_total", Kind::Counter, 1.0),
    ("read_byte_cnt", "node_tape_read_bytes_total", "The number of bytes read from the tape drive.", Kind::Counter, 1.0),
    ("read_cnt", "node_tape_reads_completed_total", "The number of read requests issued to the tape drive.", Kind::Counter, 1.0),
    ("read_ns", "node_tape_read_time_seconds_total", "The amount of time spent waiting for read requests to complete.", Kind::Counter, 1e-9),
    ("resid_cnt", "node_tape_residual_total", "The number of times during a read or write we found the residual amount to be non-zero. This should mean that a program is issuing a read larger thean the block size on tape. For write not all data made it to tape.", Kind::Counter, 1.0),
    ("write_byte_cnt", "node_tape_written_bytes_total", "The number of bytes written to the tape drive.", Kind::Counter, 1.0),
    ("write_cnt", "node_tape_writes_completed_total", "The number of write requests issued to the tape drive.", Kind::Counter, 1.0),
    ("write_ns", "node_tape_write_time_seconds_total", "The amount of time spent waiting for write requests to complete.", Kind::Counter, 1e-9),
];

pub struct Tapestats {
    sysfs_root: PathBuf,
    ignored: NameFilter,
}

impl Tapestats {
    pub fn new(config: &HostConfig) -> Self {
        Self {
            sysfs_root: config.sysfs_root.clone(),
            ignored: NameFilter::excluding(&config.tapestats.ignored),
        }
    }
}

impl Source for Tapestats {
    fn name(&self) -> &'static str {
        "tapestats"
    }

    fn collect(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
        let base = self.sysfs_root.join("class/scsi_tape");
        let tapes = match list(&base) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(SourceError::no_data("scsi_tape stats not found"))
            }
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context("error obtaining SCSITape class info")
                    .into())
            }
        };
        let mut out = Families::default();
        for tape in tapes {
            let digits = tape.strip_prefix("st").unwrap_or("");
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let stats = base.join(&tape).join("stats");
            let mut values = [0.0; 10];
            for file in list(&stats).with_context(|| {
                format!("error obtaining SCSITape class info: {}", stats.display())
            })? {
                let v = sys_read(&stats.join(&file))
                    .with_context(|| format!("failed to read file {}/{file}", stats.display()))?;
                if let Some(i) = STATS.iter().position(|(f, ..)| *f == file) {
                    let n = go_uint(&v)
                        .with_context(|| format!("{}/{file}: {v:?}", stats.display()))?;
                    values[i] = n as f64;
                }
            }
            if self.ignored.ignored(&tape) {
                continue;
            }
            for ((_, name, help, kind, factor), v) in STATS.iter().zip(values) {
                out.add(*kind, name, help, &[("device", &tape)], v * factor);
            }
        }
        out.write(enc)?;
        Ok(())
    }
}
