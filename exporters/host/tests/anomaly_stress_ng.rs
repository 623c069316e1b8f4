//! The host's anomaly score against real load (Debian package `stress-ng`).
//!
//! vigia-host scores the host every second with a 30-interval window. The test follows
//! every scoring interval through `/metrics` and asserts, in order:
//!
//! 1. warm-up: `vigia_host_anomaly_warmup_remaining_intervals` counts down to 0 as
//!    `vigia_host_anomaly_warm` turns 1;
//! 2. a calm baseline of [`CALM_INTERVALS`] intervals (two windows) in which at most
//!    [`MAX_FALSE_POSITIVES`] intervals score at or above the threshold (the count is
//!    printed whatever it is), in the first baseline or the one after it;
//! 3. the load starts right after an interval that scored below the threshold (waited for
//!    at most [`MAX_WAIT_FOR_CALM`] intervals, which count as calm ones too), so a crossing
//!    is a transition and not a score that was high already;
//! 4. the score reaches the threshold within two intervals of the load starting, and the
//!    feature furthest from the reference at that moment is one the load moves (CPU
//!    utilisation, runnable tasks or process count), so the crossing is the load's doing,
//!    and the machine's runnable tasks stand at least 3 robust deviations above the
//!    reference;
//! 5. once the load has stopped, the score falls below the threshold within
//!    [`MAX_INTERVALS_TO_FALL`] intervals.
//!
//! Other work on the machine is part of the baseline, not a precondition: nothing here
//! waits for a quiet machine. Two things keep the baseline the test's own:
//!
//! - vigia-host runs in PID and network namespaces of its own (root: `unshare`), with
//!   its own /proc, and stress-ng is started inside them (`nsenter`): the process count
//!   it scores is the test's, and its network is only `lo` (left out of the features),
//!   so other work starting a hundred processes or moving traffic through the host's
//!   interfaces is no regime change for it. CPU time, runnable tasks, memory and disk stay
//!   the machine's: /proc/stat, /proc/meminfo and /proc/diskstats are not namespaced.
//! - The load is sized from what the machine did during the baseline (`stress-ng --cpu`
//!   with four workers per CPU, or the most runnable tasks seen plus two per CPU when
//!   that is more), so it dominates whatever else runs, for ten seconds.
//!
//! What other work can still do is change the machine's CPU, memory or disk regime in
//! the middle of the baseline; [`MAX_FALSE_POSITIVES`] and a second baseline allow for
//! that, not for a detector that cries wolf.
//!
//! stress-ng runs once for a second before vigia-host starts, so its files are in the
//! page cache and starting the load reads nothing from disk.
//!
//! Run with `-- --nocapture` to see every score.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::os::fd::AsRawFd;

use common::{free_port, require_tool, wait_until_serving, Running, Scrape};

const WINDOW: usize = 30;
const CALM_INTERVALS: usize = 2 * WINDOW;
/// 10 % of the calm baseline.
const MAX_FALSE_POSITIVES: usize = CALM_INTERVALS / 10;
/// Baselines tried before the false-positive bound fails the test.
const BASELINES: usize = 2;
const MAX_WAIT_FOR_CALM: usize = 10;
const MAX_INTERVALS_TO_FALL: usize = 5;
/// The load's length: short of a window, so it cannot become the reference by itself.
const LOAD_SECONDS: u64 = 10;
/// Features a CPU load moves.
const LOAD_FEATURES: &[&str] = &["cpu_utilisation", "procs_running", "processes"];

/// One scoring interval as `/metrics` shows it.
#[derive(Debug, Clone)]
struct Interval {
    score: f64,
    warm: bool,
    warmup_remaining: f64,
    /// (feature, z-score), in name order.
    zscores: Vec<(String, f64)>,
    procs_running: f64,
}

impl Interval {
    fn read(run: &Running) -> Interval {
        let s = Scrape::fetch(run.addr);
        let mut zscores: Vec<(String, f64)> = s
            .family("vigia_host_anomaly_feature_zscore")
            .into_iter()
            .map(|(l, v)| (l["feature"].clone(), v))
            .collect();
        zscores.sort_by(|a, b| a.0.cmp(&b.0));
        Interval {
            score: s.value("vigia_host_anomaly_score", &[]).expect("score"),
            warm: s.value("vigia_host_anomaly_warm", &[]).expect("warm") == 1.0,
            warmup_remaining: s
                .value("vigia_host_anomaly_warmup_remaining_intervals", &[])
                .expect("warm-up remaining"),
            zscores,
            procs_running: s.value("node_procs_running", &[]).expect("procs_running"),
        }
    }

    /// What changes with every scored vector (the score alone may repeat, at 1.0).
    fn same_vector(&self, other: &Interval) -> bool {
        self.score == other.score
            && self.warmup_remaining == other.warmup_remaining
            && self.zscores == other.zscores
    }

    /// The feature furthest from the reference window, and its z-score.
    fn top_feature(&self) -> (String, f64) {
        self.zscores
            .iter()
            .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
            .cloned()
            .unwrap_or_default()
    }
}

/// Follows vigia-host's scoring intervals by polling `/metrics` until a new vector shows.
struct Follower<'a> {
    run: &'a Running,
    last: Interval,
}

impl<'a> Follower<'a> {
    fn new(run: &'a Running) -> Self {
        Self {
            last: Interval::read(run),
            run,
        }
    }

    fn next(&mut self) -> Interval {
        let start = Instant::now();
        loop {
            std::thread::sleep(Duration::from_millis(100));
            let now = Interval::read(self.run);
            if !now.same_vector(&self.last) {
                self.last = now.clone();
                return now;
            }
            // An interval is 1 s; a busy machine may delay one, not stop the clock.
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "no new anomaly score in 10 s (last: {:?})",
                self.last
            );
        }
    }
}

/// vigia-host in namespaces of its own: PID (with its own /proc) and network (only `lo`,
/// brought up for the scrapes). The test's thread joins that network namespace to scrape
/// it. Returns it with its host PID, PID 1 of its namespace.
fn start_confined(unshare: &str, env: &[(&str, &str)]) -> (Running, u32) {
    let addr = free_port();
    let child = Command::new(unshare)
        .args(["--net", "--pid", "--mount-proc", "--kill-child", "--"])
        .args(["sh", "-c", "ip link set lo up && exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_vigia-host"))
        .arg(format!("--web.listen-address={addr}"))
        .env_remove("VIGIA_CONFIG_FILE")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start unshare");
    let mut run = Running { child, addr };
    let pid = run.child.id();
    let started = Instant::now();
    let init: u32 = loop {
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        if let Some(c) = children.split_whitespace().next() {
            break c.parse().unwrap();
        }
        if let Ok(Some(status)) = run.child.try_wait() {
            panic!("unshare exited: {status} (this test needs root)");
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "unshare started no child"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let ns = std::fs::File::open(format!("/proc/{init}/ns/net")).expect("network namespace");
    // SAFETY: setns(2) on an open namespace file; it moves only the calling thread (this
    // test's), and processes it spawns from now on, into that network namespace.
    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
    wait_until_serving(&mut run, Duration::from_secs(15));
    (run, init)
}

/// stress-ng, killed if the test ends before it does (and with the namespace anyway:
/// the kernel kills every process of a PID namespace when its init ends).
struct Stress(Child);

impl Drop for Stress {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn stress_ng_load_raises_the_score_and_calm_returns_root() {
    let stress_bin = require_tool("stress-ng", "stress-ng");
    let window = WINDOW.to_string();
    let unshare = require_tool("unshare", "util-linux");
    let nsenter = require_tool("nsenter", "util-linux");
    require_tool("ip", "iproute2");
    // stress-ng's binary and libraries read once now, before the reference is learned:
    // on a fresh machine their first read from disk coincided with the load and was the
    // crossing's top feature (disk reads in a window of none), which is the test's cache
    // being cold, not what the load does.
    let warmed = Command::new(&stress_bin)
        .args(["--cpu", "1", "--timeout", "1s", "--quiet"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run stress-ng once");
    assert!(warmed.success(), "stress-ng --cpu 1 --timeout 1s: {warmed}");
    // Only what the score needs is collected: every scrape of the test is load too.
    let (vigia, init) = start_confined(
        &unshare,
        &[
            ("VIGIA_HOST__ANOMALY__INTERVAL", "1s"),
            ("VIGIA_HOST__ANOMALY__WINDOW_SIZE", window.as_str()),
            ("VIGIA_HOST__COLLECTORS__CGROUPS", "false"),
            ("VIGIA_HOST__COLLECTORS__FILESYSTEM", "false"),
            ("VIGIA_HOST__COLLECTORS__INVENTORY", "false"),
            ("VIGIA_HOST__COLLECTORS__ENERGY", "false"),
        ],
    );
    let mut follow = Follower::new(&vigia);
    let threshold = Scrape::fetch(vigia.addr)
        .value("vigia_host_anomaly_threshold", &[])
        .expect("threshold");

    // 1. Warm-up: the remaining count only goes down, and reaches 0 exactly when warm.
    let mut remaining = vec![follow.last.warmup_remaining];
    let started = Instant::now();
    while !follow.last.warm {
        let i = follow.next();
        assert!(
            i.warmup_remaining < *remaining.last().unwrap(),
            "warm-up remaining went {remaining:?} then {}",
            i.warmup_remaining
        );
        assert_eq!(
            i.warm,
            i.warmup_remaining == 0.0,
            "warm {} with {} intervals remaining",
            i.warm,
            i.warmup_remaining
        );
        remaining.push(i.warmup_remaining);
        assert!(
            started.elapsed() < Duration::from_secs(3 * WINDOW as u64),
            "not warm after {:?}: {remaining:?}",
            started.elapsed()
        );
    }
    assert!(
        remaining[0] <= (WINDOW + 1) as f64,
        "warm-up started at {} intervals for a window of {WINDOW}",
        remaining[0]
    );
    println!("warm-up counted down {remaining:?}");

    // 2. Calm baseline, whatever else the machine does. Other work can shift the
    // machine's CPU, memory or disk regime in the middle of one (measured here: a CPU dip
    // of other builds, six intervals at 1.0), so, as the parity test does for a mount
    // that comes and goes, the bound must hold in one of two baselines in a row; a
    // detector that flags calm intervals fails both. Every baseline is printed.
    let mut attempts = Vec::new();
    let calm = loop {
        let mut calm: Vec<Interval> = (0..CALM_INTERVALS).map(|_| follow.next()).collect();
        // 3. The load starts right after a score under the threshold.
        while calm.last().unwrap().score >= threshold {
            assert!(
                calm.len() < CALM_INTERVALS + MAX_WAIT_FOR_CALM,
                "no calm score within {MAX_WAIT_FOR_CALM} intervals after the baseline: {:?}",
                calm.iter().map(|i| i.score).collect::<Vec<_>>()
            );
            calm.push(follow.next());
        }
        let scores: Vec<f64> = calm.iter().map(|i| i.score).collect();
        let false_positives: Vec<(usize, f64, (String, f64))> = calm
            .iter()
            .enumerate()
            .filter(|(_, i)| i.score >= threshold)
            .map(|(n, i)| (n, i.score, i.top_feature()))
            .collect();
        let summary = format!(
            "false positives: {} of {} calm intervals at or above {threshold} (bound {MAX_FALSE_POSITIVES}): {false_positives:?}",
            false_positives.len(),
            calm.len(),
        );
        println!("baseline {}: calm scores {scores:?}", attempts.len() + 1);
        println!("baseline {}: {summary}", attempts.len() + 1);
        attempts.push(summary);
        if false_positives.len() <= MAX_FALSE_POSITIVES {
            break calm;
        }
        assert!(
            attempts.len() < BASELINES,
            "over the false-positive bound in {BASELINES} baselines in a row:\n{}",
            attempts.join("\n")
        );
    };
    let peak_running = calm.iter().map(|i| i.procs_running).fold(0.0, f64::max);
    println!("runnable tasks peaked at {peak_running} in the baseline");
    let before = calm.last().unwrap().clone();
    assert!(before.score < threshold);

    // 4. The load: enough workers to dominate what ran during the baseline.
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let workers = (4 * cpus).max(peak_running as usize + 2 * cpus).min(64);
    let load_started = Instant::now();
    let mut stress = Stress(
        Command::new(&nsenter)
            .arg(format!("--target={init}"))
            .args(["--pid", "--"])
            .arg(&stress_bin)
            .args(["--cpu", &workers.to_string()])
            .args(["--timeout", &format!("{LOAD_SECONDS}s"), "--quiet"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start stress-ng"),
    );
    let under_load: Vec<Interval> = (0..2).map(|_| follow.next()).collect();
    let crossed_after = Instant::now().duration_since(load_started);
    println!(
        "load of {workers} workers, {:.1} s after a calm score of {:.3}: next two scores {:?} (runnable {:?}), top features {:?}",
        crossed_after.as_secs_f64(),
        before.score,
        under_load.iter().map(|i| i.score).collect::<Vec<_>>(),
        under_load.iter().map(|i| i.procs_running).collect::<Vec<_>>(),
        under_load.iter().map(Interval::top_feature).collect::<Vec<_>>(),
    );
    let crossing = under_load
        .iter()
        .find(|i| i.score >= threshold)
        .unwrap_or_else(|| {
            panic!(
                "score did not reach {threshold} within two intervals of the load starting: {:?}",
                under_load
            )
        });
    println!(
        "at the crossing (score {:.3}): z-scores {:?}",
        crossing.score, crossing.zscores
    );
    // Explained by the load: a feature it raises is far out (z >= 3) at the crossing.
    // Not necessarily the furthest: disk and network are the whole machine's, and other
    // work can move them in the same interval (seen in CI: disk reads at z 29 beside the
    // CPU's 22 as the load started).
    let (feature, z) = crossing
        .zscores
        .iter()
        .filter(|(f, _)| LOAD_FEATURES.contains(&f.as_str()))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .cloned()
        .unwrap_or_default();
    assert!(
        z >= 3.0,
        "the crossing is not explained by the load: its furthest feature is {feature} (z {z}), the top one {:?}: {crossing:?}",
        crossing.top_feature()
    );
    // The process count is the namespace's; the run queue is the whole machine's, and the
    // load must stand out there too, against everything else that runs.
    let running_z = crossing
        .zscores
        .iter()
        .find(|(f, _)| f == "procs_running")
        .map_or(0.0, |(_, z)| *z);
    assert!(
        running_z >= 3.0,
        "runnable tasks only {running_z} robust deviations above the reference under a load of {workers} workers: {crossing:?}"
    );

    // 5. After the load: calm again.
    let status = loop {
        if let Some(status) = stress.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            load_started.elapsed() < Duration::from_secs(LOAD_SECONDS + 20),
            "stress-ng still running {:?} after it started",
            load_started.elapsed()
        );
        follow.next();
    };
    assert!(status.success(), "stress-ng ended with {status}");
    let mut after = Vec::new();
    loop {
        let i = follow.next();
        after.push((i.score, i.top_feature()));
        if i.score < threshold {
            break;
        }
        assert!(
            after.len() < MAX_INTERVALS_TO_FALL,
            "score still at or above {threshold} {MAX_INTERVALS_TO_FALL} intervals after the load stopped: {after:?}"
        );
    }
    println!("after the load: {after:?}");
}
