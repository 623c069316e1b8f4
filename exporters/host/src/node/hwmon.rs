//! node_exporter's `hwmon` collector: hardware sensors (temperatures, voltages, fans,
//! power, ...) from `<sysfs>/class/hwmon/hwmon*/` and their `device/` directory, named
//! and scaled as node_exporter does (`node_hwmon_temp_celsius{chip,sensor}`, ...).
//! Chips are named after their device path (`platform_coretemp_0`), else their `name`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use prometheus_client::encoding::DescriptorEncoder;
use vigia_kit::{Source, SourceError};

use super::util::NameFilter;
use crate::config::HostConfig;
use crate::metrics::{Families, Kind};

/// Sensor types node_exporter reads (the part of a file name before its number).
const SENSOR_TYPES: [&str; 14] = [
    "vrm",
    "beep_enable",
    "update_interval",
    "in",
    "cpu",
    "fan",
    "pwm",
    "temp",
    "curr",
    "power",
    "energy",
    "humidity",
    "intrusion",
    "freq",
];

/// Lower case, anything but `[a-z0-9:_]` to `_`, trimmed of `_`.
fn clean(name: &str) -> String {
    let lower = name.to_lowercase();
    let replaced: String = lower
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == ':' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    replaced.trim_matches('_').to_string()
}

/// `<type><num>_<property>` of a sensor file name (`temp1_crit_alarm` → temp, 1,
/// crit_alarm); `None` for a name that does not fit.
fn explode(file: &str) -> Option<(&str, u64, &str)> {
    let type_end = file
        .find(|c: char| c.is_ascii_digit())
        .unwrap_or(file.len());
    let (kind, rest) = file.split_at(type_end);
    if kind.is_empty() {
        return None;
    }
    let digits_end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let (digits, rest) = rest.split_at(digits_end);
    let property = match rest {
        "" => "",
        r => r.strip_prefix('_').filter(|p| !p.is_empty())?,
    };
    // A type ending in `_` with no number (`beep_` of `beep_enable`) is the regex's
    // greedy type taking the underscore: the whole name is then the type.
    let num = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    Some((kind, num, property))
}

/// At most 128 bytes, as node_exporter reads hwmon files (some drivers block on
/// longer reads).
fn sys_read(path: &Path) -> Option<String> {
    let mut f = std::fs::File::open(path).ok()?;
    let mut buf = [0u8; 128];
    let n = f.read(&mut buf).ok()?;
    Some(
        String::from_utf8_lossy(&buf[..n])
            .trim_matches('\n')
            .to_string(),
    )
}

/// sensor → property → value.
type SensorData = BTreeMap<String, BTreeMap<String, String>>;

fn collect_sensor_data(dir: &Path, data: &mut SensorData) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)?.filter_map(Result::ok) {
        let Ok(file) = entry.file_name().into_string() else {
            continue;
        };
        let Some((kind, num, property)) = explode(&file) else {
            continue;
        };
        if !SENSOR_TYPES.contains(&kind) {
            continue;
        }
        if let Some(value) = sys_read(&entry.path()) {
            data.entry(format!("{kind}{num}"))
                .or_default()
                .insert(property.to_string(), value);
        }
    }
    Ok(())
}

/// A stable name for a chip: its device path (`<bus>_<device>`), else its `name`
/// file, else the `hwmonN` directory's own name.
fn chip_name(dir: &Path) -> std::io::Result<String> {
    if let Ok(device) = std::fs::canonicalize(dir.join("device")) {
        let name = device
            .file_name()
            .and_then(|n| n.to_str())
            .map(clean)
            .unwrap_or_default();
        let kind = device
            .parent()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
            .map(clean)
            .unwrap_or_default();
        if !kind.is_empty() && !name.is_empty() {
            return Ok(format!("{kind}_{name}"));
        }
        if !name.is_empty() {
            return Ok(name);
        }
    }
    if let Ok(raw) = std::fs::read_to_string(dir.join("name")) {
        let name = clean(&raw);
        if !name.is_empty() {
            return Ok(name);
        }
    }
    let real = std::fs::canonicalize(dir)?;
    let name = real
        .file_name()
        .and_then(|n| n.to_str())
        .map(clean)
        .unwrap_or_default();
    if name.is_empty() {
        return Err(std::io::Error::other(format!(
            "Could not derive a monitoring name for {}",
            dir.display()
        )));
    }
    Ok(name)
}

/// (family, help, kind, value) of one sensor property, as node_exporter names it.
fn family(
    kind: &str,
    element: &str,
    value: f64,
    has_bare: bool,
) -> Option<(String, String, Kind, f64)> {
    let prefix = format!("node_hwmon_{kind}");
    let name = if element == "input" {
        if has_bare {
            format!("{prefix}_input")
        } else {
            prefix.clone()
        }
    } else if !element.is_empty() {
        format!("{prefix}_{}", clean(element))
    } else {
        prefix.clone()
    };
    let g = Kind::Gauge;
    Some(match (kind, element) {
        (_, "fault") | (_, "alarm") => (name, format!("Hardware sensor {element} status ({kind})"), g, value),
        (_, "beep") => (format!("{name}_enabled"), "Hardware monitor sensor has beeping enabled".to_string(), g, value),
        ("in" | "cpu", _) => (format!("{name}_volts"), format!("Hardware monitor for voltage ({element})"), g, value * 0.001),
        ("temp", e) if e != "type" => {
            let e = if e.is_empty() { "input" } else { e };
            (format!("{name}_celsius"), format!("Hardware monitor for temperature ({e})"), g, value * 0.001)
        }
        ("curr", _) => (format!("{name}_amps"), format!("Hardware monitor for current ({element})"), g, value * 0.001),
        ("energy", _) => (
            format!("{name}_joule_total"),
            format!("Hardware monitor for joules used so far ({element})"),
            Kind::Counter,
            value / 1e6,
        ),
        ("power", "accuracy") => (name, "Hardware monitor power meter accuracy, as a ratio".to_string(), g, value / 1e6),
        ("power", "average_interval" | "average_interval_min" | "average_interval_max") => (
            format!("{name}_seconds"),
            format!("Hardware monitor power usage update interval ({element})"),
            g,
            value * 0.001,
        ),
        ("power", _) => (
            format!("{name}_watt"),
            format!("Hardware monitor for power usage in watts ({element})"),
            g,
            value / 1e6,
        ),
        ("humidity", _) => (
            name,
            format!("Hardware monitor for humidity, as a ratio (multiply with 100.0 to get the humidity as a percentage) ({element})"),
            g,
            value / 1e6,
        ),
        ("fan", "input" | "min" | "max" | "target") => (
            format!("{name}_rpm"),
            format!("Hardware monitor for fan revolutions per minute ({element})"),
            g,
            value,
        ),
        ("freq", _) => return None,
        _ => (name, format!("Hardware monitor {kind} element {element}"), g, value),
    })
}

pub struct Hwmon {
    sysfs_root: PathBuf,
    chips: NameFilter,
    sensors: NameFilter,
}

impl Hwmon {
    pub fn new(config: &HostConfig) -> Self {
        let h = &config.hwmon;
        Self {
            sysfs_root: config.sysfs_root.clone(),
            chips: NameFilter::new(h.chip_exclude.as_deref(), h.chip_include.as_deref()),
            sensors: NameFilter::new(h.sensor_exclude.as_deref(), h.sensor_include.as_deref()),
        }
    }
}

/// One series: family (name, help, kind) and labels.
type Row = ((String, String, Kind), Vec<(&'static str, String)>, f64);

impl Hwmon {
    fn chip(&self, dir: &Path, rows: &mut Vec<Row>) -> std::io::Result<()> {
        let chip = chip_name(dir)?;
        if self.chips.ignored(&chip) {
            return Ok(());
        }
        let mut data = SensorData::new();
        collect_sensor_data(dir, &mut data)?;
        let device = dir.join("device");
        if std::fs::metadata(&device).is_ok() {
            collect_sensor_data(&device, &mut data)?;
        }
        if let Ok(raw) = std::fs::read_to_string(dir.join("name")) {
            let human = clean(&raw);
            if !human.is_empty() {
                rows.push((
                    (
                        "node_hwmon_chip_names".into(),
                        "Annotation metric for human-readable chip names".into(),
                        Kind::Gauge,
                    ),
                    vec![("chip", chip.clone()), ("chip_name", human)],
                    1.0,
                ));
            }
        }
        for (sensor, props) in &data {
            if self.sensors.ignored(&format!("{chip};{sensor}")) {
                continue;
            }
            let kind = explode(sensor).map(|(k, _, _)| k).unwrap_or("");
            let labels = vec![("chip", chip.clone()), ("sensor", sensor.clone())];
            if let Some(label) = props.get("label") {
                rows.push((
                    (
                        "node_hwmon_sensor_label".into(),
                        "Label for given chip and sensor".into(),
                        Kind::Gauge,
                    ),
                    vec![
                        ("chip", chip.clone()),
                        ("sensor", sensor.clone()),
                        ("label", label.clone()),
                    ],
                    1.0,
                ));
            }
            let bare = props.get("").map(String::as_str);
            match kind {
                "beep_enable" => {
                    rows.push((
                        (
                            "node_hwmon_beep_enabled".into(),
                            "Hardware beep enabled".into(),
                            Kind::Gauge,
                        ),
                        labels,
                        f64::from(u8::from(bare == Some("1"))),
                    ));
                    continue;
                }
                "vrm" | "update_interval" => {
                    if let Some(v) = bare.and_then(|b| b.parse::<f64>().ok()) {
                        let (name, help, v) = if kind == "vrm" {
                            (
                                "node_hwmon_voltage_regulator_version",
                                "Hardware voltage regulator",
                                v,
                            )
                        } else {
                            (
                                "node_hwmon_update_interval_seconds",
                                "Hardware monitor update interval",
                                v * 0.001,
                            )
                        };
                        rows.push(((name.into(), help.into(), Kind::Gauge), labels, v));
                    }
                    continue;
                }
                _ => {}
            }
            for (element, text) in props {
                if element == "label" {
                    continue;
                }
                let Ok(value) = text.trim().parse::<f64>() else {
                    continue;
                };
                if kind == "freq" {
                    if element == "input" {
                        if let Some(label) = props.get("label") {
                            rows.push((
                                (
                                    "node_hwmon_freq_freq_mhz".into(),
                                    "Hardware monitor for GPU frequency in MHz".into(),
                                    Kind::Gauge,
                                ),
                                vec![("chip", chip.clone()), ("sensor", clean(label))],
                                value / 1e6,
                            ));
                        }
                    }
                    continue;
                }
                if let Some((name, help, k, v)) = family(kind, element, value, bare.is_some()) {
                    rows.push(((name, help, k), labels.clone(), v));
                }
            }
        }
        Ok(())
    }
}

impl Source for Hwmon {
    fn name(&self) -> &'static str {
        "hwmon"
    }

    fn collect(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
        let base = self.sysfs_root.join("class/hwmon");
        let entries = match std::fs::read_dir(&base) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(SourceError::no_data("no class/hwmon"))
            }
            Err(e) => return Err(anyhow::Error::new(e).into()),
        };
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| std::fs::metadata(p).map(|m| m.is_dir()).unwrap_or(false))
            .collect();
        dirs.sort();
        let mut rows: Vec<Row> = Vec::new();
        let mut last_error = None;
        for dir in dirs {
            if let Err(e) = self.chip(&dir, &mut rows) {
                last_error = Some(e);
            }
        }
        // One HELP per family name: the first description wins, as in client_golang's
        // gathering (a later, different one would be dropped there with its series).
        let mut families = Families::default();
        for ((name, help, kind), labels, v) in rows {
            let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
            families.add(kind, &name, &help, &labels, v);
        }
        families.write(enc)?;
        match last_error {
            Some(e) => Err(anyhow::Error::new(e).context("hwmon chip").into()),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensor_file_names() {
        assert_eq!(explode("temp1_crit_alarm"), Some(("temp", 1, "crit_alarm")));
        assert_eq!(explode("in0_input"), Some(("in", 0, "input")));
        assert_eq!(explode("pwm1"), Some(("pwm", 1, "")));
        assert_eq!(explode("update_interval"), Some(("update_interval", 0, "")));
        assert_eq!(explode("beep_enable"), Some(("beep_enable", 0, "")));
        assert_eq!(explode("name"), Some(("name", 0, "")));
        assert_eq!(explode("1abc"), None);
        assert_eq!(clean("Core 0"), "core_0");
        assert_eq!(clean("coretemp.0\n"), "coretemp_0");
    }
}
