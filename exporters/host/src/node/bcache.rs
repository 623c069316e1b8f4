//! node_exporter's `bcache` collector: bcache cache sets from `<sysfs>/fs/bcache/<uuid>/`
//! (btree, journal, congestion), their backing devices (`bdev*`: dirty data, writeback
//! rate, hit and miss totals) and cache devices (`cache*`: errors, bytes written). Sizes
//! in sysfs are human-readable (`1.5M`) and read as the procfs library reads them.
//! The costly `priority_stats` (`--collector.bcache.priorityStats`, off by default) are
//! not read.

use std::path::{Path, PathBuf};

use anyhow::Context;
use prometheus_client::encoding::DescriptorEncoder;
use vigia_kit::{Source, SourceError};

use super::thermal_zone::numbered;
use super::util::list;
use crate::config::HostConfig;
use crate::metrics::{Families, Kind};

/// `1.5M`: an integer part plus tenths-of-1024 digits, times a binary multiplier.
fn pseudo_float(s: &str) -> anyhow::Result<f64> {
    let mut parts = s.splitn(3, '.');
    let int: f64 = parts
        .next()
        .unwrap_or("")
        .parse()
        .with_context(|| format!("{s:?}"))?;
    match parts.next() {
        None => Ok(int),
        Some(frac) => Ok(int + frac.parse::<f64>().with_context(|| format!("{s:?}"))? / 10.24),
    }
}

/// The procfs library's `dehumanize`: `123`, `1.5k`, `2.0M`, ... as a whole number.
pub fn dehumanize(s: &str) -> anyhow::Result<f64> {
    let last = *s.as_bytes().last().context("zero-length reply")?;
    if last > b'9' {
        let mul: f64 = match last {
            b'k' => 1024.0,
            b'M' => 1024f64.powi(2),
            b'G' => 1024f64.powi(3),
            b'T' => 1024f64.powi(4),
            b'P' => 1024f64.powi(5),
            b'E' => 1024f64.powi(6),
            b'Z' => 1024f64.powi(7),
            b'Y' => 1024f64.powi(8),
            _ => 0.0,
        };
        Ok((pseudo_float(&s[..s.len() - 1])? * mul).trunc().max(0.0))
    } else {
        Ok(s.parse::<f64>()
            .with_context(|| format!("{s:?}"))?
            .trunc()
            .max(0.0))
    }
}

fn signed(s: &str) -> anyhow::Result<f64> {
    match s.strip_prefix('-') {
        Some(rest) => Ok(-dehumanize(rest)?),
        None => dehumanize(s),
    }
}

/// A value file: missing → 0; the last byte (the newline) is dropped, as the library does.
fn value(path: &Path) -> anyhow::Result<f64> {
    match std::fs::read_to_string(path) {
        Ok(t) => {
            let t = &t[..t.len().saturating_sub(1)];
            dehumanize(t).with_context(|| path.display().to_string())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0.0),
        Err(_) => anyhow::bail!("failed to read: {}", path.display()),
    }
}

/// (rate, target, proportional, integral, change) from `writeback_rate_debug`.
fn writeback(path: &Path) -> anyhow::Result<[f64; 5]> {
    let text = std::fs::read_to_string(path)
        .map_err(|_| anyhow::anyhow!("failed to read: {}", path.display()))?;
    let mut out = [0.0; 5];
    for line in text.lines() {
        let last = line.split_ascii_whitespace().last().unwrap_or("");
        let parsed = if line.starts_with("rate:") {
            Some((0, dehumanize(last.trim_end_matches("/sec"))?))
        } else if line.starts_with("target:") {
            Some((1, dehumanize(last)?))
        } else if line.starts_with("proportional:") {
            Some((2, signed(last)?))
        } else if line.starts_with("integral:") {
            Some((3, signed(last)?))
        } else if line.starts_with("change:") {
            Some((4, signed(last.trim_end_matches("/sec"))?))
        } else if line.starts_with("dirty:") {
            dehumanize(last)?;
            None
        } else if line.starts_with("next io:") {
            last.trim_end_matches("ms")
                .parse::<i64>()
                .context("next io")?;
            None
        } else {
            None
        };
        if let Some((i, v)) = parsed {
            out[i] = v;
        }
    }
    Ok(out)
}

/// (file, family suffix, help) of a set's own values; `internal/` ones after.
const SET: [(&str, &str, &str, Kind, f64); 10] = [
    ("average_key_size", "average_key_size_sectors", "Average data per key in the btree (sectors).", Kind::Gauge, 1.0),
    ("btree_cache_size", "btree_cache_size_bytes", "Amount of memory currently used by the btree cache.", Kind::Gauge, 1.0),
    ("cache_available_percent", "cache_available_percent", "Percentage of cache device without dirty data, usable for writeback (may contain clean cached data).", Kind::Gauge, 1.0),
    ("congested", "congested", "Congestion.", Kind::Gauge, 1.0),
    ("root_usage_percent", "root_usage_percent", "Percentage of the root btree node in use (tree depth increases if too high).", Kind::Gauge, 1.0),
    ("tree_depth", "tree_depth", "Depth of the btree.", Kind::Gauge, 1.0),
    ("internal/active_journal_entries", "active_journal_entries", "Number of journal entries that are newer than the index.", Kind::Gauge, 1.0),
    ("internal/btree_nodes", "btree_nodes", "Total nodes in the btree.", Kind::Gauge, 1.0),
    ("internal/btree_read_average_duration_us", "btree_read_average_duration_seconds", "Average btree read duration.", Kind::Gauge, 1e-9),
    ("internal/cache_read_races", "cache_read_races_total", "Counts instances where while data was being read from the cache, the bucket was reused and invalidated - i.e. where the pointer was stale after the read completed.", Kind::Counter, 1.0),
];

const PERIOD: [&str; 7] = [
    "bypassed",
    "cache_bypass_hits",
    "cache_bypass_misses",
    "cache_hits",
    "cache_miss_collisions",
    "cache_misses",
    "cache_readaheads",
];

/// (stats_total file, family suffix, help).
const TOTALS: [(&str, &str, &str); 6] = [
    (
        "bypassed",
        "bypassed_bytes_total",
        "Amount of IO (both reads and writes) that has bypassed the cache.",
    ),
    (
        "cache_hits",
        "cache_hits_total",
        "Hits counted per individual IO as bcache sees them.",
    ),
    (
        "cache_misses",
        "cache_misses_total",
        "Misses counted per individual IO as bcache sees them.",
    ),
    (
        "cache_bypass_hits",
        "cache_bypass_hits_total",
        "Hits for IO intended to skip the cache.",
    ),
    (
        "cache_bypass_misses",
        "cache_bypass_misses_total",
        "Misses for IO intended to skip the cache.",
    ),
    (
        "cache_miss_collisions",
        "cache_miss_collisions_total",
        "Instances where data insertion from cache miss raced with write (data already present).",
    ),
];

/// One series: (kind, name, HELP, labels, value).
type Row<'a> = (Kind, String, &'a str, Vec<(&'a str, String)>, f64);

pub struct Bcache {
    sysfs_root: PathBuf,
}

impl Bcache {
    pub fn new(config: &HostConfig) -> Self {
        Self {
            sysfs_root: config.sysfs_root.clone(),
        }
    }

    fn set(&self, dir: &Path, uuid: &str, out: &mut Families) -> anyhow::Result<()> {
        let mut rows: Vec<Row> = Vec::new();
        for (file, suffix, help, kind, factor) in SET {
            let v = value(&dir.join(file))?;
            rows.push((
                kind,
                format!("node_bcache_{suffix}"),
                help,
                vec![],
                v * factor,
            ));
        }
        for sub in ["stats_five_minute", "stats_total"] {
            for f in PERIOD {
                value(&dir.join(sub).join(f))?;
            }
        }
        let mut bdevs = numbered(dir, "bdev");
        bdevs.sort_by(|a, b| a.1.cmp(&b.1));
        for (_, bdir) in &bdevs {
            let name = bdir
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("")
                .to_string();
            let l = vec![("backing_device", name.clone())];
            let dirty = value(&bdir.join("dirty_data"))?;
            let wb = writeback(&bdir.join("writeback_rate_debug"))?;
            for f in PERIOD {
                value(&bdir.join("stats_five_minute").join(f))?;
            }
            rows.push((
                Kind::Gauge,
                "node_bcache_dirty_data_bytes".into(),
                "Amount of dirty data for this backing device in the cache.",
                l.clone(),
                dirty,
            ));
            rows.push((
                Kind::Gauge,
                "node_bcache_dirty_target_bytes".into(),
                "Current dirty data target threshold for this backing device in bytes.",
                l.clone(),
                wb[1],
            ));
            rows.push((
                Kind::Gauge,
                "node_bcache_writeback_rate".into(),
                "Current writeback rate for this backing device in bytes.",
                l.clone(),
                wb[0],
            ));
            rows.push((
                Kind::Gauge,
                "node_bcache_writeback_rate_proportional_term".into(),
                "Current result of proportional controller, part of writeback rate",
                l.clone(),
                wb[2],
            ));
            rows.push((
                Kind::Gauge,
                "node_bcache_writeback_rate_integral_term".into(),
                "Current result of integral controller, part of writeback rate",
                l.clone(),
                wb[3],
            ));
            rows.push((
                Kind::Gauge,
                "node_bcache_writeback_change".into(),
                "Last writeback rate change step for this backing device.",
                l.clone(),
                wb[4],
            ));
            let totals = bdir.join("stats_total");
            for (file, suffix, help) in TOTALS {
                rows.push((
                    Kind::Counter,
                    format!("node_bcache_{suffix}"),
                    help,
                    l.clone(),
                    value(&totals.join(file))?,
                ));
            }
            let readaheads = value(&totals.join("cache_readaheads"))?;
            if readaheads != 0.0 {
                rows.push((
                    Kind::Counter,
                    "node_bcache_cache_readaheads_total".into(),
                    "Count of times readahead occurred.",
                    l.clone(),
                    readaheads,
                ));
            }
        }
        let mut caches = numbered(dir, "cache");
        caches.sort_by(|a, b| a.1.cmp(&b.1));
        for (_, cdir) in &caches {
            let name = cdir
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("")
                .to_string();
            let l = vec![("cache_device", name)];
            rows.push((
                Kind::Gauge,
                "node_bcache_io_errors".into(),
                "Number of errors that have occurred, decayed by io_error_halflife.",
                l.clone(),
                value(&cdir.join("io_errors"))?,
            ));
            rows.push((
                Kind::Counter,
                "node_bcache_metadata_written_bytes_total".into(),
                "Sum of all non data writes (btree writes and all other metadata).",
                l.clone(),
                value(&cdir.join("metadata_written"))?,
            ));
            rows.push((
                Kind::Counter,
                "node_bcache_written_bytes_total".into(),
                "Sum of all data that has been written to the cache.",
                l.clone(),
                value(&cdir.join("written"))?,
            ));
        }
        for (kind, name, help, extra, v) in rows {
            let mut labels: Vec<(&str, &str)> = vec![("uuid", uuid)];
            labels.extend(extra.iter().map(|(k, v)| (*k, v.as_str())));
            out.add(kind, &name, help, &labels, v);
        }
        Ok(())
    }
}

impl Source for Bcache {
    fn name(&self) -> &'static str {
        "bcache"
    }

    fn collect(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
        let base = self.sysfs_root.join("fs/bcache");
        let mut out = Families::default();
        for uuid in list(&base)
            .unwrap_or_default()
            .into_iter()
            .filter(|n| n.contains('-'))
        {
            self.set(&base.join(&uuid), &uuid, &mut out)
                .context("failed to retrieve bcache stats")?;
        }
        out.write(enc)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn dehumanizes_as_the_procfs_library() {
        assert_eq!(super::dehumanize("542").unwrap(), 542.0);
        assert_eq!(
            super::dehumanize("1.5k").unwrap(),
            ((1.0 + 5.0 / 10.24) * 1024.0f64).trunc()
        );
        assert_eq!(super::dehumanize("2M").unwrap(), 2.0 * 1024.0 * 1024.0);
        assert_eq!(
            super::signed("-1.1k").unwrap(),
            -((1.0 + 1.0 / 10.24) * 1024.0f64).trunc()
        );
        assert!(super::dehumanize("").is_err());
    }
}
