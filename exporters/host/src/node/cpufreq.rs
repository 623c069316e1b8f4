//! node_exporter's `cpufreq` collector: each online CPU's frequencies (kHz in sysfs,
//! hertz here) and governors from `<sysfs>/devices/system/cpu/cpu*/cpufreq/`.

use std::path::PathBuf;

use anyhow::Context;
use prometheus_client::encoding::DescriptorEncoder;
use vigia_kit::{Source, SourceError};

use super::cpu::parse_cpu_list;
use super::thermal_zone::numbered;
use super::util::read_attr;
use crate::config::HostConfig;
use crate::metrics::{gauge, Sample};

/// (file, family, help), kHz values.
const FREQUENCIES: [(&str, &str, &str); 6] = [
    (
        "cpuinfo_cur_freq",
        "node_cpu_frequency_hertz",
        "Current CPU thread frequency in hertz.",
    ),
    (
        "cpuinfo_min_freq",
        "node_cpu_frequency_min_hertz",
        "Minimum CPU thread frequency in hertz.",
    ),
    (
        "cpuinfo_max_freq",
        "node_cpu_frequency_max_hertz",
        "Maximum CPU thread frequency in hertz.",
    ),
    (
        "scaling_cur_freq",
        "node_cpu_scaling_frequency_hertz",
        "Current scaled CPU thread frequency in hertz.",
    ),
    (
        "scaling_min_freq",
        "node_cpu_scaling_frequency_min_hertz",
        "Minimum scaled CPU thread frequency in hertz.",
    ),
    (
        "scaling_max_freq",
        "node_cpu_scaling_frequency_max_hertz",
        "Maximum scaled CPU thread frequency in hertz.",
    ),
];

#[derive(Debug, Default)]
struct CpuFreq {
    cpu: String,
    freqs: [Option<f64>; 6],
    governor: String,
    available: String,
}

pub struct Cpufreq {
    sysfs_root: PathBuf,
}

impl Cpufreq {
    pub fn new(config: &HostConfig) -> Self {
        Self {
            sysfs_root: config.sysfs_root.clone(),
        }
    }

    fn read(&self) -> anyhow::Result<Vec<CpuFreq>> {
        let base = self.sysfs_root.join("devices/system/cpu");
        let mut cpus = numbered(&base, "cpu");
        // Glob order: cpu0, cpu1, cpu10, cpu2, ...
        cpus.sort_by(|a, b| a.1.cmp(&b.1));
        let offline = read_attr(&base.join("offline"))
            .with_context(|| format!("reading {}/offline", base.display()))?;
        let offline = parse_cpu_list(&offline)?;
        let mut out = Vec::new();
        for (n, dir) in cpus {
            let num: u32 = n.parse().with_context(|| format!("cpu name {n}"))?;
            if offline.contains(&num) {
                continue;
            }
            let freq_dir = dir.join("cpufreq");
            match std::fs::metadata(&freq_dir) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).with_context(|| freq_dir.display().to_string()),
                Ok(_) => {}
            }
            let mut f = CpuFreq {
                cpu: n,
                ..CpuFreq::default()
            };
            for (i, (file, _, _)) in FREQUENCIES.iter().enumerate() {
                match std::fs::read_to_string(freq_dir.join(file)) {
                    Ok(v) => {
                        let khz: u64 = v
                            .trim()
                            .parse()
                            .with_context(|| format!("{}/{file}: {v:?}", freq_dir.display()))?;
                        f.freqs[i] = Some(khz as f64 * 1000.0);
                    }
                    Err(e) if super::util::absent_or_denied(&e) => {}
                    Err(e) => {
                        return Err(e).with_context(|| format!("{}/{file}", freq_dir.display()))
                    }
                }
            }
            let text = |file: &str| -> anyhow::Result<String> {
                read_attr(&freq_dir.join(file))
                    .with_context(|| format!("{}/{file}", freq_dir.display()))
            };
            f.available = text("scaling_available_governors")?;
            text("scaling_driver")?;
            f.governor = text("scaling_governor")?;
            text("related_cpus")?;
            text("scaling_setspeed")?;
            out.push(f);
        }
        Ok(out)
    }
}

impl Source for Cpufreq {
    fn name(&self) -> &'static str {
        "cpufreq"
    }

    fn collect(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
        let cpus = self.read()?;
        for (i, (_, name, help)) in FREQUENCIES.iter().enumerate() {
            let samples: Vec<Sample<'_>> = cpus
                .iter()
                .filter_map(|c| Some(Sample::new(vec![("cpu", c.cpu.as_str())], c.freqs[i]?)))
                .collect();
            gauge(enc, name, help, &samples)?;
        }
        let mut governors = Vec::new();
        for c in cpus.iter().filter(|c| !c.governor.is_empty()) {
            for g in c.available.split(' ') {
                governors.push(Sample::new(
                    vec![("cpu", c.cpu.as_str()), ("governor", g)],
                    f64::from(u8::from(g == c.governor)),
                ));
            }
        }
        gauge(
            enc,
            "node_cpu_scaling_governor",
            "Current enabled CPU frequency governor.",
            &governors,
        )?;
        Ok(())
    }
}
