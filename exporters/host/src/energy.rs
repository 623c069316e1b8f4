//! Energy and power (seed 003). Measured when the host has sensors: RAPL energy counters
//! (`<sysfs>/class/powercap/intel-rapl:*`) and hwmon power sensors
//! (`<sysfs>/class/hwmon/hwmon*/power*_input`). When it has none, an operator may
//! configure a linear model from CPU utilisation; its series carry `source="model"` so a
//! dashboard can never pass an estimate off as a measurement.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use prometheus_client::encoding::DescriptorEncoder;
use vigia_kit::{Source, SourceError};

use crate::collectors::Setup;
use crate::config::PowerModel;
use crate::metrics::{counter, gauge, Sample};
use crate::node::stat as cpu;

/// A RAPL zone directory and its label (`package-0`, `package-0/core`).
#[derive(Debug, Clone, PartialEq)]
pub struct RaplZone {
    pub dir: PathBuf,
    pub zone: String,
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn read_name(dir: &Path) -> Option<String> {
    let n = std::fs::read_to_string(dir.join("name")).ok()?;
    let n = n.trim();
    (!n.is_empty()).then(|| n.to_string())
}

/// Whether the host's RAPL counters can be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RaplAccess {
    /// No `intel-rapl:*` zone with an energy counter (not Intel/AMD, a VM, no powercap).
    Absent,
    /// At least one zone's counter reads.
    Readable,
    /// Zones exist, but reading their counters is refused (root only, see `RaplScan`).
    Unreadable,
}

impl RaplAccess {
    fn label(self) -> &'static str {
        match self {
            RaplAccess::Absent => "absent",
            RaplAccess::Readable => "readable",
            RaplAccess::Unreadable => "unreadable",
        }
    }
}

/// The RAPL zones found, and those whose counter the kernel refused to read.
///
/// Since CVE-2020-8694 (PLATYPUS, Linux 5.10 and the stable kernels it was backported
/// to) `energy_uj` is mode 0400, root only: its fine-grained readings leaked secrets
/// through power side channels. A non-root process (vigia-host's container user) gets
/// EACCES on a host that does have the sensor.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RaplScan {
    pub zones: Vec<RaplZone>,
    /// Directory names (`intel-rapl:0`) of the zones that answered "permission denied".
    pub denied: Vec<String>,
}

impl RaplScan {
    pub fn access(&self) -> RaplAccess {
        if !self.zones.is_empty() {
            RaplAccess::Readable
        } else if !self.denied.is_empty() {
            RaplAccess::Unreadable
        } else {
            RaplAccess::Absent
        }
    }
}

/// How one zone's `energy_uj` read: a value, refused, or no usable counter.
fn read_counter(path: &Path) -> Result<u64, std::io::ErrorKind> {
    let text = std::fs::read_to_string(path).map_err(|e| e.kind())?;
    text.trim()
        .parse()
        .map_err(|_| std::io::ErrorKind::InvalidData)
}

/// Zones with a readable energy counter, parents before their subzones, and the zones
/// whose counter exists but may not be read.
pub fn find_rapl_zones(sysfs_root: &Path) -> RaplScan {
    let base = sysfs_root.join("class/powercap");
    let Ok(entries) = std::fs::read_dir(&base) else {
        return RaplScan::default();
    };
    let mut dirs: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with("intel-rapl:"))
        .collect();
    dirs.sort();
    let mut names: HashMap<String, String> = HashMap::new();
    let mut scan = RaplScan::default();
    for d in dirs {
        let dir = base.join(&d);
        match read_counter(&dir.join("energy_uj")) {
            Ok(_) => {}
            Err(std::io::ErrorKind::PermissionDenied) => {
                scan.denied.push(d);
                continue;
            }
            // No counter (or not a number): not a sensor.
            Err(_) => continue,
        }
        let name = read_name(&dir).unwrap_or_else(|| d.clone());
        // `intel-rapl:0:1` is a subzone of `intel-rapl:0`.
        let zone = match d.rsplit_once(':') {
            Some((parent, _)) if parent.contains(':') => match names.get(parent) {
                Some(p) => format!("{p}/{name}"),
                None => name.clone(),
            },
            _ => name.clone(),
        };
        names.insert(d, zone.clone());
        scan.zones.push(RaplZone { dir, zone });
    }
    scan
}

/// Power inputs of hwmon chips: (sensor label, file).
pub fn find_hwmon_power(sysfs_root: &Path) -> Vec<(String, PathBuf)> {
    let base = sysfs_root.join("class/hwmon");
    let Ok(entries) = std::fs::read_dir(&base) else {
        return Vec::new();
    };
    let mut chips: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    chips.sort();
    let mut out = Vec::new();
    for chip in chips {
        let chip_name = read_name(&chip).unwrap_or_else(|| {
            chip.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
        let Ok(files) = std::fs::read_dir(&chip) else {
            continue;
        };
        let mut inputs: Vec<String> = files
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.starts_with("power") && n.ends_with("_input"))
            .collect();
        inputs.sort();
        for input in inputs {
            let channel = input.trim_end_matches("_input");
            let label = std::fs::read_to_string(chip.join(format!("{channel}_label")))
                .ok()
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty())
                .unwrap_or_else(|| channel.to_string());
            out.push((format!("{chip_name}/{label}"), chip.join(input)));
        }
    }
    out
}

/// A RAPL counter made monotonic across its wraparound at `max_energy_range_uj`.
#[derive(Debug, Clone, Default)]
struct WrappingCounter {
    last_raw: Option<u64>,
    total_uj: f64,
}

impl WrappingCounter {
    fn update(&mut self, raw: u64, max_range: Option<u64>) -> f64 {
        match self.last_raw {
            None => self.total_uj = raw as f64,
            Some(last) if raw >= last => self.total_uj += (raw - last) as f64,
            Some(last) => {
                // The counter passed its maximum and restarted from 0.
                let range = max_range.filter(|m| *m >= last).unwrap_or(last);
                self.total_uj += (range - last + raw) as f64;
            }
        }
        self.last_raw = Some(raw);
        self.total_uj / 1e6
    }
}

/// The linear model's state: CPU time at the last reading and energy so far.
#[derive(Debug, Default)]
struct ModelState {
    last: Option<(Instant, f64, f64)>,
    joules: f64,
    watts: f64,
}

/// Where energy figures come from on this host, decided once at start.
pub enum EnergySources {
    Measured {
        rapl: Vec<RaplZone>,
        hwmon: Vec<(String, PathBuf)>,
    },
    Model {
        model: PowerModel,
        procfs_root: PathBuf,
    },
    /// Neither sensors nor a model: only `vigia_host_energy_source_info{source="none"}`.
    Unavailable,
}

/// The setting an operator sets for the model, named in the logs.
const MODEL_HINT: &str = "set energy.model.idle_watts and energy.model.max_watts \
     (VIGIA_HOST__ENERGY__MODEL__IDLE_WATTS, VIGIA_HOST__ENERGY__MODEL__MAX_WATTS) for an estimate labelled source=\"model\"";

impl EnergySources {
    /// What this host offers, with the reason logged once: measured when a sensor reads,
    /// else the configured model, else nothing (which `source="none"` says).
    pub fn detect(
        sysfs_root: &Path,
        procfs_root: &Path,
        model: Option<&PowerModel>,
    ) -> (Self, RaplAccess) {
        let scan = find_rapl_zones(sysfs_root);
        let hwmon = find_hwmon_power(sysfs_root);
        if !scan.denied.is_empty() {
            tracing::warn!(
                zones = %scan.denied.join(","),
                powercap = %sysfs_root.join("class/powercap").display(),
                "energy: RAPL energy counters exist but are unreadable (permission denied): \
                 energy_uj is readable by root only since CVE-2020-8694 (PLATYPUS); \
                 give vigia-host read access to them (run it as root, or make energy_uj \
                 readable to its user) to measure energy"
            );
        }
        let access = scan.access();
        if !scan.zones.is_empty() || !hwmon.is_empty() {
            tracing::info!(
                rapl_zones = scan.zones.len(),
                hwmon_sensors = hwmon.len(),
                model_configured = model.is_some(),
                "energy: measured from power sensors (source=\"rapl\" / \"hwmon\"); energy.model is not used"
            );
            let sources = EnergySources::Measured {
                rapl: scan.zones,
                hwmon,
            };
            return (sources, access);
        }
        let sources = match model {
            Some(m) => {
                tracing::warn!(
                    idle_watts = m.idle_watts,
                    max_watts = m.max_watts,
                    rapl = access.label(),
                    "energy: no readable RAPL or hwmon power sensor: estimating from CPU \
                     utilisation with the configured linear model (source=\"model\", not a measurement)"
                );
                EnergySources::Model {
                    model: m.clone(),
                    procfs_root: procfs_root.to_path_buf(),
                }
            }
            None => {
                tracing::warn!(
                    rapl = access.label(),
                    "energy: no readable RAPL or hwmon power sensor and no energy.model \
                     configured: no energy series (vigia_host_energy_source_info{{source=\"none\"}}); {MODEL_HINT}"
                );
                EnergySources::Unavailable
            }
        };
        (sources, access)
    }

    /// The `source` values of `vigia_host_energy_source_info`.
    fn source_labels(&self) -> Vec<&'static str> {
        match self {
            EnergySources::Measured { rapl, hwmon } => {
                let mut out = Vec::new();
                if !rapl.is_empty() {
                    out.push("rapl");
                }
                if !hwmon.is_empty() {
                    out.push("hwmon");
                }
                out
            }
            EnergySources::Model { .. } => vec!["model"],
            EnergySources::Unavailable => vec!["none"],
        }
    }
}

/// The collector table's constructor.
pub fn register(s: &mut Setup<'_>) {
    s.metrics
        .register_source(EnergyCollector::new(EnergySources::detect(
            &s.config.sysfs_root,
            &s.config.procfs_root,
            s.config.energy.model.as_ref(),
        )));
}

pub struct EnergyCollector {
    sources: EnergySources,
    rapl_access: RaplAccess,
    rapl_state: Mutex<HashMap<String, WrappingCounter>>,
    model_state: Mutex<ModelState>,
}

impl EnergyCollector {
    pub fn new((sources, rapl_access): (EnergySources, RaplAccess)) -> Self {
        Self {
            sources,
            rapl_access,
            rapl_state: Mutex::new(HashMap::new()),
            model_state: Mutex::new(ModelState::default()),
        }
    }

    fn model_reading(&self, model: &PowerModel, procfs_root: &Path) -> anyhow::Result<(f64, f64)> {
        let stat = cpu::read_stat(procfs_root)?;
        let total: f64 = stat.total.modes.iter().sum();
        let idle = stat.total.modes[3] + stat.total.modes[4];
        let busy = total - idle;
        let now = Instant::now();
        let mut st = self.model_state.lock().unwrap_or_else(|p| p.into_inner());
        let utilisation = match st.last {
            Some((_, b0, t0)) if total > t0 => ((busy - b0) / (total - t0)).clamp(0.0, 1.0),
            Some(_) => st.watts_utilisation(model),
            // First reading: the average since boot is all there is.
            None if total > 0.0 => (busy / total).clamp(0.0, 1.0),
            None => 0.0,
        };
        let watts = model.idle_watts + (model.max_watts - model.idle_watts) * utilisation;
        if let Some((then, _, _)) = st.last {
            st.joules += watts * now.duration_since(then).as_secs_f64();
        }
        st.watts = watts;
        st.last = Some((now, busy, total));
        Ok((watts, st.joules))
    }
}

impl ModelState {
    /// The utilisation behind the last power value, when no CPU time passed since.
    fn watts_utilisation(&self, model: &PowerModel) -> f64 {
        let span = model.max_watts - model.idle_watts;
        if span > 0.0 {
            ((self.watts - model.idle_watts) / span).clamp(0.0, 1.0)
        } else {
            0.0
        }
    }
}

impl Source for EnergyCollector {
    fn name(&self) -> &'static str {
        "energy"
    }

    fn collect(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
        let info = |enc: &mut DescriptorEncoder<'_>| {
            let rapl = self.rapl_access.label();
            let samples: Vec<Sample<'_>> = self
                .sources
                .source_labels()
                .into_iter()
                .map(|source| Sample::new(vec![("source", source), ("rapl", rapl)], 1.0))
                .collect();
            gauge(
                enc,
                "vigia_host_energy_source_info",
                "Where the energy series come from: rapl or hwmon (measured), model (the configured estimate), none (no series); rapl says whether RAPL counters are readable, unreadable (root only) or absent.",
                &samples,
            )
        };
        match &self.sources {
            EnergySources::Unavailable => info(enc)?,
            EnergySources::Measured { rapl, hwmon } => {
                let mut energy = Vec::new();
                {
                    let mut state = self.rapl_state.lock().unwrap_or_else(|p| p.into_inner());
                    for z in rapl {
                        let Ok(raw) = read_counter(&z.dir.join("energy_uj")) else {
                            continue;
                        };
                        let max = read_u64(&z.dir.join("max_energy_range_uj"));
                        let joules = state.entry(z.zone.clone()).or_default().update(raw, max);
                        energy.push((z.zone.as_str(), joules));
                    }
                }
                let power: Vec<(&str, f64)> = hwmon
                    .iter()
                    .filter_map(|(s, p)| Some((s.as_str(), read_u64(p)? as f64 / 1e6)))
                    .collect();
                if energy.is_empty() && power.is_empty() {
                    return Err(anyhow::anyhow!("no power sensor could be read").into());
                }
                info(enc)?;
                let energy: Vec<Sample<'_>> = energy
                    .into_iter()
                    .map(|(z, j)| Sample::new(vec![("zone", z), ("source", "rapl")], j))
                    .collect();
                counter(
                    enc,
                    "vigia_host_energy_joules_total",
                    "Energy used, from RAPL counters (source=rapl) or integrated from the configured power model (source=model).",
                    &energy,
                )?;
                let power: Vec<Sample<'_>> = power
                    .into_iter()
                    .map(|(s, w)| Sample::new(vec![("sensor", s), ("source", "hwmon")], w))
                    .collect();
                gauge(
                    enc,
                    "vigia_host_power_watts",
                    "Power draw, from hwmon sensors (source=hwmon) or the configured power model (source=model).",
                    &power,
                )?;
            }
            EnergySources::Model { model, procfs_root } => {
                let (watts, joules) = self.model_reading(model, procfs_root)?;
                info(enc)?;
                counter(
                    enc,
                    "vigia_host_energy_joules_total",
                    "Energy used, from RAPL counters (source=rapl) or integrated from the configured power model (source=model).",
                    &[Sample::new(vec![("zone", "model"), ("source", "model")], joules)],
                )?;
                gauge(
                    enc,
                    "vigia_host_power_watts",
                    "Power draw, from hwmon sensors (source=hwmon) or the configured power model (source=model).",
                    &[Sample::new(vec![("sensor", "model"), ("source", "model")], watts)],
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigia_kit::Metrics;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn scrape(m: &Metrics) -> String {
        m.encode(vigia_kit::exposition::Format::Classic)
    }

    #[test]
    fn rapl_wraparound_and_hwmon_from_a_fixture_tree() {
        let sys = tempfile::tempdir().unwrap();
        let pc = sys.path().join("class/powercap");
        write(&pc.join("intel-rapl:0/name"), "package-0\n");
        write(&pc.join("intel-rapl:0/energy_uj"), "999000000\n");
        write(&pc.join("intel-rapl:0/max_energy_range_uj"), "1000000000\n");
        write(&pc.join("intel-rapl:0:0/name"), "core\n");
        write(&pc.join("intel-rapl:0:0/energy_uj"), "5000000\n");
        // A zone without a readable counter is no sensor.
        write(&pc.join("intel-rapl:1/name"), "package-1\n");
        let hw = sys.path().join("class/hwmon/hwmon3");
        write(&hw.join("name"), "acpi_power\n");
        write(&hw.join("power1_input"), "12500000\n");
        write(&hw.join("power1_label"), "psu\n");
        write(&hw.join("temp1_input"), "40000\n");

        let detected = EnergySources::detect(sys.path(), Path::new("/proc"), None);
        assert_eq!(detected.1, RaplAccess::Readable);
        let mut m = Metrics::new("vigia-test");
        m.register_source(EnergyCollector::new(detected));
        let first = scrape(&m);
        assert!(
            first
                .contains("vigia_host_energy_source_info{source=\"rapl\",rapl=\"readable\"} 1.0\n")
                && first.contains(
                    "vigia_host_energy_source_info{source=\"hwmon\",rapl=\"readable\"} 1.0\n"
                ),
            "{first}"
        );
        assert!(
            first.contains(
                "vigia_host_energy_joules_total{zone=\"package-0\",source=\"rapl\"} 999.0\n"
            ),
            "{first}"
        );
        assert!(first.contains(
            "vigia_host_energy_joules_total{zone=\"package-0/core\",source=\"rapl\"} 5.0\n"
        ));
        assert!(!first.contains("package-1"));
        assert!(
            first.contains(
                "vigia_host_power_watts{sensor=\"acpi_power/psu\",source=\"hwmon\"} 12.5\n"
            ),
            "{first}"
        );
        // The package counter wraps: 999 J → (1000 J max) → 2 J is 3 J more, not 997 less.
        write(&pc.join("intel-rapl:0/energy_uj"), "2000000\n");
        let second = scrape(&m);
        assert!(
            second.contains(
                "vigia_host_energy_joules_total{zone=\"package-0\",source=\"rapl\"} 1002.0\n"
            ),
            "{second}"
        );
        write(&pc.join("intel-rapl:0/energy_uj"), "4000000\n");
        assert!(scrape(&m).contains("{zone=\"package-0\",source=\"rapl\"} 1004.0\n"));
    }

    #[test]
    fn linear_model_only_without_sensors_and_labelled_as_model() {
        let sys = tempfile::tempdir().unwrap();
        let proc_dir = tempfile::tempdir().unwrap();
        let model = PowerModel {
            idle_watts: 40.0,
            max_watts: 140.0,
        };
        // Nothing to measure and no model: no energy series, and the info says so.
        let (none, access) = EnergySources::detect(sys.path(), proc_dir.path(), None);
        assert!(matches!(none, EnergySources::Unavailable));
        assert_eq!(access, RaplAccess::Absent);
        let mut m = Metrics::new("vigia-test");
        m.register_source(EnergyCollector::new((none, access)));
        let text = scrape(&m);
        assert!(
            text.contains("vigia_host_energy_source_info{source=\"none\",rapl=\"absent\"} 1.0\n"),
            "{text}"
        );
        assert!(
            !text.contains("vigia_host_energy_joules") && !text.contains("vigia_host_power_watts")
        );
        // Since boot: 100 busy ticks of 400 → 25 %.
        write(
            &proc_dir.path().join("stat"),
            "cpu  100 0 0 300 0 0 0 0 0 0\n",
        );
        let detected = EnergySources::detect(sys.path(), proc_dir.path(), Some(&model));
        let mut m = Metrics::new("vigia-test");
        m.register_source(EnergyCollector::new(detected));
        let first = scrape(&m);
        assert!(
            first.contains("vigia_host_energy_source_info{source=\"model\",rapl=\"absent\"} 1.0\n"),
            "{first}"
        );
        assert!(
            first.contains("vigia_host_power_watts{sensor=\"model\",source=\"model\"} 65.0\n"),
            "{first}"
        );
        assert!(
            first.contains("vigia_host_energy_joules_total{zone=\"model\",source=\"model\"} 0.0\n")
        );
        // Then 300 busy ticks of 400 → 75 %.
        write(
            &proc_dir.path().join("stat"),
            "cpu  400 0 0 400 0 0 0 0 0 0\n",
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
        let second = scrape(&m);
        assert!(
            second.contains("vigia_host_power_watts{sensor=\"model\",source=\"model\"} 115.0\n"),
            "{second}"
        );
        let joules: f64 = second
            .lines()
            .find(|l| l.starts_with("vigia_host_energy_joules_total{"))
            .and_then(|l| l.rsplit(' ').next())
            .unwrap()
            .parse()
            .unwrap();
        // 115 W for at least 0.2 s.
        assert!((23.0..115.0).contains(&joules), "{joules}");
        assert!(!second.contains("source=\"rapl\"") && !second.contains("source=\"hwmon\""));
    }
}
