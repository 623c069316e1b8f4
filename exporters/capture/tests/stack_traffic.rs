//! Detection on the traffic of a host that runs the vigia stack, replayed offline.
//!
//! The end-to-end test found the detector crying wolf on real stack traffic (14 % of calm
//! windows over the threshold with `window: 2s`, `window_size: 30`) while scoring a real
//! `nmap -sS` window under it. This test replays a deterministic, seeded trace shaped
//! like that traffic, as `tcpdump -i any` sees it on the Docker host (Linux cooked v2,
//! every packet between two containers seen on both veths), for two hours:
//!
//! - a Prometheus scraping 4 exporters over keep-alive connections, each at a fixed
//!   interval of 10, 12 or 15 s, bodies of 30 to 100 KB in GSO-sized segments;
//! - 6 writers POSTing line-protocol batches to InfluxDB every 2 to 6 s, Prometheus
//!   POSTing to Alertmanager every 15 s, a Grafana-like client opening a connection to
//!   Prometheus every 2 to 6 s, DNS lookups, pings to 3 devices every 10 s, ARP;
//! - an InfluxDB outage of a minute (writers retrying: SYN, RST) flushed as 3,000 small
//!   POSTs when it ends, and a flush of 5,000 POSTs later on;
//! - attacks: `nmap -sS -p 1-1000` (closed ports answer RST, two open ones SYN-ACK) and
//!   `hping3 --syn` bursts of 3,000 and 5,000 SYNs to an open port, one scan right after
//!   the outage's flush and one a minute after another scan (so the reference may hold
//!   the flush or the first scan).
//!
//! Its shape was taken from real captures of the same services in network namespaces
//! (`bench/capture/stack_traffic.py`, 6 writers): per 2 s window, the 5th, 25th, 50th,
//! 75th and 95th percentiles of packets are 24, 40, 52, 68, 86 here and 20, 40, 54, 64, 86
//! there; of bytes 14, 38, 93, 158, 291 KB and 18, 43, 109, 152, 226 KB; of destination
//! ports 3, 6, 7, 8, 11 and 3, 5, 7, 8, 9.
//! Both configurations the stack uses are checked: the end-to-end test's (`window: 2s`,
//! `window_size: 30`) and the defaults (`10s`, 60). In each, at most 1 % of calm windows
//! may reach the threshold, and every attack must reach it in at least one window.

mod common;

use std::io::{BufWriter, Write};
use std::path::Path;

use common::*;
use vigia_anomaly::SplitMix64;

/// Length of the trace, in seconds.
const SECONDS: u64 = 2 * 3600;
/// Unix time of the trace's first microsecond.
const START_S: u64 = 1_796_160_000;

const PREFIX: [u8; 3] = [198, 18, 60];
const HOST: u8 = 1;
const PROMETHEUS: u8 = 2;
const EXPORTERS: u8 = 3;
const INFLUXDB: u8 = 4;
const ALERTMANAGER: u8 = 5;
const DEVICES: [u8; 3] = [6, 7, 8];
const SCANNER: u8 = 9;

const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;
const FIN: u8 = 0x01;

#[derive(Clone, Copy)]
enum Kind {
    Tcp { sport: u16, dport: u16, flags: u8 },
    Udp { sport: u16, dport: u16 },
    Icmp { reply: bool },
    Arp,
}

/// One packet as the capture sees it: time, addresses (last octets), what it carries
/// and its IP length.
#[derive(Clone, Copy)]
struct Packet {
    ts_us: u64,
    src: u8,
    dst: u8,
    kind: Kind,
    ip_len: u16,
    ifindex: u8,
}

/// What happened when: the attacks' spans, for the verdicts.
#[derive(Default)]
struct Events {
    attacks: Vec<(&'static str, u64, u64)>,
    /// Outage and flushes: neither calm nor attack.
    busy: Vec<(u64, u64)>,
}

struct Trace {
    rng: SplitMix64,
    packets: Vec<Packet>,
    next_port: u16,
}

impl Trace {
    fn int(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.rng.next_u64() % (hi - lo + 1)
    }

    fn ephemeral(&mut self) -> u16 {
        self.next_port = if self.next_port >= 60_999 {
            32_768
        } else {
            self.next_port + 1 + (self.rng.next_u64() % 7) as u16
        };
        self.next_port
    }

    /// A packet between two containers (or a container and the host's bridge address):
    /// seen on both veths, a few microseconds apart.
    fn push(&mut self, ts_us: u64, src: u8, dst: u8, kind: Kind, ip_len: u16) {
        for (copy, ifindex) in [(0, 3u8), (1, 4u8)] {
            self.packets.push(Packet {
                ts_us: ts_us + copy,
                src,
                dst,
                kind,
                ip_len,
                ifindex,
            });
        }
    }

    fn tcp(&mut self, t: u64, a: (u8, u16), b: (u8, u16), flags: u8, payload: u32) {
        let kind = Kind::Tcp {
            sport: a.1,
            dport: b.1,
            flags,
        };
        self.push(t, a.0, b.0, kind, (52 + payload).min(65_535) as u16);
    }

    fn handshake(&mut self, t: u64, c: (u8, u16), s: (u8, u16)) -> u64 {
        self.tcp(t, c, s, SYN, 8);
        self.tcp(t + 15, s, c, SYN | ACK, 8);
        self.tcp(t + 30, c, s, ACK, 0);
        t + 40
    }

    fn close(&mut self, t: u64, c: (u8, u16), s: (u8, u16)) -> u64 {
        self.tcp(t, c, s, FIN | ACK, 0);
        self.tcp(t + 20, s, c, FIN | ACK, 0);
        self.tcp(t + 40, c, s, ACK, 0);
        t + 50
    }

    /// A request and its response on an open connection: the response in segments as
    /// GSO hands them to the veth (1.5 to 49 KB), each acknowledged.
    fn exchange(&mut self, t: u64, c: (u8, u16), s: (u8, u16), request: u32, response: u32) {
        let mut t = t;
        let mut left = request;
        while left > 0 {
            let seg = left.min(self.int(16_000, 48_000) as u32);
            self.tcp(t, c, s, ACK | PSH, seg);
            left -= seg;
            t += 10;
        }
        self.tcp(t + 5, s, c, ACK, 0);
        t += self.int(500, 6_000);
        self.tcp(t, s, c, ACK | PSH, 156);
        self.tcp(t + 20, c, s, ACK, 0);
        let mut left = response;
        let mut unacked = 0;
        while left > 0 {
            t += self.int(5, 60);
            let seg = left.min(self.int(1_448, 49_000) as u32);
            self.tcp(t, s, c, ACK | PSH, seg);
            left -= seg;
            unacked += 1;
            if unacked == 2 || left == 0 || self.rng.next_f64() < 0.6 {
                self.tcp(t + 3, c, s, ACK, 0);
                unacked = 0;
            }
        }
    }

    fn ping(&mut self, t: u64, device: u8) {
        self.push(t, HOST, device, Kind::Icmp { reply: false }, 84);
        self.push(t + 60, device, HOST, Kind::Icmp { reply: true }, 84);
    }

    fn dns(&mut self, t: u64) {
        let port = self.ephemeral();
        let (sport, dport) = (port, 53);
        self.push(t, EXPORTERS, HOST, Kind::Udp { sport, dport }, 64);
        let kind = Kind::Udp {
            sport: dport,
            dport: sport,
        };
        self.push(t + 300, HOST, EXPORTERS, kind, 120);
    }

    fn arp(&mut self, t: u64, a: u8, b: u8) {
        self.push(t, a, b, Kind::Arp, 28);
        self.push(t + 20, b, a, Kind::Arp, 28);
    }
}

/// The stack's calm traffic for `SECONDS`, plus the outage, the flushes and the attacks.
fn stack_trace(seed: u64) -> (Vec<Packet>, Events) {
    let mut tr = Trace {
        rng: SplitMix64::new(seed),
        packets: Vec::new(),
        next_port: 40_000,
    };
    let s = 1_000_000u64;
    let end = SECONDS * s;
    let mut events = Events::default();
    let outage = (1_500 * s, 1_560 * s);
    events.busy.push((outage.0, outage.1 + 15 * s));

    // Prometheus: one keep-alive connection per target, a fixed interval per target.
    let targets = [
        ((EXPORTERS, 9473), 30_000, 60_000, 10),
        ((EXPORTERS, 9474), 60_000, 100_000, 15),
        ((HOST, 9100), 50_000, 90_000, 12),
        ((HOST, 9475), 30_000, 45_000, 15),
    ];
    for (target, lo, hi, interval) in targets {
        let client = (PROMETHEUS, tr.ephemeral());
        let first = tr.int(0, interval * s);
        let mut t = tr.handshake(first, client, target);
        while t < end {
            let body = tr.int(lo, hi) as u32;
            tr.exchange(t, client, target, 128, body);
            t += interval * s + tr.int(0, 3_000);
        }
    }
    // Alertmanager: the firing alerts every 15 s.
    let client = (PROMETHEUS, tr.ephemeral());
    let am = (ALERTMANAGER, 9093);
    let first = tr.int(0, 15 * s);
    let mut t = tr.handshake(first, client, am);
    while t < end {
        tr.exchange(t, client, am, 380, 300);
        t += 15 * s + tr.int(0, 3_000);
    }
    // Grafana and the operator's browser: a new connection every 2 to 6 s.
    let mut t = tr.int(0, 2 * s);
    while t < end {
        let client = (HOST, tr.ephemeral());
        let prometheus = (PROMETHEUS, 9090);
        let t1 = tr.handshake(t, client, prometheus);
        let body = tr.int(2_000, 12_000) as u32;
        tr.exchange(t1, client, prometheus, 140, body);
        tr.close(t1 + 8_000, client, prometheus);
        t += tr.int(2 * s, 6 * s);
    }
    // The InfluxDB writers: a batch every 2 to 6 s on a keep-alive connection; during
    // the outage a connection attempt every 2 s (SYN, RST), then the queue flushed.
    let influx = (INFLUXDB, 8086);
    for writer in 0..6u64 {
        let host = if writer % 3 == 2 { HOST } else { EXPORTERS };
        let (lines_lo, lines_hi) = [(20, 200), (5, 60), (10, 120)][writer as usize % 3];
        let mut client = (host, tr.ephemeral());
        let first = tr.int(0, 6 * s);
        let mut t = tr.handshake(first, client, influx);
        let mut queued = 0u64;
        while t < end {
            if t >= outage.0 && t < outage.1 {
                tr.tcp(t, client, influx, SYN, 8);
                tr.tcp(t + 20, influx, client, RST | ACK, 0);
                queued += 1;
                t += 2 * s;
                if t >= outage.1 {
                    client = (host, tr.ephemeral());
                    t = tr.handshake(t, client, influx);
                    for _ in 0..queued {
                        let body = 62 * tr.int(lines_lo, lines_hi) as u32;
                        tr.exchange(t, client, influx, body, 0);
                        t += tr.int(800, 2_000);
                    }
                    queued = 0;
                }
                continue;
            }
            let body = 62 * tr.int(lines_lo, lines_hi) as u32;
            tr.exchange(t, client, influx, body, 0);
            t += tr.int(2 * s, 6 * s);
        }
    }
    // A queue flushed: small batches back to back over connections opened and dropped
    // as the pool goes (after the outage, and once more later).
    for (at, count) in [(outage.1 + 200_000, 3_000), (3_600 * s, 5_000)] {
        let mut t = at;
        let mut client = (EXPORTERS, 0);
        let mut left_on_connection = 0;
        for _ in 0..count {
            if left_on_connection == 0 {
                if client.1 != 0 {
                    t = tr.close(t, client, influx);
                }
                client = (EXPORTERS, tr.ephemeral());
                t = tr.handshake(t, client, influx);
                left_on_connection = tr.int(5, 30);
            }
            let body = 17 * tr.int(1, 4) as u32;
            tr.exchange(t, client, influx, body, 0);
            left_on_connection -= 1;
            t += tr.int(300, 900);
        }
        events.busy.push((at, t + 1_000_000));
    }
    // Pings to 3 devices every 10 s, DNS lookups, ARP now and then.
    let mut t = tr.int(0, 10 * s);
    while t < end {
        for (i, device) in DEVICES.into_iter().enumerate() {
            tr.ping(t + i as u64 * 1_000, device);
        }
        t += 10 * s + tr.int(0, 5_000);
    }
    let mut t = tr.int(0, 5 * s);
    while t < end {
        tr.dns(t);
        t += tr.int(4 * s, 12 * s);
    }
    let mut t = tr.int(0, 30 * s);
    while t < end {
        let pair = [
            (HOST, PROMETHEUS),
            (EXPORTERS, INFLUXDB),
            (HOST, DEVICES[0]),
        ];
        let (a, b) = pair[tr.int(0, 2) as usize];
        tr.arp(t, a, b);
        t += tr.int(20 * s, 60 * s);
    }

    // Attacks.
    let nmap = |tr: &mut Trace, at: u64| -> u64 {
        let sport = tr.ephemeral();
        let mut t = at;
        let open = [9473u16, 9474];
        let mut ports: Vec<u16> = (1..=1000).chain(open).collect();
        // nmap probes the ports in a random order.
        for i in (1..ports.len()).rev() {
            ports.swap(i, tr.int(0, i as u64) as usize);
        }
        for port in ports {
            let scanner = (SCANNER, sport);
            let target = (EXPORTERS, port);
            tr.tcp(t, scanner, target, SYN, 4);
            if open.contains(&port) {
                tr.tcp(t + 30, target, scanner, SYN | ACK, 4);
                tr.tcp(t + 60, scanner, target, RST, 0);
            } else {
                tr.tcp(t + 30, target, scanner, RST | ACK, 0);
            }
            t += tr.int(150, 450);
        }
        t
    };
    let hping = |tr: &mut Trace, at: u64, count: u64| -> u64 {
        let base = tr.int(1_024, 2_000) as u16;
        let mut t = at;
        for i in 0..count {
            let scanner = (SCANNER, base.wrapping_add(i as u16));
            let target = (EXPORTERS, 9473);
            tr.tcp(t, scanner, target, SYN, 0);
            tr.tcp(t + 40, target, scanner, SYN | ACK, 4);
            tr.tcp(t + 80, scanner, target, RST, 0);
            t += 400 + tr.int(0, 80);
        }
        t
    };
    let mut attack = |tr: &mut Trace, name: &'static str, at: u64, count: u64| {
        let to = if name == "nmap" {
            nmap(tr, at)
        } else {
            hping(tr, at, count)
        };
        events.attacks.push((name, at, to));
    };
    // After the outage's flush (the 2 s reference may hold it), a minute apart (the
    // second scan's reference may hold the first), and on their own.
    attack(&mut tr, "nmap", 1_580 * s, 0);
    attack(&mut tr, "hping", 2_400 * s, 3_000);
    attack(&mut tr, "nmap", 3_000 * s, 0);
    attack(&mut tr, "nmap", 3_060 * s, 0);
    attack(&mut tr, "nmap", 3_640 * s, 0);
    attack(&mut tr, "hping", 4_800 * s, 5_000);
    attack(&mut tr, "nmap", 6_000 * s, 0);
    attack(&mut tr, "hping", 6_600 * s, 3_000);

    let mut packets = tr.packets;
    packets.retain(|p| p.ts_us < end);
    packets.sort_by_key(|p| p.ts_us);
    (packets, events)
}

/// Writes the packets as Linux cooked v2 frames, cut after the transport header (as a
/// small snaplen would), with their full length on the wire.
fn write_trace(path: &Path, packets: &[Packet]) {
    let start_us = START_S * 1_000_000;
    let mut out = BufWriter::new(std::fs::File::create(path).unwrap());
    out.write_all(&pcap_bytes(LINKTYPE_LINUX_SLL2, &[]))
        .unwrap();
    let mut frame = Vec::with_capacity(64);
    for p in packets {
        frame.clear();
        let ethertype: u16 = if matches!(p.kind, Kind::Arp) {
            0x0806
        } else {
            0x0800
        };
        frame.extend_from_slice(&ethertype.to_be_bytes());
        frame.extend_from_slice(&[0, 0, 0, 0, 0, p.ifindex, 0, 1, 0, 6]);
        frame.extend_from_slice(&[0x02, 0x42, 0xc6, 0x12, 0x3c, p.src, 0, 0]);
        let addr = |o: u8| [PREFIX[0], PREFIX[1], PREFIX[2], o];
        let wire = match p.kind {
            Kind::Arp => {
                frame.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
                frame.extend_from_slice(&[0x02, 0x42, 0xc6, 0x12, 0x3c, p.src]);
                frame.extend_from_slice(&addr(p.src));
                frame.extend_from_slice(&[0; 6]);
                frame.extend_from_slice(&addr(p.dst));
                frame.len()
            }
            _ => {
                let protocol = match p.kind {
                    Kind::Tcp { .. } => 6,
                    Kind::Udp { .. } => 17,
                    _ => 1,
                };
                let mut ip = [0u8; 20];
                ip[0] = 0x45;
                ip[2..4].copy_from_slice(&p.ip_len.to_be_bytes());
                ip[6] = 0x40;
                ip[8] = 64;
                ip[9] = protocol;
                ip[12..16].copy_from_slice(&addr(p.src));
                ip[16..20].copy_from_slice(&addr(p.dst));
                frame.extend_from_slice(&ip);
                match p.kind {
                    Kind::Tcp {
                        sport,
                        dport,
                        flags,
                    } => {
                        frame.extend_from_slice(&sport.to_be_bytes());
                        frame.extend_from_slice(&dport.to_be_bytes());
                        frame.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1, 0x50, flags]);
                        frame.extend_from_slice(&[0xfa, 0xf0, 0, 0, 0, 0]);
                    }
                    Kind::Udp { sport, dport } => {
                        frame.extend_from_slice(&sport.to_be_bytes());
                        frame.extend_from_slice(&dport.to_be_bytes());
                        frame.extend_from_slice(&(p.ip_len - 20).to_be_bytes());
                        frame.extend_from_slice(&[0, 0]);
                    }
                    _ => {
                        let kind = if matches!(p.kind, Kind::Icmp { reply: true }) {
                            0
                        } else {
                            8
                        };
                        frame.extend_from_slice(&[kind, 0, 0, 0, 0, 7, 0, 1]);
                    }
                }
                20 + usize::from(p.ip_len)
            }
        };
        let ts = start_us + p.ts_us;
        out.write_all(&((ts / 1_000_000) as u32).to_le_bytes())
            .unwrap();
        out.write_all(&((ts % 1_000_000) as u32).to_le_bytes())
            .unwrap();
        out.write_all(&(frame.len() as u32).to_le_bytes()).unwrap();
        out.write_all(&(wire as u32).to_le_bytes()).unwrap();
        out.write_all(&frame).unwrap();
    }
    out.flush().unwrap();
}

/// `STACK_TRACE_KEEP=FILE`: the trace is copied to FILE and its events (Unix times) to
/// FILE.events.json, for a look with `vigia-capture --capture.file FILE --exit-at-eof`.
fn keep_trace(trace: &Path, keep: &Path, events: &Events) {
    std::fs::copy(trace, keep).unwrap();
    let at = |us: u64| START_S as f64 + us as f64 / 1e6;
    let spans = |name: &str| {
        events
            .attacks
            .iter()
            .filter(|a| a.0 == name)
            .map(|a| [at(a.1), at(a.2)])
            .collect::<Vec<_>>()
    };
    let json = serde_json::json!({
        "t0": at(0),
        "end": at(SECONDS * 1_000_000),
        "nmap": spans("nmap"),
        "hping": spans("hping"),
        "busy": events.busy.iter().map(|b| [at(b.0), at(b.1)]).collect::<Vec<_>>(),
    });
    let mut path = keep.as_os_str().to_owned();
    path.push(".events.json");
    std::fs::write(path, json.to_string()).unwrap();
}

struct Verdicts {
    calm: usize,
    false_positives: Vec<(f64, f64)>,
    highest_calm: f64,
    attacks: Vec<(&'static str, f64, Vec<f64>)>,
    busy: Vec<f64>,
}

fn judge(windows: &[serde_json::Value], events: &Events, threshold: f64) -> Verdicts {
    let start = START_S as f64;
    let span = |a: u64, b: u64| (start + a as f64 / 1e6, start + b as f64 / 1e6);
    let overlaps = |w: &serde_json::Value, (a, b): (f64, f64)| {
        w["end"].as_f64().unwrap() > a && w["start"].as_f64().unwrap() < b
    };
    let scored: Vec<&serde_json::Value> = windows
        .iter()
        .filter(|w| w["warm"] == true && w["partial"] == false)
        .collect();
    let mut v = Verdicts {
        calm: 0,
        false_positives: Vec::new(),
        highest_calm: 0.0,
        attacks: Vec::new(),
        busy: Vec::new(),
    };
    for &(name, a, b) in &events.attacks {
        let scores = scored
            .iter()
            .filter(|w| overlaps(w, span(a, b)))
            .map(|w| w["score"].as_f64().unwrap())
            .collect();
        v.attacks.push((name, a as f64 / 1e6, scores));
    }
    for w in scored {
        let score = w["score"].as_f64().unwrap();
        if events
            .attacks
            .iter()
            .any(|&(_, a, b)| overlaps(w, span(a, b)))
        {
            continue;
        }
        if events.busy.iter().any(|&(a, b)| overlaps(w, span(a, b))) {
            v.busy.push(score);
            continue;
        }
        v.calm += 1;
        v.highest_calm = v.highest_calm.max(score);
        if score >= threshold {
            v.false_positives
                .push((w["start"].as_f64().unwrap() - start, score));
        }
    }
    v
}

#[test]
fn stack_traffic_stays_calm_and_scans_and_syn_bursts_cross_the_threshold() {
    let (packets, events) = stack_trace(2026);
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("stack.pcap");
    write_trace(&trace, &packets);
    if let Some(keep) = std::env::var_os("STACK_TRACE_KEEP") {
        keep_trace(&trace, Path::new(&keep), &events);
    }
    let mut failures = Vec::new();
    for (window, window_size) in [("2s", 30), ("10s", 60)] {
        let config = dir.path().join(format!("capture-{window}.yaml"));
        std::fs::write(
            &config,
            format!("window: {window}\nanomaly:\n  window_size: {window_size}\n"),
        )
        .unwrap();
        let r = replay(&trace, Some(&config));
        assert!(r.status.success(), "{}", r.stderr);
        assert_eq!(r.summary["packets"], packets.len() as u64);
        let threshold = 0.7;
        let v = judge(&r.windows, &events, threshold);
        let rate = v.false_positives.len() as f64 / v.calm as f64;
        println!(
            "window {window}, window_size {window_size}: {} of {} calm windows at or above \
             {threshold} ({:.2} %, highest {:.3}): {:?}",
            v.false_positives.len(),
            v.calm,
            100.0 * rate,
            v.highest_calm,
            v.false_positives
        );
        println!("  outage and flushes: {:.3?}", v.busy);
        for (name, at, scores) in &v.attacks {
            let detected = scores.iter().any(|&s| s >= threshold);
            println!("  {name} at {at:.0} s: {scores:.3?}");
            if !detected {
                failures.push(format!("{window}: {name} at {at} s scored {scores:?}"));
            }
        }
        assert!(v.calm > 500, "{window}: only {} calm windows", v.calm);
        if rate > 0.01 {
            failures.push(format!(
                "{window}: {} of {} calm windows over the threshold",
                v.false_positives.len(),
                v.calm
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
