//! node_exporter's `dmi` collector: the machine's DMI/SMBIOS identity from
//! `<sysfs>/class/dmi/id/` as one info series, read once at start (it changes only with
//! a reboot). Files readable by root only (serial numbers, UUID) are left out for a
//! non-root vigia-host, as node_exporter leaves them out.

use std::path::Path;

use prometheus_client::encoding::DescriptorEncoder;
use vigia_kit::{Source, SourceError};

use super::util::list;
use crate::config::HostConfig;
use crate::metrics::{gauge, Sample};

/// (file, label).
const FIELDS: [(&str, &str); 20] = [
    ("bios_date", "bios_date"),
    ("bios_release", "bios_release"),
    ("bios_vendor", "bios_vendor"),
    ("bios_version", "bios_version"),
    ("board_asset_tag", "board_asset_tag"),
    ("board_name", "board_name"),
    ("board_serial", "board_serial"),
    ("board_vendor", "board_vendor"),
    ("board_version", "board_version"),
    ("chassis_asset_tag", "chassis_asset_tag"),
    ("chassis_serial", "chassis_serial"),
    ("chassis_vendor", "chassis_vendor"),
    ("chassis_version", "chassis_version"),
    ("product_family", "product_family"),
    ("product_name", "product_name"),
    ("product_serial", "product_serial"),
    ("product_sku", "product_sku"),
    ("product_uuid", "product_uuid"),
    ("product_version", "product_version"),
    ("sys_vendor", "system_vendor"),
];

pub struct Dmi {
    /// (label, value) pairs found at start; empty: no data.
    labels: Vec<(&'static str, String)>,
}

fn read(dir: &Path) -> std::io::Result<Vec<(&'static str, String)>> {
    let mut out = Vec::new();
    for name in list(dir)? {
        let path = dir.join(&name);
        if !std::fs::symlink_metadata(&path)
            .map(|m| m.is_file())
            .unwrap_or(false)
        {
            continue;
        }
        let Some((_, label)) = FIELDS.iter().find(|(f, _)| *f == name) else {
            continue;
        };
        match super::util::sys_read(&path) {
            Ok(v) => out.push((*label, v)),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

impl Dmi {
    pub fn new(config: &HostConfig) -> Self {
        let dir = config.sysfs_root.join("class/dmi/id");
        let labels = match read(&dir) {
            Ok(l) => l,
            Err(e) => {
                if !super::util::absent_or_denied(&e) {
                    tracing::warn!(path = %dir.display(), error = %e, "dmi: failed to read Desktop Management Interface (DMI) information");
                }
                Vec::new()
            }
        };
        Self { labels }
    }
}

impl Source for Dmi {
    fn name(&self) -> &'static str {
        "dmi"
    }

    fn collect(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
        if self.labels.is_empty() {
            return Err(SourceError::no_data("no DMI information"));
        }
        gauge(
            enc,
            "node_dmi_info",
            "A metric with a constant '1' value labeled by bios_date, bios_release, bios_vendor, bios_version, board_asset_tag, board_name, board_serial, board_vendor, board_version, chassis_asset_tag, chassis_serial, chassis_vendor, chassis_version, product_family, product_name, product_serial, product_sku, product_uuid, product_version, system_vendor if provided by DMI.",
            &[Sample::new(
                self.labels.iter().map(|(k, v)| (*k, v.as_str())).collect(),
                1.0,
            )],
        )?;
        Ok(())
    }
}
