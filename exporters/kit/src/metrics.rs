//! The metrics registry every exporter uses, with the self-metrics they all expose and
//! scrape-time [`Source`]s.
//!
//! Stateful metrics (counters a probe loop increments) are registered on
//! [`Metrics::registry_mut`]. Data read at scrape time (socket counts, /proc) comes from a
//! [`Source`]: it is called on every scrape, timed, and its failures are counted and
//! reported instead of failing the whole scrape, as node_exporter does per collector.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::exposition::{openmetrics_to_classic, Format};

/// Something read at scrape time.
pub trait Source: Send + Sync + 'static {
    /// The `collector` label of this source's self-metrics (`sockets`, `cgroups`, ...).
    fn name(&self) -> &'static str;

    /// Reads the data and encodes its metric families. Read everything first and encode
    /// after, so that a read error leaves no half-written family behind.
    fn collect(&self, encoder: &mut DescriptorEncoder<'_>) -> Result<(), SourceError>;
}

/// Why a source produced no data this scrape.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Something it needs could not be read: counted in `vigia_errors_total`, logged.
    #[error("{0}")]
    Read(#[from] anyhow::Error),
    /// Nothing to report on this machine (no such hardware, feature off in the kernel):
    /// success 0, as node_exporter's `ErrNoData`, but no error: it is counted nowhere and
    /// logged at debug level only, so `rate(vigia_errors_total[5m]) > 0` stays quiet.
    #[error("no data: {0}")]
    NoData(String),
    #[error("encoding failed")]
    Encode(#[from] fmt::Error),
}

impl SourceError {
    pub fn no_data(why: impl Into<String>) -> Self {
        SourceError::NoData(why.into())
    }
}

impl From<std::io::Error> for SourceError {
    fn from(e: std::io::Error) -> Self {
        SourceError::Read(e.into())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    pub source: String,
}

/// Counts errors by source (scrape-time sources, probe loops, the InfluxDB writer), so
/// that one alert rule covers every exporter: `rate(vigia_errors_total[5m]) > 0`.
#[derive(Clone, Debug, Default)]
pub struct ErrorCounter {
    family: Family<SourceLabel, Counter>,
}

impl ErrorCounter {
    pub fn inc(&self, source: &str) {
        self.family
            .get_or_create(&SourceLabel {
                source: source.to_string(),
            })
            .inc();
    }

    /// Makes the series exist at 0 before the first error, so `rate()` works from the start.
    pub fn touch(&self, source: &str) {
        let _ = self.family.get_or_create(&SourceLabel {
            source: source.to_string(),
        });
    }
}

#[derive(Debug, Default)]
struct LastScrape {
    /// (registration index, source name, duration, success) of the latest scrape.
    entries: Vec<(usize, &'static str, Duration, bool)>,
}

/// Names and HELP texts of the two per-source self-metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceStatsNames {
    pub duration: &'static str,
    pub duration_help: &'static str,
    pub success: &'static str,
    pub success_help: &'static str,
}

impl SourceStatsNames {
    /// Every vigia exporter's: `vigia_scrape_collector_{duration_seconds,success}`.
    pub const VIGIA: SourceStatsNames = SourceStatsNames {
        duration: "vigia_scrape_collector_duration_seconds",
        duration_help: "Time each scrape-time source took in this scrape",
        success: "vigia_scrape_collector_success",
        success_help: "Whether each scrape-time source succeeded in this scrape (1) or failed (0)",
    };
    /// node_exporter's own names and HELP texts, for an exporter that stands in for it
    /// (vigia-host), so its dashboards and alerts on failed collectors keep working.
    pub const NODE_EXPORTER: SourceStatsNames = SourceStatsNames {
        duration: "node_scrape_collector_duration_seconds",
        duration_help: "node_exporter: Duration of a collector scrape.",
        success: "node_scrape_collector_success",
        success_help: "node_exporter: Whether a collector succeeded.",
    };
}

/// The registry plus self-metrics; shared with the HTTP server behind an `Arc`.
pub struct Metrics {
    exporter: &'static str,
    registry: Registry,
    /// Encoded after `registry`, so it reports the durations measured in the same scrape.
    scrape_registry: Registry,
    last_scrape: Arc<Mutex<LastScrape>>,
    errors: ErrorCounter,
    /// One registry per scrape-time source, encoded after `registry` in registration
    /// order; each on its own so that several can be read at once.
    sources: Vec<Registry>,
    /// How many sources a scrape reads at once (1: one after the other).
    source_threads: usize,
    /// Scrapes are serialized: per-scrape durations must come from one scrape, and a
    /// source is read by one scrape at a time.
    scrape_lock: Mutex<()>,
    connections: Arc<crate::connections::ConnectionStats>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("exporter", &self.exporter)
            .finish_non_exhaustive()
    }
}

impl Metrics {
    /// A registry with `vigia_build_info` and `vigia_errors_total` already in it.
    pub fn new(exporter: &'static str) -> Self {
        Self::with_source_stats(exporter, SourceStatsNames::VIGIA)
    }

    /// As [`Metrics::new`], with the per-source self-metrics named `names`.
    pub fn with_source_stats(exporter: &'static str, names: SourceStatsNames) -> Self {
        let mut registry = Registry::default();
        registry.register(
            "vigia_build",
            "Build information of this vigia exporter; the value is always 1",
            Info::new(vec![
                ("exporter".to_string(), exporter.to_string()),
                ("version".to_string(), crate::VERSION.to_string()),
                ("revision".to_string(), crate::REVISION.to_string()),
            ]),
        );
        let errors = ErrorCounter::default();
        let last_scrape = Arc::new(Mutex::new(LastScrape::default()));
        let mut scrape_registry = Registry::default();
        // In the registry encoded last, so errors a source hits during this scrape are
        // already counted in this scrape's body.
        scrape_registry.register(
            "vigia_errors",
            "Errors by source: scrape-time collectors, probe loops, the InfluxDB writer",
            errors.family.clone(),
        );
        scrape_registry.register_collector(Box::new(ScrapeStats {
            last: last_scrape.clone(),
            names,
        }));
        let connections = Arc::new(crate::connections::ConnectionStats::default());
        scrape_registry.register_collector(Box::new(crate::connections::ConnectionCollector(
            connections.clone(),
        )));
        Self {
            exporter,
            registry,
            scrape_registry,
            last_scrape,
            errors,
            sources: Vec::new(),
            source_threads: 1,
            scrape_lock: Mutex::new(()),
            connections,
        }
    }

    /// What the HTTP server counts about its connections, exposed with this registry.
    pub fn connection_stats(&self) -> Arc<crate::connections::ConnectionStats> {
        self.connections.clone()
    }

    /// Lets a scrape read up to `threads` sources at the same time (each source still
    /// alone), for an exporter with many sources that wait on the kernel: the scrape
    /// takes about as long as its slowest share instead of the sum. 1 (the default)
    /// reads them one after the other.
    pub fn set_source_threads(&mut self, threads: usize) {
        self.source_threads = threads.max(1);
    }

    pub fn exporter(&self) -> &'static str {
        self.exporter
    }

    /// Where exporters register their own stateful metrics.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// The shared error counter.
    pub fn errors(&self) -> ErrorCounter {
        self.errors.clone()
    }

    /// Adds a scrape-time source; their families are written in registration order.
    pub fn register_source<S: Source>(&mut self, source: S) {
        self.errors.touch(source.name());
        let mut registry = Registry::default();
        registry.register_collector(Box::new(TimedSource {
            index: self.sources.len(),
            source: Box::new(source),
            last: self.last_scrape.clone(),
            errors: self.errors.clone(),
            failing: AtomicBool::new(false),
        }));
        self.sources.push(registry);
    }

    /// Each source's families, in registration order, read `source_threads` at a time.
    fn encode_sources(&self) -> Vec<Result<String, fmt::Error>> {
        let encode = |r: &Registry| {
            let mut body = String::new();
            prometheus_client::encoding::text::encode_registry(&mut body, r).map(|_| body)
        };
        let threads = self.source_threads.min(self.sources.len());
        if threads <= 1 {
            return self.sources.iter().map(encode).collect();
        }
        let next = AtomicUsize::new(0);
        let slots: Vec<Mutex<Option<Result<String, fmt::Error>>>> =
            self.sources.iter().map(|_| Mutex::new(None)).collect();
        let work = || loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(registry) = self.sources.get(i) else {
                break;
            };
            let body = encode(registry);
            *slots[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(body);
        };
        std::thread::scope(|scope| {
            for _ in 1..threads {
                scope.spawn(work);
            }
            work();
        });
        slots
            .into_iter()
            .map(|slot| {
                slot.into_inner()
                    .unwrap_or_else(|p| p.into_inner())
                    .unwrap_or(Err(fmt::Error))
            })
            .collect()
    }

    /// Runs one scrape and returns the body in the requested format. Blocking: sources
    /// read files and sockets; the server calls this off the async threads.
    pub fn encode(&self, format: Format) -> String {
        let _guard = self.scrape_lock.lock().unwrap_or_else(|p| p.into_inner());
        if let Ok(mut last) = self.last_scrape.lock() {
            last.entries.clear();
        }
        let mut om = String::with_capacity(16 * 1024);
        let result = prometheus_client::encoding::text::encode_registry(&mut om, &self.registry)
            .and_then(|_| {
                for body in self.encode_sources() {
                    om.push_str(&body?);
                }
                Ok(())
            })
            .and_then(|_| {
                prometheus_client::encoding::text::encode_registry(&mut om, &self.scrape_registry)
            })
            .and_then(|_| prometheus_client::encoding::text::encode_eof(&mut om));
        if let Err(e) = result {
            // Writing to a String only fails when a source returned an encoding error.
            tracing::error!(error = %e, "encoding metrics failed");
        }
        match format {
            Format::OpenMetrics => om,
            Format::Classic => openmetrics_to_classic(&om),
        }
    }
}

struct TimedSource {
    /// Its place among the sources, so the self-metrics list them in that order.
    index: usize,
    source: Box<dyn Source>,
    last: Arc<Mutex<LastScrape>>,
    errors: ErrorCounter,
    /// Whether the previous scrape failed: a failure is logged when it starts and when it
    /// ends, not on every scrape (a missing file would otherwise log every interval).
    failing: AtomicBool,
}

impl fmt::Debug for TimedSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimedSource")
            .field("source", &self.source.name())
            .finish()
    }
}

impl prometheus_client::collector::Collector for TimedSource {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let name = self.source.name();
        let start = Instant::now();
        let result = self.source.collect(&mut encoder);
        let elapsed = start.elapsed();
        let success = match result {
            Ok(()) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(source = name, "source recovered");
                }
                true
            }
            Err(SourceError::Encode(e)) => return Err(e),
            Err(SourceError::Read(e)) => {
                if self.failing.swap(true, Ordering::Relaxed) {
                    tracing::debug!(source = name, error = %format!("{e:#}"), "source still failing");
                } else {
                    tracing::warn!(source = name, error = %format!("{e:#}"), "source failed: its metrics are missing until it recovers (logged once)");
                }
                self.errors.inc(name);
                false
            }
            Err(SourceError::NoData(why)) => {
                tracing::debug!(source = name, reason = %why, "source has no data");
                false
            }
        };
        if let Ok(mut last) = self.last.lock() {
            last.entries.push((self.index, name, elapsed, success));
        }
        Ok(())
    }
}

#[derive(Debug)]
struct ScrapeStats {
    last: Arc<Mutex<LastScrape>>,
    names: SourceStatsNames,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CollectorLabel {
    collector: &'static str,
}

impl prometheus_client::collector::Collector for ScrapeStats {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let mut entries = match self.last.lock() {
            Ok(last) => last.entries.clone(),
            Err(_) => return Ok(()),
        };
        entries.sort_by_key(|e| e.0);
        if entries.is_empty() {
            return Ok(());
        }
        let mut family = encoder.encode_descriptor(
            self.names.duration,
            self.names.duration_help,
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for (_, name, elapsed, _) in &entries {
            let labels = CollectorLabel { collector: name };
            ConstGauge::new(elapsed.as_secs_f64()).encode(family.encode_family(&labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            self.names.success,
            self.names.success_help,
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for (_, name, _, success) in &entries {
            let labels = CollectorLabel { collector: name };
            ConstGauge::new(i64::from(*success)).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::MetricType;

    struct Fixed(bool);

    impl Source for Fixed {
        fn name(&self) -> &'static str {
            if self.0 {
                "good"
            } else {
                "bad"
            }
        }
        fn collect(&self, encoder: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
            if !self.0 {
                return Err(anyhow::anyhow!("cannot read").into());
            }
            let m = encoder.encode_descriptor("x_value", "X", None, MetricType::Gauge)?;
            ConstGauge::new(7i64).encode(m)?;
            Ok(())
        }
    }

    struct Absent;

    impl Source for Absent {
        fn name(&self) -> &'static str {
            "absent"
        }
        fn collect(&self, _: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
            Err(SourceError::no_data("no such hardware"))
        }
    }

    #[test]
    fn no_data_is_a_failed_scrape_but_no_error() {
        let mut m = Metrics::with_source_stats("vigia-test", SourceStatsNames::NODE_EXPORTER);
        m.register_source(Absent);
        m.register_source(Fixed(false));
        let text = m.encode(Format::Classic);
        assert!(text.contains("node_scrape_collector_success{collector=\"absent\"} 0\n"));
        assert!(text.contains("node_scrape_collector_success{collector=\"bad\"} 0\n"));
        assert!(text.contains(
            "# HELP node_scrape_collector_success node_exporter: Whether a collector succeeded.\n"
        ));
        assert!(text.contains("node_scrape_collector_duration_seconds{collector=\"absent\"} "));
        assert!(
            text.contains("vigia_errors_total{source=\"absent\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("vigia_errors_total{source=\"bad\"} 1\n"),
            "{text}"
        );
        assert!(!text.contains("vigia_scrape_collector"), "{text}");
    }

    #[test]
    fn sources_are_timed_and_failures_counted() {
        let mut m = Metrics::new("vigia-test");
        m.register_source(Fixed(true));
        m.register_source(Fixed(false));
        let text = m.encode(Format::Classic);
        assert!(text.contains("x_value 7\n"), "{text}");
        assert!(text.contains("vigia_scrape_collector_success{collector=\"good\"} 1\n"));
        assert!(text.contains("vigia_scrape_collector_success{collector=\"bad\"} 0\n"));
        assert!(
            text.contains("vigia_errors_total{source=\"bad\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE vigia_build_info gauge\n"));
        assert!(
            text.contains(&format!(",revision=\"{}\"}} 1\n", crate::REVISION)),
            "{text}"
        );
        let om = m.encode(Format::OpenMetrics);
        assert!(om.ends_with("# EOF\n"));
        assert!(
            om.contains("vigia_errors_total{source=\"bad\"} 2\n"),
            "{om}"
        );
    }
}
