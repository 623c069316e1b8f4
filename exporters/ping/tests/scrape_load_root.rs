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
const HAMMER_FOR: Duration = Duration::from_secs(8);

/// One scrape as Prometheus asks for it; returns the (gzipped) body's size.
fn gzip_scrape(addr: SocketAddr) -> Option<usize> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    (head.starts_with("http/1.1 200") && head.contains("content-encoding: gzip"))
        .then(|| buf.len() - head_end)
        .filter(|_| buf[head_end..].starts_with(&[0x1f, 0x8b]))
}

fn sum_of(body: &str, sample_prefix: &str) -> f64 {
    body.lines()
        .filter(|l| l.starts_with(sample_prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
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
        "defaults: {interval: 2s, count: 1, timeout: 500ms, warning_rtt: 100ms}\n\
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
    let before = e.metrics();
    let counted_before = sum_of(&before, "vigia_ping_rtt_seconds_count{");

    // Three scrapers back to back, bounded in time and count.
    let addr = e.addr;
    let scrapers: Vec<_> = (0..3)
        .map(|_| {
            std::thread::spawn(move || {
                let started = Instant::now();
                let mut sizes = Vec::new();
                while started.elapsed() < HAMMER_FOR && sizes.len() < 500 {
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
    assert!(
        sizes.len() >= 6,
        "only {} gzip scrapes answered",
        sizes.len()
    );

    let body = e.metrics();
    let counted = sum_of(&body, "vigia_ping_rtt_seconds_count{");
    let fast = body
        .lines()
        .filter(|l| l.starts_with("vigia_ping_rtt_seconds_bucket{") && l.contains("le=\"0.1\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>();
    // Probing went on during the scrapes: about four rounds of every target.
    assert!(
        counted - counted_before >= (3 * TARGETS) as f64,
        "{} replies during the scrapes",
        counted - counted_before
    );
    assert_eq!(
        fast,
        counted,
        "{} of {counted} loopback RTTs took 100 ms or more while {} gzip scrapes ran",
        counted - fast,
        sizes.len()
    );
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
    assert_eq!(in_warning, 0, "targets in warning while scrapes ran");
    // Not even for one round: the transition log holds only the first unknown -> ok.
    let log = std::fs::read_to_string(e.dir.path().join("transitions.jsonl")).unwrap();
    let turned: Vec<&str> = log
        .lines()
        .filter(|l| !l.contains("\"to\":\"ok\""))
        .collect();
    assert!(
        turned.is_empty(),
        "{} transitions away from ok: {:?}",
        turned.len(),
        &turned[..turned.len().min(3)]
    );
}
