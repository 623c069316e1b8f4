//! node_exporter's `bonding` collector: each bond's configured and active (MII up)
//! slaves from `<sysfs>/class/net/bonding_masters` and the bonds' `bonding/slaves`.

use std::path::PathBuf;

use anyhow::Context;
use prometheus_client::encoding::DescriptorEncoder;
use vigia_kit::{Source, SourceError};

use crate::config::HostConfig;
use crate::metrics::{gauge, Sample};

pub struct Bonding {
    sysfs_root: PathBuf,
}

impl Bonding {
    pub fn new(config: &HostConfig) -> Self {
        Self {
            sysfs_root: config.sysfs_root.clone(),
        }
    }

    fn read(&self) -> anyhow::Result<Vec<(String, f64, f64)>> {
        let root = self.sysfs_root.join("class/net");
        let masters = std::fs::read_to_string(root.join("bonding_masters"))?;
        let mut out = Vec::new();
        for master in masters.split_ascii_whitespace() {
            let slaves = std::fs::read_to_string(root.join(master).join("bonding/slaves"))
                .with_context(|| format!("{master}/bonding/slaves"))?;
            let (mut total, mut up) = (0.0, 0.0);
            for slave in slaves.split_ascii_whitespace() {
                let lower = root
                    .join(master)
                    .join(format!("lower_{slave}"))
                    .join("bonding_slave/mii_status");
                let state = match std::fs::read_to_string(&lower) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        // Older kernels name the link slave_<name>.
                        std::fs::read_to_string(
                            root.join(master)
                                .join(format!("slave_{slave}"))
                                .join("bonding_slave/mii_status"),
                        )
                    }
                    r => r,
                }
                .with_context(|| format!("{master}: mii_status of {slave}"))?;
                total += 1.0;
                if state.trim() == "up" {
                    up += 1.0;
                }
            }
            out.push((master.to_string(), total, up));
        }
        Ok(out)
    }
}

impl Source for Bonding {
    fn name(&self) -> &'static str {
        "bonding"
    }

    fn collect(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
        let bonds = match self.read() {
            Err(e) if super::util::is_not_found(&e) => {
                return Err(SourceError::no_data(
                    "Not collecting bonding, file does not exist",
                ))
            }
            r => r?,
        };
        let per = |i: usize| -> Vec<Sample<'_>> {
            bonds
                .iter()
                .map(|(m, t, u)| {
                    Sample::new(vec![("master", m.as_str())], if i == 0 { *t } else { *u })
                })
                .collect()
        };
        gauge(
            enc,
            "node_bonding_slaves",
            "Number of configured slaves per bonding interface.",
            &per(0),
        )?;
        gauge(
            enc,
            "node_bonding_active",
            "Number of active slaves per bonding interface.",
            &per(1),
        )?;
        Ok(())
    }
}
