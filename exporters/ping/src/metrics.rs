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
use crate::probe_config::ProbeKind;
use crate::services::{DnsFacts, ProbeOutcome, Reason, TlsFacts};
use crate::status::{unix_seconds, Status, StatusTable, TargetEntry};

/// A per-target counter: name (without `_total`), help, and where its value is.
type CounterColumn = (&'static str, &'static str, fn(&Row) -> u64);

/// A dns target's gauge: name, help, and where its value is in the last answer.
type DnsColumn = (&'static str, &'static str, fn(&DnsFacts) -> i64);

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
    kind: ProbeKind,
    /// tcp, http, dns: the last probe, the last certificates seen, failures by reason.
    outcome: Option<Arc<ProbeOutcome>>,
    tls: Option<TlsFacts>,
    failures: Vec<(Reason, u64)>,
    rounds: u64,
    probed: bool,
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
                    kind: entry.spec.probe.kind(),
                    outcome: s.last_outcome.clone(),
                    tls: s.last_tls.clone(),
                    failures: s.failures.clone(),
                    rounds: s.rounds,
                    probed: s.rounds > 0,
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

        // Echo-only series exist for icmp targets only.
        let icmp: Vec<&Row> = rows.iter().filter(|r| r.kind == ProbeKind::Icmp).collect();
        let mut f = enc.encode_descriptor(
            "vigia_ping_rtt_seconds",
            "Round-trip time of echo replies",
            None,
            MetricType::Histogram,
        )?;
        for r in &icmp {
            r.rtt.encode(f.encode_family(&r.entry.labels)?)?;
        }

        let counters: [CounterColumn; 3] = [
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
        ];
        for (name, help, value) in counters {
            let mut f = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
            for r in &icmp {
                ConstCounter::new(value(r)).encode(f.encode_family(&r.entry.labels)?)?;
            }
        }
        // Every kind resolves its host name and enters down.
        let counters: [CounterColumn; 2] = [
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
            "Whether the last round succeeded (1): icmp got at least one reply, tcp/http/dns passed every check; 0 otherwise, also before the first round",
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
        for r in &icmp {
            if let Some(rtt) = r.last_rtt {
                ConstGauge::new(rtt).encode(f.encode_family(&r.entry.labels)?)?;
            }
        }
        let services: Vec<&Row> = rows
            .iter()
            .filter(|r| r.kind != ProbeKind::Icmp && r.probed)
            .collect();
        encode_service_series(enc, &services)
    }
}

/// The labels of `r` plus one of the series' own.
fn with<'a>(r: &'a Row, key: &'a str, value: &'a str) -> Vec<(&'a str, &'a str)> {
    r.entry
        .labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain([(key, value)])
        .collect()
}

/// A gauge per row that has a value for it.
fn gauges<T: prometheus_client::encoding::EncodeGaugeValue + Copy>(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    rows: &[&Row],
    value: impl Fn(&Row) -> Option<T>,
) -> Result<(), SourceError>
where
    ConstGauge<T>: EncodeMetric,
{
    let mut f = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for r in rows {
        if let Some(v) = value(r) {
            ConstGauge::new(v).encode(f.encode_family(&r.entry.labels)?)?;
        }
    }
    Ok(())
}

/// tcp, http and dns targets' own series, under `vigia_probe_*` (blackbox_exporter's
/// `probe_*`, namespaced): the kind-neutral status stays in `vigia_ping_*` so that every
/// existing rule, dashboard and query covers the new kinds.
fn encode_service_series(
    enc: &mut DescriptorEncoder<'_>,
    rows: &[&Row],
) -> Result<(), SourceError> {
    gauges(
        enc,
        "vigia_probe_duration_seconds",
        "How long the last probe took, address lookup included (also when it failed)",
        rows,
        |r| r.outcome.as_ref().map(|o| o.duration.as_secs_f64()),
    )?;
    let mut f = enc.encode_descriptor(
        "vigia_probe_phase_duration_seconds",
        "Time of each phase of the last probe: resolve, connect, tls, then processing and transfer (http), expect (tcp) or request (dns)",
        None,
        MetricType::Gauge,
    )?;
    for r in rows {
        if let Some(o) = &r.outcome {
            for (phase, took) in &o.phases {
                ConstGauge::new(took.as_secs_f64()).encode(f.encode_family(&with(
                    r,
                    "phase",
                    phase.as_str(),
                ))?)?;
            }
        }
    }
    let mut f = enc.encode_descriptor(
        "vigia_probe_attempts",
        "Probes run (one per round); with vigia_probe_failures_total, the success ratio",
        None,
        MetricType::Counter,
    )?;
    for r in rows {
        ConstCounter::new(r.rounds).encode(f.encode_family(&r.entry.labels)?)?;
    }
    let mut f = enc.encode_descriptor(
        "vigia_probe_failures",
        "Failed probes by reason: resolve, connect, tls, timeout, io, expect, protocol, status_code, body, redirects, rcode, answer",
        None,
        MetricType::Counter,
    )?;
    for r in rows {
        for (reason, n) in &r.failures {
            ConstCounter::new(*n).encode(f.encode_family(&with(
                r,
                "reason",
                reason.as_str(),
            ))?)?;
        }
    }

    let http: Vec<&Row> = rows
        .iter()
        .copied()
        .filter(|r| r.kind == ProbeKind::Http)
        .collect();
    let facts = |r: &Row| r.outcome.as_ref().and_then(|o| o.http.clone());
    gauges(
        enc,
        "vigia_probe_http_status_code",
        "Status code of the last response (after redirects); 0 when no response came",
        &http,
        |r| Some(facts(r).map_or(0, |h| i64::from(h.status))),
    )?;
    gauges(
        enc,
        "vigia_probe_http_version",
        "HTTP version of the last response (1.0, 1.1)",
        &http,
        |r| facts(r).map(|h| h.version),
    )?;
    gauges(
        enc,
        "vigia_probe_http_redirects",
        "Redirects followed by the last probe",
        &http,
        |r| facts(r).map(|h| i64::from(h.redirects)),
    )?;
    gauges(
        enc,
        "vigia_probe_http_body_bytes",
        "Bytes of the last response's body",
        &http,
        |r| facts(r).map(|h| h.body_bytes as i64),
    )?;
    gauges(
        enc,
        "vigia_probe_http_tls",
        "Whether the last request (after redirects) went over TLS",
        &http,
        |r| facts(r).map(|h| i64::from(h.tls)),
    )?;

    let mut f = enc.encode_descriptor(
        "vigia_probe_tls_version_info",
        "TLS version of the last handshake that completed (label tls_version); the value is always 1",
        None,
        MetricType::Gauge,
    )?;
    for r in rows {
        let version = r
            .outcome
            .as_ref()
            .and_then(|o| o.tls.as_ref())
            .and_then(|t| t.version);
        if let Some(v) = version {
            ConstGauge::new(1).encode(f.encode_family(&with(r, "tls_version", v))?)?;
        }
    }
    gauges(
        enc,
        "vigia_probe_tls_leaf_cert_expiry_timestamp_seconds",
        "When the server's own certificate expires (notAfter, Unix time), from the last handshake that presented one, accepted or not",
        rows,
        |r| r.tls.as_ref().and_then(|t| t.leaf_expiry),
    )?;
    gauges(
        enc,
        "vigia_probe_tls_earliest_cert_expiry_timestamp_seconds",
        "When the first of the certificates the server sent expires (Unix time), from the last handshake that presented any",
        rows,
        |r| r.tls.as_ref().and_then(|t| t.earliest_expiry),
    )?;

    let dns: Vec<&Row> = rows
        .iter()
        .copied()
        .filter(|r| r.kind == ProbeKind::Dns)
        .collect();
    let answer = |r: &Row| r.outcome.as_ref().and_then(|o| o.dns.clone());
    let dns_columns: [DnsColumn; 4] = [
        (
            "vigia_probe_dns_rcode",
            "Response code of the last answer (0 NOERROR, 2 SERVFAIL, 3 NXDOMAIN, 5 REFUSED, ...); absent when none came",
            |d| i64::from(d.rcode),
        ),
        (
            "vigia_probe_dns_answer_rrs",
            "Records in the answer section of the last answer",
            |d| i64::from(d.answer_rrs),
        ),
        (
            "vigia_probe_dns_authority_rrs",
            "Records in the authority section of the last answer",
            |d| i64::from(d.authority_rrs),
        ),
        (
            "vigia_probe_dns_additional_rrs",
            "Records in the additional section of the last answer",
            |d| i64::from(d.additional_rrs),
        ),
    ];
    for (name, help, value) in dns_columns {
        gauges(enc, name, help, &dns, |r| answer(r).map(|d| value(&d)))?;
    }
    Ok(())
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
