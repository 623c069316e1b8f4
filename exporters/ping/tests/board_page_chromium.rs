//! The status board page in headless Chromium, fed by a fixed snapshot so every case the
//! page handles is on screen at once: grouping by site, down tiles first, the downtime
//! stopwatch against a browser whose clock is wrong, refresh without reload, a hostile
//! target name, and the "stale" warning when the exporter stops answering. Tiles are
//! checked by the colour on screen (computed style and the pixels drawn), not by class.
//! Needs the Debian package `chromium`; screenshots go to `target/test-output/board/`.

#[allow(dead_code)]
#[path = "../src/board.rs"]
mod board;
mod board_support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use board::{StatusSnapshot, TargetView};
use board_support::cdp::Browser;
use board_support::{
    assert_tile_colour, close, css, dimmed, seen_tile, GREEN, GREY, PURPLE, RED, YELLOW,
};
use serde_json::Value;

#[derive(Default)]
struct Editable(Mutex<Vec<TargetView>>);

impl StatusSnapshot for Editable {
    fn snapshot(&self) -> Vec<TargetView> {
        self.0.lock().unwrap().clone()
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn target(
    name: &str,
    site: Option<&str>,
    status: &'static str,
    rtt_ms: Option<f64>,
    since_ago: f64,
) -> TargetView {
    let mut labels = BTreeMap::from([("kind".to_string(), "dslam".to_string())]);
    if let Some(s) = site {
        labels.insert("site".to_string(), s.to_string());
    }
    TargetView {
        name: name.to_string(),
        address: format!("198.18.0.{}", name.len()),
        labels,
        site: site.map(str::to_string),
        status,
        probe: "icmp",
        detail: None,
        parent: None,
        behind: None,
        maintenance: None,
        last_rtt_seconds: rtt_ms.map(|ms| ms / 1000.0),
        loss_ratio: match status {
            "down" | "unreachable" => Some(1.0),
            "warning" => Some(0.4),
            "unknown" => None,
            _ => Some(0.0),
        },
        status_since_seconds: now() - since_ago,
        last_round_seconds: (status != "unknown").then(now),
    }
}

/// `t` as a tcp, http or dns target whose last probe said `detail`.
fn service(mut t: TargetView, probe: &'static str, detail: &str) -> TargetView {
    t.probe = probe;
    t.detail = Some(detail.to_string());
    t
}

const HOSTILE_NAME: &str = "<img src=x onerror=\"document.title='pwned'\">";

/// Makes the browser's clock two hours fast: the stopwatch must follow the server's clock.
const SKEWED_CLOCK: &str = r#"(() => {
  const Real = Date, skew = 2 * 3600 * 1000;
  class Skewed extends Real {
    constructor(...a) { if (a.length === 0) { super(Real.now() + skew); } else { super(...a); } }
    static now() { return Real.now() + skew; }
  }
  globalThis.Date = Skewed;
})();"#;

/// Serves the board on 127.0.0.1 from its own runtime, so that dropping the runtime closes
/// every connection at once, as a crashed exporter would.
fn serve(source: Arc<Editable>) -> (tokio::runtime::Runtime, SocketAddr) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move {
        axum::serve(listener, board::routes(source)).await.unwrap();
    });
    (rt, addr)
}

fn tile_statuses(browser: &mut Browser, page: &board_support::cdp::Page) -> Value {
    browser.eval(
        page,
        r#"Array.from(document.querySelectorAll("section.group")).map(s => ({
             heading: s.querySelector("h2") ? s.querySelector("h2").firstChild.textContent : null,
             tiles: Array.from(s.querySelectorAll(".tile")).map(t => [
               t.querySelector(".name").textContent, t.querySelector(".word").textContent])
           }))"#,
    )
}

/// Seconds shown by the stopwatch of the tile named `name` (hh:mm:ss, optional "Nd ").
fn stopwatch_seconds(browser: &mut Browser, page: &board_support::cdp::Page, name: &str) -> u64 {
    let text = browser.eval(
        page,
        &format!(
            r#"(() => {{ const t = Array.from(document.querySelectorAll(".tile"))
                 .find(t => t.dataset.target === {name:?});
               const s = t && t.querySelector(".stopwatch .elapsed");
               return s ? s.textContent : null; }})()"#
        ),
    );
    let text = text
        .as_str()
        .unwrap_or_else(|| panic!("no stopwatch on {name}"));
    let (days, hms) = match text.split_once("d ") {
        Some((d, rest)) => (d.parse::<u64>().unwrap(), rest),
        None => (0, text),
    };
    let parts: Vec<u64> = hms
        .split(':')
        .map(|p| p.parse().unwrap_or_else(|_| panic!("stopwatch {text:?}")))
        .collect();
    assert_eq!(parts.len(), 3, "stopwatch {text:?} is not hh:mm:ss");
    assert!(parts[1] < 60 && parts[2] < 60, "stopwatch {text:?}");
    days * 86400 + parts[0] * 3600 + parts[1] * 60 + parts[2]
}

/// A target cut off behind `behind`, reached through `parent`.
fn behind(name: &str, site: &str, parent: &str, behind: &str, since_ago: f64) -> TargetView {
    TargetView {
        parent: Some(parent.to_string()),
        behind: Some(behind.to_string()),
        ..target(name, Some(site), "unreachable", Some(3.0), since_ago)
    }
}

#[test]
fn board_page_in_chromium_shows_groups_stopwatch_refresh_and_staleness() {
    let source = Arc::new(Editable::default());
    let made = Instant::now();
    *source.0.lock().unwrap() = vec![
        target("dslam-1", Some("north"), "ok", Some(0.42), 9000.0),
        target("dslam-2", Some("north"), "warning", Some(312.4), 60.0),
        target("olt-1", Some("north"), "down", Some(2.0), 3725.0),
        target(
            "router-core",
            Some("south"),
            "down",
            None,
            2.0 * 86400.0 + 10.0,
        ),
        target("server-9", Some("south"), "ok", Some(11.0), 100.0),
        target(HOSTILE_NAME, None, "ok", Some(1.5), 100.0),
        target("new-olt", None, "unknown", None, 5.0),
        service(
            target("portal", Some("south"), "down", Some(40.0), 30.0),
            "http",
            "status 503 is not one of 2xx",
        ),
        service(
            target("resolver", Some("south"), "ok", Some(1.2), 300.0),
            "dns",
            "NOERROR 198.18.0.5",
        ),
        // Behind the down olt-1; behind router-core through a switch that is itself
        // unreachable (a tcp probe of its management port, in maintenance).
        behind("dslam-9", "north", "olt-1", "olt-1", 3700.0),
        behind("cpe-12", "south", "switch-s", "router-core", 65.0),
        service(
            TargetView {
                parent: Some("router-core".into()),
                behind: Some("router-core".into()),
                maintenance: Some(board::MaintenanceView {
                    until_seconds: now() + 7200.0,
                    reason: "fibre works, ticket 4711".into(),
                    scope: "site",
                }),
                ..target("switch-s", Some("south"), "unreachable", None, 70.0)
            },
            "tcp",
            "no answer within 1s (during connect)",
        ),
    ];
    let (server, addr) = serve(source.clone());
    let url = format!("http://{addr}/");

    let mut browser = Browser::launch();
    let page = browser.open(&url, 1920, 1080, Some(SKEWED_CLOCK));
    browser.wait_for(
        &page,
        "document.querySelectorAll('.tile').length === 12",
        Duration::from_secs(20),
        "twelve tiles",
    );

    // Sites in name order, targets without a site last; down first within a site.
    let groups = tile_statuses(&mut browser, &page);
    let expected = serde_json::json!([
        {"heading": "north", "tiles": [
            ["olt-1", "down"],
            ["dslam-2", "warning"],
            ["dslam-9", "unreachable"],
            ["dslam-1", "ok"]]},
        {"heading": "south", "tiles": [
            ["portal", "down"],
            ["router-core", "down"],
            ["cpe-12", "unreachable"],
            ["switch-s", "unreachable"],
            ["resolver", "ok"],
            ["server-9", "ok"]]},
        {"heading": "No site", "tiles": [
            ["new-olt", "unknown"],
            [HOSTILE_NAME, "ok"]]}
    ]);
    assert_eq!(groups, expected);

    // Each tile in the colour of its status, as drawn on screen: down red with a white
    // frame, warning yellow, ok green, unknown grey, unreachable purple.
    for (name, colour, framed) in [
        ("olt-1", RED, true),
        ("dslam-2", YELLOW, false),
        ("dslam-1", GREEN, false),
        ("router-core", RED, true),
        ("server-9", GREEN, false),
        ("new-olt", GREY, false),
        (HOSTILE_NAME, GREEN, false),
        ("portal", RED, true),
        ("resolver", GREEN, false),
        ("dslam-9", PURPLE, false),
        ("cpe-12", PURPLE, false),
    ] {
        assert_tile_colour(&mut browser, &page, name, colour, framed);
    }
    // Purple is none of the other four to the eye, nor the page's background.
    for other in [RED, GREEN, YELLOW, GREY, board_support::PAGE_BACKGROUND] {
        assert!(
            PURPLE
                .iter()
                .zip(other)
                .map(|(a, b)| a.abs_diff(b) as u32)
                .sum::<u32>()
                > 120,
            "unreachable's colour {PURPLE:?} is too close to {other:?}"
        );
    }

    // An unreachable tile says which failed uplink it is behind (and through which
    // parent, when the failure is further up), shows no RTT, and runs its own stopwatch.
    let tile_text = |browser: &mut Browser, name: &str, sel: &str| {
        browser.eval(
            &page,
            &format!(
                r#"(() => {{ const t = document.querySelector('.tile[data-target="{name}"]');
                     const e = t && t.querySelector('{sel}'); return e ? e.textContent : null; }})()"#
            ),
        )
    };
    assert_eq!(
        tile_text(&mut browser, "dslam-9", ".behind"),
        "behind olt-1"
    );
    assert_eq!(
        tile_text(&mut browser, "cpe-12", ".behind"),
        "behind router-core (via switch-s)"
    );
    assert_eq!(tile_text(&mut browser, "dslam-9", ".rtt"), "\u{2014}");
    assert_eq!(tile_text(&mut browser, "dslam-9", ".word"), "unreachable");
    assert_eq!(
        tile_text(&mut browser, "dslam-9", ".stopwatch .label"),
        "unreachable for"
    );
    let unreachable_for = stopwatch_seconds(&mut browser, &page, "dslam-9");
    assert!(
        (3700..=3700 + made.elapsed().as_secs() + 1).contains(&unreachable_for),
        "dslam-9 unreachable for {unreachable_for} s"
    );
    assert!(tile_text(&mut browser, "olt-1", ".behind").is_null());

    // In maintenance: a dashed frame and a badge with the end and the reason, over the
    // tile's own status colour.
    let switch = seen_tile(&mut browser, &page, "switch-s");
    assert_eq!(switch.background, css(PURPLE), "{switch:?}");
    assert!(close(switch.fill, PURPLE), "{switch:?}");
    let frame_style = browser.eval(
        &page,
        r#"getComputedStyle(document.querySelector('.tile[data-target="switch-s"]')).borderLeftStyle"#,
    );
    assert_eq!(frame_style, "dashed");
    let badge = tile_text(&mut browser, "switch-s", ".maintenance");
    let badge = badge.as_str().unwrap_or_default();
    assert!(
        badge.starts_with("maintenance until ") && badge.ends_with("fibre works, ticket 4711"),
        "{badge:?}"
    );
    assert!(tile_text(&mut browser, "cpe-12", ".maintenance").is_null());

    // Counts per status in the header.
    let counts = browser.eval(
        &page,
        "['down','warning','unreachable','unknown','ok'].map(s => document.getElementById('count-' + s).textContent)",
    );
    assert_eq!(counts, serde_json::json!(["3", "1", "3", "1", "4"]));

    // The hostile name is text, not markup.
    let injected = browser.eval(
        &page,
        "document.querySelectorAll('main img').length + ':' + document.title",
    );
    assert_eq!(injected, "0:(3 down, 3 unreachable) vigia-ping status");

    // Each tile names its probe; a service's tile shows its probe's time and result
    // (or why it failed) instead of RTT and loss; a service cut off behind its uplink
    // keeps its kind, its last failure, "behind" and its maintenance badge.
    let kinds = browser.eval(
        &page,
        r#"["dslam-1", "portal", "resolver", "switch-s"].map(n => {
             const t = document.querySelector(`.tile[data-target="${n}"]`);
             const d = t.querySelector('.detail');
             return [t.querySelector('.probe').textContent, d ? d.textContent : null,
                     !!t.querySelector('.loss'), t.querySelector('.stats dt').textContent,
                     t.querySelector('.rtt').textContent]; })"#,
    );
    assert_eq!(
        kinds,
        serde_json::json!([
            ["icmp", null, true, "RTT", "0.420 ms"],
            [
                "http",
                "status 503 is not one of 2xx",
                false,
                "time",
                "\u{2014}"
            ],
            ["dns", "NOERROR 198.18.0.5", false, "time", "1.20 ms"],
            [
                "tcp",
                "no answer within 1s (during connect)",
                false,
                "time",
                "\u{2014}"
            ]
        ])
    );
    // The kind badge, the status word, the "behind" line and the maintenance badge all
    // fit inside the tile, one under the other, none over another.
    let boxes = browser.eval(
        &page,
        r#"(() => { const t = document.querySelector('.tile[data-target="switch-s"]');
             const r = e => e.getBoundingClientRect();
             const tile = r(t);
             return ['.probe', '.word', '.behind', '.maintenance', '.detail'].map(sel => {
               const b = r(t.querySelector(sel));
               return b.width > 0 && b.left >= tile.left && b.right <= tile.right
                 && b.top >= tile.top && b.bottom <= tile.bottom; }); })()"#,
    );
    assert_eq!(boxes, serde_json::json!([true, true, true, true, true]));

    // RTT and loss as the seed showed them: milliseconds and percent.
    let dslam2 = browser.eval(
        &page,
        r#"(() => { const t = document.querySelector('.tile[data-target="dslam-2"]');
             return [t.querySelector('.address').textContent, t.querySelector('.rtt').textContent,
                     t.querySelector('.loss').textContent]; })()"#,
    );
    assert_eq!(dslam2, serde_json::json!(["198.18.0.7", "312 ms", "40 %"]));

    // The stopwatch counts on the server's clock (the browser's is two hours fast) and
    // advances by itself between two readings of the same page.
    let first = stopwatch_seconds(&mut browser, &page, "olt-1");
    let first_at = Instant::now();
    let since_made = made.elapsed().as_secs() + 1;
    assert!(
        (3725..=3725 + since_made).contains(&first),
        "olt-1 down for {first} s, expected 3725 s plus at most {since_made} s"
    );
    let long = stopwatch_seconds(&mut browser, &page, "router-core");
    assert!(
        (2 * 86400 + 10..=2 * 86400 + 10 + since_made + 1).contains(&long),
        "router-core down for {long} s"
    );
    let marker = browser.eval(&page, "window.__sameDocument = 42");
    assert_eq!(marker, 42);
    std::thread::sleep(Duration::from_secs(3));
    let second = stopwatch_seconds(&mut browser, &page, "olt-1");
    let between = first_at.elapsed().as_secs_f64();
    let advanced = second.saturating_sub(first) as f64;
    assert!(
        second > first + 1 && (advanced - between).abs() <= 1.5,
        "stopwatch went from {first} s to {second} s in {between:.1} s"
    );
    assert!(browser
        .eval(
            &page,
            "!!document.querySelector('.tile:not(.status-down):not(.status-unreachable) .stopwatch')"
        )
        .as_bool()
        .is_some_and(|b| !b));

    browser.screenshot(&page, &board_support::output_dir().join("fake-wall.png"));
    browser.resize(&page, 390, 844, true);
    let columns = browser.eval(
        &page,
        "getComputedStyle(document.querySelector('.tiles')).gridTemplateColumns.split(' ').length",
    );
    assert!(
        columns.as_u64().is_some_and(|c| (1..=2).contains(&c)),
        "a phone gets one or two columns, not {columns}"
    );
    browser.screenshot(&page, &board_support::output_dir().join("fake-phone.png"));
    browser.resize(&page, 1920, 1080, false);

    // A change on the server shows up without reloading the page.
    source.0.lock().unwrap()[0] = target("dslam-1", Some("north"), "down", Some(0.42), 1.0);
    browser.wait_for(
        &page,
        &format!(
            "getComputedStyle(document.querySelector('.tile[data-target=\"dslam-1\"]')).backgroundColor === '{}'",
            css(RED)
        ),
        Duration::from_secs(15),
        "dslam-1 to turn red after a refresh",
    );
    assert_tile_colour(&mut browser, &page, "dslam-1", RED, true);
    assert_eq!(browser.eval(&page, "window.__sameDocument"), 42);
    assert_eq!(
        browser.eval(&page, "document.getElementById('count-down').textContent"),
        "4"
    );
    assert_eq!(
        browser.eval(
            &page,
            "document.getElementById('count-unreachable').textContent"
        ),
        "3"
    );
    let fresh = browser.eval(&page, "document.getElementById('freshness').textContent");
    assert!(
        fresh.as_str().is_some_and(|t| t.starts_with("updated ")),
        "{fresh}"
    );

    // The exporter goes away: the board says so instead of showing old colours as current.
    server.shutdown_background();
    let stale = browser.wait_for(
        &page,
        "(t => t.startsWith('STALE') && t)(document.getElementById('freshness').textContent)",
        Duration::from_secs(20),
        "the stale warning",
    );
    assert!(
        stale.as_str().is_some_and(|s| s.starts_with("STALE")),
        "{stale}"
    );
    // On a yellow badge, and every tile dimmed: the green of an ok tile is drawn faded
    // into the page's background.
    assert_eq!(
        browser.eval(
            &page,
            "getComputedStyle(document.getElementById('freshness')).backgroundColor"
        ),
        css(YELLOW)
    );
    let faded = seen_tile(&mut browser, &page, "server-9").fill;
    assert!(
        close(faded, dimmed(GREEN, 0.55)),
        "a stale board draws ok tiles as {faded:?}, not dimmed green {:?}",
        dimmed(GREEN, 0.55)
    );
    browser.screenshot(&page, &board_support::output_dir().join("fake-stale.png"));
}

/// An operator's `Content-Security-Policy` in the web config (`http_server_config.headers`)
/// used to replace the board's own policy, so the browser blocked the board's inline
/// script and the page said "loading" forever. Through the kit's server with such a web
/// config, the board still draws its tiles, and the operator's extra directive is kept.
#[test]
fn board_draws_under_an_operators_content_security_policy() {
    use vigia_kit::server::{router, serve, Readiness};
    use vigia_kit::shutdown::Shutdown;
    use vigia_kit::web_config::WebConfig;

    let source = Arc::new(Editable::default());
    *source.0.lock().unwrap() = vec![target("dslam-1", Some("north"), "ok", Some(0.4), 60.0)];
    let web = WebConfig::from_yaml(
        "http_server_config:\n  headers:\n    Content-Security-Policy: \"default-src 'self'; frame-ancestors 'self'; report-uri /csp-report\"\n",
        "web.yml",
        std::path::Path::new("."),
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (_trigger, shutdown) = Shutdown::manual();
    let app = router(
        Arc::new(vigia_kit::Metrics::new("vigia-ping")),
        Readiness::new(true),
        None,
        board::routes(source),
    );
    rt.spawn(serve(listener, app, web, shutdown, Duration::from_secs(1)));

    let mut browser = Browser::launch();
    let page = browser.open(&format!("http://{addr}/"), 1280, 800, None);
    browser.wait_for(
        &page,
        "document.querySelectorAll('.tile').length === 1 && document.getElementById('freshness').textContent.startsWith('updated ')",
        Duration::from_secs(20),
        "the tile and a fresh header under the operator's policy",
    );
    assert_tile_colour(&mut browser, &page, "dslam-1", GREEN, false);
    browser.screenshot(&page, &board_support::output_dir().join("operator-csp.png"));
    drop(rt);
}

/// A bidirectional override in a name, an address or a label reorders what is drawn
/// ("olt-\u{202E}lmth.exe" shows as "olt-exe.html"): the board writes such characters as
/// `[U+202E]`, so what is on screen is what was configured.
#[test]
fn board_shows_bidi_controls_escaped() {
    let source = Arc::new(Editable::default());
    let mut t = target(
        "olt-\u{202E}lmth.exe",
        Some("nor\u{2067}te"),
        "ok",
        Some(1.0),
        60.0,
    );
    t.labels.insert("kind".into(), "d\u{200F}slam".into());
    *source.0.lock().unwrap() = vec![t];
    let (_server, addr) = serve(source);
    let mut browser = Browser::launch();
    let page = browser.open(&format!("http://{addr}/"), 1280, 800, None);
    browser.wait_for(
        &page,
        "document.querySelectorAll('.tile').length === 1",
        Duration::from_secs(20),
        "the tile",
    );
    let seen = browser.eval(
        &page,
        r#"(() => { const t = document.querySelector('.tile');
             return [t.querySelector('.name').textContent, t.querySelector('.labels').textContent,
                     document.querySelector('section.group h2').firstChild.textContent]; })()"#,
    );
    assert_eq!(
        seen,
        serde_json::json!([
            "olt-[U+202E]lmth.exe",
            "kind=d[U+200F]slam",
            "nor[U+2067]te"
        ])
    );
}
