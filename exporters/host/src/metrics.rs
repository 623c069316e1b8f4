//! How collectors write their families: scrape-time values with label sets built at
//! runtime (device names, mount points), encoded as constant gauges and counters.
//!
//! Every collector reads all its data first and encodes afterwards, so a read error leaves
//! no half-written family (see `vigia_kit::Source`).

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

/// Label pairs of one series, in the order they are written.
pub type Labels<'a> = Vec<(&'static str, &'a str)>;

/// One series of a family: its labels and value.
pub struct Sample<'a> {
    pub labels: Labels<'a>,
    pub value: f64,
}

impl<'a> Sample<'a> {
    pub fn new(labels: Labels<'a>, value: f64) -> Self {
        Self { labels, value }
    }

    pub fn bare(value: f64) -> Self {
        Self {
            labels: Vec::new(),
            value,
        }
    }
}

/// node_exporter's HELP texts end with a period; `encode_descriptor` (unlike
/// `Registry::register`) adds none, so it is added here and help strings stay without one.
fn with_period(help: &str) -> String {
    format!("{help}.")
}

/// Writes a gauge family. `help` carries no trailing period.
pub fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    samples: &[Sample<'_>],
) -> Result<(), std::fmt::Error> {
    if samples.is_empty() {
        return Ok(());
    }
    let mut family =
        encoder.encode_descriptor(name, &with_period(help), None, MetricType::Gauge)?;
    if let [only] = samples {
        if only.labels.is_empty() {
            return ConstGauge::new(only.value).encode(family);
        }
    }
    for s in samples {
        ConstGauge::new(s.value).encode(family.encode_family(&s.labels)?)?;
    }
    Ok(())
}

/// Writes a counter family; `name` is given without `_total`, which the encoder appends.
pub fn counter(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    samples: &[Sample<'_>],
) -> Result<(), std::fmt::Error> {
    if samples.is_empty() {
        return Ok(());
    }
    let mut family =
        encoder.encode_descriptor(name, &with_period(help), None, MetricType::Counter)?;
    if let [only] = samples {
        if only.labels.is_empty() {
            return ConstCounter::new(only.value).encode(family);
        }
    }
    for s in samples {
        ConstCounter::new(s.value).encode(family.encode_family(&s.labels)?)?;
    }
    Ok(())
}
