//! node_exporter's `schedstat` collector: per-CPU scheduler time from
//! `<procfs>/schedstat` (absent without CONFIG_SCHEDSTATS: no data).

use std::path::PathBuf;

use prometheus_client::encoding::DescriptorEncoder;
use regex::Regex;
use vigia_kit::{Source, SourceError};

use crate::config::HostConfig;
use crate::metrics::{counter, Sample};

pub struct Schedstat {
    procfs_root: PathBuf,
    cpu_line: Regex,
}

impl Schedstat {
    pub fn new(config: &HostConfig) -> Self {
        Self {
            procfs_root: config.procfs_root.clone(),
            cpu_line: Regex::new(r"cpu(\d+) (\d+) (\d+) (\d+) (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)")
                .expect("constant regex"),
        }
    }
}

impl Source for Schedstat {
    fn name(&self) -> &'static str {
        "schedstat"
    }

    fn collect(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
        let path = self.procfs_root.join("schedstat");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(SourceError::no_data("schedstat file does not exist"))
            }
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context(path.display().to_string())
                    .into())
            }
        };
        let mut cpus = Vec::new();
        for line in text.lines() {
            let Some(m) = self.cpu_line.captures(line) else {
                continue;
            };
            let n = |i: usize| m[i].parse::<u64>().ok();
            let (Some(run), Some(wait), Some(slices)) = (n(8), n(9), n(10)) else {
                continue;
            };
            cpus.push((
                m[1].to_string(),
                run as f64 / 1e9,
                wait as f64 / 1e9,
                slices as f64,
            ));
        }
        let family = |f: fn(&(String, f64, f64, f64)) -> f64| -> Vec<Sample<'_>> {
            cpus.iter()
                .map(|c| Sample::new(vec![("cpu", c.0.as_str())], f(c)))
                .collect()
        };
        counter(
            enc,
            "node_schedstat_running_seconds_total",
            "Number of seconds CPU spent running a process.",
            &family(|c| c.1),
        )?;
        counter(
            enc,
            "node_schedstat_waiting_seconds_total",
            "Number of seconds spent by processing waiting for this CPU.",
            &family(|c| c.2),
        )?;
        counter(
            enc,
            "node_schedstat_timeslices_total",
            "Number of timeslices executed by CPU.",
            &family(|c| c.3),
        )?;
        Ok(())
    }
}
