//! node_exporter's `softnet` collector: per-CPU packet processing from
//! `<procfs>/net/softnet_stat` (hex columns; the CPU index is in column 13 on Linux 5.14+,
//! else the line number).

use std::path::PathBuf;

use anyhow::Context;
use prometheus_client::encoding::DescriptorEncoder;
use vigia_kit::{Source, SourceError};

use super::util::read;
use crate::config::HostConfig;
use crate::metrics::{write, Kind, Sample};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SoftnetRow {
    pub cpu: String,
    /// processed, dropped, time_squeezed, cpu_collision, received_rps, flow_limit_count,
    /// backlog_len.
    pub values: [f64; 7],
}

pub fn parse_softnet(text: &str) -> anyhow::Result<Vec<SoftnetRow>> {
    let mut out = Vec::new();
    for (line_no, line) in text.lines().enumerate() {
        let cols = line
            .split_ascii_whitespace()
            .map(|c| u32::from_str_radix(c, 16).map(f64::from))
            .collect::<Result<Vec<f64>, _>>()
            .with_context(|| format!("could not get softnet statistics: {line:?}"))?;
        anyhow::ensure!(
            cols.len() >= 9,
            "could not get softnet statistics: detected {} columns, but expected at least 9",
            cols.len()
        );
        let at = |i: usize| cols.get(i).copied().unwrap_or(0.0);
        let cpu = if cols.len() >= 13 {
            at(12) as u64
        } else {
            line_no as u64
        };
        out.push(SoftnetRow {
            cpu: cpu.to_string(),
            values: [
                at(0),
                at(1),
                at(2),
                at(8),
                at(9),
                at(10),
                if cols.len() >= 13 { at(11) } else { 0.0 },
            ],
        });
    }
    Ok(out)
}

const FAMILIES: [(&str, &str, Kind); 7] = [
    (
        "node_softnet_processed_total",
        "Number of processed packets",
        Kind::Counter,
    ),
    (
        "node_softnet_dropped_total",
        "Number of dropped packets",
        Kind::Counter,
    ),
    (
        "node_softnet_times_squeezed_total",
        "Number of times processing packets ran out of quota",
        Kind::Counter,
    ),
    (
        "node_softnet_cpu_collision_total",
        "Number of collision occur while obtaining device lock while transmitting",
        Kind::Counter,
    ),
    (
        "node_softnet_received_rps_total",
        "Number of times cpu woken up received_rps",
        Kind::Counter,
    ),
    (
        "node_softnet_flow_limit_count_total",
        "Number of times flow limit has been reached",
        Kind::Counter,
    ),
    (
        "node_softnet_backlog_len",
        "Softnet backlog status",
        Kind::Gauge,
    ),
];

pub struct Softnet {
    procfs_root: PathBuf,
}

impl Softnet {
    pub fn new(config: &HostConfig) -> Self {
        Self {
            procfs_root: config.procfs_root.clone(),
        }
    }
}

impl Source for Softnet {
    fn name(&self) -> &'static str {
        "softnet"
    }

    fn collect(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
        let rows = parse_softnet(&read(&self.procfs_root.join("net/softnet_stat"))?)?;
        for (i, (name, help, kind)) in FAMILIES.iter().enumerate() {
            let samples: Vec<Sample<'_>> = rows
                .iter()
                .map(|r| Sample::new(vec![("cpu", r.cpu.as_str())], r.values[i]))
                .collect();
            write(enc, *kind, name, help, &samples)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn old_and_new_kernels() {
        let new = "00000025 00000001 00000002 00000000 00000000 00000000 00000000 00000000 00000003 00000004 00000005 00000006 00000001\n";
        let r = super::parse_softnet(new).unwrap();
        assert_eq!(r[0].cpu, "1");
        assert_eq!(r[0].values, [37.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let old = "0000000a 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000\n0000000b 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000\n";
        let r = super::parse_softnet(old).unwrap();
        assert_eq!((r[1].cpu.as_str(), r[1].values[0]), ("1", 11.0));
        assert!(super::parse_softnet("1 2 3\n").is_err());
    }
}
