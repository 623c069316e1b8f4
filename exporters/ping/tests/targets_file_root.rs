//! The targets file a NOC edits: added targets start, removed ones leave /metrics, a bad
//! edit is rejected and counted while the previous list keeps running. Needs root (raw
//! ICMP socket).

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
