//! Inputs from issue 15: a replay stopped by SIGTERM in every mode, standard input,
//! times after January 2038, quiet spells of any length, MPLS and PPPoE, the IP family
//! label, pcapng files with interfaces of different link types.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const A: [u8; 4] = [198, 18, 0, 1];
const B: [u8; 4] = [198, 18, 0, 2];

fn lines(stdout: &[u8]) -> (Vec<serde_json::Value>, serde_json::Value) {
    let mut windows = Vec::new();
    let mut summary = serde_json::Value::Null;
    for line in String::from_utf8_lossy(stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        match v.get("summary") {
            Some(s) => summary = s.clone(),
            None => windows.push(v),
        }
    }
    (windows, summary)
}

/// A FIFO fed with UDP packets until the reader goes away (at most 60 s): a replay that
/// does not end by itself, busy all the while.
fn endless_fifo(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("endless.pcap");
    let status = Command::new("mkfifo").arg(&path).status().unwrap();
    assert!(status.success());
    let writer_path = path.clone();
    std::thread::spawn(move || {
        let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&writer_path) else {
            return;
        };
        let _ = f.write_all(&pcap_bytes(LINKTYPE_ETHERNET, &[]));
        let started = Instant::now();
        let mut ts = 1_700_000_000_000_000u64;
        while started.elapsed() < Duration::from_secs(60) {
            let records: Vec<Record> = (0..500)
                .map(|i| {
                    ts += 1_000;
                    Record::new(ts, udp(A, 1000 + i, B, 53, b"q"))
                })
                .collect();
            let bytes = pcap_bytes(LINKTYPE_ETHERNET, &records);
            if f.write_all(&bytes[24..]).is_err() {
                return;
            }
        }
    });
    path
}

fn sigterm(pid: u32) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
}

/// Waits up to `within` for the child to exit.
fn exit_within(
    child: &mut std::process::Child,
    within: Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_stops_a_replay_in_every_mode() {
    let dir = tempfile::tempdir().unwrap();
    for mode in ["--bench", "--exit-at-eof"] {
        let fifo = endless_fifo(dir.path());
        let mut child = command()
            .args(["--capture.file", fifo.to_str().unwrap(), mode])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut out = out;
            let mut buf = Vec::new();
            let _ = std::io::Read::read_to_end(&mut out, &mut buf);
            buf
        });
        std::thread::sleep(Duration::from_millis(1500));
        sigterm(child.id());
        let status = exit_within(&mut child, Duration::from_secs(5));
        std::fs::remove_file(&fifo).unwrap();
        let status = status.unwrap_or_else(|| panic!("{mode}: still running 5 s after SIGTERM"));
        assert_eq!(
            status.code(),
            Some(1),
            "{mode}: an interrupted replay is not a complete one"
        );
        let (_, summary) = lines(&reader.join().unwrap());
        assert_eq!(summary["interrupted"], true, "{mode}: {summary}");
        assert!(
            summary["packets"].as_u64().unwrap() > 0,
            "{mode}: {summary}"
        );
    }
    // Serving: SIGTERM closes the listener and ends the process.
    let fifo = endless_fifo(dir.path());
    let mut e = Exporter::start("window: 1s\n", &["--capture.file", fifo.to_str().unwrap()]);
    assert!(e
        .value("vigia_capture_packets_total{protocol=\"udp\",family=\"ipv4\"}")
        .is_some());
    let started = Instant::now();
    let status = e.terminate();
    assert!(status.success(), "{status}: {}", e.stderr());
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn standard_input_is_read_with_file_dash() {
    let records: Vec<Record> = (0..300)
        .map(|i| {
            Record::new(
                1_700_000_000_000_000 + i * 10_000,
                udp(A, 1000, B, 53, b"x"),
            )
        })
        .collect();
    let mut child = command()
        .args(["--capture.file", "-", "--exit-at-eof"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let bytes = pcap_bytes(LINKTYPE_ETHERNET, &records);
    std::thread::spawn(move || {
        let _ = stdin.write_all(&bytes);
    });
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (windows, summary) = lines(&out.stdout);
    assert_eq!(summary["packets"], 300);
    assert_eq!(windows[0]["protocols"]["udp"], 300);
    // A terminal is refused: nothing would ever come.
    let yaml = "file: \"-\"\n";
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.yaml");
    std::fs::write(&config, yaml).unwrap();
    let out = run(&["--config.file", config.to_str().unwrap(), "--check-config"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn times_after_january_2038_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    // 2038-01-19 03:14:00, then 03:14:10 and 03:15:00: past 2^31 seconds, which libpcap
    // 1.10 reads as negative (tcpdump prints "[Error converting time]").
    let t = |s: u64| s * 1_000_000;
    let records = vec![
        Record::new(t(2_147_483_640), udp(A, 1, B, 2, b"a")),
        Record::new(t(2_147_483_650), udp(A, 1, B, 2, b"b")),
        Record::new(t(2_147_483_700), udp(A, 1, B, 2, b"c")),
        Record::new(t(4_102_444_800), udp(A, 1, B, 2, b"d")), // 2100-01-01
    ];
    let f = write_pcap(dir.path(), "y2038.pcap", LINKTYPE_ETHERNET, &records);
    let r = replay(&f, None);
    assert!(r.status.success(), "{}", r.stderr);
    let starts: Vec<(f64, u64)> = r
        .windows
        .iter()
        .filter(|w| w["packets"] != 0)
        .map(|w| (w["start"].as_f64().unwrap(), w["packets"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        starts,
        vec![
            (2_147_483_640.0, 1),
            (2_147_483_650.0, 1),
            (2_147_483_700.0, 1),
            (4_102_444_800.0, 1)
        ]
    );
    assert_eq!(r.summary["bad_timestamps"], 0);
}

/// Packets a day apart (and one 60 years on): every empty window is closed and learned,
/// each gap as a few runs however long it is. One by one, a day of 10 s windows cost
/// about a second in a release build, and a gap over 10,000 windows restarted the windows
/// (the detector saw nothing of it).
#[test]
fn quiet_spells_of_any_length_are_closed_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let day = 86_400u64;
    let base = 1_700_000_000u64;
    let mut records: Vec<Record> = (0..12)
        .map(|i| Record::new((base + i * day) * 1_000_000, udp(A, 1, B, 2, b"d")))
        .collect();
    let last = base + 11 * day + 60 * 365 * day;
    records.push(Record::new(last * 1_000_000, udp(A, 1, B, 2, b"e")));
    let f = write_pcap(dir.path(), "days.pcap", LINKTYPE_ETHERNET, &records);
    let r = replay(&f, None);
    assert!(r.status.success(), "{}", r.stderr);
    // Every window from the first packet's to the last one's, once.
    let windows: u64 = r
        .windows
        .iter()
        .filter(|w| w["partial"] == false)
        .map(|w| w["windows"].as_u64().unwrap())
        .sum();
    let want = (last - base) / 10;
    assert_eq!(windows, want);
    assert_eq!(r.summary["windows"], want);
    let mut end = r.windows[0]["start"].as_f64().unwrap();
    for w in &r.windows {
        assert_eq!(w["start"].as_f64().unwrap(), end, "{w}");
        end = w["end"].as_f64().unwrap();
    }
    // Each gap takes a handful of lines (runs of equal verdicts), not one per window.
    assert!(r.windows.len() < 13 * 20, "{} lines", r.windows.len());
}

/// Ethernet / MPLS (two labels) / IPv4 / UDP, Ethernet / VLAN / PPPoE / IPv4 / TCP SYN,
/// PPPoE / IPv6 / UDP, a PPPoE LCP frame (not IP) and an MPLS pseudowire (not IP).
fn isp_frames() -> Vec<Vec<u8>> {
    let mac = [2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
    let ip4_udp = ip_only(udp(A, 5353, B, 53, b"query"));
    let ip4_syn = ip_only(tcp(A, 40_000, B, 443, "S"));
    let mut v6 = Vec::new();
    etherparse::PacketBuilder::ipv6([0x20; 16], [0x21; 16], 64)
        .udp(1000, 123)
        .write(&mut v6, b"ntp")
        .unwrap();
    let mut mpls = mac.to_vec();
    mpls.extend_from_slice(&[0x88, 0x47, 0x00, 0x01, 0x00, 0x40, 0x00, 0x02, 0x01, 0x40]);
    mpls.extend_from_slice(&ip4_udp);
    let pppoe = |protocol: u16, payload: &[u8]| {
        let mut f = vec![0x11, 0x00, 0x12, 0x34];
        f.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
        f.extend_from_slice(&protocol.to_be_bytes());
        f.extend_from_slice(payload);
        f
    };
    let mut vlan_pppoe = mac.to_vec();
    vlan_pppoe.extend_from_slice(&[0x81, 0x00, 0x00, 0x64, 0x88, 0x64]);
    vlan_pppoe.extend_from_slice(&pppoe(0x0021, &ip4_syn));
    let mut pppoe_v6 = mac.to_vec();
    pppoe_v6.extend_from_slice(&[0x88, 0x64]);
    pppoe_v6.extend_from_slice(&pppoe(0x0057, &v6));
    let mut lcp = mac.to_vec();
    lcp.extend_from_slice(&[0x88, 0x64]);
    lcp.extend_from_slice(&pppoe(0xc021, &[9, 1, 0, 8, 0, 0, 0, 0]));
    let mut pseudowire = mac.to_vec();
    pseudowire.extend_from_slice(&[0x88, 0x47, 0x00, 0x01, 0x01, 0x40, 0, 0, 0, 0]);
    pseudowire.extend_from_slice(&[0xff; 20]);
    vec![mpls, vlan_pppoe, pppoe_v6, lcp, pseudowire]
}

#[test]
fn mpls_and_pppoe_frames_are_decoded_to_the_ip_inside_as_tcpdump_does() {
    require_tool("tcpdump", "tcpdump");
    let dir = tempfile::tempdir().unwrap();
    let records: Vec<Record> = isp_frames()
        .into_iter()
        .enumerate()
        .map(|(i, f)| Record::new(1_700_000_000_000_000 + i as u64, f))
        .collect();
    let f = write_pcap(dir.path(), "isp.pcap", LINKTYPE_ETHERNET, &records);
    // tcpdump reads the same IP packets inside.
    let out = Command::new("tcpdump")
        .args(["-nn", "-r", f.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].contains("MPLS") && lines[0].contains("198.18.0.1.5353 > 198.18.0.2.53"),
        "{text}"
    );
    assert!(
        lines[1].contains("PPPoE")
            && lines[1].contains("198.18.0.1.40000 > 198.18.0.2.443: Flags [S]"),
        "{text}"
    );
    assert!(lines[2].contains("PPPoE") && lines[2].contains("2020:2020:2020:2020:2020:2020:2020:2020.1000 > 2121:2121:2121:2121:2121:2121:2121:2121.123"), "{text}");
    let r = replay(&f, None);
    assert!(r.status.success(), "{}", r.stderr);
    let w = &r.windows[0];
    assert_eq!(w["protocols"]["udp"], 2, "{w}");
    assert_eq!(w["protocols"]["tcp"], 1, "{w}");
    assert_eq!(w["protocols"]["non_ip"], 2, "{w}");
    assert_eq!(w["tcp_syn"], 1);
    assert_eq!(w["distinct_destination_ports"], 3, "53, 443 and 123: {w}");
    assert_eq!(r.summary["parse_errors"], 0);
    // The family label on the counters.
    let e = Exporter::start("window: 10s\n", &["--capture.file", f.to_str().unwrap()]);
    let body = {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let body = e.metrics();
            if value_of(&body, "vigia_capture_flows_finished_total") == Some(3.0)
                || Instant::now() > deadline
            {
                break body;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    for (series, want) in [
        (
            "vigia_capture_packets_total{protocol=\"udp\",family=\"ipv4\"}",
            1.0,
        ),
        (
            "vigia_capture_packets_total{protocol=\"udp\",family=\"ipv6\"}",
            1.0,
        ),
        (
            "vigia_capture_packets_total{protocol=\"tcp\",family=\"ipv4\"}",
            1.0,
        ),
        (
            "vigia_capture_packets_total{protocol=\"tcp\",family=\"ipv6\"}",
            0.0,
        ),
        (
            "vigia_capture_packets_total{protocol=\"non_ip\",family=\"none\"}",
            2.0,
        ),
    ] {
        assert_eq!(value_of(&body, series), Some(want), "{series}\n{body}");
    }
    let v6_bytes = value_of(
        &body,
        "vigia_capture_bytes_total{protocol=\"udp\",family=\"ipv6\"}",
    );
    assert_eq!(v6_bytes, Some(records[2].wire_len as f64));
}

/// A pcapng section header, interface descriptions of `linktypes`, then one enhanced
/// packet per `(interface, frame)`.
fn pcapng(linktypes: &[u16], packets: &[(u32, Vec<u8>)], late_interface: Option<u16>) -> Vec<u8> {
    let block = |kind: u32, body: &[u8]| {
        let len = 12 + body.len().div_ceil(4) * 4;
        let mut b = kind.to_le_bytes().to_vec();
        b.extend_from_slice(&(len as u32).to_le_bytes());
        b.extend_from_slice(body);
        b.resize(len - 4, 0);
        b.extend_from_slice(&(len as u32).to_le_bytes());
        b
    };
    let mut shb = 0x1a2b_3c4du32.to_le_bytes().to_vec();
    shb.extend_from_slice(&[1, 0, 0, 0]);
    shb.extend_from_slice(&u64::MAX.to_le_bytes());
    let mut out = block(0x0a0d_0d0a, &shb);
    let idb = |linktype: u16| {
        let mut body = linktype.to_le_bytes().to_vec();
        body.extend_from_slice(&[0, 0]);
        body.extend_from_slice(&65_535u32.to_le_bytes());
        block(1, &body)
    };
    for &t in linktypes {
        out.extend(idb(t));
    }
    for (i, (interface, frame)) in packets.iter().enumerate() {
        let ts = 1_700_000_000_000_000u64 + i as u64;
        let mut body = interface.to_le_bytes().to_vec();
        body.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
        body.extend_from_slice(&(ts as u32).to_le_bytes());
        body.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        body.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        body.extend_from_slice(frame);
        out.extend(block(6, &body));
        if i == 0 {
            if let Some(t) = late_interface {
                out.extend(idb(t));
            }
        }
    }
    out
}

#[test]
fn pcapng_with_interfaces_of_different_link_types_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let eth = udp(A, 1, B, 2, b"e");
    let raw = ip_only(udp(A, 3, B, 4, b"r"));
    // One link type: read.
    let same = dir.path().join("same.pcapng");
    std::fs::write(
        &same,
        pcapng(&[1, 1], &[(0, eth.clone()), (1, eth.clone())], None),
    )
    .unwrap();
    let r = replay(&same, None);
    assert!(r.status.success(), "{}", r.stderr);
    assert_eq!(r.summary["packets"], 2);
    // Two, both described up front: refused before anything runs, saying why.
    let mixed = dir.path().join("mixed.pcapng");
    std::fs::write(
        &mixed,
        pcapng(&[1, 101], &[(0, eth.clone()), (1, raw.clone())], None),
    )
    .unwrap();
    let out = run(&["--capture.file", mixed.to_str().unwrap(), "--exit-at-eof"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("field `file`") && err.contains("different link types"),
        "{err}"
    );
    assert!(err.contains("interface 1 is link type 101"), "{err}");
    // The second described after the first packet: what came before counts, then the
    // reason.
    let late = dir.path().join("late.pcapng");
    std::fs::write(
        &late,
        pcapng(&[1], &[(0, eth.clone()), (1, raw)], Some(101)),
    )
    .unwrap();
    let r = replay(&late, None);
    assert_eq!(r.status.code(), Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("different link types"), "{}", r.stderr);
    assert_eq!(r.summary["packets"], 1);
}
