//! Per-target status: the state machine that turns round results into ok / warning /
//! down / unreachable, and the table of every target's current state that `/metrics`,
//! the status board and readiness read.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::histogram::Histogram;

use crate::board::{StatusSnapshot, TargetView};
use crate::config::TargetSpec;
use crate::maintenance::Maintenance;
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
    /// No reply in `down_after` rounds, while the target's parent (its uplink) is down or
    /// itself unreachable: vigia cannot tell whether this one is down (Nagios' UNREACHABLE).
    Unreachable,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Unknown => "unknown",
            Status::Ok => "ok",
            Status::Warning => "warning",
            Status::Down => "down",
            Status::Unreachable => "unreachable",
        }
    }
}

/// What one round of echo requests to one target gave (or one service probe: one
/// request, a reply when every check passed).
#[derive(Debug, Clone)]
pub struct RoundResult {
    /// When the round started (the timestamp of its InfluxDB row).
    pub started: SystemTime,
    /// The same moment on the monotonic clock, which parent and child compare (a service
    /// probe's: when its connection or query went out, after the address lookup).
    pub start: Instant,
    /// When the newest request that got an answer was sent. An answer is what proves the
    /// target reachable: an echo reply, or anything a service's server sent back (its TCP
    /// handshake or refusal, a DNS reply), even when the probe then failed its checks.
    pub last_answered: Option<Instant>,
    /// When the oldest request that got an answer was sent.
    pub first_answered: Option<Instant>,
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
    /// A round that has sent nothing yet.
    pub fn new(started: SystemTime, start: Instant) -> Self {
        Self {
            started,
            start,
            last_answered: None,
            first_answered: None,
            ip: None,
            sent: 0,
            rtts: Vec::new(),
            send_errors: 0,
            resolve_error: false,
            outcome: None,
        }
    }

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

/// What a child needs to know of its parent to tell down from unreachable.
#[derive(Debug, Clone)]
pub struct ParentState {
    pub name: String,
    pub status: Status,
    /// When the parent is unreachable: the down target it is behind.
    pub behind: Option<String>,
    /// When the newest request the parent answered was sent (see
    /// [`RoundResult::last_answered`]: a tcp/http/dns parent that answers but fails its
    /// checks is down, yet still proves the path to it works).
    pub last_answered: Option<Instant>,
    /// Since when the parent has answered every round: the send time of its first answered
    /// request after a silent round; `None` while its last round was silent.
    pub answering_since: Option<Instant>,
}

/// The status decided from rounds, with the hysteresis of `down_after`.
#[derive(Debug, Clone)]
pub struct StatusMachine {
    status: Status,
    since: SystemTime,
    failed_rounds: u32,
    /// When the first request of the current run of silent rounds was sent.
    silent_since: Option<Instant>,
    /// The parent answered during the current silence: the silence is this target's own,
    /// and it stays down when the parent fails later (no "resolved" for a dead device
    /// because its uplink went down after it).
    own_silence: bool,
    /// While unreachable: the down target this one is cut off behind (the failed uplink,
    /// the top of the chain when the parent is itself unreachable).
    behind: Option<String>,
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
            silent_since: None,
            own_silence: false,
            behind: None,
        }
    }

    pub fn status(&self) -> Status {
        self.status
    }

    pub fn since(&self) -> SystemTime {
        self.since
    }

    /// The down target an unreachable one is behind; `None` in any other status.
    pub fn behind(&self) -> Option<&str> {
        self.behind.as_deref()
    }

    /// Applies one round; returns the transition when the status changed. `parent` is the
    /// state of the target's parent, if it has one.
    pub fn apply(
        &mut self,
        spec: &TargetSpec,
        round: &RoundResult,
        now: SystemTime,
        parent: Option<&ParentState>,
    ) -> Option<Transition> {
        let (next, behind) = if round.received() == 0 {
            self.failed_rounds = self.failed_rounds.saturating_add(1);
            if round.last_answered.is_some() {
                // A service that answered but failed its checks (an HTTP 503, a refused
                // port): it is reachable, so its failure is its own whatever the parent's
                // status, and its silence, if any comes, starts after this round.
                self.silent_since = None;
                self.own_silence = false;
            } else {
                self.silent_since.get_or_insert(round.start);
            }
            if self.failed_rounds < spec.down_after {
                // Not yet down_after rounds: a reboot or a lost burst is tolerated.
                (self.status, self.behind.clone())
            } else {
                match (parent, self.silent_since) {
                    (Some(p), Some(silent_since)) if !self.own_silence => {
                        let (status, behind) =
                            self.judge(p, silent_since, round.start, spec.timeout);
                        self.own_silence = status == Status::Down;
                        (status, behind)
                    }
                    _ => (Status::Down, None),
                }
            }
        } else {
            self.failed_rounds = 0;
            self.silent_since = None;
            self.own_silence = false;
            let slow = round.avg_rtt().is_some_and(|avg| avg > spec.warning_rtt);
            let lossy = round.loss_ratio() > spec.warning_loss;
            let status = if slow || lossy {
                Status::Warning
            } else {
                Status::Ok
            };
            (status, None)
        };
        self.behind = behind;
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

    /// A silent target with a parent: down when the parent answered while this one did
    /// not, unreachable when the parent is down (or unreachable) and its last round got no
    /// answer, and otherwise as it was until the parent's next round says which: a link
    /// that failed in the middle of the parent's round must not make its children down,
    /// and a parent that is down but answers (a tcp or http parent failing its checks) is
    /// reachable, so it cuts nothing off.
    ///
    /// "Answered while this one did not" takes both: the parent answered a request sent at
    /// least one `timeout` after this target's first unanswered one (so the shared path
    /// was up after this target's silence began; a failure just before its first request
    /// is not taken for the target's own), and the parent has answered without a break
    /// since before this round began (so this round's requests did not go out while the
    /// path was still down; a round that straddles the uplink's return proves nothing).
    fn judge(
        &self,
        parent: &ParentState,
        silent_since: Instant,
        round_start: Instant,
        timeout: Duration,
    ) -> (Status, Option<String>) {
        let path_up = parent
            .last_answered
            .is_some_and(|t| t >= silent_since + timeout)
            && parent.answering_since.is_some_and(|t| t <= round_start);
        if path_up {
            return (Status::Down, None);
        }
        match parent.status {
            Status::Down if parent.answering_since.is_none() => {
                (Status::Unreachable, Some(parent.name.clone()))
            }
            Status::Unreachable => (
                Status::Unreachable,
                Some(parent.behind.clone().unwrap_or_else(|| parent.name.clone())),
            ),
            Status::Down | Status::Ok | Status::Warning | Status::Unknown => {
                (self.status, self.behind.clone())
            }
        }
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
    /// When the newest request that got a reply was sent (what children compare with).
    pub last_answered: Option<Instant>,
    /// Since when every round got a reply (see [`ParentState::answering_since`]).
    pub answering_since: Option<Instant>,
    pub ip: Option<IpAddr>,
    pub rtt: Histogram,
    /// The last service probe's outcome (tcp, http, dns).
    pub last_outcome: Option<Arc<ProbeOutcome>>,
    /// The certificates of the last handshake that saw any: kept while the server is
    /// unreachable, so an expiry alert does not resolve because the server went down.
    pub last_tls: Option<TlsFacts>,
    /// Failed service probes by reason.
    pub failures: Vec<(Reason, u64)>,
    /// Times the target entered `down`: bounces, for flap detection.
    pub down_transitions: u64,
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
                last_answered: None,
                answering_since: None,
                ip: None,
                rtt: Histogram::new(rtt_buckets.iter().copied()),
                last_outcome: None,
                last_tls: None,
                failures: Vec::new(),
                down_transitions: 0,
            }),
        }
    }

    /// Locks the state; a panic elsewhere never makes the table unreadable.
    pub fn state(&self) -> std::sync::MutexGuard<'_, TargetState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a finished round; returns the status change it caused, if any. `parent` is
    /// the parent's state just before (`None` for a target without a parent).
    pub fn record(
        &self,
        round: &RoundResult,
        now: SystemTime,
        parent: Option<&ParentState>,
    ) -> Option<Transition> {
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
        if round.last_answered.is_some() {
            s.last_answered = round.last_answered;
        }
        if round.last_answered.is_none() {
            s.answering_since = None;
        } else if s.answering_since.is_none() {
            s.answering_since = round.first_answered;
        }
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
        let t = s.machine.apply(&self.spec, round, now, parent);
        if t.is_some_and(|t| t.to == Status::Down) {
            s.down_transitions += 1;
        }
        t
    }

    /// What this target's children read to decide between down and unreachable.
    pub fn as_parent(&self) -> ParentState {
        let s = self.state();
        ParentState {
            name: self.spec.name.clone(),
            status: s.machine.status(),
            behind: s.machine.behind().map(str::to_string),
            last_answered: s.last_answered,
            answering_since: s.answering_since,
        }
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
            parent: self.spec.parent.clone(),
            behind: s.machine.behind().map(str::to_string),
            maintenance: None,
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

/// Every target currently probed, in configuration order, and the maintenance windows
/// the board and /metrics show them in.
#[derive(Debug, Default)]
pub struct StatusTable {
    entries: RwLock<Entries>,
    pub maintenance: Maintenance,
}

#[derive(Debug, Default)]
struct Entries {
    in_order: Vec<Arc<TargetEntry>>,
    by_name: HashMap<String, Arc<TargetEntry>>,
}

impl StatusTable {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Entries> {
        self.entries.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn entries(&self) -> Vec<Arc<TargetEntry>> {
        self.read().in_order.clone()
    }

    /// The target called `name`, if it is probed.
    pub fn get(&self, name: &str) -> Option<Arc<TargetEntry>> {
        self.read().by_name.get(name).cloned()
    }

    pub fn replace(&self, entries: Vec<Arc<TargetEntry>>) {
        let by_name = entries
            .iter()
            .map(|e| (e.spec.name.clone(), e.clone()))
            .collect();
        *self.entries.write().unwrap_or_else(|p| p.into_inner()) = Entries {
            in_order: entries,
            by_name,
        };
    }

    /// The state of `entry`'s parent, when it has one that is probed.
    pub fn parent_of(&self, entry: &TargetEntry) -> Option<ParentState> {
        let name = entry.spec.parent.as_deref()?;
        self.get(name).map(|p| p.as_parent())
    }

    /// True once every target has finished at least one round.
    pub fn all_probed(&self) -> bool {
        self.read().in_order.iter().all(|e| e.state().rounds > 0)
    }
}

impl StatusSnapshot for StatusTable {
    fn snapshot(&self) -> Vec<TargetView> {
        let now = SystemTime::now();
        self.entries()
            .iter()
            .map(|e| {
                let mut v = e.view();
                v.maintenance = self
                    .maintenance
                    .active(
                        &e.spec.name,
                        e.spec.labels.get("site").map(String::as_str),
                        now,
                    )
                    .map(|w| w.view());
                v
            })
            .collect()
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

    fn round_at(start: Instant, sent: u32, rtts_ms: &[u64]) -> RoundResult {
        RoundResult {
            sent,
            rtts: rtts_ms.iter().map(|m| Duration::from_millis(*m)).collect(),
            last_answered: (!rtts_ms.is_empty()).then_some(start),
            first_answered: (!rtts_ms.is_empty()).then_some(start),
            ..RoundResult::new(SystemTime::now(), start)
        }
    }

    fn round(sent: u32, rtts_ms: &[u64]) -> RoundResult {
        round_at(Instant::now(), sent, rtts_ms)
    }

    #[test]
    fn ok_warning_down_with_hysteresis() {
        let s = spec(2);
        let t0 = SystemTime::now();
        let mut m = StatusMachine::new(t0);
        assert_eq!(m.status(), Status::Unknown);
        // First failed round of two: still unknown, no transition yet.
        assert_eq!(m.apply(&s, &round(4, &[]), t0, None), None);
        let t = m.apply(&s, &round(4, &[]), t0, None).unwrap();
        assert_eq!((t.from, t.to), (Status::Unknown, Status::Down));
        let t1 = t0 + Duration::from_secs(5);
        let t = m.apply(&s, &round(4, &[1, 1, 1, 1]), t1, None).unwrap();
        assert_eq!((t.from, t.to), (Status::Down, Status::Ok));
        assert_eq!(m.since(), t1);
        // Partial loss over warning_loss (0) is a warning.
        assert_eq!(
            m.apply(&s, &round(4, &[1, 1, 1]), t1, None).unwrap().to,
            Status::Warning
        );
        // Slow but complete: average above 200 ms.
        assert_eq!(m.apply(&s, &round(4, &[1, 1, 1, 900]), t1, None), None);
        assert_eq!(
            m.apply(&s, &round(4, &[1, 1, 1, 1]), t1, None).unwrap().to,
            Status::Ok
        );
        // One failed round with down_after 2 keeps ok.
        assert_eq!(m.apply(&s, &round(4, &[]), t1, None), None);
        assert_eq!(m.status(), Status::Ok);
        assert_eq!(
            m.apply(&s, &round(4, &[]), t1, None).unwrap().to,
            Status::Down
        );
    }

    /// A parent as an ICMP parent's rounds leave it: ok or warning, it has answered since
    /// long before the test's rounds; down or unreachable, its last round got no answer
    /// (`last_answered` is then the last answer before its silence).
    fn parent(status: Status, last_answered: Option<Instant>) -> ParentState {
        let answering = matches!(status, Status::Ok | Status::Warning);
        ParentState {
            name: "router".into(),
            status,
            behind: None,
            last_answered,
            answering_since: last_answered
                .filter(|_| answering)
                .map(|_| Instant::now() - Duration::from_secs(3600)),
        }
    }

    /// A child that goes silent while its parent is down is unreachable, behind the
    /// parent; when it answers again it is ok.
    #[test]
    fn silent_behind_a_down_parent_is_unreachable() {
        let s = spec(1);
        let now = SystemTime::now();
        let t0 = Instant::now();
        let mut m = StatusMachine::new(now);
        m.apply(&s, &round_at(t0, 4, &[1, 1, 1, 1]), now, None);
        // The parent last answered before the child's silence began, and is down now.
        let p = parent(Status::Down, Some(t0));
        let silent = t0 + Duration::from_secs(10);
        let t = m
            .apply(&s, &round_at(silent, 4, &[]), now, Some(&p))
            .unwrap();
        assert_eq!((t.from, t.to), (Status::Ok, Status::Unreachable));
        assert_eq!(m.behind(), Some("router"));
        let t = m
            .apply(
                &s,
                &round_at(silent + Duration::from_secs(10), 4, &[1]),
                now,
                Some(&p),
            )
            .unwrap();
        assert_eq!(t.to, Status::Warning);
        assert_eq!(m.behind(), None);
    }

    /// Behind a chain: the child is behind the top of it, the target that is down.
    #[test]
    fn behind_an_unreachable_parent_is_behind_the_failed_uplink() {
        let s = spec(1);
        let now = SystemTime::now();
        let t0 = Instant::now();
        let mut m = StatusMachine::new(now);
        let p = ParentState {
            name: "switch".into(),
            status: Status::Unreachable,
            behind: Some("core-router".into()),
            last_answered: None,
            answering_since: None,
        };
        assert_eq!(
            m.apply(&s, &round_at(t0, 4, &[]), now, Some(&p))
                .unwrap()
                .to,
            Status::Unreachable
        );
        assert_eq!(m.behind(), Some("core-router"));
    }

    /// The parent answered a request sent after the child's silence began (plus one
    /// timeout): the path works, so the child itself is down.
    #[test]
    fn silent_while_the_parent_answers_is_down() {
        let s = spec(1);
        let now = SystemTime::now();
        let t0 = Instant::now();
        let mut m = StatusMachine::new(now);
        let answered = t0 + s.timeout + Duration::from_millis(1);
        let p = parent(Status::Ok, Some(answered));
        assert_eq!(
            m.apply(&s, &round_at(t0, 4, &[]), now, Some(&p))
                .unwrap()
                .to,
            Status::Down
        );
        assert_eq!(m.behind(), None);
        // Once known down it stays down when the parent fails later: the parent's answer
        // during this silence is still the evidence.
        let p = parent(Status::Down, Some(answered));
        assert_eq!(
            m.apply(
                &s,
                &round_at(t0 + Duration::from_secs(10), 4, &[]),
                now,
                Some(&p)
            ),
            None
        );
        assert_eq!(m.status(), Status::Down);
    }

    /// The uplink failed in the middle of the parent's round: the parent still looks up
    /// (a warning: some replies) but has answered nothing since the child went silent.
    /// The child waits for the parent's next round instead of being called down.
    #[test]
    fn parent_not_decided_yet_keeps_the_child_as_it_was() {
        let s = spec(1);
        let now = SystemTime::now();
        let t0 = Instant::now();
        let mut m = StatusMachine::new(now);
        m.apply(&s, &round_at(t0, 4, &[1, 1, 1, 1]), now, None);
        let silent = t0 + Duration::from_secs(10);
        // An answer just before the silence, or within one timeout of it, is no proof.
        for answered in [
            silent - Duration::from_millis(5),
            silent + Duration::from_millis(5),
        ] {
            let p = parent(Status::Warning, Some(answered));
            assert_eq!(m.apply(&s, &round_at(silent, 4, &[]), now, Some(&p)), None);
            assert_eq!(m.status(), Status::Ok);
        }
        // The parent's next round: down. The child, still silent, is unreachable.
        let p = parent(Status::Down, Some(silent + Duration::from_millis(5)));
        let t = m
            .apply(
                &s,
                &round_at(silent + Duration::from_secs(10), 4, &[]),
                now,
                Some(&p),
            )
            .unwrap();
        assert_eq!((t.from, t.to), (Status::Ok, Status::Unreachable));
    }

    /// The uplink is back and the child still does not answer: now it is down (its
    /// silence started before the outage, the parent answers after it).
    #[test]
    fn unreachable_becomes_down_when_the_parent_answers_again() {
        let s = spec(1);
        let now = SystemTime::now();
        let t0 = Instant::now();
        let mut m = StatusMachine::new(now);
        m.apply(
            &s,
            &round_at(t0, 4, &[]),
            now,
            Some(&parent(Status::Down, None)),
        );
        assert_eq!(m.status(), Status::Unreachable);
        let back = t0 + Duration::from_secs(30);
        let t = m
            .apply(
                &s,
                &round_at(back, 4, &[]),
                now,
                Some(&parent(Status::Ok, Some(back))),
            )
            .unwrap();
        assert_eq!((t.from, t.to), (Status::Unreachable, Status::Down));
    }

    /// The uplink comes back in the middle of a round whose requests all went out while it
    /// was down: that round proves nothing about the child, which stays unreachable; its
    /// next round, all sent with the path up, decides.
    #[test]
    fn a_round_that_straddles_the_uplinks_return_keeps_the_child_unreachable() {
        let s = spec(1);
        let now = SystemTime::now();
        let t0 = Instant::now();
        let mut m = StatusMachine::new(now);
        m.apply(
            &s,
            &round_at(t0, 4, &[]),
            now,
            Some(&parent(Status::Down, None)),
        );
        assert_eq!(m.status(), Status::Unreachable);
        let round = t0 + Duration::from_secs(30);
        let back = round + Duration::from_secs(8);
        let p = ParentState {
            answering_since: Some(back),
            last_answered: Some(back + Duration::from_secs(1)),
            ..parent(Status::Ok, None)
        };
        assert_eq!(m.apply(&s, &round_at(round, 4, &[]), now, Some(&p)), None);
        assert_eq!(m.status(), Status::Unreachable);
        let next = round + Duration::from_secs(10);
        let p = ParentState {
            last_answered: Some(next + Duration::from_secs(2)),
            ..p
        };
        assert_eq!(
            m.apply(&s, &round_at(next, 4, &[]), now, Some(&p))
                .unwrap()
                .to,
            Status::Down
        );
    }

    #[test]
    fn down_after_applies_before_the_parent_is_asked() {
        let s = spec(3);
        let now = SystemTime::now();
        let t0 = Instant::now();
        let mut m = StatusMachine::new(now);
        let p = parent(Status::Down, None);
        for i in 0..2 {
            let r = round_at(t0 + Duration::from_secs(10 * i), 4, &[]);
            assert_eq!(m.apply(&s, &r, now, Some(&p)), None);
        }
        let r = round_at(t0 + Duration::from_secs(20), 4, &[]);
        assert_eq!(
            m.apply(&s, &r, now, Some(&p)).unwrap().to,
            Status::Unreachable
        );
    }

    /// A tcp or http target (one request a round) named `name`.
    fn service_spec(name: &str, kind: crate::probe_config::ProbeKind) -> TargetSpec {
        let address = match kind {
            crate::probe_config::ProbeKind::Http => "http://198.18.0.9/",
            _ => "198.18.0.9:22",
        };
        let c = Config {
            targets: vec![TargetConfig {
                name: name.into(),
                address: address.into(),
                probe: Some(kind),
                down_after: Some(1),
                ..Default::default()
            }],
            ..Default::default()
        };
        c.inline_targets().unwrap().remove(0)
    }

    /// A service probe's round, as services.rs makes it: one request sent at `start`;
    /// `answered` when the server answered anything (a TCP handshake, a refusal, a DNS
    /// reply), `passed` when every check passed.
    fn service_round(start: Instant, answered: bool, passed: bool) -> RoundResult {
        RoundResult {
            sent: 1,
            rtts: if passed {
                vec![Duration::from_millis(3)]
            } else {
                Vec::new()
            },
            first_answered: answered.then_some(start),
            last_answered: answered.then_some(start),
            ..RoundResult::new(SystemTime::now(), start)
        }
    }

    /// An http service behind an ICMP router: silent (no TCP handshake) while the router
    /// is down, it is unreachable behind the router, not down; once the router answers
    /// again and the service still does not, it is down.
    #[test]
    fn a_silent_service_behind_a_down_parent_is_unreachable() {
        let s = service_spec("portal", crate::probe_config::ProbeKind::Http);
        let now = SystemTime::now();
        let t0 = Instant::now();
        let mut m = StatusMachine::new(now);
        m.apply(&s, &service_round(t0, true, true), now, None);
        assert_eq!(m.status(), Status::Ok);
        let silent = t0 + Duration::from_secs(10);
        let t = m
            .apply(
                &s,
                &service_round(silent, false, false),
                now,
                Some(&parent(Status::Down, Some(t0))),
            )
            .unwrap();
        assert_eq!((t.from, t.to), (Status::Ok, Status::Unreachable));
        assert_eq!(m.behind(), Some("router"));
        let back = silent + Duration::from_secs(20);
        let t = m
            .apply(
                &s,
                &service_round(back, false, false),
                now,
                Some(&parent(Status::Ok, Some(back))),
            )
            .unwrap();
        assert_eq!((t.from, t.to), (Status::Unreachable, Status::Down));
    }

    /// A service that answers but fails its checks (an HTTP 503, a refused connection) is
    /// reachable, so it is down whatever its parent's status: a router that drops ICMP
    /// while forwarding must not hide a failing portal as "unreachable".
    #[test]
    fn a_service_that_answers_with_a_failure_is_down_whatever_its_parent() {
        let s = service_spec("portal", crate::probe_config::ProbeKind::Http);
        let now = SystemTime::now();
        let t0 = Instant::now();
        let mut m = StatusMachine::new(now);
        m.apply(&s, &service_round(t0, true, true), now, None);
        let t = m
            .apply(
                &s,
                &service_round(t0 + Duration::from_secs(10), true, false),
                now,
                Some(&parent(Status::Down, None)),
            )
            .unwrap();
        assert_eq!((t.from, t.to), (Status::Ok, Status::Down));
        assert_eq!(m.behind(), None);
    }

    /// A tcp parent whose port refuses is down, but it answered: the path to it works, so
    /// a child silent since before that answer is down on its own, and a child whose
    /// silence is too recent to judge waits (it is never unreachable behind a parent that
    /// answers).
    #[test]
    fn a_parent_that_answers_with_a_failure_vouches_for_the_path() {
        let now = SystemTime::now();
        let t0 = Instant::now();
        let uplink = TargetEntry::new(
            service_spec("uplink", crate::probe_config::ProbeKind::Tcp),
            now,
        );
        uplink.record(&service_round(t0, true, true), now, None);
        let refused = t0 + Duration::from_secs(10);
        let t = uplink
            .record(&service_round(refused, true, false), now, None)
            .unwrap();
        assert_eq!(t.to, Status::Down);
        let p = uplink.as_parent();
        assert_eq!(p.last_answered, Some(refused));
        assert!(p.answering_since.is_some_and(|a| a <= refused));

        let child = spec(1);
        // Silent since well before the refusal: the uplink answered after it, so down.
        let mut m = StatusMachine::new(now);
        m.apply(&child, &round_at(t0, 4, &[1, 1, 1, 1]), now, None);
        let silent = refused - child.timeout - Duration::from_millis(1);
        let t = m
            .apply(&child, &round_at(silent, 4, &[]), now, Some(&p))
            .unwrap();
        assert_eq!((t.from, t.to), (Status::Ok, Status::Down));
        // Silent since just before the refusal: not proven yet, and not unreachable.
        let mut m = StatusMachine::new(now);
        m.apply(&child, &round_at(t0, 4, &[1, 1, 1, 1]), now, None);
        let late = refused - Duration::from_millis(5);
        assert_eq!(
            m.apply(&child, &round_at(late, 4, &[]), now, Some(&p)),
            None
        );
        assert_eq!(m.status(), Status::Ok);
    }

    #[test]
    fn down_transitions_are_counted() {
        let entry = TargetEntry::new(spec(1), SystemTime::now());
        for i in 0..6 {
            let rtts: &[u64] = if i % 2 == 0 { &[] } else { &[1, 1, 1, 1] };
            entry.record(&round(4, rtts), SystemTime::now(), None);
        }
        assert_eq!(entry.state().down_transitions, 3);
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
