//! File replays of pcap files the tests write: exact counts per protocol, flows, ratios,
//! distinct ports and entropy; VLAN, Linux cooked and raw-IP datalinks; truncated packets
//! and broken files; windows that follow packet time; an anomaly in a replay.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

const A: [u8; 4] = [198, 18, 0, 1];
const B: [u8; 4] = [198, 18, 0, 2];
const C: [u8; 4] = [198, 18, 0, 3];

/// 10 SYNs from A to B ports 1..=10, 4 SYN-ACKs and 3 RSTs back, 6 data packets on one
/// connection (A:50000 - B:80), 20 UDP packets to port 53 from A and C, 5 ICMP echoes,
/// 2 ICMPv6 echoes, 1 ARP, 1 GRE.
fn mixed() -> Vec<Record> {
    let mut frames = Vec::new();
    for port in 1..=10u16 {
        frames.push(tcp(A, 40_000 + port, B, port, "S"));
    }
    for port in 1..=4u16 {
        frames.push(tcp(B, port, A, 40_000 + port, "SA"));
    }
    for port in 5..=7u16 {
        frames.push(tcp(B, port, A, 40_000 + port, "RA"));
    }
    for i in 0..6 {
        let (s, d) = if i % 2 == 0 { (A, B) } else { (B, A) };
        let (sp, dp) = if i % 2 == 0 {
            (50_000, 80)
        } else {
            (80, 50_000)
        };
        frames.push(tcp(s, sp, d, dp, "PA"));
    }
    for i in 0..20u16 {
        let src = if i < 15 { A } else { C };
        frames.push(udp(src, 33_000 + (i % 4), B, 53, b"query"));
    }
    for seq in 0..5 {
        frames.push(icmp_echo(A, B, seq));
    }
    let v6a = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    let v6b = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    for seq in 0..2 {
        frames.push(icmpv6_echo(v6a, v6b, seq));
    }
    frames.push(arp());
    frames.push(gre(A, C));
    frames
        .into_iter()
        .enumerate()
        .map(|(i, f)| Record::new(1_700_000_000_000_000 + i as u64 * 10_000, f))
        .collect()
}

fn window_config(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("capture.yaml");
    std::fs::write(&path, format!("window: 10s\n{extra}")).unwrap();
    path
}

fn num(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

#[test]
fn mixed_file_gives_exact_counts_flows_ratios_ports_and_entropy() {
    let dir = tempfile::tempdir().unwrap();
    let records = mixed();
    let total_bytes: u64 = records.iter().map(|r| u64::from(r.wire_len)).sum();
    let file = write_pcap(dir.path(), "mixed.pcap", LINKTYPE_ETHERNET, &records);
    let r = replay(&file, Some(&window_config(dir.path(), "")));
    assert!(r.status.success(), "{}", r.stderr);
    assert_eq!(r.windows.len(), 1, "all packets lie in one window");
    let w = &r.windows[0];
    assert_eq!(w["partial"], true);
    let p = &w["protocols"];
    assert_eq!(p["tcp"], 23);
    assert_eq!(p["udp"], 20);
    assert_eq!(p["icmp"], 5);
    assert_eq!(p["icmpv6"], 2);
    assert_eq!(p["other_ip"], 1);
    assert_eq!(p["non_ip"], 1);
    assert_eq!(num(w, "packets"), 52.0);
    assert_eq!(num(w, "bytes"), total_bytes as f64);
    assert_eq!(w["tcp_syn"], 10);
    assert_eq!(w["tcp_synack"], 4);
    assert_eq!(w["tcp_rst"], 3);
    // Flows with a packet in the window: 10 scan flows (the answers join them), the data
    // connection, 8 UDP flows (A and C each use source ports 33000..=33003), ICMP, ICMPv6
    // and GRE: 22, 11 of them TCP. Every one is new and finishes at the end of the file.
    let want_flows = 10 + 1 + (4 + 4) + 1 + 1 + 1;
    assert_eq!(num(w, "flows"), want_flows as f64);
    assert_eq!(w["tcp_flows"], 11);
    // Ratios are over TCP flows with 20 flows of prior weight (window.rs). (serde_json's
    // float parsing may be one unit in the last place off.)
    for (field, want) in [
        ("syn_ratio", 10.0 / 31.0),
        ("synack_ratio", 4.0 / 31.0),
        ("rst_ratio", 3.0 / 31.0),
    ] {
        assert!((num(w, field) - want).abs() < 1e-12, "{field}: {w}");
    }
    // Destination ports of the TCP and UDP flows, once per flow (a flow's destination is
    // where its first packet went): 1..=10 (the scan), 80 (the data connection), 53
    // (eight UDP flows).
    assert_eq!(num(w, "distinct_destination_ports"), 12.0);
    let mut counts = vec![1.0; 11];
    counts.push(8.0);
    let n: f64 = counts.iter().sum();
    let entropy: f64 = counts.iter().map(|c| -(c / n) * (c / n).log2()).sum();
    assert!((num(w, "destination_port_entropy") - entropy).abs() < 1e-9);
    // Sources: A, B (its answers), C and v6a; destinations: B, A, C, v6b.
    assert_eq!(num(w, "distinct_sources"), 4.0);
    assert_eq!(num(w, "distinct_destinations"), 4.0);
    assert_eq!(num(w, "new_flows"), want_flows as f64);
    assert_eq!(num(&r.summary, "flows_finished"), want_flows as f64);
    assert_eq!(num(&r.summary, "packets"), 52.0);
    assert_eq!(num(&r.summary, "parse_errors"), 0.0);
    // Top talker by bytes: A sent most.
    assert_eq!(w["top_talkers"][0][0], "198.18.0.1");

    // The same file served: what Prometheus scrapes.
    let e = Exporter::start("window: 10s\n", &["--capture.file", file.to_str().unwrap()]);
    let got = e.wait_for(
        "vigia_capture_flows_finished_total",
        want_flows as f64,
        Duration::from_secs(30),
    );
    assert_eq!(got, Some(want_flows as f64), "{}", e.metrics());
    let body = e.metrics();
    for (proto, family, want) in [
        ("tcp", "ipv4", 23.0),
        ("udp", "ipv4", 20.0),
        ("icmp", "ipv4", 5.0),
        ("icmpv6", "ipv6", 2.0),
        ("other_ip", "ipv4", 1.0),
        ("non_ip", "none", 1.0),
    ] {
        let series =
            format!("vigia_capture_packets_total{{protocol=\"{proto}\",family=\"{family}\"}}");
        assert_eq!(value_of(&body, &series), Some(want), "{series}\n{body}");
    }
    // Every byte once, over all protocols and families.
    let bytes: f64 = body
        .lines()
        .filter(|l| l.starts_with("vigia_capture_bytes_total{"))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<f64>().unwrap())
        .sum();
    assert_eq!(bytes, total_bytes as f64);
    assert_eq!(
        value_of(
            &body,
            "vigia_capture_dropped_packets_total{stage=\"queue\"}"
        ),
        Some(0.0)
    );
    assert_eq!(value_of(&body, "vigia_capture_flows_active"), Some(0.0));
    assert_eq!(
        value_of(&body, "vigia_capture_parse_errors_total"),
        Some(0.0)
    );
    assert_eq!(
        value_of(&body, "vigia_capture_anomaly_threshold"),
        Some(0.7)
    );
}

#[test]
fn vlan_linux_cooked_and_raw_ip_datalinks_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut single = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .single_vlan(etherparse::VlanId::try_new(100).unwrap())
        .ipv4(A, B, 64)
        .udp(1000, 2000)
        .write(&mut single, b"x")
        .unwrap();
    let mut double = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .double_vlan(
            etherparse::VlanId::try_new(10).unwrap(),
            etherparse::VlanId::try_new(20).unwrap(),
        )
        .ipv4(A, B, 64)
        .tcp(1000, 443, 1, 100)
        .syn()
        .write(&mut double, &[])
        .unwrap();
    let records = vec![
        Record::new(1_000_000, single),
        Record::new(1_000_100, double),
    ];
    let f = write_pcap(dir.path(), "vlan.pcap", LINKTYPE_ETHERNET, &records);
    let r = replay(&f, None);
    assert!(r.status.success(), "{}", r.stderr);
    assert_eq!(r.windows[0]["protocols"]["udp"], 1);
    assert_eq!(r.windows[0]["protocols"]["tcp"], 1);
    assert_eq!(r.windows[0]["tcp_syn"], 1);
    assert_eq!(r.windows[0]["distinct_destination_ports"], 2);

    let udp_ip = ip_only(udp(A, 5000, B, 53, b"abc"));
    let syn_ip = ip_only(tcp(A, 5001, B, 22, "S"));
    let v6 = ip_only(icmpv6_echo([0xfe; 16], [0xfd; 16], 1));
    for (name, linktype, frames) in [
        (
            "sll1.pcap",
            LINKTYPE_LINUX_SLL,
            vec![
                sll1(&udp_ip, 0x0800),
                sll1(&syn_ip, 0x0800),
                sll1(&v6, 0x86dd),
                sll1(&[1, 2, 3], 0x0806),
            ],
        ),
        (
            "sll2.pcap",
            LINKTYPE_LINUX_SLL2,
            vec![
                sll2(&udp_ip, 0x0800),
                sll2(&syn_ip, 0x0800),
                sll2(&v6, 0x86dd),
                sll2(&[1, 2, 3], 0x0806),
            ],
        ),
        (
            "raw.pcap",
            LINKTYPE_RAW,
            vec![udp_ip.clone(), syn_ip.clone(), v6.clone()],
        ),
    ] {
        let records: Vec<Record> = frames
            .into_iter()
            .enumerate()
            .map(|(i, f)| Record::new(5_000_000 + i as u64, f))
            .collect();
        let n = records.len();
        let f = write_pcap(dir.path(), name, linktype, &records);
        let r = replay(&f, None);
        assert!(r.status.success(), "{name}: {}", r.stderr);
        let p = &r.windows[0]["protocols"];
        assert_eq!(p["udp"], 1, "{name}: {p}");
        assert_eq!(p["tcp"], 1, "{name}: {p}");
        assert_eq!(p["icmpv6"], 1, "{name}: {p}");
        assert_eq!(r.windows[0]["packets"], n as u64, "{name}");
        assert_eq!(r.windows[0]["tcp_syn"], 1, "{name}");
        assert_eq!(r.summary["parse_errors"], 0, "{name}");
    }
}

#[test]
fn truncated_packets_count_and_broken_files_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    // Cut by a snaplen: still TCP with its ports (38 bytes reach the ports), or only the
    // IPv4 header (34 bytes), or not even a whole Ethernet header (10 bytes).
    let records = vec![
        Record::new(1_000_000, tcp(A, 1234, B, 80, "S")).cut(38),
        Record::new(1_000_001, udp(A, 1234, B, 53, b"hello")).cut(34),
        Record::new(1_000_002, tcp(A, 1234, B, 80, "S")).cut(10),
        // An IPv4 header claiming version 4 with a header length of 2 words: malformed.
        Record::new(1_000_003, {
            let mut f = udp(A, 1, B, 2, b"");
            f[14] = 0x42;
            f
        }),
    ];
    let f = write_pcap(dir.path(), "cut.pcap", LINKTYPE_ETHERNET, &records);
    let r = replay(&f, None);
    assert!(r.status.success(), "{}", r.stderr);
    assert_eq!(r.summary["packets"], 4);
    assert_eq!(r.summary["truncated"], 3);
    assert_eq!(
        r.summary["parse_errors"], 2,
        "the 10-byte frame and the bad IHL"
    );
    let p = &r.windows[0]["protocols"];
    assert_eq!(p["tcp"], 1);
    assert_eq!(p["udp"], 1);
    assert_eq!(p["non_ip"], 2);
    assert_eq!(
        r.windows[0]["distinct_destination_ports"], 1,
        "80 from the cut SYN"
    );

    // A file cut in the middle of a record: what came before counts, then a clear error.
    let whole = pcap_bytes(LINKTYPE_ETHERNET, &mixed());
    let cut = dir.path().join("cut-file.pcap");
    std::fs::write(&cut, &whole[..whole.len() - 30]).unwrap();
    let r = replay(&cut, None);
    assert_eq!(r.status.code(), Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("capture file"), "{}", r.stderr);
    assert_eq!(
        r.summary["packets"], 51,
        "every whole record before the cut"
    );

    // Not a capture file at all: exit 2 before anything runs, naming the field.
    let junk = dir.path().join("junk.pcap");
    std::fs::write(&junk, b"this is not a pcap file, just some text\n").unwrap();
    let out = run(&["--capture.file", junk.to_str().unwrap(), "--exit-at-eof"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("field `file`"), "{err}");
    assert!(out.stdout.is_empty());

    // Only the global header cut short.
    let short = dir.path().join("short.pcap");
    std::fs::write(&short, &whole[..10]).unwrap();
    let out = run(&["--capture.file", short.to_str().unwrap(), "--exit-at-eof"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn windows_follow_packet_time_and_replays_are_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let base = 1_700_000_000_000_000u64; // a multiple of 10 s, in microseconds
                                         // 3 packets in [0, 10) s, none in [10, 20), 2 in [20, 30), 1 at 35 s.
    let at = [1.0, 2.0, 9.9, 20.0, 29.999_999, 35.0];
    let records: Vec<Record> = at
        .iter()
        .map(|s| Record::new(base + (s * 1e6) as u64, udp(A, 1, B, 2, b"t")))
        .collect();
    let f = write_pcap(dir.path(), "time.pcap", LINKTYPE_ETHERNET, &records);
    let config = window_config(dir.path(), "");
    let r = replay(&f, Some(&config));
    assert!(r.status.success(), "{}", r.stderr);
    let packets: Vec<u64> = r
        .windows
        .iter()
        .map(|w| w["packets"].as_u64().unwrap())
        .collect();
    assert_eq!(packets, vec![3, 0, 2, 1]);
    let partial: Vec<bool> = r
        .windows
        .iter()
        .map(|w| w["partial"].as_bool().unwrap())
        .collect();
    assert_eq!(partial, vec![false, false, false, true]);
    assert_eq!(r.windows[1]["start"], 1_700_000_010.0);
    assert_eq!(r.summary["windows"], 3);
    let again = replay(&f, Some(&config));
    assert_eq!(again.windows, r.windows);
}

/// 40 calm 1-second windows (DNS and web traffic with small variations), then one window
/// with a SYN scan of 500 ports, then calm again: with a 30-window warm-up, the scan
/// window and only it reaches the threshold.
#[test]
fn a_scan_in_a_replay_scores_over_the_threshold_and_calm_windows_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let base = 1_700_000_000_000_000u64;
    let mut records = Vec::new();
    let mut rng = 0x1234_5678_9abc_def0u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let scan_second = 45u64;
    for second in 0..60u64 {
        let t0 = base + second * 1_000_000;
        let calm = 40 + next() % 10;
        for i in 0..calm {
            let ts = t0 + i * 10_000;
            let sport = 40_000 + (next() % 2000) as u16;
            let frame = match i % 4 {
                0 => udp(A, sport, B, 53, b"query"),
                1 => udp(B, 53, A, sport, b"answer"),
                2 => tcp(A, 50_000 + (second as u16), C, 443, "PA"),
                _ => tcp(C, 443, A, 50_000 + (second as u16), "A"),
            };
            records.push(Record::new(ts, frame));
        }
        if second == scan_second {
            for port in 1..=500u16 {
                records.push(Record::new(
                    t0 + 500_000 + u64::from(port),
                    tcp(A, 61_000, C, port, "S"),
                ));
                records.push(Record::new(
                    t0 + 600_000 + u64::from(port),
                    tcp(C, port, A, 61_000, "RA"),
                ));
            }
        }
    }
    records.sort_by_key(|r| r.ts_us);
    let f = write_pcap(dir.path(), "scan.pcap", LINKTYPE_ETHERNET, &records);
    let config = dir.path().join("capture.yaml");
    std::fs::write(&config, "window: 1s\nanomaly:\n  window_size: 30\n").unwrap();
    let r = replay(&f, Some(&config));
    assert!(r.status.success(), "{}", r.stderr);
    let scored: Vec<&Value> = r.windows.iter().filter(|w| w["warm"] == true).collect();
    assert!(scored.len() >= 25, "{} warm windows", scored.len());
    let scan_start = (base / 1_000_000 + scan_second) as f64;
    for w in &scored {
        let score = w["score"].as_f64().unwrap();
        if w["start"].as_f64() == Some(scan_start) {
            assert_eq!(w["anomalous"], true, "scan window scored {score}: {w}");
            let top: Vec<&str> = w["top_features"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f[0].as_str().unwrap())
                .collect();
            assert!(
                top.iter().any(|f| f.contains("port")
                    || f.contains("syn")
                    || f.contains("rst")
                    || f.contains("flows")),
                "{top:?}"
            );
        } else if w["start"].as_f64().unwrap() < scan_start {
            assert_eq!(w["anomalous"], false, "calm window scored {score}: {w}");
        }
    }
    assert!(r.summary["anomalous_windows"].as_u64().unwrap() >= 1);
}

#[test]
fn bad_configuration_exits_2_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let f = write_pcap(
        dir.path(),
        "one.pcap",
        LINKTYPE_ETHERNET,
        &[Record::new(1, arp())],
    );
    for (yaml, field) in [
        ("window: 0s\n", "window"),
        ("top_talkers: 50\n", "top_talkers"),
        ("bogus: 1\n", "bogus"),
        ("flows:\n  max_flows: 1\n", "flows.max_flows"),
        ("anomaly:\n  window_size: 5\n", "anomaly.window_size"),
        (
            "packet_rows:\n  mode: sample\n  sample_rate: 2\n",
            "packet_rows.sample_rate",
        ),
        ("interface: lo\nfile: /nonexistent.pcap\n", "file"),
        ("filter: \"tcp port\"\n", "filter"),
    ] {
        let config = dir.path().join("bad.yaml");
        std::fs::write(&config, yaml).unwrap();
        let args = if yaml.starts_with("interface") {
            vec!["--config.file", config.to_str().unwrap(), "--check-config"]
        } else {
            vec![
                "--config.file",
                config.to_str().unwrap(),
                "--capture.file",
                f.to_str().unwrap(),
                "--check-config",
            ]
        };
        let out = run(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{yaml}: {err}");
        assert!(err.contains(field), "{yaml}: {err}");
    }
    let out = run(&["--capture.file", f.to_str().unwrap(), "--check-config"]);
    assert!(out.status.success());
}
