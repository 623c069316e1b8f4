//! Scrapes never delay probes: 2,000 loopback targets stay ok, and every RTT stays far
//! under `warning_rtt`, while gzip scrapes (what Prometheus always asks for) hammer
//! /metrics. When scrapes were encoded and gzipped on the probing thread, each one held
//! every probe for hundreds of milliseconds: loopback RTTs of 0.4 s, targets in warning.
//! Needs root (raw ICMP socket).

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use support::{metric, Exporter};

const TARGETS: usize = 2000;
const WINDOW: Duration = Duration::from_secs(6);

/// One scrape as Prometheus asks for it; returns the (gzipped) body's size.
fn gzip_scrape(addr: SocketAddr) -> Option<usize> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    write!(
        s,
        "GET /metrics HTTP/1.0\r\nHost: {addr}\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5\r\nAccept-Encoding: gzip\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    // HTTP/1.0: the body ends with the connection, never chunked.
    (head.starts_with("http/1.0 200") && head.contains("content-encoding: gzip"))
        .then(|| buf.len() - head_end)
        .filter(|_| buf[head_end..].starts_with(&[0x1f, 0x8b]))
}

/// A plain scrape, waiting as long as a loaded machine needs.
fn plain_scrape(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(
        text.starts_with("HTTP/1.0 200"),
        "{}",
        &text[..text.len().min(200)]
    );
    text
}

fn sum_of(body: &str, sample_prefix: &str) -> f64 {
    body.lines()
        .filter(|l| l.starts_with(sample_prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// (replies, replies of 100 ms or more, warning transitions) so far.
fn tally(e: &Exporter) -> (f64, f64, usize) {
    let body = plain_scrape(e.addr);
    let replies = sum_of(&body, "vigia_ping_rtt_seconds_count{");
    let fast = body
        .lines()
        .filter(|l| l.starts_with("vigia_ping_rtt_seconds_bucket{") && l.contains("le=\"0.1\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>();
    let log = std::fs::read_to_string(e.dir.path().join("transitions.jsonl")).unwrap();
    let warnings = log
        .lines()
        .filter(|l| l.contains("\"to\":\"warning\""))
        .count();
    (replies, replies - fast, warnings)
}

#[test]
fn root_gzip_scrapes_do_not_move_rtts() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test needs root (CI runs as root)"
    );
    let mut yaml = String::from(
        "defaults: {interval: 2s, count: 1, timeout: 500ms, warning_rtt: 200ms}\n\
         transition_log: {path: \"{dir}/transitions.jsonl\"}\ntargets:\n",
    );
    for i in 0..TARGETS {
        yaml.push_str(&format!(
            "  - {{name: lo-{i}, address: 127.0.{}.{}}}\n",
            i / 250,
            i % 250 + 1
        ));
    }
    let e = Exporter::start(&yaml);
    let deadline = Instant::now() + Duration::from_secs(30);
    while e.get("/-/ready").0 != 200 {
        assert!(Instant::now() < deadline, "not ready: {}", e.stderr());
        std::thread::sleep(Duration::from_millis(200));
    }

    // The machine's own noise first (other work can delay any process): a window
    // without scrapes, then the same length with three gzip scrapers back to back.
    let start = tally(&e);
    std::thread::sleep(WINDOW);
    let quiet = tally(&e);
    let addr = e.addr;
    let scrapers: Vec<_> = (0..3)
        .map(|_| {
            std::thread::spawn(move || {
                let started = Instant::now();
                let mut sizes = Vec::new();
                while started.elapsed() < WINDOW && sizes.len() < 500 {
                    sizes.extend(gzip_scrape(addr));
                }
                sizes
            })
        })
        .collect();
    let sizes: Vec<usize> = scrapers
        .into_iter()
        .flat_map(|s| s.join().unwrap())
        .collect();
    // Rounds in flight at the window's end finish within their timeout.
    std::thread::sleep(Duration::from_millis(600));
    let loaded = tally(&e);
    // Each scrape of the old build stalled probing for a third of a second or more: a few
    // are enough to see it (a loaded machine answers fewer).
    assert!(
        sizes.len() >= 3,
        "only {} gzip scrapes answered",
        sizes.len()
    );

    let (replies_q, slow_q, warnings_q) = (quiet.0 - start.0, quiet.1 - start.1, quiet.2 - start.2);
    let (replies_l, slow_l, warnings_l) =
        (loaded.0 - quiet.0, loaded.1 - quiet.1, loaded.2 - quiet.2);
    // Probing went on during the scrapes: about three rounds of every target.
    assert!(
        replies_l >= (2 * TARGETS) as f64,
        "{replies_l} replies during the scrapes"
    );
    // What an operator sees: no loopback target turns warning because of the scrapes,
    // and RTTs stay small: no more targets turned warning, and no more replies of 100 ms
    // or more, than without scrapes (give or take one in a thousand). Scraping on the probing thread made about a
    // third of them slow, and turned targets warning every scrape.
    assert!(
        warnings_l <= warnings_q + TARGETS / 1000,
        "{warnings_l} targets turned warning during {} gzip scrapes, {warnings_q} without",
        sizes.len()
    );
    assert!(
        slow_l <= slow_q + replies_l / 1000.0,
        "{slow_l} of {replies_l} loopback RTTs took 100 ms or more during {} gzip scrapes, \
         {slow_q} of {replies_q} without",
        sizes.len()
    );
    let body = e.metrics();
    assert_eq!(
        metric(&body, "vigia_ping_targets", &[]),
        Some(TARGETS as f64)
    );
    let in_warning = body
        .lines()
        .filter(|l| {
            l.starts_with("vigia_ping_status{")
                && l.contains("status=\"warning\"")
                && l.ends_with(" 1")
        })
        .count();
    assert_eq!(in_warning, 0, "targets in warning after the scrapes");
}
