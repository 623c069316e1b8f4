//! The exporter keeps answering scrapes while clients hold idle connections: with
//! `ulimit -n 1024`, 1,100 connections that send nothing used to take every file
//! descriptor, and `/metrics` timed out for everyone. Now the oldest idle connections
//! make room (`vigia_http_connections_closed_total{reason="shed"}`). Needs root (raw
//! ICMP socket).

mod support;

use std::net::TcpStream;
use std::time::Duration;

use support::{metric, Exporter};

#[test]
fn root_idle_connections_never_lock_scrapers_out() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test needs root (CI runs as root)"
    );
    // This process holds the client ends: make room for them.
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on a valid struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max.max(4096).min(limit.rlim_max);
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
    assert!(
        limit.rlim_cur >= 2048,
        "need 2048 open files, have {limit:?}"
    );

    let e = Exporter::start_with_open_files(
        "defaults: {interval: 1s, count: 1, timeout: 300ms}\ntargets: [{name: lo, address: 127.0.0.1}]\n",
        1024,
    );
    let idle: Vec<TcpStream> = (0..1100)
        .map(|i| {
            TcpStream::connect_timeout(&e.addr, Duration::from_secs(2))
                .unwrap_or_else(|err| panic!("connection {i}: {err}"))
        })
        .collect();
    // A scraper still gets its answer, with the probes' data in it.
    let (status, body) = e
        .try_get("/metrics")
        .unwrap_or_else(|| panic!("/metrics did not answer: {}", e.stderr()));
    assert_eq!(status, 200);
    assert_eq!(metric(&body, "vigia_ping_targets", &[]), Some(1.0));
    let shed = metric(
        &body,
        "vigia_http_connections_closed_total",
        &[("reason", "shed")],
    )
    .unwrap_or_else(|| panic!("no shed counter in {body}"));
    assert!(shed >= (1100 - 512) as f64, "{shed} shed");
    assert_eq!(
        metric(&body, "vigia_http_connections_max", &[]),
        Some(512.0)
    );
    drop(idle);
}
