//! node_exporter's `cpu` collector: time per CPU and mode from `<procfs>/stat` (kept
//! monotonic, as node_exporter does: a counter that steps back by less than 3 s keeps its
//! last value, a larger step means the CPU was replugged and starts over), guest time,
//! thermal throttling per core and package and isolated CPUs from sysfs.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;

use prometheus_client::encoding::DescriptorEncoder;
use vigia_kit::{Source, SourceError};

use super::stat::{read_stat, CpuTimes, MODES};
use super::util::{attr_u64, glob_prefix, read_attr};
use crate::config::HostConfig;
use crate::metrics::{counter, gauge, Sample};

/// A step back in idle time larger than this means a hotplugged CPU, not jitter.
const JUMP_BACK_SECONDS: f64 = 3.0;

pub struct Cpu {
    procfs_root: PathBuf,
    sysfs_root: PathBuf,
    guest: bool,
    /// Last reported times per CPU, so that no counter ever goes back.
    last: Mutex<HashMap<u32, CpuTimes>>,
}

impl Cpu {
    pub fn new(config: &HostConfig) -> Self {
        Self {
            procfs_root: config.procfs_root.clone(),
            sysfs_root: config.sysfs_root.clone(),
            guest: config.cpu.guest,
            last: Mutex::new(HashMap::new()),
        }
    }

    fn monotonic(&self, fresh: &[(u32, CpuTimes)]) -> Vec<(u32, CpuTimes)> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        last.retain(|id, _| fresh.iter().any(|(n, _)| n == id));
        let mut out = Vec::with_capacity(fresh.len());
        for (id, new) in fresh {
            let mut kept = last.get(id).copied().unwrap_or_default();
            if kept.modes[3] - new.modes[3] >= JUMP_BACK_SECONDS {
                kept = CpuTimes::default();
            }
            for (k, n) in kept.modes.iter_mut().zip(new.modes) {
                if n >= *k {
                    *k = n;
                }
            }
            if new.guest >= kept.guest {
                kept.guest = new.guest;
            }
            if new.guest_nice >= kept.guest_nice {
                kept.guest_nice = new.guest_nice;
            }
            last.insert(*id, kept);
            out.push((*id, kept));
        }
        out
    }
}

/// A CPU list as the kernel writes it (`0-2,5`).
pub fn parse_cpu_list(text: &str) -> anyhow::Result<Vec<u32>> {
    let mut out = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.trim().parse()?, b.trim().parse()?);
                anyhow::ensure!(a <= b && b - a < 65536, "invalid cpu range {part:?}");
                out.extend(a..=b);
            }
            None => out.push(part.trim().parse()?),
        }
    }
    Ok(out)
}

impl Source for Cpu {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn collect(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
        let stat = read_stat(&self.procfs_root)?;
        let cpus = self.monotonic(&stat.cpus);
        let ids: Vec<String> = cpus.iter().map(|(n, _)| n.to_string()).collect();
        let mut seconds = Vec::with_capacity(cpus.len() * MODES.len());
        let mut guest = Vec::with_capacity(cpus.len() * 2);
        for ((_, t), cpu) in cpus.iter().zip(&ids) {
            for (mode, v) in MODES.iter().zip(t.modes) {
                seconds.push(Sample::new(vec![("cpu", cpu.as_str()), ("mode", mode)], v));
            }
            guest.push(Sample::new(
                vec![("cpu", cpu.as_str()), ("mode", "user")],
                t.guest,
            ));
            guest.push(Sample::new(
                vec![("cpu", cpu.as_str()), ("mode", "nice")],
                t.guest_nice,
            ));
        }
        let cpu_root = self.sysfs_root.join("devices/system/cpu");
        let isolated = match read_attr(&cpu_root.join("isolated")) {
            Ok(text) => parse_cpu_list(&text)
                .map_err(|e| anyhow::anyhow!("Unable to get isolated cpus: {e}"))?,
            Err(_) => Vec::new(),
        };
        // Thermal throttling: once per package, and once per core of a package.
        let mut package: BTreeMap<u64, u64> = BTreeMap::new();
        let mut core: BTreeMap<(u64, u64), Option<u64>> = BTreeMap::new();
        for (name, dir) in glob_prefix(&cpu_root, "cpu").unwrap_or_default() {
            if !name[3..].starts_with(|c: char| c.is_ascii_digit()) {
                continue;
            }
            let (Some(pkg), Some(core_id)) = (
                attr_u64(&dir.join("topology"), "physical_package_id"),
                attr_u64(&dir.join("topology"), "core_id"),
            ) else {
                continue;
            };
            let throttle = dir.join("thermal_throttle");
            core.entry((pkg, core_id))
                .or_insert_with(|| attr_u64(&throttle, "core_throttle_count"));
            if let std::collections::btree_map::Entry::Vacant(e) = package.entry(pkg) {
                if let Some(n) = attr_u64(&throttle, "package_throttle_count") {
                    e.insert(n);
                }
            }
        }
        let labels: Vec<(String, String, f64)> = core
            .iter()
            .filter_map(|((p, c), n)| Some((p.to_string(), c.to_string(), (*n)? as f64)))
            .collect();
        let packages: Vec<(String, f64)> = package
            .iter()
            .map(|(p, n)| (p.to_string(), *n as f64))
            .collect();
        let isolated: Vec<String> = isolated.iter().map(u32::to_string).collect();

        counter(
            enc,
            "node_cpu_seconds_total",
            "Seconds the CPUs spent in each mode.",
            &seconds,
        )?;
        if self.guest {
            counter(
                enc,
                "node_cpu_guest_seconds_total",
                "Seconds the CPUs spent in guests (VMs) for each mode.",
                &guest,
            )?;
        }
        gauge(
            enc,
            "node_cpu_isolated",
            "Whether each core is isolated, information from /sys/devices/system/cpu/isolated.",
            &isolated
                .iter()
                .map(|c| Sample::new(vec![("cpu", c.as_str())], 1.0))
                .collect::<Vec<_>>(),
        )?;
        counter(
            enc,
            "node_cpu_core_throttles_total",
            "Number of times this CPU core has been throttled.",
            &labels
                .iter()
                .map(|(p, c, n)| {
                    Sample::new(vec![("core", c.as_str()), ("package", p.as_str())], *n)
                })
                .collect::<Vec<_>>(),
        )?;
        counter(
            enc,
            "node_cpu_package_throttles_total",
            "Number of times this CPU package has been throttled.",
            &packages
                .iter()
                .map(|(p, n)| Sample::new(vec![("package", p.as_str())], *n))
                .collect::<Vec<_>>(),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_and_monotonic_counters() {
        assert_eq!(parse_cpu_list("0-2,5\n").unwrap(), vec![0, 1, 2, 5]);
        assert_eq!(parse_cpu_list("").unwrap(), Vec::<u32>::new());
        assert!(parse_cpu_list("3-1").is_err());
        let c = Cpu {
            procfs_root: PathBuf::new(),
            sysfs_root: PathBuf::new(),
            guest: true,
            last: Mutex::new(HashMap::new()),
        };
        let t = |idle: f64| CpuTimes {
            modes: [1.0, 0.0, 0.0, idle, 0.0, 0.0, 0.0, 0.0],
            ..CpuTimes::default()
        };
        assert_eq!(c.monotonic(&[(0, t(100.0))])[0].1.modes[3], 100.0);
        // A small step back keeps the last value; a large one starts over.
        assert_eq!(c.monotonic(&[(0, t(99.5))])[0].1.modes[3], 100.0);
        assert_eq!(c.monotonic(&[(0, t(10.0))])[0].1.modes[3], 10.0);
    }
}
