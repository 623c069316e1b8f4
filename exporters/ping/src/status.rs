//! Per-target status: the state machine that turns round results into ok / warning /
//! down, and the table of every target's current state that `/metrics`, the status
//! board and readiness read.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::histogram::Histogram;

use crate::board::{StatusSnapshot, TargetView};
use crate::config::TargetSpec;
use crate::services::{ProbeOutcome, Reason, TlsFacts};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// No round has decided the status yet.
    Unknown,
    Ok,
    /// Replies, but slow (average RTT above `warning_rtt`) or lossy (above `warning_loss`).
    Warning,
    /// No reply in `down_after` whole rounds in a row.
    Down,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Unknown => "unknown",
            Status::Ok => "ok",
            Status::Warning => "warning",
            Status::Down => "down",
        }
    }
}

/// What one round of echo requests to one target gave.
#[derive(Debug, Clone)]
pub struct RoundResult {
    /// When the round started (the timestamp of its InfluxDB row).
    pub started: SystemTime,
    /// The address probed; `None` when the host name did not resolve.
    pub ip: Option<IpAddr>,
    /// Echo requests attempted, including those the kernel refused to send.
    pub sent: u32,
    /// RTT of every reply, in the order the requests were sent.
    pub rtts: Vec<Duration>,
    pub send_errors: u32,
    /// The host name did not resolve, so nothing was sent.
    pub resolve_error: bool,
    /// What a tcp, http or dns probe found (phases, status code, certificate, rcode,
    /// why it failed); `None` for ICMP rounds.
    pub outcome: Option<Arc<ProbeOutcome>>,
}

impl RoundResult {
    pub fn received(&self) -> u32 {
        self.rtts.len() as u32
    }

    /// Share of requests without reply; a round that could not send anything lost all.
    pub fn loss_ratio(&self) -> f64 {
        if self.sent == 0 {
            return 1.0;
        }
        1.0 - f64::from(self.received()) / f64::from(self.sent)
    }

    pub fn min_rtt(&self) -> Option<Duration> {
        self.rtts.iter().min().copied()
    }

    pub fn max_rtt(&self) -> Option<Duration> {
        self.rtts.iter().max().copied()
    }

    pub fn avg_rtt(&self) -> Option<Duration> {
        if self.rtts.is_empty() {
            return None;
        }
        Some(self.rtts.iter().sum::<Duration>() / self.received())
    }
}

/// The status decided from rounds, with the hysteresis of `down_after`.
#[derive(Debug, Clone)]
pub struct StatusMachine {
    status: Status,
    since: SystemTime,
    failed_rounds: u32,
}

/// A status change, as the transition log records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: Status,
    pub to: Status,
}

impl StatusMachine {
    pub fn new(now: SystemTime) -> Self {
        Self {
            status: Status::Unknown,
            since: now,
            failed_rounds: 0,
        }
    }

    pub fn status(&self) -> Status {
        self.status
    }

    pub fn since(&self) -> SystemTime {
        self.since
    }

    /// Applies one round; returns the transition when the status changed.
    pub fn apply(
        &mut self,
        spec: &TargetSpec,
        round: &RoundResult,
        now: SystemTime,
    ) -> Option<Transition> {
        let next = if round.received() == 0 {
            self.failed_rounds = self.failed_rounds.saturating_add(1);
            if self.failed_rounds >= spec.down_after {
                Status::Down
            } else {
                // Not yet down_after rounds: a reboot or a lost burst is tolerated.
                self.status
            }
        } else {
            self.failed_rounds = 0;
            let slow = round.avg_rtt().is_some_and(|avg| avg > spec.warning_rtt);
            let lossy = round.loss_ratio() > spec.warning_loss;
            if slow || lossy {
                Status::Warning
            } else {
                Status::Ok
            }
        };
        if next == self.status {
            return None;
        }
        let t = Transition {
            from: self.status,
            to: next,
        };
        self.status = next;
        self.since = now;
        Some(t)
    }
}

/// Default RTT histogram buckets (`rtt_buckets`), in seconds: 0.5 ms (loopback, a LAN)
/// to 1 s (the default timeout, past which no reply is counted), a step of 2 to 5 apart.
/// Eight, not sixteen: each bucket is one more series per target, and at 100,000
/// targets the sixteen made /metrics 305 MB.
pub const DEFAULT_RTT_BUCKETS: [f64; 8] = [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0];

/// Everything known about one target, updated once per round under one lock so that a
/// scrape never sees the counters of a round without its status.
#[derive(Debug)]
pub struct TargetState {
    pub machine: StatusMachine,
    pub rounds: u64,
    pub requests: u64,
    pub replies: u64,
    pub send_errors: u64,
    pub resolve_errors: u64,
    pub last_rtt: Option<Duration>,
    pub last_loss: Option<f64>,
    pub last_round: Option<SystemTime>,
    pub ip: Option<IpAddr>,
    pub rtt: Histogram,
    /// The last service probe's outcome (tcp, http, dns).
    pub last_outcome: Option<Arc<ProbeOutcome>>,
    /// The certificates of the last handshake that saw any: kept while the server is
    /// unreachable, so an expiry alert does not resolve because the server went down.
    pub last_tls: Option<TlsFacts>,
    /// Failed service probes by reason.
    pub failures: Vec<(Reason, u64)>,
}

/// One target in the table.
#[derive(Debug)]
pub struct TargetEntry {
    pub spec: TargetSpec,
    /// `target`, `address`, `probe`, then the target's own labels in name order.
    pub labels: Vec<(String, String)>,
    state: Mutex<TargetState>,
}

impl TargetEntry {
    /// An entry with the default RTT buckets.
    #[cfg(test)]
    pub fn new(spec: TargetSpec, now: SystemTime) -> Self {
        Self::with_buckets(spec, &DEFAULT_RTT_BUCKETS, now)
    }

    /// An entry whose RTT histogram has these upper bounds (plus `+Inf`).
    pub fn with_buckets(spec: TargetSpec, rtt_buckets: &[f64], now: SystemTime) -> Self {
        let mut labels = vec![
            ("target".to_string(), spec.name.clone()),
            ("address".to_string(), spec.address.clone()),
            ("probe".to_string(), spec.probe.kind().as_str().to_string()),
        ];
        labels.extend(spec.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        Self {
            spec,
            labels,
            state: Mutex::new(TargetState {
                machine: StatusMachine::new(now),
                rounds: 0,
                requests: 0,
                replies: 0,
                send_errors: 0,
                resolve_errors: 0,
                last_rtt: None,
                last_loss: None,
                last_round: None,
                ip: None,
                rtt: Histogram::new(rtt_buckets.iter().copied()),
                last_outcome: None,
                last_tls: None,
                failures: Vec::new(),
            }),
        }
    }

    /// Locks the state; a panic elsewhere never makes the table unreadable.
    pub fn state(&self) -> std::sync::MutexGuard<'_, TargetState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a finished round; returns the status change it caused, if any.
    pub fn record(&self, round: &RoundResult, now: SystemTime) -> Option<Transition> {
        let mut s = self.state();
        s.rounds += 1;
        s.requests += u64::from(round.sent);
        s.replies += u64::from(round.received());
        s.send_errors += u64::from(round.send_errors);
        s.resolve_errors += u64::from(round.resolve_error);
        for rtt in &round.rtts {
            s.rtt.observe(rtt.as_secs_f64());
        }
        if let Some(last) = round.rtts.last() {
            s.last_rtt = Some(*last);
        }
        s.last_loss = Some(round.loss_ratio());
        s.last_round = Some(now);
        s.ip = round.ip;
        if let Some(outcome) = &round.outcome {
            if let Some(tls) = outcome.tls.as_ref().filter(|t| t.leaf_expiry.is_some()) {
                s.last_tls = Some(tls.clone());
            }
            if let Some(f) = &outcome.failure {
                match s.failures.iter_mut().find(|(r, _)| *r == f.reason) {
                    Some((_, n)) => *n += 1,
                    None => {
                        s.failures.push((f.reason, 1));
                        s.failures.sort();
                    }
                }
            }
            s.last_outcome = Some(outcome.clone());
        }
        s.machine.apply(&self.spec, round, now)
    }

    pub fn view(&self) -> TargetView {
        let s = self.state();
        TargetView {
            name: self.spec.name.clone(),
            address: self.spec.address.clone(),
            labels: self.spec.labels.clone(),
            site: self.spec.labels.get("site").cloned(),
            status: s.machine.status().as_str(),
            probe: self.spec.probe.kind().as_str(),
            detail: s.last_outcome.as_ref().map(|o| o.summary()),
            last_rtt_seconds: s.last_rtt.map(|d| d.as_secs_f64()),
            loss_ratio: s.last_loss,
            status_since_seconds: unix_seconds(s.machine.since()),
            last_round_seconds: s.last_round.map(unix_seconds),
        }
    }
}

pub fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Every target currently probed, in configuration order.
#[derive(Debug, Default)]
pub struct StatusTable {
    entries: RwLock<Vec<Arc<TargetEntry>>>,
}

impl StatusTable {
    pub fn entries(&self) -> Vec<Arc<TargetEntry>> {
        self.entries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn replace(&self, entries: Vec<Arc<TargetEntry>>) {
        *self.entries.write().unwrap_or_else(|p| p.into_inner()) = entries;
    }

    /// True once every target has finished at least one round.
    pub fn all_probed(&self) -> bool {
        self.entries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .all(|e| e.state().rounds > 0)
    }
}

impl StatusSnapshot for StatusTable {
    fn snapshot(&self) -> Vec<TargetView> {
        self.entries().iter().map(|e| e.view()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, TargetConfig};

    fn spec(down_after: u32) -> TargetSpec {
        let c = Config {
            targets: vec![TargetConfig {
                name: "a".into(),
                address: "127.0.0.1".into(),
                labels: Default::default(),
                interval: None,
                count: Some(4),
                timeout: None,
                warning_rtt: None,
                warning_loss: None,
                down_after: Some(down_after),
                ..Default::default()
            }],
            ..Default::default()
        };
        c.inline_targets().unwrap().remove(0)
    }

    fn round(sent: u32, rtts_ms: &[u64]) -> RoundResult {
        RoundResult {
            started: SystemTime::now(),
            ip: None,
            sent,
            rtts: rtts_ms.iter().map(|m| Duration::from_millis(*m)).collect(),
            send_errors: 0,
            resolve_error: false,
            outcome: None,
        }
    }

    #[test]
    fn ok_warning_down_with_hysteresis() {
        let s = spec(2);
        let t0 = SystemTime::now();
        let mut m = StatusMachine::new(t0);
        assert_eq!(m.status(), Status::Unknown);
        // First failed round of two: still unknown, no transition yet.
        assert_eq!(m.apply(&s, &round(4, &[]), t0), None);
        let t = m.apply(&s, &round(4, &[]), t0).unwrap();
        assert_eq!((t.from, t.to), (Status::Unknown, Status::Down));
        let t1 = t0 + Duration::from_secs(5);
        let t = m.apply(&s, &round(4, &[1, 1, 1, 1]), t1).unwrap();
        assert_eq!((t.from, t.to), (Status::Down, Status::Ok));
        assert_eq!(m.since(), t1);
        // Partial loss over warning_loss (0) is a warning.
        assert_eq!(
            m.apply(&s, &round(4, &[1, 1, 1]), t1).unwrap().to,
            Status::Warning
        );
        // Slow but complete: average above 200 ms.
        assert_eq!(m.apply(&s, &round(4, &[1, 1, 1, 900]), t1), None);
        assert_eq!(
            m.apply(&s, &round(4, &[1, 1, 1, 1]), t1).unwrap().to,
            Status::Ok
        );
        // One failed round with down_after 2 keeps ok.
        assert_eq!(m.apply(&s, &round(4, &[]), t1), None);
        assert_eq!(m.status(), Status::Ok);
        assert_eq!(m.apply(&s, &round(4, &[]), t1).unwrap().to, Status::Down);
    }

    #[test]
    fn round_statistics() {
        let r = round(4, &[10, 30]);
        assert_eq!(r.loss_ratio(), 0.5);
        assert_eq!(r.min_rtt(), Some(Duration::from_millis(10)));
        assert_eq!(r.avg_rtt(), Some(Duration::from_millis(20)));
        assert_eq!(r.max_rtt(), Some(Duration::from_millis(30)));
        assert_eq!(round(0, &[]).loss_ratio(), 1.0);
    }
}
