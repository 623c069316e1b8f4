//! node_exporter's `thermal_zone` collector: zone temperatures
//! (`<sysfs>/class/thermal/thermal_zone*`) and cooling device states
//! (`cooling_device*`). A zone whose files cannot be opened is skipped, as the procfs
//! library skips it.

use std::path::{Path, PathBuf};

use anyhow::Context;
use prometheus_client::encoding::DescriptorEncoder;
use vigia_kit::{Source, SourceError};

use super::util::{glob_prefix, read_attr};
use crate::config::HostConfig;
use crate::metrics::{gauge, Sample};

/// Entries `prefix<digit>...` of `dir`, sorted, with the part after the prefix.
pub fn numbered(dir: &Path, prefix: &str) -> Vec<(String, PathBuf)> {
    glob_prefix(dir, prefix)
        .unwrap_or_default()
        .into_iter()
        .filter(|(n, _)| n[prefix.len()..].starts_with(|c: char| c.is_ascii_digit()))
        .map(|(n, p)| (n[prefix.len()..].to_string(), p))
        .collect()
}

pub struct ThermalZone {
    sysfs_root: PathBuf,
}

impl ThermalZone {
    pub fn new(config: &HostConfig) -> Self {
        Self {
            sysfs_root: config.sysfs_root.clone(),
        }
    }
}

/// (type, temperature in °C) of a zone; `Ok(None)` when a file could not be opened.
fn zone(dir: &Path) -> anyhow::Result<Option<(String, f64)>> {
    let (Ok(kind), Ok(_policy), Ok(temp)) = (
        read_attr(&dir.join("type")),
        read_attr(&dir.join("policy")),
        read_attr(&dir.join("temp")),
    ) else {
        return Ok(None);
    };
    let temp: i64 = temp
        .parse()
        .with_context(|| format!("{}/temp: {temp:?}", dir.display()))?;
    if let Ok(passive) = read_attr(&dir.join("passive")) {
        passive
            .parse::<u64>()
            .with_context(|| format!("{}/passive: {passive:?}", dir.display()))?;
    }
    Ok(Some((kind, temp as f64 / 1000.0)))
}

impl Source for ThermalZone {
    fn name(&self) -> &'static str {
        "thermal_zone"
    }

    fn collect(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
        let base = self.sysfs_root.join("class/thermal");
        let mut zones = Vec::new();
        for (n, dir) in numbered(&base, "thermal_zone") {
            if let Some((kind, t)) = zone(&dir)? {
                zones.push((n, kind, t));
            }
        }
        gauge(
            enc,
            "node_thermal_zone_temp",
            "Zone temperature in Celsius",
            &zones
                .iter()
                .map(|(n, k, t)| Sample::new(vec![("type", k.as_str()), ("zone", n.as_str())], *t))
                .collect::<Vec<_>>(),
        )?;
        let mut devices = Vec::new();
        for (n, dir) in numbered(&base, "cooling_device") {
            let read = |f: &str| -> anyhow::Result<String> {
                read_attr(&dir.join(f)).with_context(|| format!("{}/{f}", dir.display()))
            };
            let kind = read("type")?;
            let max: i64 = read("max_state")?
                .parse()
                .context("cooling device max_state")?;
            let cur: i64 = read("cur_state")?
                .parse()
                .context("cooling device cur_state")?;
            devices.push((n, kind, cur as f64, max as f64));
        }
        let states = |max: bool| -> Vec<Sample<'_>> {
            devices
                .iter()
                .map(|(n, k, c, m)| {
                    Sample::new(
                        vec![("name", n.as_str()), ("type", k.as_str())],
                        if max { *m } else { *c },
                    )
                })
                .collect()
        };
        gauge(
            enc,
            "node_cooling_device_cur_state",
            "Current throttle state of the cooling device",
            &states(false),
        )?;
        gauge(
            enc,
            "node_cooling_device_max_state",
            "Maximum throttle state of the cooling device",
            &states(true),
        )?;
        Ok(())
    }
}
