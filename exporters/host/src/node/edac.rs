//! node_exporter's `edac` collector: ECC memory errors per memory controller and chip
//! select row from `<sysfs>/devices/system/edac/mc/mc*/`.

use std::path::PathBuf;

use anyhow::Context;
use prometheus_client::encoding::DescriptorEncoder;
use vigia_kit::{Source, SourceError};

use super::thermal_zone::numbered;
use super::util::read_attr;
use crate::config::HostConfig;
use crate::metrics::{Families, Kind};

pub struct Edac {
    sysfs_root: PathBuf,
}

impl Edac {
    pub fn new(config: &HostConfig) -> Self {
        Self {
            sysfs_root: config.sysfs_root.clone(),
        }
    }
}

const CE: &str = "node_edac_correctable_errors_total";
const UE: &str = "node_edac_uncorrectable_errors_total";
const CSROW_CE: &str = "node_edac_csrow_correctable_errors_total";
const CSROW_UE: &str = "node_edac_csrow_uncorrectable_errors_total";

fn help(name: &str) -> &'static str {
    match name {
        CE => "Total correctable memory errors.",
        UE => "Total uncorrectable memory errors.",
        CSROW_CE => "Total correctable memory errors for this csrow.",
        _ => "Total uncorrectable memory errors for this csrow.",
    }
}

impl Source for Edac {
    fn name(&self) -> &'static str {
        "edac"
    }

    fn collect(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
        let base = self.sysfs_root.join("devices/system/edac/mc");
        let mut out = Families::default();
        let result = (|| -> anyhow::Result<()> {
            let mut controllers = numbered(&base, "mc");
            controllers.sort_by(|a, b| a.1.cmp(&b.1));
            for (n, dir) in controllers {
                let n: String = n.chars().take_while(char::is_ascii_digit).collect();
                let count = |f: &str| -> anyhow::Result<f64> {
                    let v = read_attr(&dir.join(f))
                        .with_context(|| format!("couldn't get {f} for controller {n}"))?;
                    Ok(v.parse::<u64>()
                        .with_context(|| format!("couldn't get {f} for controller {n}"))?
                        as f64)
                };
                out.add(
                    Kind::Counter,
                    CE,
                    help(CE),
                    &[("controller", &n)],
                    count("ce_count")?,
                );
                out.add(
                    Kind::Counter,
                    CSROW_CE,
                    help(CSROW_CE),
                    &[("controller", &n), ("csrow", "unknown")],
                    count("ce_noinfo_count")?,
                );
                out.add(
                    Kind::Counter,
                    UE,
                    help(UE),
                    &[("controller", &n)],
                    count("ue_count")?,
                );
                out.add(
                    Kind::Counter,
                    CSROW_UE,
                    help(CSROW_UE),
                    &[("controller", &n), ("csrow", "unknown")],
                    count("ue_noinfo_count")?,
                );
                let mut rows = numbered(&dir, "csrow");
                rows.sort_by(|a, b| a.1.cmp(&b.1));
                for (row, rdir) in rows {
                    let row: String = row.chars().take_while(char::is_ascii_digit).collect();
                    let count = |f: &str| -> anyhow::Result<f64> {
                        let v = read_attr(&rdir.join(f)).with_context(|| {
                            format!("couldn't get {f} for controller/csrow {n}/{row}")
                        })?;
                        Ok(v.parse::<u64>().with_context(|| {
                            format!("couldn't get {f} for controller/csrow {n}/{row}")
                        })? as f64)
                    };
                    out.add(
                        Kind::Counter,
                        CSROW_CE,
                        help(CSROW_CE),
                        &[("controller", &n), ("csrow", &row)],
                        count("ce_count")?,
                    );
                    out.add(
                        Kind::Counter,
                        CSROW_UE,
                        help(CSROW_UE),
                        &[("controller", &n), ("csrow", &row)],
                        count("ue_count")?,
                    );
                }
            }
            Ok(())
        })();
        out.write(enc)?;
        result?;
        Ok(())
    }
}
