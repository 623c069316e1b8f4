//! The targets file a NOC edits: added targets start, removed ones leave /metrics, a bad
//! edit is rejected and counted while the previous list keeps running, and `key=value`
//! settings on a line override the defaults for that target; the maintenance file is
//! re-read the same way. Needs root (raw ICMP socket).

mod support;

use std::time::Duration;

use support::{metric, Exporter};

#[test]
fn root_targets_file_edits_apply_and_bad_edits_keep_the_previous_list() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test needs root (CI runs as root)"
    );
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("targets.txt");
    std::fs::write(
        &list,
        "a 127.0.0.2 site=norte\nb 127.0.0.3 site=sur kind=olt\n",
    )
    .unwrap();
    let e = Exporter::start(&format!(
        "defaults: {{interval: 1s, count: 1, timeout: 300ms}}\n\
         targets_file: \"{}\"\n\
         targets_file_check_interval: 200ms\n\
         targets: [{{name: fixed, address: 127.0.0.1}}]\n",
        list.display()
    ));
    let replied = |b: &str, t: &str| {
        metric(b, "vigia_ping_replies_total", &[("target", t)]).is_some_and(|v| v >= 1.0)
    };
    let body = e.wait_metrics(Duration::from_secs(10), "a, b and fixed probed", |b| {
        replied(b, "a") && replied(b, "b") && replied(b, "fixed")
    });
    assert_eq!(metric(&body, "vigia_ping_targets", &[]), Some(3.0));
    assert!(body.contains("site=\"sur\""));

    // Edit: b removed, c added.
    std::fs::write(&list, "a 127.0.0.2 site=norte\nc 127.0.0.4 site=este\n").unwrap();
    let body = e.wait_metrics(Duration::from_secs(10), "c probed and b gone", |b| {
        replied(b, "c") && !b.contains("target=\"b\"")
    });
    assert_eq!(metric(&body, "vigia_ping_targets", &[]), Some(3.0));
    assert!(!body.contains("site=\"sur\""), "{body}");
    assert_eq!(
        metric(&body, "vigia_ping_targets_file_reload_errors_total", &[]),
        Some(0.0)
    );
    let a_before = metric(&body, "vigia_ping_requests_total", &[("target", "a")]).unwrap();

    // A bad edit (duplicate of the inline target's name) is rejected; a and c go on.
    std::fs::write(&list, "a 127.0.0.2\nfixed 127.0.0.5\n").unwrap();
    let body = e.wait_metrics(Duration::from_secs(10), "the rejected edit counted", |b| {
        metric(b, "vigia_ping_targets_file_reload_errors_total", &[]) == Some(1.0)
    });
    assert_eq!(
        metric(&body, "vigia_ping_targets_file_last_reload_success", &[]),
        Some(0.0)
    );
    let body = e.wait_metrics(Duration::from_secs(10), "a still probed", |b| {
        metric(b, "vigia_ping_requests_total", &[("target", "a")]).unwrap_or(0.0) >= a_before + 2.0
    });
    assert!(replied(&body, "c"), "c kept: {body}");
    assert_eq!(metric(&body, "vigia_ping_targets", &[]), Some(3.0));
    assert!(e.stderr().contains("targets file rejected"));
    assert!(
        e.stderr().contains("duplicate target name"),
        "{}",
        e.stderr()
    );

    // Fixed again: accepted.
    std::fs::write(&list, "a 127.0.0.2\n").unwrap();
    e.wait_metrics(Duration::from_secs(10), "the fixed edit applied", |b| {
        metric(b, "vigia_ping_targets_file_last_reload_success", &[]) == Some(1.0)
            && metric(b, "vigia_ping_targets", &[]) == Some(2.0)
    });
}

#[test]
fn root_targets_file_settings_override_the_defaults_per_line() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test needs root (CI runs as root)"
    );
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("targets.txt");
    // Defaults send one request a round and call 200 ms slow: `burst` sends three, and
    // `picky` calls any RTT at all slow. `plain` keeps the defaults.
    std::fs::write(
        &list,
        "burst 127.0.0.21 site=norte count=3\n\
         picky 127.0.0.22 warning_rtt=1ns kind=router\n\
         plain 127.0.0.23\n",
    )
    .unwrap();
    let e = Exporter::start(&format!(
        "defaults: {{interval: 1s, count: 1, timeout: 300ms, warning_rtt: 200ms}}\n\
         targets_file: \"{}\"\n\
         targets_file_check_interval: 200ms\n",
        list.display()
    ));
    let requests = |b: &str, t: &str| metric(b, "vigia_ping_requests_total", &[("target", t)]);
    let status = |b: &str, t: &str, s: &str| {
        metric(b, "vigia_ping_status", &[("target", t), ("status", s)]) == Some(1.0)
    };
    let body = e.wait_metrics(Duration::from_secs(10), "two rounds of each", |b| {
        requests(b, "burst").unwrap_or(0.0) >= 6.0 && requests(b, "plain").unwrap_or(0.0) >= 2.0
    });
    // Counters move by whole rounds: three requests a round for burst, one for plain.
    let burst = requests(&body, "burst").unwrap();
    assert_eq!(
        burst % 3.0,
        0.0,
        "burst sent {burst} requests, not rounds of 3"
    );
    assert_eq!(
        metric(&body, "vigia_ping_replies_total", &[("target", "burst")]),
        Some(burst),
        "every request to loopback answered"
    );
    assert!(status(&body, "picky", "warning"), "picky: {body}");
    assert!(status(&body, "plain", "ok"), "plain: {body}");
    assert!(status(&body, "burst", "ok"), "burst: {body}");
    // The settings are not labels; the labels are.
    assert!(
        !body.contains("count=\"3\"") && !body.contains("warning_rtt="),
        "{body}"
    );
    assert_eq!(
        metric(
            &body,
            "vigia_ping_up",
            &[("target", "burst"), ("site", "norte")]
        ),
        Some(1.0)
    );

    // A bad value is rejected naming the line and the key; the previous list goes on,
    // with its overrides.
    std::fs::write(
        &list,
        "burst 127.0.0.21 site=norte count=3\npicky 127.0.0.22 warning_rtt=soon\n",
    )
    .unwrap();
    e.wait_metrics(Duration::from_secs(10), "the rejected edit counted", |b| {
        metric(b, "vigia_ping_targets_file_reload_errors_total", &[]) == Some(1.0)
    });
    let stderr = e.stderr();
    assert!(
        stderr.contains(&format!("{} line 2: warning_rtt", list.display()))
            && stderr.contains("soon")
            && stderr.contains("is not a duration"),
        "{stderr}"
    );
    let body = e.wait_metrics(Duration::from_secs(10), "burst still probed", |b| {
        requests(b, "burst").unwrap_or(0.0) >= burst + 6.0
    });
    assert_eq!(requests(&body, "burst").unwrap() % 3.0, 0.0);
    assert!(status(&body, "picky", "warning"), "picky kept: {body}");
    assert_eq!(metric(&body, "vigia_ping_targets", &[]), Some(3.0));
}

#[test]
fn root_an_empty_targets_file_keeps_the_previous_list() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test needs root (CI runs as root)"
    );
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("targets.txt");
    let content = "# NOC list\na 127.0.0.2 site=norte\n";
    std::fs::write(&list, content).unwrap();
    let e = Exporter::start(&format!(
        "defaults: {{interval: 1s, count: 1, timeout: 300ms}}\n\
         targets_file: \"{}\"\n\
         targets_file_check_interval: 100ms\n",
        list.display()
    ));
    let ok = |b: &str| metric(b, "vigia_ping_status", &[("target", "a"), ("status", "ok")]);
    let body = e.wait_metrics(Duration::from_secs(10), "a ok", |b| ok(b) == Some(1.0));
    let since = metric(
        &body,
        "vigia_ping_status_change_timestamp_seconds",
        &[("target", "a")],
    )
    .unwrap();

    // What an editor does when it saves: truncate, then write. Between the two the file
    // is empty, then it holds only the comment.
    for partial in ["", "# NOC list\n"] {
        std::fs::write(&list, partial).unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }
    let body = e.wait_metrics(
        Duration::from_secs(10),
        "both partial files rejected",
        |b| metric(b, "vigia_ping_targets_file_reload_errors_total", &[]) == Some(2.0),
    );
    assert_eq!(
        metric(&body, "vigia_ping_targets_file_last_reload_success", &[]),
        Some(0.0)
    );
    assert!(e.stderr().contains("lists no target"), "{}", e.stderr());
    std::fs::write(&list, content).unwrap();
    let body = e.wait_metrics(Duration::from_secs(10), "the saved file accepted", |b| {
        metric(b, "vigia_ping_targets_file_last_reload_success", &[]) == Some(1.0)
    });
    // The target never left: still ok since the same moment, never unknown in between.
    assert_eq!(ok(&body), Some(1.0), "{body}");
    assert_eq!(
        metric(
            &body,
            "vigia_ping_status_change_timestamp_seconds",
            &[("target", "a")]
        ),
        Some(since)
    );
}

/// The maintenance file (the stack's alertmanager/maintenance.txt): a window added while
/// the exporter runs shows on the board and in /metrics for the targets of its site or
/// name, a bad edit is counted and the windows in force stay, removing the line ends it.
#[test]
fn root_maintenance_file_edits_show_on_the_board_and_bad_edits_keep_the_windows() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test needs root (CI runs as root)"
    );
    let dir = tempfile::tempdir().unwrap();
    let windows = dir.path().join("maintenance.txt");
    std::fs::write(&windows, "# no works planned\n").unwrap();
    let e = Exporter::start(&format!(
        "defaults: {{interval: 1s, count: 1, timeout: 300ms}}\n\
         maintenance_file: \"{}\"\n\
         targets_file_check_interval: 200ms\n\
         targets:\n\
         \x20 - {{name: olt-1, address: 127.0.0.2, labels: {{site: centro}}}}\n\
         \x20 - {{name: olt-2, address: 127.0.0.3, labels: {{site: norte}}}}\n",
        windows.display()
    ));
    let in_maintenance = |b: &str, t: &str| metric(b, "vigia_ping_maintenance", &[("target", t)]);
    let body = e.metrics();
    assert_eq!(in_maintenance(&body, "olt-1"), None, "{body}");
    assert_eq!(
        metric(
            &body,
            "vigia_ping_maintenance_file_last_reload_success",
            &[]
        ),
        Some(1.0)
    );

    let now = std::time::SystemTime::now();
    // RFC 3339 in UTC with seconds, as the maintenance file wants it.
    let iso = |t| humantime::format_rfc3339_seconds(t).to_string();
    let start = iso(now - Duration::from_secs(60));
    let end = iso(now + Duration::from_secs(3600));
    std::fs::write(
        &windows,
        format!("{start} {end} site=centro fibre works, ticket 4711\n"),
    )
    .unwrap();
    let body = e.wait_metrics(Duration::from_secs(10), "olt-1 in maintenance", |b| {
        in_maintenance(b, "olt-1") == Some(1.0)
    });
    assert_eq!(
        in_maintenance(&body, "olt-2"),
        None,
        "only the site's targets"
    );
    let (_, status) = e.get("/api/status");
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let olt1 = &status["targets"][0];
    assert_eq!(olt1["maintenance"]["reason"], "fibre works, ticket 4711");
    assert_eq!(olt1["maintenance"]["scope"], "site");
    assert!(status["targets"][1]["maintenance"].is_null());

    // A bad edit: counted, and the window in force stays.
    std::fs::write(&windows, format!("{start} tomorrow site=centro works\n")).unwrap();
    let body = e.wait_metrics(Duration::from_secs(10), "the rejected edit counted", |b| {
        metric(b, "vigia_ping_maintenance_file_reload_errors_total", &[]) == Some(1.0)
    });
    assert_eq!(in_maintenance(&body, "olt-1"), Some(1.0));
    assert!(e.stderr().contains("line 1: end"), "{}", e.stderr());

    // The line removed: the window is over.
    std::fs::write(&windows, "").unwrap();
    e.wait_metrics(Duration::from_secs(10), "olt-1 out of maintenance", |b| {
        in_maintenance(b, "olt-1").is_none()
            && metric(b, "vigia_ping_maintenance_file_last_reload_success", &[]) == Some(1.0)
    });
}
