//! Each round's result as an InfluxDB row (measurement `vigia_ping_round`), so RTT and
//! loss history can be queried per target long after Prometheus' retention.

use vigia_kit::influx::{InfluxWriter, Point};

use crate::status::{RoundResult, Status, TargetEntry};

pub const MEASUREMENT: &str = "vigia_ping_round";

/// Where round rows go: the kit's writer, or nowhere when `influxdb` is not configured.
#[derive(Clone, Default)]
pub struct RoundWriter {
    writer: Option<InfluxWriter>,
}

impl RoundWriter {
    pub fn new(writer: Option<InfluxWriter>) -> Self {
        Self { writer }
    }

    /// Queues the row; never blocks (the kit's queue is bounded and counts drops).
    pub fn write(
        &self,
        entry: &TargetEntry,
        round: &RoundResult,
        status: Status,
        behind: Option<&str>,
    ) {
        if let Some(w) = &self.writer {
            w.write(round_point(entry, round, status, behind));
        }
    }
}

/// Tags: `target`, `address`, `probe` and the target's own labels (site, kind, ...); the writer
/// adds `host`, the agent that probed (`influxdb.tags`), which is why no target may
/// have a label of that name. Fields:
/// `sent`, `received`, `loss_ratio`, `status`, and `min/avg/max_rtt_seconds` when any
/// reply came back, `ip` when the address resolved, `behind` (the down target it is cut
/// off behind) when unreachable. tcp, http and dns rounds add `duration_seconds`,
/// `failure` (the reason) and `error` when they failed, `http_status_code`,
/// `tls_earliest_cert_expiry` (Unix seconds) and `dns_rcode`.
pub fn round_point(
    entry: &TargetEntry,
    round: &RoundResult,
    status: Status,
    behind: Option<&str>,
) -> Point {
    let mut p = Point::new(MEASUREMENT);
    for (k, v) in &entry.labels {
        p = p.tag(k.as_str(), v.as_str());
    }
    p = p
        .field("sent", round.sent)
        .field("received", round.received())
        .field("loss_ratio", round.loss_ratio())
        .field("status", status.as_str());
    if let (Some(min), Some(avg), Some(max)) = (round.min_rtt(), round.avg_rtt(), round.max_rtt()) {
        p = p
            .field("min_rtt_seconds", min.as_secs_f64())
            .field("avg_rtt_seconds", avg.as_secs_f64())
            .field("max_rtt_seconds", max.as_secs_f64());
    }
    if let Some(ip) = round.ip {
        p = p.field("ip", ip.to_string());
    }
    if let Some(b) = behind {
        p = p.field("behind", b);
    }
    if let Some(o) = &round.outcome {
        p = p.field("duration_seconds", o.duration.as_secs_f64());
        if let Some(f) = &o.failure {
            p = p
                .field("failure", f.reason.as_str())
                .field("error", f.message.as_str());
        }
        if let Some(h) = &o.http {
            p = p.field("http_status_code", i64::from(h.status));
        }
        if let Some(t) = &o.tls {
            if let Some(e) = t.earliest_expiry {
                p = p.field("tls_earliest_cert_expiry", e);
            }
        }
        if let Some(d) = &o.dns {
            p = p.field("dns_rcode", i64::from(d.rcode));
        }
    }
    p.timestamp(round.started)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, TargetConfig};
    use std::time::{Duration, SystemTime};

    #[test]
    fn a_round_becomes_one_line() {
        let c = Config {
            targets: vec![TargetConfig {
                name: "dslam 1".into(),
                address: "127.0.0.1".into(),
                labels: [("site".to_string(), "centro".to_string())].into(),
                interval: None,
                count: None,
                timeout: None,
                warning_rtt: None,
                warning_loss: None,
                down_after: None,
                ..Default::default()
            }],
            ..Default::default()
        };
        let spec = c.inline_targets().unwrap().remove(0);
        let entry = TargetEntry::new(spec, SystemTime::now());
        let round = RoundResult {
            ip: Some("127.0.0.1".parse().unwrap()),
            sent: 5,
            rtts: vec![Duration::from_millis(1), Duration::from_millis(3)],
            ..RoundResult::new(
                SystemTime::UNIX_EPOCH + Duration::from_secs(1),
                std::time::Instant::now(),
            )
        };
        let line = round_point(&entry, &round, Status::Warning, None)
            .to_line(SystemTime::now(), false)
            .unwrap();
        assert!(!line.contains("behind="), "{line}");
        let silent = RoundResult {
            sent: 5,
            ..RoundResult::new(SystemTime::UNIX_EPOCH, std::time::Instant::now())
        };
        let unreachable = round_point(&entry, &silent, Status::Unreachable, Some("router-1"))
            .to_line(SystemTime::now(), false)
            .unwrap();
        for part in [
            "status=\"unreachable\"",
            "behind=\"router-1\"",
            "received=0i",
        ] {
            assert!(
                unreachable.contains(part),
                "{part} missing in {unreachable}"
            );
        }
        assert!(line.starts_with("vigia_ping_round,"), "{line}");
        for part in [
            r"target=dslam\ 1",
            "address=127.0.0.1",
            "site=centro",
            "sent=5i",
            "received=2i",
            "loss_ratio=0.6",
            "status=\"warning\"",
            "min_rtt_seconds=0.001",
            "avg_rtt_seconds=0.002",
            "max_rtt_seconds=0.003",
            " 1000000000\n",
        ] {
            assert!(line.contains(part), "{part} missing in {line}");
        }
    }
}
