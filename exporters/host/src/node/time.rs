//! node_exporter's `time` collector: the system clock, the local time zone's offset and
//! the kernel's clock sources (`<sysfs>/devices/system/clocksource/clocksource*`).

use std::ffi::CStr;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::DescriptorEncoder;
use vigia_kit::{Source, SourceError};

use super::util::{glob_prefix, read_attr};
use crate::config::HostConfig;
use crate::metrics::{gauge, Sample};

pub struct Time {
    sysfs_root: PathBuf,
}

impl Time {
    pub fn new(config: &HostConfig) -> Self {
        extern "C" {
            fn tzset();
        }
        // SAFETY: tzset only reads TZ and the zone files; called once, at start, before
        // any localtime_r.
        unsafe { tzset() };
        Self {
            sysfs_root: config.sysfs_root.clone(),
        }
    }
}

/// The local zone's abbreviation and offset east of UTC at `secs`.
pub fn zone_at(secs: i64) -> (String, f64) {
    let t: libc::time_t = secs as libc::time_t;
    // SAFETY: `tm` is a plain C struct localtime_r fills in; read only on success, and
    // tm_zone then points at a NUL-terminated static string of the zone tables.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = !unsafe { libc::localtime_r(&t, &mut tm) }.is_null();
    if !ok || tm.tm_zone.is_null() {
        return ("UTC".to_string(), 0.0);
    }
    let name = unsafe { CStr::from_ptr(tm.tm_zone) }
        .to_string_lossy()
        .into_owned();
    (name, tm.tm_gmtoff as f64)
}

/// (index, available, current) of each clock source, in glob order.
fn clocksources(
    sysfs_root: &std::path::Path,
) -> anyhow::Result<Vec<(String, Vec<String>, String)>> {
    let dir = sysfs_root.join("devices/system/clocksource");
    let mut out = Vec::new();
    for (i, (name, path)) in glob_prefix(&dir, "clocksource")
        .unwrap_or_default()
        .into_iter()
        .filter(|(n, _)| n["clocksource".len()..].starts_with(|c: char| c.is_ascii_digit()))
        .enumerate()
    {
        let read = |f: &str| {
            read_attr(&path.join(f))
                .map_err(|e| anyhow::anyhow!("couldn't get clocksources: {name}/{f}: {e}"))
        };
        let available = read("available_clocksource")?
            .split_ascii_whitespace()
            .map(str::to_string)
            .collect();
        out.push((i.to_string(), available, read("current_clocksource")?));
    }
    Ok(out)
}

impl Source for Time {
    fn name(&self) -> &'static str {
        "time"
    }

    fn collect(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| anyhow::anyhow!("clock before 1970: {e}"))?;
        let (zone, offset) = zone_at(now.as_secs() as i64);
        gauge(
            enc,
            "node_time_seconds",
            "System time in seconds since epoch (1970).",
            &[Sample::bare(now.as_secs_f64())],
        )?;
        gauge(
            enc,
            "node_time_zone_offset_seconds",
            "System time zone offset in seconds.",
            &[Sample::new(vec![("time_zone", zone.as_str())], offset)],
        )?;
        let sources = clocksources(&self.sysfs_root)?;
        let mut available = Vec::new();
        let mut current = Vec::new();
        for (device, avail, cur) in &sources {
            for cs in avail {
                available.push(Sample::new(
                    vec![("clocksource", cs.as_str()), ("device", device.as_str())],
                    1.0,
                ));
            }
            current.push(Sample::new(
                vec![("clocksource", cur.as_str()), ("device", device.as_str())],
                1.0,
            ));
        }
        gauge(
            enc,
            "node_time_clocksource_available_info",
            "Available clocksources read from '/sys/devices/system/clocksource'.",
            &available,
        )?;
        gauge(
            enc,
            "node_time_clocksource_current_info",
            "Current clocksource read from '/sys/devices/system/clocksource'.",
            &current,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_and_clock_sources() {
        let (name, offset) = zone_at(0);
        assert!(!name.is_empty() && offset.abs() <= 14.0 * 3600.0);
        let dir = tempfile::tempdir().unwrap();
        let cs = dir.path().join("devices/system/clocksource/clocksource0");
        std::fs::create_dir_all(&cs).unwrap();
        std::fs::write(cs.join("available_clocksource"), "tsc hpet acpi_pm \n").unwrap();
        std::fs::write(cs.join("current_clocksource"), "tsc\n").unwrap();
        let got = clocksources(dir.path()).unwrap();
        assert_eq!(
            got,
            vec![(
                "0".to_string(),
                vec!["tsc".into(), "hpet".into(), "acpi_pm".into()],
                "tsc".to_string()
            )]
        );
    }
}
