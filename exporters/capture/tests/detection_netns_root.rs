//! Detection on real attack traffic (root + network namespace): a namespace host in
//! 198.18.0.0/15 behind a veth pair, vigia-capture live on the host-side veth with 1 s
//! windows, a calm baseline (HTTP requests to a small server, pings, and a 2 Mbit/s
//! iperf3 stream that stops after 60 s), then `nmap -sS` against the host, then a bounded
//! `hping3 --syn` burst. The calm windows, with the stream and after it ends, must stay
//! under the threshold; the scan and the burst must reach it within two windows.
//!
//! The end of the stream is the case of issue 10: ratios over TCP packets, whose
//! denominator the stream made, turned its end into a "scan" (SYN ratio 5 times the
//! reference with an unchanged SYN count) and every later window scored 1.0 (29 of 29 in a
//! real capture of this scenario) until the reference forgot the stream.
//!
//! The HTTP requests come at seeded random times (20 to 180 ms apart, on a schedule that
//! does not slip when a request is slow). They used to come 100 ms after the previous one
//! ended: exactly 10 new connections in every warm-up window, so when a loaded machine
//! slowed the loop to 7 a second the detector rightly found 10 deviations below anything
//! it had seen. Real traffic is never that regular; the schedule keeps the rate and gives
//! the warm-up the spread a loaded machine adds.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use vigia_anomaly::SplitMix64;

/// A window as the exporter closed it.
#[derive(Debug)]
#[allow(dead_code)] // read through Debug, in failure messages
struct Seen {
    end: f64,
    score: f64,
    warm: bool,
    /// `vigia_capture_windows_total` with this window: its number.
    number: f64,
    /// `vigia_capture_anomalous_windows_total` with this window: every window over the
    /// threshold so far, seen here or not.
    anomalous: f64,
    /// The three features furthest from the reference, with their z-scores.
    top: Vec<(String, f64)>,
    /// Every feature's value in the window.
    features: Vec<(String, f64)>,
}

/// The `name{feature="..."} value` series of one metric in an exposition.
fn per_feature(body: &str, metric: &str) -> Vec<(String, f64)> {
    let prefix = format!("{metric}{{feature=\"");
    body.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let (name, v) = rest.split_once("\"} ")?;
            Some((name.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// Scrapes the exporter every 100 ms and keeps each window it closed, while the test
/// waits or a tool runs (a window closes every second: none is missed unless a scrape
/// stalls for most of a second, and the counters in [`Seen`] tell if one was).
struct Watch<'a> {
    exporter: &'a Exporter,
    windows: Vec<Seen>,
}

impl Watch<'_> {
    fn poll(&mut self) {
        let body = self.exporter.metrics();
        let end = value_of(&body, "vigia_capture_last_window_end_timestamp_seconds").unwrap_or(0.0);
        if end > 0.0 && self.windows.last().map(|w| w.end) != Some(end) {
            let mut top = per_feature(&body, "vigia_capture_anomaly_feature_zscore");
            top.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
            top.truncate(3);
            self.windows.push(Seen {
                end,
                score: value_of(&body, "vigia_capture_anomaly_score").unwrap(),
                warm: value_of(&body, "vigia_capture_anomaly_warm") == Some(1.0),
                number: value_of(&body, "vigia_capture_windows_total").unwrap(),
                anomalous: value_of(&body, "vigia_capture_anomalous_windows_total").unwrap(),
                top,
                features: per_feature(&body, "vigia_capture_window_feature"),
            });
        }
    }

    fn until(&mut self, t: Instant) {
        while Instant::now() < t {
            self.poll();
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Watches until `child` exits (at most `limit`, then it is killed: a failure).
    fn until_exit(&mut self, child: &mut Child, what: &str, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            self.poll();
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{what} still running after {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The windows from an attack that started at `from` (Unix seconds) to `count`
    /// windows later, by number: the last window seen before it and the attack's own.
    /// `None` when a window in the range was not seen.
    fn after(&self, from: f64, count: usize) -> (f64, Vec<&Seen>) {
        let before = self.windows.iter().rfind(|w| w.end <= from).unwrap();
        let own: Vec<&Seen> = self
            .windows
            .iter()
            .filter(|w| w.number > before.number && w.number <= before.number + count as f64)
            .collect();
        (before.anomalous, own)
    }
}

struct Netns {
    name: String,
    host_if: String,
    children: Vec<Child>,
}

fn sh(args: &[&str]) {
    let status = Command::new(args[0]).args(&args[1..]).status().unwrap();
    assert!(status.success(), "{args:?} failed");
}

impl Netns {
    fn create(tag: u32, host_addr: &str, ns_addr: &str) -> Netns {
        let name = format!("vcapdet{tag}");
        let host_if = format!("vcaph{tag}");
        let ns_if = format!("vcapn{tag}");
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        let _ = Command::new("ip").args(["link", "del", &host_if]).status();
        sh(&["ip", "netns", "add", &name]);
        let ns = Netns {
            name: name.clone(),
            host_if: host_if.clone(),
            children: Vec::new(),
        };
        sh(&[
            "ip", "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
        ]);
        sh(&["ip", "link", "set", &ns_if, "netns", &name]);
        // No IPv6 on the pair: router solicitations and MLD reports would be noise.
        let _ = Command::new("sysctl")
            .args(["-qw", &format!("net.ipv6.conf.{host_if}.disable_ipv6=1")])
            .status();
        sh(&[
            "ip",
            "addr",
            "add",
            &format!("{host_addr}/30"),
            "dev",
            &host_if,
        ]);
        sh(&["ip", "link", "set", &host_if, "up"]);
        sh(&[
            "ip",
            "netns",
            "exec",
            &name,
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.disable_ipv6=1",
        ]);
        sh(&[
            "ip",
            "netns",
            "exec",
            &name,
            "ip",
            "addr",
            "add",
            &format!("{ns_addr}/30"),
            "dev",
            &ns_if,
        ]);
        sh(&[
            "ip", "netns", "exec", &name, "ip", "link", "set", &ns_if, "up",
        ]);
        sh(&[
            "ip", "netns", "exec", &name, "ip", "link", "set", "lo", "up",
        ]);
        ns
    }

    fn spawn(&mut self, args: &[&str]) {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.children.push(child);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A /30 for the veth pair in 198.18.128.0/17, none of whose addresses the root namespace
/// already has. Not 198.19.0.0/16: the end-to-end test's Docker networks live there, and
/// a /30 route of ours inside one of them would take that network's traffic (into our
/// capture) and break it. Not 198.18.200.0/30 either (the end-to-end test's device).
fn free_block(tag: u32) -> (String, String) {
    let out = Command::new("ip")
        .args(["-4", "-o", "addr"])
        .output()
        .unwrap();
    let in_use = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut block = tag.wrapping_mul(97) % 8192;
    loop {
        let base = (198u32 << 24) | (18 << 16) | (128 << 8) | (block * 4);
        let third = (base >> 8) & 0xff;
        let host = format!("198.18.{third}.{}", (base & 0xff) + 1);
        let peer = format!("198.18.{third}.{}", (base & 0xff) + 2);
        if third != 200
            && !in_use.contains(&format!(" {host}/"))
            && !in_use.contains(&format!(" {peer}/"))
        {
            return (host, peer);
        }
        block = (block + 1) % 8192;
    }
}

fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn http_request(addr: SocketAddr) {
    if let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let _ = s.write_all(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n");
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
    }
}

#[test]
fn scan_and_syn_burst_cross_the_threshold_calm_windows_do_not_root_netns() {
    assert!(
        is_root(),
        "this test needs root (netns, live capture); CI runs as root"
    );
    for (tool, package) in [
        ("ip", "iproute2"),
        ("nmap", "nmap"),
        ("hping3", "hping3"),
        ("iperf3", "iperf3"),
        ("ping", "iputils-ping"),
        ("python3", "python3"),
    ] {
        require_tool(tool, package);
    }
    let tag = std::process::id() % 200;
    let (host_addr, ns_addr) = free_block(tag);
    let mut ns = Netns::create(tag, &host_addr, &ns_addr);
    ns.spawn(&["python3", "-m", "http.server", "8080", "--bind", &ns_addr]);
    ns.spawn(&["iperf3", "-s", "-B", &ns_addr, "-p", "5201"]);
    std::thread::sleep(Duration::from_millis(800));

    let config = format!(
        "interface: {}\nwindow: 1s\nread_timeout: 20ms\nanomaly:\n  window_size: 30\n",
        ns.host_if
    );
    let e = Exporter::start(&config, &[]);
    let threshold = e.value("vigia_capture_anomaly_threshold").unwrap();

    // Calm traffic for the whole test, bounded by `calm_until` and counts.
    let running = Arc::new(AtomicBool::new(true));
    let http_addr: SocketAddr = format!("{ns_addr}:8080").parse().unwrap();
    let r = running.clone();
    let http = std::thread::spawn(move || {
        let mut rng = SplitMix64::new(u64::from(std::process::id()));
        let mut next = Instant::now();
        for _ in 0..2000 {
            if !r.load(Ordering::Relaxed) {
                break;
            }
            http_request(http_addr);
            next += Duration::from_millis(20 + rng.next_u64() % 161);
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
    });
    let mut ping = Command::new("ping")
        .args(["-q", "-i", "0.2", "-c", "600", &ns_addr])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut iperf = Command::new("iperf3")
        .args([
            "-c", &ns_addr, "-p", "5201", "-b", "2M", "-t", "60", "-l", "1200",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let mut watch = Watch {
        exporter: &e,
        windows: Vec::new(),
    };
    let start = Instant::now();
    // 30 windows of warm-up, then 30 calm windows with the stream, then 30 after it.
    let stream = watch.until_exit(&mut iperf, "iperf3", Duration::from_secs(75));
    assert!(stream.success(), "iperf3 failed: {stream}");
    let stream_ended = now_s();
    watch.until(start + Duration::from_secs(93).max(start.elapsed() + Duration::from_secs(31)));
    watch.poll();
    let scan_from = now_s();
    let mut nmap = Command::new("nmap")
        .args([
            "-sS",
            "-Pn",
            "-n",
            "-p",
            "1-2000",
            "--max-retries",
            "1",
            "--min-rate",
            "1500",
            "--host-timeout",
            "20s",
            &ns_addr,
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let status = watch.until_exit(&mut nmap, "nmap", Duration::from_secs(30));
    assert!(status.success(), "nmap failed: {status}");
    watch.until(Instant::now() + Duration::from_secs(6));
    watch.poll();
    let burst_from = now_s();
    let mut hping = Command::new("hping3")
        .args([
            "--syn", "-q", "-p", "8080", "-c", "3000", "-i", "u400", &ns_addr,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    watch.until_exit(&mut hping, "hping3", Duration::from_secs(30));
    watch.until(Instant::now() + Duration::from_secs(3));
    running.store(false, Ordering::Relaxed);
    let _ = http.join();
    let _ = ping.kill();
    let _ = ping.wait();
    let windows = &watch.windows;

    // "Within two windows": the two windows from the attack's start, by number, and how
    // many of them the anomalous-window counter took (it counts a window the scrapes
    // missed too).
    let attack = |from: f64| -> (usize, Vec<f64>) {
        let (anomalous_before, own) = watch.after(from, 2);
        let scores: Vec<f64> = own.iter().map(|w| w.score).collect();
        let last = own
            .last()
            .unwrap_or_else(|| panic!("no window after {from}: {windows:?}"));
        let counted = (last.anomalous - anomalous_before) as usize;
        // Seeing only the first of the two is enough when it is over the threshold.
        assert!(
            own.len() == 2 || counted >= 1,
            "a window of the attack from {from} was not seen: {windows:?}"
        );
        (counted, scores)
    };
    // The scan's windows start with its first packets, not with nmap's start: on a loaded
    // machine nmap took over a second (one window) to send anything, and the two windows
    // after its start were calm ones (CI: scores 0.0 and 0.25). The first window after the
    // start that holds the scan's ports is where it begins (1 s windows).
    let scan_start = windows
        .iter()
        .filter(|w| w.end > scan_from)
        .find(|w| {
            w.features
                .iter()
                .any(|(f, v)| f == "distinct_destination_ports" && *v >= 100.0)
        })
        .map_or(scan_from, |w| (w.end - 1.0).max(scan_from));
    let (detected_scan, scan) = attack(scan_start);
    let (detected_burst, burst) = attack(burst_from);
    let after_stream: Vec<f64> = windows
        .iter()
        .filter(|w| w.warm && w.end - 1.0 > stream_ended && w.end < scan_from - 0.05)
        .map(|w| w.score)
        .collect();
    // Calm: warm windows that end before the scan, with a second of margin.
    let calm: Vec<f64> = windows
        .iter()
        .filter(|w| w.warm && w.end < scan_from - 0.05)
        .map(|w| w.score)
        .collect();
    // Every window before the scan, seen or not: warm-up windows score 0, so the counter
    // holds the calm windows over the threshold.
    let false_positives = windows
        .iter()
        .rfind(|w| w.end < scan_from - 0.05)
        .map_or(0.0, |w| w.anomalous) as usize;
    let calm_numbers = windows
        .iter()
        .filter(|w| w.warm && w.end < scan_from - 0.05)
        .map(|w| w.number);
    let unseen = match (
        calm_numbers.clone().reduce(f64::min),
        calm_numbers.reduce(f64::max),
    ) {
        (Some(first), Some(last)) => (last - first + 1.0) as usize - calm.len(),
        _ => 0,
    };
    println!(
        "detection: scan {detected_scan}/2 windows, burst {detected_burst}/2 windows; false positives {false_positives}/{} calm windows ({} after the stream ended, {unseen} not seen by a scrape); scores scan {scan:?} burst {burst:?} calm {calm:?}",
        calm.len(),
        after_stream.len(),
    );
    assert!(calm.len() >= 40, "too few calm scored windows: {windows:?}");
    assert!(
        after_stream.len() >= 20,
        "too few windows after the stream ended: {windows:?}"
    );
    assert!(!scan.is_empty() && !burst.is_empty(), "{windows:?}");
    assert!(detected_scan >= 1, "the scan was not detected: {scan:?}");
    assert!(
        detected_burst >= 1,
        "the SYN burst was not detected: {burst:?}"
    );
    assert_eq!(
        false_positives,
        0,
        "calm windows over the threshold: {:#?}",
        windows
            .iter()
            .filter(|w| w.warm && w.end < scan_from - 0.05 && w.score >= threshold)
            .collect::<Vec<_>>()
    );
    drop(e);
    drop(ns);
}
