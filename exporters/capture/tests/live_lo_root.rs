//! Live capture on `lo` (needs root: NET_RAW and NET_ADMIN): a known number of UDP
//! packets to a chosen port, a BPF filter for that port, and exact counters in /metrics.
//! Without the capabilities, startup fails with exit 2 naming them.

mod common;

use std::net::UdpSocket;
use std::process::Command;
use std::time::Duration;

use common::*;

const PACKETS: u64 = 500;
const PAYLOAD: usize = 100;

// libpcap on Linux does not return from a blocking read on a quiet interface when its
// timeout expires; a capture that held the tail of a burst across such a read never
// counted it. These tests end every burst with silence, so they catch that.
#[test]
fn udp_packets_on_lo_are_counted_exactly_root() {
    count_exactly("lo", "", 14);
}

// Without immediate mode libpcap uses TPACKET_V3: packets arrive in blocks the kernel
// hands over when full or when the read timeout expires.
#[test]
fn udp_packets_on_lo_are_counted_exactly_without_immediate_mode_root() {
    count_exactly("lo", "immediate_mode: false\n", 14);
}

// `any` sees lo's packets once (libpcap skips lo's outgoing copy), with a Linux cooked
// header (16 bytes) instead of Ethernet's.
#[test]
fn udp_packets_on_any_are_counted_exactly_root() {
    count_exactly("any", "", 16);
}

fn count_exactly(interface: &str, extra_config: &str, link_header: u64) {
    assert!(
        is_root(),
        "this test needs root (live capture on lo); CI runs as root"
    );
    let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = receiver.local_addr().unwrap().port();
    let config = format!(
        "interface: {interface}\nfilter: \"udp and dst port {port}\"\nwindow: 1s\nread_timeout: 20ms\n{extra_config}flows:\n  idle_timeout: 2s\n  active_timeout: 10s\n"
    );
    let e = Exporter::start(&config, &[]);
    // The filter is in place before /-/ready answers; give the kernel a moment to attach.
    std::thread::sleep(Duration::from_millis(300));
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..PACKETS {
        sender
            .send_to(&[i as u8; PAYLOAD], ("127.0.0.1", port))
            .unwrap();
        if i % 50 == 49 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let series = "vigia_capture_packets_total{protocol=\"udp\",family=\"ipv4\"}";
    let got = e.wait_for(series, PACKETS as f64, Duration::from_secs(15));
    assert_eq!(got, Some(PACKETS as f64), "{}", e.stderr());
    // Nothing more arrives later (no double counting), and nothing else passed the filter.
    std::thread::sleep(Duration::from_millis(1500));
    let body = e.metrics();
    assert_eq!(value_of(&body, series), Some(PACKETS as f64));
    // Link header + 20 (IPv4) + 8 (UDP) + payload bytes per packet on the wire.
    assert_eq!(
        value_of(
            &body,
            "vigia_capture_bytes_total{protocol=\"udp\",family=\"ipv4\"}"
        ),
        Some((PACKETS * (link_header + 20 + 8 + PAYLOAD as u64)) as f64)
    );
    // Every other series (they exist from the start) is still 0.
    let others: Vec<&str> = body
        .lines()
        .filter(|l| l.starts_with("vigia_capture_packets_total{") && !l.starts_with(series))
        .collect();
    assert_eq!(others.len(), 8, "{body}");
    for line in others {
        assert!(line.ends_with(" 0"), "{line}");
    }
    for stage in ["kernel", "queue"] {
        let s = format!("vigia_capture_dropped_packets_total{{stage=\"{stage}\"}}");
        assert_eq!(value_of(&body, &s), Some(0.0), "{s}");
    }
    // One flow (one socket pair), still active or already finished by its idle timeout;
    // windows close on the wall clock even with no traffic.
    let active = value_of(&body, "vigia_capture_flows_active").unwrap();
    let finished = value_of(&body, "vigia_capture_flows_finished_total").unwrap();
    assert_eq!(active + finished, 1.0, "{body}");
    assert!(value_of(&body, "vigia_capture_windows_total").unwrap() >= 1.0);
    drop(receiver);
}

#[test]
fn sigterm_ends_a_quiet_live_capture_root() {
    assert!(
        is_root(),
        "this test needs root (live capture on lo); CI runs as root"
    );
    let mut e = Exporter::start(
        "interface: lo\nfilter: \"udp and dst port 9\"\nwindow: 1s\n",
        &[],
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert!(e.value("vigia_capture_windows_total").unwrap() >= 1.0);
    let status = e.terminate();
    assert!(status.success(), "{status}: {}", e.stderr());
}

#[test]
fn live_capture_without_net_raw_exits_2_naming_the_capabilities_root() {
    assert!(
        is_root(),
        "this test needs root to drop capabilities; CI runs as root"
    );
    require_tool("setpriv", "util-linux");
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--bounding-set=-net_raw,-net_admin",
        "--inh-caps=-net_raw,-net_admin",
        BIN,
        "--capture.interface",
        "lo",
        "--web.listen-address",
    ])
    .arg(format!("127.0.0.1:{}", free_port()));
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("NET_RAW") && err.contains("NET_ADMIN"),
        "{err}"
    );
    assert!(err.contains("field `interface`"), "{err}");

    let out = common::command()
        .args(["--capture.interface", "no-such-if0", "--check-config"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no-such-if0"), "{err}");
}
