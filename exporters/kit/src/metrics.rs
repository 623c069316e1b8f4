//! The metrics registry every exporter uses, with the self-metrics they all expose and
//! scrape-time [`Source`]s.
//!
//! Stateful metrics (counters a probe loop increments) are registered on
//! [`Metrics::registry_mut`]. Data read at scrape time (socket counts, /proc) comes from a
//! [`Source`]: it is called on every scrape, timed, and its failures are counted and
//! reported instead of failing the whole scrape, as node_exporter does per collector.

use std::fmt;
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
    #[error("{0}")]
    Read(#[from] anyhow::Error),
    #[error("encoding failed")]
    Encode(#[from] fmt::Error),
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
    /// (source name, duration, success) of the latest scrape, in registration order.
    entries: Vec<(&'static str, Duration, bool)>,
}

/// The registry plus self-metrics; shared with the HTTP server behind an `Arc`.
pub struct Metrics {
    exporter: &'static str,
    registry: Registry,
    /// Encoded after `registry`, so it reports the durations measured in the same scrape.
    scrape_registry: Registry,
    last_scrape: Arc<Mutex<LastScrape>>,
    errors: ErrorCounter,
    /// Scrapes are serialized: sources are cheap to read once but not to read in parallel,
    /// and per-scrape durations must come from one scrape.
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
            scrape_lock: Mutex::new(()),
            connections,
        }
    }

    /// What the HTTP server counts about its connections, exposed with this registry.
    pub fn connection_stats(&self) -> Arc<crate::connections::ConnectionStats> {
        self.connections.clone()
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

    /// Adds a scrape-time source; sources are read in registration order.
    pub fn register_source<S: Source>(&mut self, source: S) {
        self.errors.touch(source.name());
        self.registry.register_collector(Box::new(TimedSource {
            source: Box::new(source),
            last: self.last_scrape.clone(),
            errors: self.errors.clone(),
        }));
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
    source: Box<dyn Source>,
    last: Arc<Mutex<LastScrape>>,
    errors: ErrorCounter,
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
            Ok(()) => true,
            Err(SourceError::Encode(e)) => return Err(e),
            Err(SourceError::Read(e)) => {
                tracing::warn!(source = name, error = %format!("{e:#}"), "source failed this scrape");
                self.errors.inc(name);
                false
            }
        };
        if let Ok(mut last) = self.last.lock() {
            last.entries.push((name, elapsed, success));
        }
        Ok(())
    }
}

#[derive(Debug)]
struct ScrapeStats {
    last: Arc<Mutex<LastScrape>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CollectorLabel {
    collector: &'static str,
}

impl prometheus_client::collector::Collector for ScrapeStats {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let entries = match self.last.lock() {
            Ok(last) => last.entries.clone(),
            Err(_) => return Ok(()),
        };
        if entries.is_empty() {
            return Ok(());
        }
        let mut family = encoder.encode_descriptor(
            "vigia_scrape_collector_duration_seconds",
            "Time each scrape-time source took in this scrape",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for (name, elapsed, _) in &entries {
            let labels = CollectorLabel { collector: name };
            ConstGauge::new(elapsed.as_secs_f64()).encode(family.encode_family(&labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "vigia_scrape_collector_success",
            "Whether each scrape-time source succeeded in this scrape (1) or failed (0)",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for (name, _, success) in &entries {
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
