//! node_exporter's `zfs` collector: ZFS kstats from `<procfs>/spl/kstat/zfs/` (ARC,
//! dbuf, dmu_tx, dnode, fm, vdev, zfetch, zil, abd) and per pool (`<pool>/io`,
//! `<pool>/objset-*`, `<pool>/state`), untyped and named `node_zfs_<subsystem>_<kstat>`
//! as node_exporter names them. No ZFS module loaded: no data.

use std::path::{Path, PathBuf};

use anyhow::Context;
use prometheus_client::encoding::DescriptorEncoder;
use vigia_kit::{Source, SourceError};

use super::util::list;
use crate::config::HostConfig;
use crate::metrics::{Families, Kind};

/// (subsystem, kstat file).
const SUBSYSTEMS: [(&str, &str); 11] = [
    ("zfs_abd", "abdstats"),
    ("zfs_arc", "arcstats"),
    ("zfs_dbuf", "dbufstats"),
    ("zfs_dmu_tx", "dmu_tx"),
    ("zfs_dnode", "dnodestats"),
    ("zfs_fm", "fm"),
    ("zfs_vdev_cache", "vdev_cache_stats"),
    ("zfs_vdev_mirror", "vdev_mirror_stats"),
    ("zfs_xuio", "xuio_stats"),
    ("zfs_zfetch", "zfetchstats"),
    ("zfs_zil", "zil"),
];

const POOL_STATES: [&str; 7] = [
    "online",
    "degraded",
    "faulted",
    "offline",
    "removed",
    "unavail",
    "suspended",
];

/// (kstat name, value) of the int64 (type 3) and uint64 (type 4) rows after the
/// `name type data` header; a file without the header is an error.
fn parse_kstat(text: &str, file: &str) -> anyhow::Result<Vec<(String, f64)>> {
    let mut out = Vec::new();
    let mut started = false;
    for line in text.lines() {
        let parts: Vec<&str> = line.split_ascii_whitespace().collect();
        if !started && parts == ["name", "type", "data"] {
            started = true;
            continue;
        }
        if !started || parts.len() < 3 {
            continue;
        }
        let key = format!("kstat.zfs.misc.{file}.{}", parts[0]);
        let value = match parts[1] {
            "4" => parts[2].parse::<u64>().map(|v| v as f64).with_context(|| {
                format!("could not parse expected unsigned integer value for {key:?}")
            })?,
            "3" => parts[2].parse::<i64>().map(|v| v as f64).with_context(|| {
                format!("could not parse expected signed integer value for {key:?}")
            })?,
            _ => continue,
        };
        out.push((parts[0].to_string(), value));
    }
    anyhow::ensure!(started, "did not parse a single {file:?} metric");
    Ok(out)
}

fn metric_name(kstat: &str) -> String {
    kstat.replace('-', "_")
}

pub struct Zfs {
    procfs_root: PathBuf,
}

impl Zfs {
    pub fn new(config: &HostConfig) -> Self {
        Self {
            procfs_root: config.procfs_root.clone(),
        }
    }

    fn pools(&self, base: &Path, out: &mut Families) -> anyhow::Result<()> {
        let pools: Vec<String> = list(base)
            .unwrap_or_default()
            .into_iter()
            .filter(|p| base.join(p).is_dir())
            .collect();
        // io: a `nread nwritten ...` header and the values under it.
        let mut io: Vec<(String, String, String, f64)> = Vec::new();
        for pool in &pools {
            let path = base.join(pool).join("io");
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let mut fields: Option<Vec<String>> = None;
            for line in text.lines() {
                let parts: Vec<&str> = line.split_ascii_whitespace().collect();
                match &fields {
                    None if parts.len() >= 12 && parts[0] == "nread" => {
                        fields = Some(parts.iter().map(|s| s.to_string()).collect());
                    }
                    None => {}
                    Some(names) => {
                        for (i, name) in names.iter().enumerate() {
                            let key = format!("kstat.zfs.misc.io.{name}");
                            let v: u64 = parts
                                .get(i)
                                .with_context(|| {
                                    format!("could not parse expected integer value for {key:?}")
                                })?
                                .parse()
                                .with_context(|| {
                                    format!("could not parse expected integer value for {key:?}")
                                })?;
                            io.push((pool.clone(), metric_name(name), key, v as f64));
                        }
                    }
                }
            }
        }
        for (pool, name, key, v) in &io {
            out.add(
                Kind::Untyped,
                &format!("node_zfs_zpool_{name}"),
                key,
                &[("zpool", pool)],
                *v,
            );
        }
        // objset-*: a dataset's kstats, its name in the dataset_name row.
        let mut objsets: Vec<(String, String, String, f64)> = Vec::new();
        for pool in &pools {
            for file in list(&base.join(pool))
                .unwrap_or_default()
                .into_iter()
                .filter(|f| f.starts_with("objset-"))
            {
                let text = std::fs::read_to_string(base.join(pool).join(&file))
                    .with_context(|| format!("{pool}/{file}"))?;
                let mut started = false;
                let mut dataset = String::new();
                for line in text.lines() {
                    let parts: Vec<&str> = line.split_ascii_whitespace().collect();
                    if !started && parts == ["name", "type", "data"] {
                        started = true;
                        continue;
                    }
                    if !started || parts.len() < 3 {
                        continue;
                    }
                    if parts[0] == "dataset_name" {
                        dataset = line[line.find(parts[2]).unwrap_or(0)..].to_string();
                        continue;
                    }
                    if parts[1] == "4" {
                        let v: u64 = parts[2].parse().with_context(|| format!("could not parse expected integer value for \"kstat.zfs.misc.objset.{}\"", parts[0]))?;
                        objsets.push((
                            dataset.clone(),
                            metric_name(parts[0]),
                            pool.clone(),
                            v as f64,
                        ));
                    }
                }
                anyhow::ensure!(started, "did not parse a single {pool} {dataset} metric");
            }
        }
        for (dataset, name, pool, v) in &objsets {
            out.add(
                Kind::Untyped,
                &format!("node_zfs_zpool_dataset_{name}"),
                &format!("kstat.zfs.misc.objset.{name}"),
                &[("dataset", dataset), ("zpool", pool)],
                *v,
            );
        }
        for pool in &pools {
            let Ok(text) = std::fs::read_to_string(base.join(pool).join("state")) else {
                continue;
            };
            let actual = text.lines().next().unwrap_or("").to_lowercase();
            for s in POOL_STATES {
                out.add(
                    Kind::Gauge,
                    "node_zfs_zpool_state",
                    "kstat.zfs.misc.state",
                    &[("state", s), ("zpool", pool)],
                    f64::from(u8::from(actual == s)),
                );
            }
        }
        Ok(())
    }
}

impl Source for Zfs {
    fn name(&self) -> &'static str {
        "zfs"
    }

    fn collect(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
        let base = self.procfs_root.join("spl/kstat/zfs");
        if !base.exists() {
            return Err(SourceError::no_data(
                "ZFS / ZFS statistics are not available",
            ));
        }
        let mut out = Families::default();
        let result = (|| -> anyhow::Result<()> {
            for (subsystem, file) in SUBSYSTEMS {
                let Ok(text) = std::fs::read_to_string(base.join(file)) else {
                    continue;
                };
                for (kstat, v) in parse_kstat(&text, file)? {
                    out.add(
                        Kind::Untyped,
                        &format!("node_{subsystem}_{}", metric_name(&kstat)),
                        &format!("kstat.zfs.misc.{file}.{kstat}"),
                        &[],
                        v,
                    );
                }
            }
            self.pools(&base, &mut out)
        })();
        // What was read before an error is still written, as node_exporter.
        out.write(enc)?;
        result?;
        Ok(())
    }
}
