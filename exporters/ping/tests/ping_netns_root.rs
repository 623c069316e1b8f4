//! Remote hosts made of network namespaces (198.18.0.0/15): a host that stops answering
//! and comes back, a slow host, and host names that stop resolving. Needs root,
//! `iproute2`, `procps` and `python3` (the slow host's responder).

mod support;

use std::time::{Duration, Instant};

use support::{metric, Exporter, Netns, NetnsHost, SlowResponder};

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test needs root (CI runs as root)"
    );
}

fn status_of(body: &str, target: &str) -> Option<&'static str> {
    ["ok", "warning", "down", "unknown"].into_iter().find(|s| {
        metric(
            body,
            "vigia_ping_status",
            &[("target", target), ("status", s)],
        ) == Some(1.0)
    })
}

/// The `ip` of every `vigia_ping_target_info` series of `target`.
fn info_ips(body: &str, target: &str) -> Vec<String> {
    body.lines()
        .filter(|l| l.starts_with("vigia_ping_target_info{"))
        .filter(|l| l.contains(&format!("target=\"{target}\"")))
        .map(|l| {
            let at = l.find("ip=\"").expect("an ip label") + 4;
            l[at..at + l[at..].find('"').unwrap()].to_string()
        })
        .collect()
}

/// What /metrics said after one round: counters and status are updated together, so a
/// scrape always shows whole rounds.
#[derive(Debug, Clone)]
struct Round {
    number: u64,
    /// Replies in this round (for the first round seen: all so far).
    replies: u64,
    total_replies: u64,
    status: &'static str,
}

/// Polls /metrics and records every round of `target` (count 2 per round) until `until`
/// holds for a round or `within` runs out.
fn watch_rounds(
    e: &Exporter,
    target: &str,
    rounds: &mut Vec<Round>,
    within: Duration,
    until: impl Fn(&Round) -> bool,
) {
    let deadline = Instant::now() + within;
    let l = [("target", target)];
    loop {
        let body = e.metrics();
        let requests = metric(&body, "vigia_ping_requests_total", &l).unwrap_or(0.0) as u64;
        let total_replies = metric(&body, "vigia_ping_replies_total", &l).unwrap_or(0.0) as u64;
        let number = requests / 2;
        if number > 0 && rounds.last().map_or(true, |r| r.number < number) {
            let before = rounds.last().map_or(0, |r| r.total_replies);
            let round = Round {
                number,
                replies: total_replies - before,
                total_replies,
                status: status_of(&body, target).expect("a status"),
            };
            let done = until(&round);
            rounds.push(round);
            if done {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "timed out; rounds so far: {rounds:?}\nlog:\n{}",
            e.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn transitions(e: &Exporter) -> Vec<serde_json::Value> {
    std::fs::read_to_string(e.dir.path().join("transitions.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

#[test]
fn root_netns_host_down_and_back_changes_status_at_the_right_rounds() {
    require_root();
    let host = NetnsHost::new();
    let e = Exporter::start(&format!(
        "defaults: {{interval: 1s, count: 2, timeout: 300ms, down_after: 2, warning_loss: 0.5}}\n\
         targets:\n  - {{name: edge, address: {}, labels: {{site: norte, kind: router}}}}\n\
         transition_log: {{path: \"{{dir}}/transitions.jsonl\"}}\n",
        host.addr
    ));
    let mut rounds = Vec::new();
    watch_rounds(&e, "edge", &mut rounds, Duration::from_secs(10), |r| {
        r.status == "ok" && r.number >= 2
    });
    host.set_echo_ignore(true);
    watch_rounds(&e, "edge", &mut rounds, Duration::from_secs(10), |r| {
        r.status == "down"
    });
    host.set_echo_ignore(false);
    watch_rounds(&e, "edge", &mut rounds, Duration::from_secs(10), |r| {
        r.status == "ok"
    });

    // Rounds were seen one by one (no round between two scrapes went unseen).
    for w in rounds.windows(2) {
        assert_eq!(
            w[1].number,
            w[0].number + 1,
            "a round was missed: {rounds:?}"
        );
    }
    let down = rounds.iter().position(|r| r.status == "down").unwrap();
    // Down after exactly down_after = 2 rounds without any reply, not earlier.
    assert_eq!(rounds[down].replies, 0, "{rounds:?}");
    assert_eq!(rounds[down - 1].replies, 0, "{rounds:?}");
    assert_eq!(
        rounds[down - 1].status,
        "ok",
        "one silent round is tolerated: {rounds:?}"
    );
    assert!(rounds[down - 2].replies > 0, "{rounds:?}");
    // Back to ok in the first round that got a reply.
    let back = rounds.iter().rposition(|r| r.status == "ok").unwrap();
    assert_eq!(back, rounds.len() - 1);
    assert!(rounds[back].replies > 0);
    assert!(
        rounds[down..back].iter().all(|r| r.replies == 0),
        "{rounds:?}"
    );

    let log = transitions(&e);
    let changes: Vec<(String, String)> = log
        .iter()
        .map(|l| {
            (
                l["from"].as_str().unwrap().into(),
                l["to"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [("unknown", "ok"), ("ok", "down"), ("down", "ok")]
            .map(|(a, b)| (a.to_string(), b.to_string())),
        "{log:?}"
    );
    for l in &log {
        assert_eq!(l["target"], "edge");
        assert_eq!(l["address"], host.addr.to_string());
        assert!(l["time"].as_str().unwrap().ends_with('Z'));
    }
    assert_eq!(log[1]["loss_ratio"], 1.0);
    assert!(
        log[1]["last_rtt_seconds"].as_f64().unwrap() > 0.0,
        "RTT before the outage"
    );
    let body = e.metrics();
    let labels = [("target", "edge"), ("site", "norte")];
    let since = metric(&body, "vigia_ping_status_change_timestamp_seconds", &labels).unwrap();
    let logged = log[2]["time"].as_str().unwrap();
    let logged = humantime::parse_rfc3339(logged).unwrap();
    let logged = logged
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((since - logged).abs() < 0.01, "{since} vs {logged}");
}

#[test]
fn root_netns_slow_host_is_warning() {
    require_root();
    let slow = NetnsHost::new();
    slow.set_echo_ignore(true);
    let _responder = SlowResponder::start(&slow, Duration::from_millis(250));
    let e = Exporter::start(&format!(
        "defaults: {{interval: 2s, count: 2, timeout: 900ms, warning_rtt: 100ms, warning_loss: 0.5}}\n\
         targets:\n  - {{name: slow, address: {}}}\n  - {{name: fast, address: 127.0.0.1}}\n",
        slow.addr
    ));
    let body = e.wait_metrics(
        Duration::from_secs(15),
        "two rounds of the slow host",
        |b| {
            metric(b, "vigia_ping_requests_total", &[("target", "slow")]).is_some_and(|v| v >= 4.0)
                && metric(b, "vigia_ping_requests_total", &[("target", "fast")])
                    .is_some_and(|v| v >= 2.0)
        },
    );
    assert_eq!(status_of(&body, "slow"), Some("warning"), "{body}");
    assert_eq!(status_of(&body, "fast"), Some("ok"), "{body}");
    let l = [("target", "slow")];
    let requests = metric(&body, "vigia_ping_requests_total", &l).unwrap();
    // Warning for the RTT, not for loss: with warning_loss 0.5 one lost reply of two
    // (a Python responder on a busy machine) would not make a warning by itself.
    let replies = metric(&body, "vigia_ping_replies_total", &l).unwrap();
    assert!(replies >= requests - 1.0, "{replies} of {requests}");
    let rtt = metric(&body, "vigia_ping_last_rtt_seconds", &l).unwrap();
    // Generous upper bound: the responder is a Python process on a busy machine.
    assert!((0.25..0.9).contains(&rtt), "delayed reply RTT {rtt}");
    assert_eq!(
        metric(
            &body,
            "vigia_ping_rtt_seconds_bucket",
            &[("target", "slow"), ("le", "0.1")]
        ),
        Some(0.0)
    );
    assert_eq!(
        metric(
            &body,
            "vigia_ping_rtt_seconds_bucket",
            &[("target", "slow"), ("le", "1.0")]
        ),
        Some(replies)
    );
    assert_eq!(metric(&body, "vigia_ping_up", &l), Some(1.0));
}

#[test]
fn root_netns_host_names_resolve_on_schedule_and_failures_mark_down() {
    require_root();
    // Resolution stays inside the namespace: /etc/hosts is ours, and DNS goes to the
    // namespace's own loopback, where nothing listens.
    let ns = Netns::isolated();
    let hosts_with = "127.0.0.1 localhost\n127.0.0.5 flappy.vigia.test\n";
    ns.write_etc("hosts", hosts_with);
    ns.write_etc(
        "resolv.conf",
        "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
    );
    let mut e = Exporter::start_in(
        &ns,
        "defaults: {interval: 1s, count: 1, timeout: 300ms, resolve_interval: 1s}\n\
         targets:\n  - {name: flappy, address: flappy.vigia.test}\n  - {name: ghost, address: ghost.vigia.test}\n  - {name: fixed, address: 127.0.0.1}\n",
    );
    let body = e.wait_metrics(Duration::from_secs(15), "flappy ok and ghost down", |b| {
        status_of(b, "flappy") == Some("ok") && status_of(b, "ghost") == Some("down")
    });
    // The address each target is probed at: one info series per target that has one.
    assert_eq!(info_ips(&body, "flappy"), ["127.0.0.5"]);
    assert_eq!(
        metric(
            &body,
            "vigia_ping_target_info",
            &[("target", "flappy"), ("address", "flappy.vigia.test")]
        ),
        Some(1.0)
    );
    assert_eq!(info_ips(&body, "fixed"), ["127.0.0.1"]);
    assert!(info_ips(&body, "ghost").is_empty(), "{body}");

    // The name moves to another address: followed at the next resolve, and the info
    // series is replaced, not joined by a second one.
    ns.write_etc(
        "hosts",
        "127.0.0.1 localhost\n127.0.0.6 flappy.vigia.test\n",
    );
    let body = e.wait_metrics(Duration::from_secs(15), "flappy at 127.0.0.6", |b| {
        info_ips(b, "flappy") == ["127.0.0.6"]
    });
    assert_eq!(status_of(&body, "flappy"), Some("ok"));
    let ghost = [("target", "ghost"), ("address", "ghost.vigia.test")];
    assert!(metric(&body, "vigia_ping_resolve_errors_total", &ghost).unwrap() >= 1.0);
    assert_eq!(
        metric(&body, "vigia_ping_requests_total", &ghost),
        Some(0.0)
    );
    assert_eq!(metric(&body, "vigia_ping_up", &ghost), Some(0.0));
    assert_eq!(
        e.get("/-/ready").0,
        200,
        "an unresolvable target still finishes rounds"
    );

    // The name stops resolving: the target goes down, the exporter keeps running.
    ns.write_etc("hosts", "127.0.0.1 localhost\n");
    let body = e.wait_metrics(Duration::from_secs(15), "flappy down", |b| {
        status_of(b, "flappy") == Some("down")
    });
    assert!(
        metric(
            &body,
            "vigia_ping_resolve_errors_total",
            &[("target", "flappy")]
        )
        .unwrap()
            >= 1.0
    );
    assert!(e.is_running());
    assert!(info_ips(&body, "flappy").is_empty(), "{body}");
    // Logged when the failure starts, not every round.
    let log = e.stderr();
    let ghost_warnings = log
        .lines()
        .filter(|l| l.contains("does not resolve") && l.contains("ping_target=ghost"))
        .count();
    assert_eq!(ghost_warnings, 1, "{log}");
    // And resolves again.
    ns.write_etc("hosts", hosts_with);
    let body = e.wait_metrics(Duration::from_secs(15), "flappy ok again", |b| {
        status_of(b, "flappy") == Some("ok")
    });
    assert_eq!(info_ips(&body, "flappy"), ["127.0.0.5"]);
    assert!(e.is_running());
}

#[test]
fn root_netns_ready_only_after_every_target_finished_a_round() {
    require_root();
    let silent = NetnsHost::new();
    silent.set_echo_ignore(true);
    let e = Exporter::start(&format!(
        "defaults: {{interval: 10s, count: 1, timeout: 3s}}\n\
         targets:\n  - {{name: silent, address: {}}}\n  - {{name: lo, address: 127.0.0.1}}\n",
        silent.addr
    ));
    // The silent host's first round cannot end before its 3 s timeout.
    assert_eq!(e.get("/-/ready").0, 503);
    let deadline = Instant::now() + Duration::from_secs(20);
    while e.get("/-/ready").0 != 200 {
        assert!(Instant::now() < deadline, "never ready: {}", e.stderr());
        std::thread::sleep(Duration::from_millis(100));
    }
    let body = e.metrics();
    // Ready came with the silent host's first round (the other may have done more).
    assert_eq!(
        metric(&body, "vigia_ping_requests_total", &[("target", "silent")]),
        Some(1.0),
        "{body}"
    );
    assert!(metric(&body, "vigia_ping_requests_total", &[("target", "lo")]).unwrap() >= 1.0);
    assert_eq!(status_of(&body, "silent"), Some("down"));
}

#[test]
fn root_netns_unroutable_target_counts_send_errors_and_is_down() {
    require_root();
    // A namespace with only loopback: the kernel has no route and refuses to send, so
    // no packet leaves at all.
    let ns = Netns::isolated();
    let e = Exporter::start_in(
        &ns,
        "defaults: {interval: 1s, count: 2, timeout: 300ms}\n\
         targets:\n  - {name: nowhere, address: 198.18.0.1}\n",
    );
    let l = [("target", "nowhere")];
    let body = e.wait_metrics(Duration::from_secs(10), "two rounds", |b| {
        metric(b, "vigia_ping_requests_total", &l).is_some_and(|v| v >= 4.0)
    });
    let requests = metric(&body, "vigia_ping_requests_total", &l).unwrap();
    assert_eq!(
        metric(&body, "vigia_ping_send_errors_total", &l),
        Some(requests),
        "{body}"
    );
    assert_eq!(metric(&body, "vigia_ping_replies_total", &l), Some(0.0));
    assert_eq!(status_of(&body, "nowhere"), Some("down"));
}
