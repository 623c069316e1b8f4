//! The host's anomaly score (seed 003's Isolation Forest, done as a streaming detector):
//! every `anomaly.interval` a feature vector of the host's state is scored by
//! `vigia-anomaly` against what the recent past looked like.

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use vigia_anomaly::{Detector, Feature, HalfSpaceTrees};
use vigia_kit::metrics::ErrorCounter;
use vigia_kit::shutdown::Shutdown;
use vigia_kit::Metrics;

use crate::collectors::Setup;
use crate::config::{HostConfig, DEFAULT_DISK_DEVICE_EXCLUDE};
use crate::node::util::NameFilter;
use crate::node::{diskstats, meminfo, netdev, stat};

/// The features, in vector order. Byte rates span orders of magnitude: log scale.
///
/// Load is the number of runnable tasks now (`procs_running`), not `load1`: `load1` is
/// that number's one-minute moving average, and its lag and slow decay look like a trend
/// the detector flags for minutes after any change (measured: calm scores of 1.0 from
/// load1 alone at 1 s intervals).
///
/// Each feature has a noise floor (smallest spread, [`Feature::min_spread`]) so that a
/// host that sat still for a window does not flag the next small move: 2 points of CPU,
/// half a runnable task, 1 % of memory, a factor of 1.65 in a byte rate (0.5 in log
/// units), two processes. Measured on a CI machine before the floors:
/// 23 of 60 calm intervals at 1.0 or 0.74, each explained by `memory_used_ratio`.
pub fn features() -> Vec<Feature> {
    const RATE_FLOOR: f64 = 0.5;
    vec![
        Feature::linear("cpu_utilisation").with_min_spread(0.02),
        Feature::linear("procs_running").with_min_spread(0.5),
        Feature::linear("memory_used_ratio").with_min_spread(0.01),
        Feature::log("network_receive_bytes_per_second").with_min_spread(RATE_FLOOR),
        Feature::log("network_transmit_bytes_per_second").with_min_spread(RATE_FLOOR),
        Feature::log("disk_read_bytes_per_second").with_min_spread(RATE_FLOOR),
        Feature::log("disk_written_bytes_per_second").with_min_spread(RATE_FLOOR),
        Feature::linear("processes").with_min_spread(2.0),
    ]
}

/// The files a reading comes from, each read on its own: one that cannot be read holds
/// its features at their last value (0 before the first) and the score goes on from the
/// others.
const PARTS: [&str; 5] = ["stat", "meminfo", "net/dev", "diskstats", "processes"];

/// Which `PARTS` entry each feature (in `features()` order) comes from.
const FEATURE_PART: [usize; 8] = [0, 0, 1, 2, 2, 3, 3, 4];

/// Cumulative readings; a feature vector is the difference of two. A part is `None`
/// when its file could not be read this time.
#[derive(Debug, Clone)]
struct Reading {
    at: Instant,
    /// (busy seconds, total seconds, runnable tasks) from `stat`.
    cpu: Option<(f64, f64, f64)>,
    memory_used: Option<f64>,
    /// (received, transmitted) bytes without `lo`.
    net: Option<(f64, f64)>,
    /// (read, written) bytes of whole disks.
    disk: Option<(f64, f64)>,
    processes: Option<f64>,
}

pub struct HostReader {
    pub procfs_root: PathBuf,
    pub disk_filter: NameFilter,
}

impl HostReader {
    /// Reads every part; returns the reading and the error of each part that failed.
    fn read(&self) -> (Reading, [Option<String>; 5]) {
        let mut errors: [Option<String>; 5] = Default::default();
        fn keep<T>(errors: &mut [Option<String>; 5], i: usize, r: anyhow::Result<T>) -> Option<T> {
            r.map_err(|e| errors[i] = Some(format!("{e:#}"))).ok()
        }
        let cpu = keep(
            &mut errors,
            0,
            stat::read_stat(&self.procfs_root).map(|s| {
                let total: f64 = s.total.modes.iter().sum();
                let busy = total - s.total.modes[3] - s.total.modes[4];
                (busy, total, s.procs_running.unwrap_or(0.0))
            }),
        );
        let memory_used = keep(
            &mut errors,
            1,
            meminfo::read_meminfo(&self.procfs_root).map(|mem| {
                let get = |k: &str| mem.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
                match (get("MemTotal_bytes"), get("MemAvailable_bytes")) {
                    (Some(t), Some(a)) if t > 0.0 => (1.0 - a / t).clamp(0.0, 1.0),
                    _ => 0.0,
                }
            }),
        );
        // Loopback traffic is the host talking to itself (scrapes included): left out.
        let net = keep(
            &mut errors,
            2,
            netdev::read_net_dev(&self.procfs_root.join("net/dev")).map(|ifaces| {
                ifaces
                    .iter()
                    .filter(|i| i.device != "lo")
                    .fold((0.0, 0.0), |(rx, tx), i| {
                        (rx + i.counters[0], tx + i.counters[8])
                    })
            }),
        );
        let disk = keep(
            &mut errors,
            3,
            diskstats::read_diskstats(&self.procfs_root, &self.disk_filter).map(|disks| {
                disks.iter().fold((0.0, 0.0), |(r, w), d| {
                    (r + d.read_bytes(), w + d.written_bytes())
                })
            }),
        );
        let processes = keep(
            &mut errors,
            4,
            std::fs::read_dir(&self.procfs_root)
                .map(|entries| {
                    entries
                        .filter_map(Result::ok)
                        .filter(|e| {
                            e.file_name()
                                .to_str()
                                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
                        })
                        .count() as f64
                })
                .map_err(anyhow::Error::from),
        );
        (
            Reading {
                at: Instant::now(),
                cpu,
                memory_used,
                net,
                disk,
                processes,
            },
            errors,
        )
    }
}

/// The feature vector between two readings (rates per second; counters that went back,
/// after a device vanished, count as 0). A feature whose part is missing from either
/// reading keeps its value in `held` (the previous vector); `available` says which did
/// not.
fn vector(a: &Reading, b: &Reading, held: &[f64]) -> (Vec<f64>, [bool; 8]) {
    let secs = b.at.duration_since(a.at).as_secs_f64().max(1e-3);
    let rate = |x0: f64, x1: f64| ((x1 - x0) / secs).max(0.0);
    let mut v: Vec<f64> = held.to_vec();
    v.resize(8, 0.0);
    let mut available = [false; 8];
    if let (Some((busy0, total0, _)), Some((busy1, total1, running))) = (a.cpu, b.cpu) {
        let dt = total1 - total0;
        v[0] = if dt > 0.0 {
            ((busy1 - busy0) / dt).clamp(0.0, 1.0)
        } else {
            0.0
        };
        v[1] = running;
        available[0] = true;
        available[1] = true;
    }
    if let Some(m) = b.memory_used {
        v[2] = m;
        available[2] = true;
    }
    if let (Some((rx0, tx0)), Some((rx1, tx1))) = (a.net, b.net) {
        v[3] = rate(rx0, rx1);
        v[4] = rate(tx0, tx1);
        available[3] = true;
        available[4] = true;
    }
    if let (Some((r0, w0)), Some((r1, w1))) = (a.disk, b.disk) {
        v[5] = rate(r0, r1);
        v[6] = rate(w0, w1);
        available[5] = true;
        available[6] = true;
    }
    if let Some(p) = b.processes {
        v[7] = p;
        available[7] = true;
    }
    (v, available)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct FeatureLabel {
    feature: String,
}

/// The gauges the scoring loop sets.
#[derive(Clone)]
pub struct AnomalyGauges {
    score: Gauge<f64, AtomicU64>,
    warm: Gauge,
    warmup_remaining: Gauge,
    zscores: Family<FeatureLabel, Gauge<f64, AtomicU64>>,
    available: Family<FeatureLabel, Gauge>,
}

impl AnomalyGauges {
    /// `window_size` is the detector's: the first reading gives no vector (rates need two
    /// readings), so warm-up lasts `window_size + 1` intervals from start.
    pub fn register(metrics: &mut Metrics, threshold: f64, window_size: usize) -> Self {
        let score = Gauge::<f64, AtomicU64>::default();
        let warm = Gauge::default();
        let warmup_remaining = Gauge::default();
        warmup_remaining.set(
            i64::try_from(window_size)
                .unwrap_or(i64::MAX)
                .saturating_add(1),
        );
        let threshold_gauge = Gauge::<f64, AtomicU64>::default();
        threshold_gauge.set(threshold);
        let zscores = Family::<FeatureLabel, Gauge<f64, AtomicU64>>::default();
        let available = Family::<FeatureLabel, Gauge>::default();
        let r = metrics.registry_mut();
        r.register(
            "vigia_host_anomaly_score",
            "Anomaly score of the host's latest feature vector, 0 (usual) to 1 (never seen); 0 during warm-up",
            score.clone(),
        );
        r.register(
            "vigia_host_anomaly_warm",
            "Whether the anomaly detector has learned its first window (1) or is warming up (0)",
            warm.clone(),
        );
        r.register(
            "vigia_host_anomaly_warmup_remaining_intervals",
            "Scoring intervals (anomaly.interval) left before the detector has learned its first window; 0 once warm",
            warmup_remaining.clone(),
        );
        r.register(
            "vigia_host_anomaly_threshold",
            "Score at or above which the host counts as anomalous (anomaly.threshold)",
            threshold_gauge,
        );
        r.register(
            "vigia_host_anomaly_feature_zscore",
            "Robust z-score of each feature against the reference window: which feature moved",
            zscores.clone(),
        );
        r.register(
            "vigia_host_anomaly_feature_available",
            "Whether each feature was read in the latest interval (1); 0 when its file could not be read and it is held at its last value",
            available.clone(),
        );
        Self {
            score,
            warm,
            warmup_remaining,
            zscores,
            available,
        }
    }
}

/// The collector table's constructor: the detector, its gauges, and the scoring loop.
pub fn register(s: &mut Setup<'_>) {
    let config: &HostConfig = s.config;
    let detector = match HalfSpaceTrees::new(&config.anomaly.detector(), features()) {
        Ok(d) => d,
        Err(p) => {
            // Validation checked the same settings; reaching this is a bug, said once.
            tracing::error!(path = %p.path, message = %p.message, "anomaly: detector not built: no anomaly score");
            return;
        }
    };
    let gauges = AnomalyGauges::register(
        s.metrics,
        config.anomaly.threshold,
        config.anomaly.window_size,
    );
    let reader = HostReader {
        procfs_root: config.procfs_root.clone(),
        disk_filter: HostConfig::filter(&config.diskstats, Some(DEFAULT_DISK_DEVICE_EXCLUDE)),
    };
    s.tasks.push(tokio::spawn(run(
        reader,
        detector,
        config.anomaly.interval,
        gauges,
        s.metrics.errors(),
        s.shutdown.clone(),
    )));
}

/// Scores the host every `interval` until shutdown. A part that cannot be read is said
/// once when it starts failing and once when it is back, not every interval.
pub async fn run(
    reader: HostReader,
    mut detector: HalfSpaceTrees,
    interval: Duration,
    gauges: AnomalyGauges,
    errors: ErrorCounter,
    shutdown: Shutdown,
) {
    let names: Vec<String> = detector.features().iter().map(|f| f.name.clone()).collect();
    let reader = std::sync::Arc::new(reader);
    let mut previous: Option<Reading> = None;
    let mut held: Vec<f64> = vec![0.0; names.len()];
    let mut failing = [false; 5];
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.wait() => return,
        }
        let r = reader.clone();
        let (reading, read_errors) = match tokio::task::spawn_blocking(move || r.read()).await {
            Ok(read) => read,
            Err(e) => {
                tracing::error!(error = %e, "anomaly: reader task failed");
                continue;
            }
        };
        for (i, error) in read_errors.iter().enumerate() {
            match (error, failing[i]) {
                (Some(e), false) => {
                    let held_features: Vec<&str> = FEATURE_PART
                        .iter()
                        .zip(&names)
                        .filter(|(p, _)| **p == i)
                        .map(|(_, n)| n.as_str())
                        .collect();
                    tracing::warn!(
                        part = PARTS[i],
                        error = %e,
                        features = %held_features.join(","),
                        "anomaly: cannot read a part of the host: its features are held at their last value and the score goes on from the others (logged once until it reads again)"
                    );
                }
                (None, true) => {
                    tracing::info!(part = PARTS[i], "anomaly: part of the host readable again");
                }
                _ => {}
            }
            if error.is_some() {
                errors.inc("anomaly");
            }
            failing[i] = error.is_some();
        }
        if let Some(before) = previous.replace(reading.clone()) {
            let (x, available) = vector(&before, &reading, &held);
            for (name, ok) in names.iter().zip(available) {
                gauges
                    .available
                    .get_or_create(&FeatureLabel {
                        feature: name.clone(),
                    })
                    .set(i64::from(ok));
            }
            held.clone_from(&x);
            match detector.score_and_learn(&x) {
                Ok(score) => {
                    gauges.score.set(score.value);
                    // From the detector, not from this score: the point that completes the
                    // first window was scored cold, yet the detector is warm from now on,
                    // and `warm` must turn 1 when the remaining intervals reach 0.
                    gauges.warm.set(i64::from(detector.warm()));
                    gauges
                        .warmup_remaining
                        .set(i64::try_from(detector.warmup_remaining()).unwrap_or(i64::MAX));
                    for (name, z) in names.iter().zip(&score.contributions) {
                        gauges
                            .zscores
                            .get_or_create(&FeatureLabel {
                                feature: name.clone(),
                            })
                            .set(*z);
                    }
                    tracing::debug!(score = score.value, warm = score.warm, features = ?x, "anomaly scored");
                }
                Err(e) => {
                    errors.inc("anomaly");
                    tracing::error!(error = %e, "anomaly: feature vector rejected");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vector_is_rates_and_levels() {
        let t0 = Instant::now();
        let a = Reading {
            at: t0,
            cpu: Some((10.0, 100.0, 1.0)),
            memory_used: Some(0.3),
            net: Some((1000.0, 500.0)),
            disk: Some((0.0, 4096.0)),
            processes: Some(100.0),
        };
        let b = Reading {
            at: t0 + Duration::from_secs(2),
            cpu: Some((13.0, 104.0, 3.0)),
            net: Some((3000.0, 400.0)),
            ..a.clone()
        };
        let (v, available) = vector(&a, &b, &[]);
        assert_eq!(v.len(), features().len());
        assert_eq!(FEATURE_PART.len(), features().len());
        assert!(available.iter().all(|a| *a));
        assert_eq!(v[0], 0.75);
        assert_eq!(v[1], 3.0);
        assert_eq!(v[3], 1000.0);
        assert_eq!(v[4], 0.0, "a counter that went back is no negative rate");
        assert_eq!(v[7], 100.0);
        // net/dev gone: its two features keep the last vector's values, the rest move on.
        let c = Reading {
            at: t0 + Duration::from_secs(4),
            net: None,
            cpu: Some((15.0, 108.0, 2.0)),
            ..b.clone()
        };
        let (w, available) = vector(&b, &c, &v);
        assert_eq!((w[3], w[4]), (1000.0, 0.0));
        assert_eq!(w[0], 0.5);
        assert!(!available[3] && !available[4] && available[0] && available[7]);
    }
}
