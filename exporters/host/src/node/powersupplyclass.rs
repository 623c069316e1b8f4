//! node_exporter's `powersupplyclass` collector: batteries, AC adapters and UPSes from
//! `<sysfs>/class/power_supply/<supply>/` (values in node_exporter's units: amperes,
//! volts, watt-hours, watts, °C; a `node_power_supply_info` with the text attributes).

use std::collections::BTreeMap;
use std::path::PathBuf;

use prometheus_client::encoding::DescriptorEncoder;
use vigia_kit::{Source, SourceError};

use super::util::{go_int, NameFilter};
use crate::config::HostConfig;
use crate::metrics::{gauge, Sample};

/// (attribute, family suffix, divisor).
const NUMERIC: [(&str, &str, f64); 49] = [
    ("authentic", "authentic", 1.0),
    ("calibrate", "calibrate", 1.0),
    ("capacity", "capacity", 1.0),
    ("capacity_alert_max", "capacity_alert_max", 1.0),
    ("capacity_alert_min", "capacity_alert_min", 1.0),
    ("cycle_count", "cyclecount", 1.0),
    ("online", "online", 1.0),
    ("present", "present", 1.0),
    ("time_to_empty_now", "time_to_empty_seconds", 1.0),
    ("time_to_full_now", "time_to_full_seconds", 1.0),
    ("current_boot", "current_boot", 1e6),
    ("current_max", "current_max", 1e6),
    ("current_now", "current_ampere", 1e6),
    ("energy_empty", "energy_empty", 1e6),
    ("energy_empty_design", "energy_empty_design", 1e6),
    ("energy_full", "energy_full", 1e6),
    ("energy_full_design", "energy_full_design", 1e6),
    ("energy_now", "energy_watthour", 1e6),
    ("voltage_boot", "voltage_boot", 1e6),
    ("voltage_max", "voltage_max", 1e6),
    ("voltage_max_design", "voltage_max_design", 1e6),
    ("voltage_min", "voltage_min", 1e6),
    ("voltage_min_design", "voltage_min_design", 1e6),
    ("voltage_now", "voltage_volt", 1e6),
    ("voltage_ocv", "voltage_ocv", 1e6),
    ("charge_control_limit", "charge_control_limit", 1e6),
    ("charge_control_limit_max", "charge_control_limit_max", 1e6),
    ("charge_counter", "charge_counter", 1e6),
    ("charge_empty", "charge_empty", 1e6),
    ("charge_empty_design", "charge_empty_design", 1e6),
    ("charge_full", "charge_full", 1e6),
    ("charge_full_design", "charge_full_design", 1e6),
    ("charge_now", "charge_ampere", 1e6),
    ("charge_term_current", "charge_term_current", 1e6),
    ("constant_charge_current", "constant_charge_current", 1e6),
    (
        "constant_charge_current_max",
        "constant_charge_current_max",
        1e6,
    ),
    ("constant_charge_voltage", "constant_charge_voltage", 1e6),
    (
        "constant_charge_voltage_max",
        "constant_charge_voltage_max",
        1e6,
    ),
    ("precharge_current", "precharge_current", 1e6),
    ("input_current_limit", "input_current_limit", 1e6),
    ("power_now", "power_watt", 1e6),
    ("temp", "temp_celsius", 10.0),
    ("temp_alert_max", "temp_alert_max_celsius", 10.0),
    ("temp_alert_min", "temp_alert_min_celsius", 10.0),
    ("temp_ambient", "temp_ambient_celsius", 10.0),
    ("temp_ambient_max", "temp_ambient_max_celsius", 10.0),
    ("temp_ambient_min", "temp_ambient_min_celsius", 10.0),
    ("temp_max", "temp_max_celsius", 10.0),
    ("temp_min", "temp_min_celsius", 10.0),
];

/// Numeric attributes the procfs library parses but node_exporter does not write.
const PARSED_ONLY: [&str; 7] = [
    "charge_avg",
    "current_avg",
    "energy_avg",
    "power_avg",
    "voltage_avg",
    "time_to_empty_avg",
    "time_to_full_avg",
];

/// Text attributes, as `node_power_supply_info` labels.
const TEXT: [&str; 11] = [
    "capacity_level",
    "charge_type",
    "health",
    "manufacturer",
    "model_name",
    "serial_number",
    "status",
    "technology",
    "type",
    "usb_type",
    "scope",
];

#[derive(Debug, Default)]
struct Supply {
    name: String,
    numbers: BTreeMap<&'static str, i64>,
    text: BTreeMap<&'static str, String>,
}

pub struct PowerSupplyClass {
    sysfs_root: PathBuf,
    ignored: NameFilter,
}

impl PowerSupplyClass {
    pub fn new(config: &HostConfig) -> Self {
        Self {
            sysfs_root: config.sysfs_root.clone(),
            ignored: NameFilter::excluding(&config.powersupplyclass.ignored),
        }
    }

    fn read(&self) -> Result<Vec<Supply>, std::io::Error> {
        let dir = self.sysfs_root.join("class/power_supply");
        let mut names: Vec<String> = std::fs::read_dir(&dir)?
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        let mut out = Vec::new();
        for name in names {
            let path = dir.join(&name);
            let files: Vec<String> = std::fs::read_dir(&path)?
                .filter_map(Result::ok)
                .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
                .filter_map(|e| e.file_name().into_string().ok())
                .collect();
            let mut s = Supply {
                name: name.clone(),
                ..Supply::default()
            };
            for file in files {
                let known_number = NUMERIC
                    .iter()
                    .map(|(f, _, _)| *f)
                    .chain(PARSED_ONLY.iter().copied())
                    .find(|f| *f == file);
                let known_text = TEXT.iter().copied().find(|f| *f == file);
                if known_number.is_none() && known_text.is_none() {
                    continue;
                }
                let value = match std::fs::read_to_string(path.join(&file)) {
                    Ok(v) => v.trim().to_string(),
                    Err(e)
                        if e.kind() == std::io::ErrorKind::NotFound
                            || matches!(
                                e.raw_os_error(),
                                Some(libc::EOPNOTSUPP) | Some(libc::ENODEV) | Some(libc::EINVAL)
                            ) =>
                    {
                        continue
                    }
                    Err(e) => return Err(e),
                };
                if let Some(f) = known_number {
                    let n = go_int(&value).ok_or_else(|| {
                        std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            format!("{}/{file}: {value:?} is not a number", path.display()),
                        )
                    })?;
                    s.numbers.insert(f, n);
                } else if let Some(f) = known_text {
                    s.text.insert(f, value);
                }
            }
            if !self.ignored.ignored(&name) {
                out.push(s);
            }
        }
        Ok(out)
    }
}

impl Source for PowerSupplyClass {
    fn name(&self) -> &'static str {
        "powersupplyclass"
    }

    fn collect(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
        let supplies = match self.read() {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(SourceError::no_data("no class/power_supply"))
            }
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context("could not get power_supply class info")
                    .into())
            }
        };
        for (file, suffix, divisor) in NUMERIC {
            let samples: Vec<Sample<'_>> = supplies
                .iter()
                .filter_map(|s| {
                    let v = *s.numbers.get(file)? as f64 / divisor;
                    Some(Sample::new(vec![("power_supply", s.name.as_str())], v))
                })
                .collect();
            gauge(
                enc,
                &format!("node_power_supply_{suffix}"),
                &format!("{suffix} value of /sys/class/power_supply/<power_supply>."),
                &samples,
            )?;
        }
        // One label set per family: a supply whose non-empty text attributes differ from
        // the first one's is left out, as client_golang drops it.
        let sets: Vec<Vec<(&str, &str)>> = supplies
            .iter()
            .map(|s| {
                let mut l = vec![("power_supply", s.name.as_str())];
                for t in TEXT {
                    if let Some(v) = s.text.get(t).filter(|v| !v.is_empty()) {
                        l.push((t, v.as_str()));
                    }
                }
                l.sort();
                l
            })
            .collect();
        let first_keys: Option<Vec<&str>> =
            sets.first().map(|l| l.iter().map(|(k, _)| *k).collect());
        let info: Vec<Sample<'_>> = sets
            .into_iter()
            .filter(|l| {
                first_keys
                    .as_ref()
                    .is_some_and(|k| l.iter().map(|(k, _)| *k).eq(k.iter().copied()))
            })
            .map(|l| Sample::new(l, 1.0))
            .collect();
        gauge(
            enc,
            "node_power_supply_info",
            "info of /sys/class/power_supply/<power_supply>.",
            &info,
        )?;
        Ok(())
    }
}
