//! node_exporter's `pressure` collector: pressure stall information from
//! `<procfs>/pressure/{cpu,io,memory,irq}` as seconds of stall. A kernel without PSI (no
//! files) or without the `irq` file (before Linux 6.1) is "no data" from that resource
//! on, as in node_exporter 1.9; what was read before stays in the scrape.

use std::path::PathBuf;

use anyhow::Context;
use prometheus_client::encoding::DescriptorEncoder;
use vigia_kit::{Source, SourceError};

use crate::config::HostConfig;
use crate::metrics::{counter, one};

/// (some, full) totals in microseconds; `None` where the line is absent.
pub fn parse_psi(text: &str) -> anyhow::Result<(Option<f64>, Option<f64>)> {
    let (mut some, mut full) = (None, None);
    for line in text.lines() {
        let mut fields = line.split(' ');
        let kind = fields.next().unwrap_or("");
        if kind != "some" && kind != "full" {
            continue;
        }
        let mut total = None;
        for (i, want) in ["avg10", "avg60", "avg300", "total"].iter().enumerate() {
            let f = fields
                .next()
                .with_context(|| format!("psi line {line:?}"))?;
            let v = f
                .strip_prefix(want)
                .and_then(|r| r.strip_prefix('='))
                .with_context(|| format!("psi line {line:?}"))?;
            if i == 3 {
                total = Some(
                    v.parse::<u64>()
                        .with_context(|| format!("psi line {line:?}"))? as f64,
                );
            } else {
                v.parse::<f64>()
                    .with_context(|| format!("psi line {line:?}"))?;
            }
        }
        if kind == "some" {
            some = total;
        } else {
            full = total;
        }
    }
    Ok((some, full))
}

pub struct Pressure {
    procfs_root: PathBuf,
}

impl Pressure {
    pub fn new(config: &HostConfig) -> Self {
        Self {
            procfs_root: config.procfs_root.clone(),
        }
    }
}

/// Microseconds to seconds, in two steps as node_exporter divides (the same float).
fn seconds(us: f64) -> f64 {
    us / 1000.0 / 1000.0
}

impl Source for Pressure {
    fn name(&self) -> &'static str {
        "pressure"
    }

    fn collect(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
        for resource in ["cpu", "io", "memory", "irq"] {
            let path = self.procfs_root.join("pressure").join(resource);
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(SourceError::no_data(format!(
                        "no {}: a kernel older than 4.20, without CONFIG_PSI, or before 6.1 for irq",
                        path.display()
                    )))
                }
                Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                    return Err(SourceError::no_data("pressure information is disabled (psi=1 on the kernel command line enables it)"))
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e)
                        .context(format!("failed to retrieve pressure stats: {}", path.display()))
                        .into())
                }
            };
            let (some, full) = parse_psi(&text).context("failed to retrieve pressure stats")?;
            // irq has only a "full" line, cpu only a meaningful "some" one.
            if some.is_none() && resource != "irq" {
                return Err(SourceError::no_data(format!(
                    "no 'some' line in {}",
                    path.display()
                )));
            }
            if full.is_none() && resource != "cpu" {
                return Err(SourceError::no_data(format!(
                    "no 'full' line in {}",
                    path.display()
                )));
            }
            let (some, full) = (some.unwrap_or(0.0), full.unwrap_or(0.0));
            match resource {
                "cpu" => counter(
                    enc,
                    "node_pressure_cpu_waiting_seconds_total",
                    "Total time in seconds that processes have waited for CPU time",
                    &one(Some(seconds(some))),
                )?,
                "io" => {
                    counter(
                        enc,
                        "node_pressure_io_waiting_seconds_total",
                        "Total time in seconds that processes have waited due to IO congestion",
                        &one(Some(seconds(some))),
                    )?;
                    counter(
                        enc,
                        "node_pressure_io_stalled_seconds_total",
                        "Total time in seconds no process could make progress due to IO congestion",
                        &one(Some(seconds(full))),
                    )?;
                }
                "memory" => {
                    counter(
                        enc,
                        "node_pressure_memory_waiting_seconds_total",
                        "Total time in seconds that processes have waited for memory",
                        &one(Some(seconds(some))),
                    )?;
                    counter(
                        enc,
                        "node_pressure_memory_stalled_seconds_total",
                        "Total time in seconds no process could make progress due to memory congestion",
                        &one(Some(seconds(full))),
                    )?;
                }
                _ => counter(
                    enc,
                    "node_pressure_irq_stalled_seconds_total",
                    "Total time in seconds no process could make progress due to IRQ congestion",
                    &one(Some(seconds(full))),
                )?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_psi() {
        let (s, f) = super::parse_psi("some avg10=0.26 avg60=0.43 avg300=1.28 total=15458891\nfull avg10=0.00 avg60=0.11 avg300=0.64 total=8347727\n").unwrap();
        assert_eq!((s, f), (Some(15458891.0), Some(8347727.0)));
        assert_eq!(
            super::parse_psi("some avg10=1 avg60=2 avg300=3 total=4\n").unwrap(),
            (Some(4.0), None)
        );
        assert!(super::parse_psi("some avg10=x avg60=2 avg300=3 total=4\n").is_err());
    }
}
