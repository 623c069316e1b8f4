//! The probe loops: one Tokio task per target (no thread per ping), started at an offset
//! within the interval so that a thousand targets do not fire in the same millisecond,
//! and the reconciliation that starts, stops and restarts them when the target list
//! changes.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use vigia_kit::metrics::ErrorCounter;
use vigia_kit::server::Readiness;

use crate::config::TargetSpec;
use crate::probe::Prober;
use crate::probe_config::ProbeSpec;
use crate::resolve::{AddressResolver, LookupFn};
use crate::rounds::RoundWriter;
use crate::services::{self, ServiceProber};
use crate::status::{RoundResult, StatusTable, TargetEntry, Transition};
use crate::transitions::{TransitionLog, TransitionRecord};

/// What every probe loop shares.
pub struct ProbeContext {
    pub prober: Prober,
    pub table: Arc<StatusTable>,
    pub transitions: Option<Mutex<TransitionLog>>,
    pub rounds: RoundWriter,
    pub ready: Readiness,
    pub errors: ErrorCounter,
    pub lookup: LookupFn,
}

struct Running {
    entry: Arc<TargetEntry>,
    task: JoinHandle<()>,
}

/// Owns the probe tasks.
pub struct Scheduler {
    ctx: Arc<ProbeContext>,
    /// The ICMP probe thread's runtime: ICMP probe loops run there and nowhere else.
    runtime: tokio::runtime::Handle,
    /// The service probe thread's runtime (tcp, http, dns), apart from ICMP's.
    services: tokio::runtime::Handle,
    /// Upper bounds of every target's RTT histogram (`rtt_buckets`).
    rtt_buckets: Vec<f64>,
    running: HashMap<String, Running>,
}

impl Scheduler {
    pub fn new(
        ctx: Arc<ProbeContext>,
        runtime: tokio::runtime::Handle,
        services: tokio::runtime::Handle,
        rtt_buckets: Vec<f64>,
    ) -> Self {
        Self {
            ctx,
            runtime,
            services,
            rtt_buckets,
            running: HashMap::new(),
        }
    }

    /// Makes the running targets match `specs`: removed ones stop and leave the table
    /// (and /metrics), changed ones restart with fresh state, unchanged ones go on.
    pub fn apply(&mut self, specs: Vec<TargetSpec>) {
        let mut next: HashMap<String, Running> = HashMap::with_capacity(specs.len());
        let mut order = Vec::with_capacity(specs.len());
        let (mut added, mut kept) = (0usize, 0usize);
        for spec in specs {
            let name = spec.name.clone();
            let running = match self.running.remove(&name) {
                Some(r) if r.entry.spec == spec => {
                    kept += 1;
                    r
                }
                other => {
                    if let Some(old) = other {
                        old.task.abort();
                    }
                    added += 1;
                    let entry = Arc::new(TargetEntry::with_buckets(
                        spec,
                        &self.rtt_buckets,
                        SystemTime::now(),
                    ));
                    let runtime = match entry.spec.probe {
                        ProbeSpec::Icmp => &self.runtime,
                        _ => &self.services,
                    };
                    let task = runtime.spawn(probe_loop(self.ctx.clone(), entry.clone()));
                    Running { entry, task }
                }
            };
            order.push(running.entry.clone());
            next.insert(name, running);
        }
        let removed = self.running.len();
        for (_, old) in self.running.drain() {
            old.task.abort();
        }
        self.running = next;
        self.ctx.table.replace(order);
        tracing::info!(
            targets = self.running.len(),
            added,
            kept,
            removed,
            "target list applied"
        );
        if self.running.is_empty() {
            self.ctx.ready.set(true);
        }
    }

    pub fn stop(&mut self) {
        for (_, r) in self.running.drain() {
            r.task.abort();
        }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Start slots per interval. Targets in one slot send in the same wake-up of the
/// runtime: at 1,000 targets and 1 s, 100 slots of 10 ms cut the context switches (the
/// largest CPU cost after the kernel's own ICMP work) tenfold against one per target,
/// while the load stays spread over the interval.
const START_SLOTS: u32 = 100;

/// Where in the interval a target starts: stable per name, so a restart keeps the
/// spread, and uniform over the interval's slots.
fn start_offset(name: &str, interval: Duration) -> Duration {
    let mut h = DefaultHasher::new();
    name.hash(&mut h);
    let slot = (h.finish() % u64::from(START_SLOTS)) as u32;
    interval / START_SLOTS * slot
}

async fn probe_loop(ctx: Arc<ProbeContext>, entry: Arc<TargetEntry>) {
    let spec = entry.spec.clone();
    let payload = vec![0u8; spec.payload_size];
    // A lookup may take at most half an interval (and 5 s), so the round still fits.
    let wait = (spec.interval / 2).min(Duration::from_secs(5));
    let mut resolver = AddressResolver::new(
        spec.host.clone(),
        spec.resolve_interval,
        wait,
        ctx.lookup.clone(),
    );
    // tcp, http and dns targets; `None` for icmp.
    let service = ServiceProber::new(&spec, ctx.lookup.clone());
    let first = Instant::now() + start_offset(&spec.name, spec.interval);
    let mut ticker = tokio::time::interval_at(first, spec.interval);
    // A stalled machine skips rounds instead of firing a burst of them to catch up.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    // Resolve failures are logged when they start and end, not every round: a thousand
    // names behind a dead DNS server must not flood the log.
    let mut resolve_failing = false;
    loop {
        let start = ticker.tick().await;
        let started = SystemTime::now();
        let resolving = Instant::now();
        let round = match resolver.address().await {
            Ok(ip) => {
                if resolve_failing {
                    tracing::info!(ping_target = %spec.name, address = %ip, "host name resolves again");
                    resolve_failing = false;
                }
                match &service {
                    // Boxed: a service probe's state (TLS, HTTP) is kilobytes, and held
                    // inline it would make every target's task that large between
                    // rounds, ICMP ones included.
                    Some(s) => Box::pin(s.round(&spec, ip, resolving.elapsed(), started)).await,
                    None => ctx.prober.round(&spec, ip, start, started, &payload).await,
                }
            }
            Err(e) => {
                if !resolve_failing {
                    tracing::warn!(ping_target = %spec.name, error = %e, "host name does not resolve; target not probed until it does");
                    resolve_failing = true;
                } else {
                    tracing::debug!(ping_target = %spec.name, error = %e, "host name still does not resolve");
                }
                RoundResult {
                    resolve_error: true,
                    outcome: services::resolve_failure(&spec, &e),
                    ..RoundResult::new(started, start.into_std())
                }
            }
        };
        let now = SystemTime::now();
        // The parent's state as its own last round left it, read in one piece under its
        // lock. Parent and child may run on different probe threads (an http service
        // behind an ICMP router), so a round of the parent can end between this and
        // `record`: the child then decides as if its round had ended just before the
        // parent's, which is an order the judgement already allows for (it takes a
        // parent's answer as proof only after a timeout, and a stale "down" lasts one
        // round).
        let parent = ctx.table.parent_of(&entry);
        let transition = entry.record(&round, now, parent.as_ref());
        let (status, behind) = {
            let s = entry.state();
            (s.machine.status(), s.machine.behind().map(str::to_string))
        };
        ctx.rounds.write(&entry, &round, status, behind.as_deref());
        if let Some(t) = transition {
            log_transition(&ctx, &entry, &round, t, behind.as_deref(), now);
        }
        if !ctx.ready.is_ready() && ctx.table.all_probed() {
            tracing::info!("every target finished its first round; ready");
            ctx.ready.set(true);
        }
    }
}

fn log_transition(
    ctx: &ProbeContext,
    entry: &TargetEntry,
    round: &RoundResult,
    t: Transition,
    behind: Option<&str>,
    now: SystemTime,
) {
    let last_rtt = entry.state().last_rtt.map(|d| d.as_secs_f64());
    let failure = round.outcome.as_ref().and_then(|o| o.failure.as_ref());
    tracing::info!(
        ping_target = %entry.spec.name,
        address = %entry.spec.address,
        probe = entry.spec.probe.kind().as_str(),
        from = t.from.as_str(),
        to = t.to.as_str(),
        error = failure.map(|f| f.message.as_str()),
        behind,
        "status changed"
    );
    let Some(log) = &ctx.transitions else {
        return;
    };
    let mut record = TransitionRecord::new(
        now,
        &entry.spec.name,
        &entry.spec.address,
        t,
        behind,
        last_rtt,
        Some(round.loss_ratio()),
    );
    record.probe = entry.spec.probe.kind().as_str();
    record.error = round
        .outcome
        .as_ref()
        .and_then(|o| o.failure.as_ref())
        .map(|f| f.message.clone());
    let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
    if let Err(e) = log.append(&record) {
        tracing::warn!(path = %log.path().display(), error = %e, "cannot write the transition log");
        ctx.errors.inc("transition_log");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_spread_over_the_interval() {
        let interval = Duration::from_secs(1);
        let mut buckets = [0u32; 10];
        for i in 0..1000 {
            let o = start_offset(&format!("t{i}"), interval);
            assert!(o < interval);
            buckets[(o.as_millis() / 100) as usize] += 1;
        }
        // Roughly uniform: every tenth of the interval gets some of the targets.
        assert!(buckets.iter().all(|&b| b > 50), "{buckets:?}");
    }
}
