//! node_exporter's `nvme` collector: NVMe controllers from `<sysfs>/class/nvme/<dev>/`
//! (firmware, model, serial, state) as an info series.

use std::path::PathBuf;

use anyhow::Context;
use prometheus_client::encoding::DescriptorEncoder;
use vigia_kit::{Source, SourceError};

use super::util::{list, sys_read};
use crate::config::HostConfig;
use crate::metrics::{gauge, Sample};

pub struct Nvme {
    sysfs_root: PathBuf,
}

impl Nvme {
    pub fn new(config: &HostConfig) -> Self {
        Self {
            sysfs_root: config.sysfs_root.clone(),
        }
    }
}

impl Source for Nvme {
    fn name(&self) -> &'static str {
        "nvme"
    }

    fn collect(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
        let base = self.sysfs_root.join("class/nvme");
        let devices = match list(&base) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(SourceError::no_data("nvme statistics not found"))
            }
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context("error obtaining NVMe class info")
                    .into())
            }
        };
        let mut rows = Vec::new();
        for d in devices {
            let mut v = Vec::new();
            for f in ["firmware_rev", "model", "serial", "state"] {
                v.push(sys_read(&base.join(&d).join(f)).with_context(|| {
                    format!(
                        "error obtaining NVMe class info: failed to read file {}/{f}",
                        base.join(&d).display()
                    )
                })?);
            }
            rows.push((d, v));
        }
        gauge(
            enc,
            "node_nvme_info",
            "Non-numeric data from /sys/class/nvme/<device>, value is always 1.",
            &rows
                .iter()
                .map(|(d, v)| {
                    Sample::new(
                        vec![
                            ("device", d.as_str()),
                            ("firmware_revision", v[0].as_str()),
                            ("model", v[1].as_str()),
                            ("serial", v[2].as_str()),
                            ("state", v[3].as_str()),
                        ],
                        1.0,
                    )
                })
                .collect::<Vec<_>>(),
        )?;
        Ok(())
    }
}
