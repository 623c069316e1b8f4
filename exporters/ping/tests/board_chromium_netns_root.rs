//! The status board of the real vigia-ping binary in headless Chromium, with three real
//! targets: a loopback address that answers, a network-namespace host in 198.18.0.0/15
//! that answers slowly (kernel echo off, a user-space responder that waits), and one
//! whose link is down. Tiles are checked by the colour on screen (computed style and the
//! pixels drawn), not by class names. Needs root, `iproute2`, `procps`, `python3` and `chromium`;
//! screenshots go to `target/test-output/board/`.

mod board_support;
mod support;

use std::time::{Duration, Instant};

use board_support::cdp::{Browser, Page};
use board_support::{assert_tile_colour, css, GREEN, RED, YELLOW};
use support::{metric, require_tool, Exporter, NetnsHost, SlowResponder};

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

fn tile(browser: &mut Browser, page: &Page, name: &str, selector: &str) -> String {
    let v = browser.eval(
        page,
        &format!(
            r#"(() => {{ const t = document.querySelector('.tile[data-target="{name}"]');
                 const e = t && t.querySelector({selector:?});
                 return e ? e.textContent : null; }})()"#
        ),
    );
    v.as_str()
        .unwrap_or_else(|| panic!("no {selector} in the tile of {name}"))
        .to_string()
}

fn hms_seconds(text: &str) -> u64 {
    let parts: Vec<u64> = text
        .split(':')
        .map(|p| {
            p.parse()
                .unwrap_or_else(|_| panic!("stopwatch {text:?} is not hh:mm:ss"))
        })
        .collect();
    assert_eq!(parts.len(), 3, "stopwatch {text:?} is not hh:mm:ss");
    parts[0] * 3600 + parts[1] * 60 + parts[2]
}

#[test]
fn root_netns_board_in_chromium_shows_up_slow_and_down_hosts_with_a_running_stopwatch() {
    require_root();
    require_tool("chromium");
    let slow = NetnsHost::new();
    slow.set_echo_ignore(true);
    let _responder = SlowResponder::start(&slow, Duration::from_millis(300));
    let gone = NetnsHost::new();
    gone.set_link(false);

    let started = Instant::now();
    let exporter = Exporter::start(&format!(
        r#"
defaults:
  interval: 1s
  count: 1
  timeout: 800ms
  warning_rtt: 100ms
  down_after: 1
targets:
  - name: core-router
    address: 127.0.0.61
    labels: {{site: north, kind: router}}
  - name: slow-dslam
    address: {slow}
    labels: {{site: north, kind: dslam}}
  - name: lost-olt
    address: {gone}
    labels: {{site: south, kind: olt}}
"#,
        slow = slow.addr,
        gone = gone.addr,
    ));

    // Let the statuses settle, as /metrics reports them, before looking at the page.
    exporter.wait_metrics(Duration::from_secs(20), "ok / warning / down", |b| {
        status_of(b, "core-router") == Some("ok")
            && status_of(b, "slow-dslam") == Some("warning")
            && status_of(b, "lost-olt") == Some("down")
    });

    let mut browser = Browser::launch();
    let page = browser.open(&format!("http://{}/", exporter.addr), 1280, 720, None);
    browser.wait_for(
        &page,
        "document.querySelectorAll('.tile').length === 3",
        Duration::from_secs(20),
        "three tiles",
    );

    let order = browser.eval(
        &page,
        "Array.from(document.querySelectorAll('.tile')).map(t => [t.dataset.target, t.querySelector('.word').textContent])",
    );
    assert_eq!(
        order,
        serde_json::json!([
            ["slow-dslam", "warning"],
            ["core-router", "ok"],
            ["lost-olt", "down"]
        ]),
        "tiles by site (north, south), worst first"
    );
    // The colours on screen: green, yellow, and red with a white frame.
    assert_tile_colour(&mut browser, &page, "core-router", GREEN, false);
    assert_tile_colour(&mut browser, &page, "slow-dslam", YELLOW, false);
    assert_tile_colour(&mut browser, &page, "lost-olt", RED, true);
    let headings = browser.eval(
        &page,
        "Array.from(document.querySelectorAll('section.group h2')).map(h => h.firstChild.textContent)",
    );
    assert_eq!(headings, serde_json::json!(["north", "south"]));

    // The slow host's RTT is the responder's delay, in milliseconds, with no loss.
    let rtt = tile(&mut browser, &page, "slow-dslam", ".rtt");
    let ms: f64 = rtt
        .strip_suffix(" ms")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("RTT {rtt:?} is not in ms"));
    assert!((290.0..900.0).contains(&ms), "slow host RTT {rtt}");
    assert_eq!(tile(&mut browser, &page, "slow-dslam", ".loss"), "0 %");
    assert_eq!(tile(&mut browser, &page, "lost-olt", ".loss"), "100 %");
    assert_eq!(
        tile(&mut browser, &page, "core-router", ".address"),
        "127.0.0.61"
    );

    // The stopwatch counts from the moment the host went down (after the exporter
    // started) and keeps running in the page between two readings.
    let first = hms_seconds(&tile(
        &mut browser,
        &page,
        "lost-olt",
        ".stopwatch .elapsed",
    ));
    let first_at = Instant::now();
    assert!(
        first <= started.elapsed().as_secs() + 1,
        "down for {first} s, but the exporter started {:?} ago",
        started.elapsed()
    );
    std::thread::sleep(Duration::from_secs(3));
    let second = hms_seconds(&tile(
        &mut browser,
        &page,
        "lost-olt",
        ".stopwatch .elapsed",
    ));
    let between = first_at.elapsed().as_secs_f64();
    let advanced = second.saturating_sub(first) as f64;
    assert!(
        second > first + 1 && (advanced - between).abs() <= 1.5,
        "stopwatch went from {first} s to {second} s in {between:.1} s"
    );
    assert_eq!(
        browser.eval(&page, "document.querySelectorAll('.stopwatch').length"),
        1,
        "only the down tile has a stopwatch"
    );
    let freshness = browser.eval(&page, "document.getElementById('freshness').textContent");
    assert!(
        freshness
            .as_str()
            .is_some_and(|t| t.starts_with("updated ")),
        "the board is not stale while the exporter answers: {freshness}"
    );

    let out = board_support::output_dir();
    browser.screenshot(&page, &out.join("netns-wall.png"));
    browser.resize(&page, 390, 844, true);
    browser.screenshot(&page, &out.join("netns-phone.png"));

    // The host comes back: its tile turns green without a reload, and the stopwatch goes.
    browser.eval(&page, "window.__sameDocument = 7");
    gone.set_link(true);
    browser.wait_for(
        &page,
        &format!(
            "getComputedStyle(document.querySelector('.tile[data-target=\"lost-olt\"]')).backgroundColor === '{}'",
            css(GREEN)
        ),
        Duration::from_secs(20),
        "lost-olt to turn green",
    );
    assert_tile_colour(&mut browser, &page, "lost-olt", GREEN, false);
    assert_eq!(browser.eval(&page, "window.__sameDocument"), 7);
    assert_eq!(
        browser.eval(&page, "document.querySelectorAll('.stopwatch').length"),
        0
    );
    browser.screenshot(&page, &out.join("netns-phone-recovered.png"));
}
