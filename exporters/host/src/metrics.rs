//! How collectors write their families: scrape-time values with label sets built at
//! runtime (device names, mount points), encoded as constant gauges, counters and
//! untyped samples, with node_exporter's names and HELP texts given verbatim.
//!
//! Every collector reads all its data first and encodes afterwards, so a read error leaves
//! no half-written family (see `vigia_kit::Source`).

use std::borrow::Cow;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

/// Label pairs of one series, in the order they are written.
pub type Labels<'a> = Vec<(&'a str, &'a str)>;

/// Label pairs owned by a series built at runtime.
pub type OwnedLabels = Vec<(String, String)>;

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

/// HELP as the text format wants it: backslashes and newlines escaped.
fn escape_help(help: &str) -> Cow<'_, str> {
    if help.contains(['\\', '\n']) {
        Cow::Owned(help.replace('\\', "\\\\").replace('\n', "\\n"))
    } else {
        Cow::Borrowed(help)
    }
}

fn family(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: &[Sample<'_>],
) -> Result<(), std::fmt::Error> {
    if samples.is_empty() {
        return Ok(());
    }
    let mut family = encoder.encode_descriptor(name, &escape_help(help), None, kind)?;
    let counter = matches!(kind, MetricType::Counter);
    if let [only] = samples {
        if only.labels.is_empty() {
            return if counter {
                ConstCounter::new(only.value).encode(family)
            } else {
                ConstGauge::new(only.value).encode(family)
            };
        }
    }
    for s in samples {
        let metric = family.encode_family(&s.labels)?;
        if counter {
            ConstCounter::new(s.value).encode(metric)?;
        } else {
            ConstGauge::new(s.value).encode(metric)?;
        }
    }
    Ok(())
}

/// Writes a gauge family.
pub fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    samples: &[Sample<'_>],
) -> Result<(), std::fmt::Error> {
    family(encoder, name, help, MetricType::Gauge, samples)
}

/// Writes a counter family. `name` is the exposed name, with its `_total` (the encoder
/// writes the suffix itself, so it is taken off here).
pub fn counter(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    samples: &[Sample<'_>],
) -> Result<(), std::fmt::Error> {
    let base = name.strip_suffix("_total").unwrap_or(name);
    family(encoder, base, help, MetricType::Counter, samples)
}

/// Writes an untyped family (node_exporter's netstat, vmstat, sockstat, ...: `# TYPE
/// ... untyped`).
pub fn untyped(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    samples: &[Sample<'_>],
) -> Result<(), std::fmt::Error> {
    family(encoder, name, help, MetricType::Unknown, samples)
}

/// One unlabelled value, or nothing when it is unknown.
pub fn one(value: Option<f64>) -> Vec<Sample<'static>> {
    value.map(Sample::bare).into_iter().collect()
}

/// A family written by kind, for tables of (name, help, kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Gauge,
    Counter,
    Untyped,
}

pub fn write(
    encoder: &mut DescriptorEncoder<'_>,
    kind: Kind,
    name: &str,
    help: &str,
    samples: &[Sample<'_>],
) -> Result<(), std::fmt::Error> {
    match kind {
        Kind::Gauge => gauge(encoder, name, help, samples),
        Kind::Counter => counter(encoder, name, help, samples),
        Kind::Untyped => untyped(encoder, name, help, samples),
    }
}

/// (kind, HELP, series) of a family in `Families`.
type BuiltFamily = (Kind, String, Vec<(OwnedLabels, f64)>);

/// Families assembled series by series (names built at runtime: ZFS kstats, hwmon
/// sensors), each written once however many times its name comes up; the first HELP
/// and kind seen for a name win, as in client_golang's gathering.
#[derive(Debug, Default)]
pub struct Families {
    by_name: std::collections::BTreeMap<String, BuiltFamily>,
}

impl Families {
    pub fn add(&mut self, kind: Kind, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        let e = self
            .by_name
            .entry(name.to_string())
            .or_insert_with(|| (kind, help.to_string(), Vec::new()));
        e.2.push((
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value,
        ));
    }

    pub fn write(&self, encoder: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        for (name, (kind, help, series)) in &self.by_name {
            let samples: Vec<Sample<'_>> = series
                .iter()
                .map(|(l, v)| {
                    Sample::new(
                        l.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
                        *v,
                    )
                })
                .collect();
            write(encoder, *kind, name, help, &samples)?;
        }
        Ok(())
    }
}
