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

use crate::{cpu, diskstats, meminfo, netdev};

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

/// Cumulative readings; a feature vector is the difference of two.
#[derive(Debug, Clone)]
struct Reading {
    at: Instant,
    cpu_busy: f64,
    cpu_total: f64,
    procs_running: f64,
    memory_used: f64,
    rx: f64,
    tx: f64,
    read: f64,
    written: f64,
    processes: f64,
}

pub struct HostReader {
    pub procfs_root: PathBuf,
    pub disk_exclude: Option<regex::Regex>,
}

impl HostReader {
    fn read(&self) -> anyhow::Result<Reading> {
        let stat = cpu::read_stat(&self.procfs_root)?;
        let cpu_total: f64 = stat.total.modes.iter().sum();
        let cpu_busy = cpu_total - stat.total.modes[3] - stat.total.modes[4];
        let procs_running = stat.procs_running.unwrap_or(0.0);
        let mem = meminfo::read_meminfo(&self.procfs_root)?;
        let get = |k: &str| mem.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
        let memory_used = match (get("MemTotal_bytes"), get("MemAvailable_bytes")) {
            (Some(t), Some(a)) if t > 0.0 => (1.0 - a / t).clamp(0.0, 1.0),
            _ => 0.0,
        };
        // Loopback traffic is the host talking to itself (scrapes included): left out.
        let (mut rx, mut tx) = (0.0, 0.0);
        for i in netdev::read_net_dev(&self.procfs_root.join("net/dev"))? {
            if i.device != "lo" {
                rx += i.counters[0];
                tx += i.counters[8];
            }
        }
        let (mut read, mut written) = (0.0, 0.0);
        for d in diskstats::read_diskstats(&self.procfs_root, self.disk_exclude.as_ref())? {
            read += d.read_bytes;
            written += d.written_bytes;
        }
        let processes = std::fs::read_dir(&self.procfs_root)?
            .filter_map(Result::ok)
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
            })
            .count() as f64;
        Ok(Reading {
            at: Instant::now(),
            cpu_busy,
            cpu_total,
            procs_running,
            memory_used,
            rx,
            tx,
            read,
            written,
            processes,
        })
    }
}

/// The feature vector between two readings (rates per second; counters that went back,
/// after a device vanished, count as 0).
fn vector(a: &Reading, b: &Reading) -> Vec<f64> {
    let secs = b.at.duration_since(a.at).as_secs_f64().max(1e-3);
    let rate = |x0: f64, x1: f64| ((x1 - x0) / secs).max(0.0);
    let dt = b.cpu_total - a.cpu_total;
    let utilisation = if dt > 0.0 {
        ((b.cpu_busy - a.cpu_busy) / dt).clamp(0.0, 1.0)
    } else {
        0.0
    };
    vec![
        utilisation,
        b.procs_running,
        b.memory_used,
        rate(a.rx, b.rx),
        rate(a.tx, b.tx),
        rate(a.read, b.read),
        rate(a.written, b.written),
        b.processes,
    ]
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
        Self {
            score,
            warm,
            warmup_remaining,
            zscores,
        }
    }
}

/// Scores the host every `interval` until shutdown.
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
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.wait() => return,
        }
        let r = reader.clone();
        let reading = match tokio::task::spawn_blocking(move || r.read()).await {
            Ok(Ok(reading)) => reading,
            Ok(Err(e)) => {
                errors.inc("anomaly");
                tracing::warn!(error = %format!("{e:#}"), "anomaly: reading the host failed");
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "anomaly: reader task failed");
                continue;
            }
        };
        if let Some(before) = previous.replace(reading.clone()) {
            let x = vector(&before, &reading);
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
            cpu_busy: 10.0,
            cpu_total: 100.0,
            procs_running: 1.0,
            memory_used: 0.3,
            rx: 1000.0,
            tx: 500.0,
            read: 0.0,
            written: 4096.0,
            processes: 100.0,
        };
        let b = Reading {
            at: t0 + Duration::from_secs(2),
            cpu_busy: 13.0,
            cpu_total: 104.0,
            rx: 3000.0,
            tx: 400.0,
            procs_running: 3.0,
            ..a.clone()
        };
        let v = vector(&a, &b);
        assert_eq!(v.len(), features().len());
        assert_eq!(v[0], 0.75);
        assert_eq!(v[1], 3.0);
        assert_eq!(v[3], 1000.0);
        assert_eq!(v[4], 0.0, "a counter that went back is no negative rate");
        assert_eq!(v[7], 100.0);
    }
}
