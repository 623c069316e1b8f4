//! What vigia-ping exposes. Per-target series are encoded at scrape time from the status
//! table, because targets carry label sets of their own (site, kind, ...) and a target
//! removed from the targets file must disappear from /metrics with all its series.

use std::net::IpAddr;
use std::sync::Arc;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use vigia_kit::{Metrics, Source, SourceError};

use crate::config::Host;
use crate::status::{unix_seconds, Status, StatusTable, TargetEntry};

/// A per-target counter: name (without `_total`), help, and where its value is.
type CounterColumn = (&'static str, &'static str, fn(&Row) -> u64);

/// Per-target metrics, read from the status table on every scrape.
pub struct TargetMetrics {
    pub table: Arc<StatusTable>,
}

/// One target's numbers, copied under its lock so one scrape is consistent per target.
struct Row {
    entry: Arc<TargetEntry>,
    status: Status,
    since: f64,
    up: bool,
    requests: u64,
    replies: u64,
    send_errors: u64,
    resolve_errors: u64,
    last_rtt: Option<f64>,
    /// The address probed: the configured IP, or what the name last resolved to.
    ip: Option<IpAddr>,
    rtt: Histogram,
    down_transitions: u64,
    /// While unreachable: the down target it is behind.
    behind: Option<String>,
    in_maintenance: bool,
}

impl Source for TargetMetrics {
    fn name(&self) -> &'static str {
        "ping"
    }

    fn collect(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
        let now = std::time::SystemTime::now();
        let rows: Vec<Row> = self
            .table
            .entries()
            .into_iter()
            .map(|entry| {
                let s = entry.state();
                let row = Row {
                    status: s.machine.status(),
                    since: unix_seconds(s.machine.since()),
                    up: s.last_loss.is_some_and(|l| l < 1.0),
                    requests: s.requests,
                    replies: s.replies,
                    send_errors: s.send_errors,
                    resolve_errors: s.resolve_errors,
                    last_rtt: s.last_rtt.map(|d| d.as_secs_f64()),
                    ip: match entry.spec.host {
                        Host::Ip(ip) => Some(ip),
                        Host::Name(_) => s.ip,
                    },
                    rtt: s.rtt.clone(),
                    down_transitions: s.down_transitions,
                    behind: s.machine.behind().map(str::to_string),
                    in_maintenance: false,
                    entry: entry.clone(),
                };
                drop(s);
                let site = entry.spec.labels.get("site").map(String::as_str);
                Row {
                    in_maintenance: self
                        .table
                        .maintenance
                        .active(&entry.spec.name, site, now)
                        .is_some(),
                    ..row
                }
            })
            .collect();

        ConstGauge::new(rows.len() as i64).encode(enc.encode_descriptor(
            "vigia_ping_targets",
            "Targets currently probed",
            None,
            MetricType::Gauge,
        )?)?;

        let mut f = enc.encode_descriptor(
            "vigia_ping_rtt_seconds",
            "Round-trip time of echo replies",
            None,
            MetricType::Histogram,
        )?;
        for r in &rows {
            r.rtt.encode(f.encode_family(&r.entry.labels)?)?;
        }

        let counters: [CounterColumn; 5] = [
            (
                "vigia_ping_requests",
                "Echo requests attempted, including those the kernel refused to send",
                |r| r.requests,
            ),
            ("vigia_ping_replies", "Echo replies received in time", |r| {
                r.replies
            }),
            (
                "vigia_ping_send_errors",
                "Echo requests the kernel refused to send (no route, no IPv6, ...)",
                |r| r.send_errors,
            ),
            (
                "vigia_ping_resolve_errors",
                "Rounds skipped because the target's host name did not resolve",
                |r| r.resolve_errors,
            ),
            (
                "vigia_ping_down_transitions",
                "Times the target entered the down status (its bounces: flap detection counts these)",
                |r| r.down_transitions,
            ),
        ];
        for (name, help, value) in counters {
            let mut f = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
            for r in &rows {
                ConstCounter::new(value(r)).encode(f.encode_family(&r.entry.labels)?)?;
            }
        }

        let mut f = enc.encode_descriptor(
            "vigia_ping_up",
            "Whether the last round got at least one reply (1) or none (0, also before the first round)",
            None,
            MetricType::Gauge,
        )?;
        for r in &rows {
            ConstGauge::new(i64::from(r.up)).encode(f.encode_family(&r.entry.labels)?)?;
        }

        let mut f = enc.encode_descriptor(
            "vigia_ping_status",
            "Current status of the target: 1 for the status it is in, 0 for the others",
            None,
            MetricType::Gauge,
        )?;
        for r in &rows {
            for st in crate::board::STATUSES {
                let mut labels: Vec<(&str, &str)> = r
                    .entry
                    .labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                labels.push(("status", st));
                ConstGauge::new(i64::from(r.status.as_str() == st))
                    .encode(f.encode_family(&labels)?)?;
            }
        }

        let mut f = enc.encode_descriptor(
            "vigia_ping_status_change_timestamp_seconds",
            "When the target entered its current status (Unix time; start of probing if it never changed)",
            None,
            MetricType::Gauge,
        )?;
        for r in &rows {
            ConstGauge::new(r.since).encode(f.encode_family(&r.entry.labels)?)?;
        }

        // One series per target, like blackbox_exporter's probe_ip_addr_hash but
        // readable: the IP is a label of its own series, not of every metric, so a name
        // that moves to a new address replaces this one series and nothing else. The
        // target's labels are left out; join on `target`.
        let mut f = enc.encode_descriptor(
            "vigia_ping_target_info",
            "The IP address probed for the target (a host name's last resolution); absent while a name does not resolve. The value is always 1",
            None,
            MetricType::Gauge,
        )?;
        for r in &rows {
            if let Some(ip) = r.ip {
                let ip = ip.to_string();
                let labels: Vec<(&str, &str)> = r
                    .entry
                    .labels
                    .iter()
                    .filter(|(k, _)| k == "target" || k == "address")
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .chain([("ip", ip.as_str())])
                    .collect();
                ConstGauge::new(1).encode(f.encode_family(&labels)?)?;
            }
        }

        // Present only while a target is unreachable, so that alert rules can count and
        // list the devices cut off behind a failed uplink (the target named by `behind`).
        let mut f = enc.encode_descriptor(
            "vigia_ping_unreachable_behind",
            "1 while the target is unreachable; `behind` names the down target (its failed uplink) it is cut off behind",
            None,
            MetricType::Gauge,
        )?;
        for r in &rows {
            if let Some(behind) = &r.behind {
                let labels: Vec<(&str, &str)> = r
                    .entry
                    .labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .chain([("behind", behind.as_str())])
                    .collect();
                ConstGauge::new(1).encode(f.encode_family(&labels)?)?;
            }
        }

        // Present only while a maintenance window (maintenance_file) covers the target.
        let mut f = enc.encode_descriptor(
            "vigia_ping_maintenance",
            "1 while a maintenance window of the maintenance file covers the target (by its name or its site)",
            None,
            MetricType::Gauge,
        )?;
        for r in rows.iter().filter(|r| r.in_maintenance) {
            ConstGauge::new(1).encode(f.encode_family(&r.entry.labels)?)?;
        }

        let mut f = enc.encode_descriptor(
            "vigia_ping_last_rtt_seconds",
            "Round-trip time of the last reply received",
            None,
            MetricType::Gauge,
        )?;
        for r in &rows {
            if let Some(rtt) = r.last_rtt {
                ConstGauge::new(rtt).encode(f.encode_family(&r.entry.labels)?)?;
            }
        }
        Ok(())
    }
}

/// Metrics of the exporter as a whole (not per target).
#[derive(Clone, Debug, Default)]
pub struct ExporterMetrics {
    pub targets_file_reload_errors: Counter,
    pub targets_file_reload_success: Gauge,
    pub maintenance_file_reload_errors: Counter,
    pub maintenance_file_reload_success: Gauge,
    /// Labels `family` (ipv4, ipv6) and `type` (raw, datagram).
    pub socket_info: Family<Vec<(String, String)>, Gauge>,
}

impl ExporterMetrics {
    /// The targets-file (maintenance-file) series exist only when one is configured.
    pub fn register(metrics: &mut Metrics, targets_file: bool, maintenance_file: bool) -> Self {
        let m = Self::default();
        let r = metrics.registry_mut();
        r.register(
            "vigia_ping_socket_info",
            "ICMP socket in use per address family (type raw or datagram); the value is always 1",
            m.socket_info.clone(),
        );
        if maintenance_file {
            r.register(
                "vigia_ping_maintenance_file_reload_errors",
                "Edits of the maintenance file that were rejected; the previous windows were kept",
                m.maintenance_file_reload_errors.clone(),
            );
            r.register(
                "vigia_ping_maintenance_file_last_reload_success",
                "Whether the last read of the maintenance file was accepted (1) or rejected (0)",
                m.maintenance_file_reload_success.clone(),
            );
        }
        if !targets_file {
            return m;
        }
        r.register(
            "vigia_ping_targets_file_reload_errors",
            "Edits of the targets file that were rejected; the previous target list was kept",
            m.targets_file_reload_errors.clone(),
        );
        r.register(
            "vigia_ping_targets_file_last_reload_success",
            "Whether the last read of the targets file was accepted (1) or rejected (0)",
            m.targets_file_reload_success.clone(),
        );
        m
    }
}
