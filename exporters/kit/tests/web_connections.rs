//! Connection limits and idle timeouts on real sockets: a connection that sends nothing,
//! or only the HTTP/2 preface, is closed after `--web.read-header-timeout`; a keep-alive
//! connection after `--web.idle-timeout`; a handler slower than both is never cut; at
//! `--web.max-connections` idle connections make room for new ones, and a new one is
//! refused only when every connection is busy. Each is counted in
//! `vigia_http_connections_closed_total{reason}`.

mod web_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use axum::routing::get;
use vigia_kit::connections::ConnectionLimits;
use vigia_kit::web_config::WebConfig;
use web_support::TestServer;

const HEADER_TIMEOUT: Duration = Duration::from_millis(400);
const IDLE_TIMEOUT: Duration = Duration::from_millis(800);
/// Longer than both timeouts together.
const SLOW_HANDLER: Duration = Duration::from_millis(1500);

fn server(max_connections: usize) -> TestServer {
    let web = WebConfig::none().with_limits(ConnectionLimits {
        max_connections,
        idle_timeout: IDLE_TIMEOUT,
        read_header_timeout: HEADER_TIMEOUT,
    });
    let slow = axum::Router::new().route(
        "/slow",
        get(|| async {
            tokio::time::sleep(SLOW_HANDLER).await;
            "slow but whole\n"
        }),
    );
    TestServer::start_with_routes(web, slow)
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Reads until the server closes; returns what it sent and how long that took.
fn read_until_closed(s: &mut TcpStream) -> (String, Duration) {
    let started = Instant::now();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    (
        String::from_utf8_lossy(&buf).into_owned(),
        started.elapsed(),
    )
}

fn get_on(s: &mut TcpStream, path: &str, keep_alive: bool) -> String {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: {connection}\r\n\r\n"
    )
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    // Until the body announced by Content-Length is in (these bodies are small).
    loop {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if body.len() >= len {
                return text;
            }
        }
    }
}

fn closed_total(server: &TestServer, reason: &str) -> f64 {
    let body = web_support::curl(&server.url("http", "/metrics"), &[]).body;
    let line = format!("vigia_http_connections_closed_total{{reason=\"{reason}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&line))
        .unwrap_or_else(|| panic!("no {line} in {body}"))
        .parse()
        .unwrap()
}

#[test]
fn silent_preface_only_and_idle_connections_are_closed_busy_ones_are_not() {
    let server = server(64);
    let addr = server.addr;
    // Run the waits side by side.
    let silent = std::thread::spawn(move || read_until_closed(&mut connect(addr)));
    let preface = std::thread::spawn(move || {
        let mut s = connect(addr);
        // The HTTP/2 connection preface and an empty SETTINGS frame, then nothing.
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            .unwrap();
        read_until_closed(&mut s)
    });
    let kept_alive = std::thread::spawn(move || {
        let mut s = connect(addr);
        let first = get_on(&mut s, "/-/healthy", true);
        (first, read_until_closed(&mut s))
    });
    let slow = std::thread::spawn(move || {
        let mut s = connect(addr);
        write!(
            s,
            "GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        read_until_closed(&mut s)
    });

    let (sent, after) = silent.join().unwrap();
    assert!(sent.is_empty(), "{sent}");
    assert!(
        after >= HEADER_TIMEOUT - Duration::from_millis(50),
        "{after:?}"
    );
    let (sent, after) = preface.join().unwrap();
    // The server's own SETTINGS may come first; no request was served either way.
    assert!(!sent.contains("HTTP/1.1 200"), "{sent:?}");
    assert!(after < Duration::from_secs(5), "{after:?}");
    let (first, (rest, _)) = kept_alive.join().unwrap();
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    assert!(rest.is_empty(), "{rest}");
    let (answer, _) = slow.join().unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("slow but whole\n"),
        "a handler slower than the timeouts was cut: {answer:?}"
    );
    assert_eq!(closed_total(&server, "header_timeout"), 2.0);
    assert_eq!(closed_total(&server, "idle_timeout"), 1.0);
}

#[test]
fn at_the_cap_idle_connections_make_room_and_busy_ones_refuse() {
    let server = server(20);
    let addr = server.addr;
    // Twice the cap of silent connections: the oldest are shed, and a scraper still
    // gets its answer.
    let idle: Vec<TcpStream> = (0..40).map(|_| connect(addr)).collect();
    let metrics = web_support::curl(&server.url("http", "/metrics"), &["--max-time", "5"]);
    assert_eq!(metrics.status, 200, "{metrics:?}");
    assert!(closed_total(&server, "shed") >= 20.0);
    drop(idle);

    // Every place busy in a slow handler: one more connection is refused at once.
    let busy: Vec<_> = (0..20)
        .map(|_| {
            std::thread::spawn(move || {
                let mut s = connect(addr);
                write!(
                    s,
                    "GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                )
                .unwrap();
                read_until_closed(&mut s).0
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let (sent, after) = read_until_closed(&mut connect(addr));
    assert!(sent.is_empty(), "{sent}");
    assert!(after < SLOW_HANDLER, "refused after {after:?}, not at once");
    for b in busy {
        assert!(b.join().unwrap().ends_with("slow but whole\n"));
    }
    assert!(closed_total(&server, "refused") >= 1.0);
}
