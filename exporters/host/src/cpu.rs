//! `<procfs>/stat`: per-CPU time by mode (node_exporter's `cpu` collector) and boot time,
//! context switches, forks and runnable/blocked tasks (its `stat` collector).

use std::path::{Path, PathBuf};

use anyhow::Context;
use prometheus_client::encoding::DescriptorEncoder;
use vigia_kit::{Source, SourceError};

use crate::metrics::{counter, gauge, Sample};

/// Mode names of the eight columns node_exporter reports, in `/proc/stat` order.
pub const MODES: [&str; 8] = [
    "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
];

/// Times of one CPU in seconds, by mode, plus its guest time (already inside `user`/`nice`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CpuTimes {
    pub modes: [f64; 8],
    pub guest: f64,
    pub guest_nice: f64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcStat {
    /// All CPUs together (the `cpu` line).
    pub total: CpuTimes,
    /// One entry per `cpuN` line: (N, times).
    pub cpus: Vec<(String, CpuTimes)>,
    pub boot_time: Option<f64>,
    pub context_switches: Option<f64>,
    pub forks: Option<f64>,
    pub procs_running: Option<f64>,
    pub procs_blocked: Option<f64>,
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

pub fn parse_stat(text: &str, hz: f64) -> anyhow::Result<ProcStat> {
    let mut stat = ProcStat::default();
    let mut saw_cpu = false;
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let Some(key) = fields.next() else { continue };
        if let Some(id) = key.strip_prefix("cpu") {
            let ticks: Vec<f64> = fields.map(|f| f.parse::<f64>().unwrap_or(0.0)).collect();
            if ticks.len() < 4 {
                anyhow::bail!("short cpu line: {line:?}");
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
                saw_cpu = true;
            } else {
                stat.cpus.push((id.to_string(), times));
            }
            continue;
        }
        let value = fields.next().and_then(|v| v.parse::<f64>().ok());
        match key {
            "btime" => stat.boot_time = value,
            "ctxt" => stat.context_switches = value,
            "processes" => stat.forks = value,
            "procs_running" => stat.procs_running = value,
            "procs_blocked" => stat.procs_blocked = value,
            _ => {}
        }
    }
    if !saw_cpu {
        anyhow::bail!("no cpu line");
    }
    Ok(stat)
}

pub fn read_stat(procfs_root: &Path) -> anyhow::Result<ProcStat> {
    let path = procfs_root.join("stat");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    parse_stat(&text, user_hz()).with_context(|| format!("parsing {}", path.display()))
}

/// node_exporter's `cpu` collector.
pub struct CpuCollector {
    pub procfs_root: PathBuf,
}

impl Source for CpuCollector {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn collect(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
        let stat = read_stat(&self.procfs_root)?;
        let mut seconds = Vec::with_capacity(stat.cpus.len() * MODES.len());
        let mut guest = Vec::with_capacity(stat.cpus.len() * 2);
        for (cpu, t) in &stat.cpus {
            for (mode, v) in MODES.iter().zip(t.modes) {
                seconds.push(Sample::new(vec![("cpu", cpu), ("mode", mode)], v));
            }
            guest.push(Sample::new(vec![("cpu", cpu), ("mode", "user")], t.guest));
            guest.push(Sample::new(
                vec![("cpu", cpu), ("mode", "nice")],
                t.guest_nice,
            ));
        }
        counter(
            enc,
            "node_cpu_seconds",
            "Seconds the CPUs spent in each mode",
            &seconds,
        )?;
        counter(
            enc,
            "node_cpu_guest_seconds",
            "Seconds the CPUs spent in guests (VMs) for each mode",
            &guest,
        )?;
        Ok(())
    }
}

/// node_exporter's `stat` collector.
pub struct StatCollector {
    pub procfs_root: PathBuf,
}

impl Source for StatCollector {
    fn name(&self) -> &'static str {
        "stat"
    }

    fn collect(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
        let stat = read_stat(&self.procfs_root)?;
        let one = |v: Option<f64>| v.map(Sample::bare).into_iter().collect::<Vec<_>>();
        gauge(
            enc,
            "node_boot_time_seconds",
            "Node boot time, in unixtime",
            &one(stat.boot_time),
        )?;
        counter(
            enc,
            "node_context_switches",
            "Total number of context switches",
            &one(stat.context_switches),
        )?;
        counter(enc, "node_forks", "Total number of forks", &one(stat.forks))?;
        gauge(
            enc,
            "node_procs_running",
            "Number of processes in runnable state",
            &one(stat.procs_running),
        )?;
        gauge(
            enc,
            "node_procs_blocked",
            "Number of processes blocked waiting for I/O to complete",
            &one(stat.procs_blocked),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  100 2 30 400 5 6 7 8 9 1\n\
cpu0 50 1 15 200 2 3 3 4 5 0\n\
cpu1 50 1 15 200 3 3 4 4 4 1\n\
intr 1234 0 0\nctxt 98765\nbtime 1700000000\nprocesses 4321\nprocs_running 3\nprocs_blocked 1\n";

    #[test]
    fn parses_modes_in_seconds() {
        let s = parse_stat(STAT, 100.0).unwrap();
        assert_eq!(s.cpus.len(), 2);
        assert_eq!(s.cpus[1].0, "1");
        assert_eq!(s.cpus[1].1.modes[4], 0.03);
        assert_eq!(s.total.modes[0], 1.0);
        assert_eq!(s.total.guest, 0.09);
        assert_eq!(s.boot_time, Some(1_700_000_000.0));
        assert_eq!(s.forks, Some(4321.0));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(parse_stat("", 100.0).is_err());
        assert!(parse_stat("cpu 1 2\n", 100.0).is_err());
        assert!(parse_stat("cpu x y z w\n\u{0}\u{0}", 100.0).is_ok());
    }
}
