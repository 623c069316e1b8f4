//! `<procfs>/stat` as node_exporter's `stat` collector: interrupts, context switches,
//! forks, boot time, runnable and blocked tasks (softirqs by vector behind
//! `stat.softirq`). The parser is shared with the `cpu` collector and the anomaly score.

use std::path::{Path, PathBuf};

use anyhow::Context;
use prometheus_client::encoding::DescriptorEncoder;
use vigia_kit::{Source, SourceError};

use crate::config::HostConfig;
use crate::metrics::{counter, gauge, one, Sample};

/// Mode names of the eight columns node_exporter reports, in `/proc/stat` order.
pub const MODES: [&str; 8] = [
    "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
];

/// Softirq vectors in the order of the `softirq` line.
pub const SOFTIRQ_VECTORS: [&str; 10] = [
    "hi",
    "timer",
    "net_tx",
    "net_rx",
    "block",
    "block_iopoll",
    "tasklet",
    "sched",
    "hrtimer",
    "rcu",
];

/// Times of one CPU in seconds, by mode, plus its guest time (already inside `user`/`nice`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuTimes {
    pub modes: [f64; 8],
    pub guest: f64,
    pub guest_nice: f64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcStat {
    /// All CPUs together (the `cpu` line).
    pub total: CpuTimes,
    /// One entry per `cpuN` line: (N, times), in file order.
    pub cpus: Vec<(u32, CpuTimes)>,
    pub boot_time: Option<f64>,
    pub interrupts: Option<f64>,
    pub context_switches: Option<f64>,
    pub forks: Option<f64>,
    pub procs_running: Option<f64>,
    pub procs_blocked: Option<f64>,
    pub softirqs: Option<[f64; 10]>,
}

/// Clock ticks per second of `/proc/stat` (USER_HZ, 100 on every Linux we know of).
pub fn user_hz() -> f64 {
    // SAFETY: sysconf has no preconditions; it returns -1 on an unknown name.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as f64
    } else {
        100.0
    }
}

fn number(value: Option<&str>, key: &str) -> anyhow::Result<f64> {
    let v = value.with_context(|| format!("{key} line without a value"))?;
    v.parse()
        .with_context(|| format!("couldn't parse {v:?} ({key})"))
}

pub fn parse_stat(text: &str, hz: f64) -> anyhow::Result<ProcStat> {
    let mut stat = ProcStat::default();
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let Some(key) = fields.next() else { continue };
        if let Some(id) = key.strip_prefix("cpu") {
            let ticks: Vec<f64> = fields.map(|f| f.parse::<f64>().unwrap_or(0.0)).collect();
            if ticks.is_empty() {
                anyhow::bail!("couldn't parse {line:?} (cpu)");
            }
            let at = |i: usize| ticks.get(i).copied().unwrap_or(0.0) / hz;
            let mut times = CpuTimes::default();
            for (i, slot) in times.modes.iter_mut().enumerate() {
                *slot = at(i);
            }
            times.guest = at(8);
            times.guest_nice = at(9);
            if id.is_empty() {
                stat.total = times;
            } else {
                let n = id
                    .parse()
                    .with_context(|| format!("couldn't parse {key:?} (cpu)"))?;
                stat.cpus.push((n, times));
            }
            continue;
        }
        match key {
            "btime" => stat.boot_time = Some(number(fields.next(), key)?),
            "intr" => stat.interrupts = Some(number(fields.next(), key)?),
            "ctxt" => stat.context_switches = Some(number(fields.next(), key)?),
            "processes" => stat.forks = Some(number(fields.next(), key)?),
            "procs_running" => stat.procs_running = Some(number(fields.next(), key)?),
            "procs_blocked" => stat.procs_blocked = Some(number(fields.next(), key)?),
            "softirq" => {
                let _total = fields.next();
                let mut vectors = [0.0; 10];
                for (slot, f) in vectors.iter_mut().zip(fields) {
                    *slot = f
                        .parse()
                        .with_context(|| format!("couldn't parse softirq {f:?}"))?;
                }
                stat.softirqs = Some(vectors);
            }
            _ => {}
        }
    }
    Ok(stat)
}

pub fn read_stat(procfs_root: &Path) -> anyhow::Result<ProcStat> {
    let path = procfs_root.join("stat");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    parse_stat(&text, user_hz()).with_context(|| format!("parsing {}", path.display()))
}

pub struct Stat {
    procfs_root: PathBuf,
    softirq: bool,
}

impl Stat {
    pub fn new(config: &HostConfig) -> Self {
        Self {
            procfs_root: config.procfs_root.clone(),
            softirq: config.stat.softirq,
        }
    }
}

impl Source for Stat {
    fn name(&self) -> &'static str {
        "stat"
    }

    fn collect(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
        let stat = read_stat(&self.procfs_root)?;
        let or_zero = |v: Option<f64>| one(Some(v.unwrap_or(0.0)));
        counter(
            enc,
            "node_intr_total",
            "Total number of interrupts serviced.",
            &or_zero(stat.interrupts),
        )?;
        counter(
            enc,
            "node_context_switches_total",
            "Total number of context switches.",
            &or_zero(stat.context_switches),
        )?;
        counter(
            enc,
            "node_forks_total",
            "Total number of forks.",
            &or_zero(stat.forks),
        )?;
        gauge(
            enc,
            "node_boot_time_seconds",
            "Node boot time, in unixtime.",
            &or_zero(stat.boot_time),
        )?;
        gauge(
            enc,
            "node_procs_running",
            "Number of processes in runnable state.",
            &or_zero(stat.procs_running),
        )?;
        gauge(
            enc,
            "node_procs_blocked",
            "Number of processes blocked waiting for I/O to complete.",
            &or_zero(stat.procs_blocked),
        )?;
        if self.softirq {
            let vectors = stat.softirqs.unwrap_or_default();
            let samples: Vec<Sample<'_>> = SOFTIRQ_VECTORS
                .iter()
                .zip(vectors)
                .map(|(name, v)| Sample::new(vec![("vector", *name)], v))
                .collect();
            counter(
                enc,
                "node_softirqs_total",
                "Number of softirq calls.",
                &samples,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  100 2 30 400 5 6 7 8 9 1\n\
cpu0 50 1 15 200 2 3 3 4 5 0\n\
cpu1 50 1 15 200 3 3 4 4 4 1\n\
intr 1234 0 0\nctxt 98765\nbtime 1700000000\nprocesses 4321\nprocs_running 3\nprocs_blocked 1\n\
softirq 10 1 2 3 4 0 0 0 0 0 0\n";

    #[test]
    fn parses_modes_in_seconds() {
        let s = parse_stat(STAT, 100.0).unwrap();
        assert_eq!(s.cpus.len(), 2);
        assert_eq!(s.cpus[1].0, 1);
        assert_eq!(s.cpus[1].1.modes[4], 0.03);
        assert_eq!(s.total.modes[0], 1.0);
        assert_eq!(s.total.guest, 0.09);
        assert_eq!(s.boot_time, Some(1_700_000_000.0));
        assert_eq!(s.forks, Some(4321.0));
        assert_eq!(s.interrupts, Some(1234.0));
        assert_eq!(s.softirqs.unwrap()[3], 4.0);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(parse_stat("cpu\n", 100.0).is_err());
        assert!(parse_stat("btime soon\n", 100.0).is_err());
        assert!(parse_stat("cpu x y z w\n\u{0}\u{0}", 100.0).is_ok());
    }
}
