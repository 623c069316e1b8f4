//! Per-window traffic features: what the anomaly score looks at.
//!
//! Distinct counts are bounded in memory: addresses are kept exactly up to
//! `distinct_cap` per window; once a set is full, a HyperLogLog (4,096 registers, about
//! 1.6 % standard error) seeded with the set's contents counts the rest, and its estimate
//! is the window's count.
//! Destination ports need no bound: a 65,536-slot count array holds them exactly, and the
//! port entropy comes from the same counts.

use std::net::IpAddr;

use rustc_hash::{FxHashMap, FxHashSet};
use vigia_anomaly::Feature;

use crate::parse::{PacketSummary, Protocol, TCP_ACK, TCP_RST, TCP_SYN};

/// Flows of prior weight in every ratio: each is `part / (TCP flows + 20)`, as if every
/// window also carried 20 TCP flows with none of the flags. A quiet window of one refused
/// connection (SYN, RST) would otherwise have a SYN ratio of 1, like a port scan, and the
/// detector would learn scans from every quiet moment (the end-to-end test's stack
/// restarts did that); over the dozens of flows of a busy window the prior changes the
/// ratio by little.
///
/// The ratios are over flows, not packets: over TCP packets, a bulk transfer made the
/// denominator, and when it ended every later window's SYN ratio was 5 times the
/// reference's with the same SYN count (z 17 to 121), a "scan" in every window for as long
/// as the reference remembered the transfer.
pub const RATIO_PRIOR_FLOWS: u64 = 20;

/// Noise floor of the SYN, SYN-ACK and RST ratios: the counting noise of a ratio of
/// about 10 connections over 10 flows and the 20 of prior weight, `sqrt(10) / 30`. Calm
/// windows of 7 to 14 new connections move the SYN ratio between 0.26 and 0.41; a scan
/// or a SYN burst takes it to about 1.
pub const RATIO_FLOOR: f64 = 0.1;

/// Noise floor of the destination-port entropy, in bits: one flow more or less among
/// the ten or so of a calm window moves it by about this much; a scan of a thousand
/// ports adds 10. (0.25 made a calm window of `tests/offline.rs`, whose DNS answers go
/// to random ports, score 0.71; 0.15 and 0.1 kept it under the threshold.)
pub const ENTROPY_FLOOR: f64 = 0.15;

/// The feature vector, in order. Counts span orders of magnitude: log scale; ratios and
/// the entropy are bounded: linear.
///
/// Every feature has a noise floor ([`vigia_anomaly::Feature::noise_floor`]): the
/// counts of packets, addresses, ports and new flows their counting noise
/// ([`vigia_anomaly::Feature::counting`]: `sqrt(1 + m)` around a median of `m`, so 14
/// new connections a second against a reference of 7 to 12 is jitter, 2,000 is 20
/// floors out), the ratios [`RATIO_FLOOR`] and the entropy [`ENTROPY_FLOOR`]; the
/// trees do not split a feature finer than two floors. Bytes have none (the packet
/// count carries their counting noise). Without them, a 1-second window of 14 HTTP
/// connections where the 30 warm-up windows held at most 12 scored 0.73 on real
/// traffic: the connection count and both SYN ratios, which move together, each one
/// step past anything seen.
///
/// Every feature is scored on its rises only ([`vigia_anomaly::Feature::rising`]): the
/// attacks this detector is for (scans, floods, bursts of connections) raise counts,
/// ratios and the port entropy, while a drop (a bulk transfer that ends, a quiet hour, an
/// outage) is not an attack, and its scores stay as low as those of the windows it drops
/// to. Outages are Prometheus rules' business (`rate()` of the packet counters).
pub fn features() -> Vec<Feature> {
    [
        Feature::log("packets").counting(),
        Feature::log("bytes"),
        Feature::log("tcp_packets").counting(),
        Feature::log("udp_packets").counting(),
        Feature::log("icmp_packets").counting(),
        Feature::log("other_packets").counting(),
        Feature::log("distinct_sources").counting(),
        Feature::log("distinct_destinations").counting(),
        Feature::log("distinct_destination_ports").counting(),
        Feature::linear("syn_ratio").with_min_spread(RATIO_FLOOR),
        Feature::linear("synack_ratio").with_min_spread(RATIO_FLOOR),
        Feature::linear("rst_ratio").with_min_spread(RATIO_FLOOR),
        Feature::linear("destination_port_entropy").with_min_spread(ENTROPY_FLOOR),
        Feature::log("new_flows").counting(),
    ]
    .into_iter()
    .map(Feature::rising)
    .collect()
}

/// A closed window.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowStats {
    pub start_ns: u64,
    pub end_ns: u64,
    pub packets: u64,
    pub bytes: u64,
    /// Packets per [`Protocol`], indexed by [`Protocol::index`].
    pub protocol_packets: [u64; 6],
    pub distinct_sources: u64,
    pub distinct_destinations: u64,
    /// Destination ports of the TCP and UDP flows with a packet in the window (a flow's
    /// destination is the side its first packet went to).
    pub distinct_destination_ports: u64,
    /// Whether the address counts are exact (the sets stayed under the cap).
    pub distinct_exact: bool,
    pub tcp_syn: u64,
    pub tcp_synack: u64,
    pub tcp_rst: u64,
    pub new_flows: u64,
    /// Flows with a packet in the window, and those of them that are TCP.
    pub flows: u64,
    pub tcp_flows: u64,
    /// Shannon entropy, in bits, of the destination ports of the window's TCP and UDP
    /// flows, each flow counted once (a bulk transfer weighs as one flow, not as its
    /// packets).
    pub destination_port_entropy: f64,
    /// Top sources by bytes, largest first (ties by address).
    pub top_talkers: Vec<(IpAddr, u64)>,
}

impl WindowStats {
    /// `part / (TCP flows + RATIO_PRIOR_FLOWS)`.
    fn ratio(&self, part: u64) -> f64 {
        part as f64 / (self.tcp_flows + RATIO_PRIOR_FLOWS) as f64
    }

    pub fn syn_ratio(&self) -> f64 {
        self.ratio(self.tcp_syn)
    }
    pub fn synack_ratio(&self) -> f64 {
        self.ratio(self.tcp_synack)
    }
    pub fn rst_ratio(&self) -> f64 {
        self.ratio(self.tcp_rst)
    }

    /// The vector [`features`] describes.
    pub fn vector(&self) -> Vec<f64> {
        let pp = &self.protocol_packets;
        vec![
            self.packets as f64,
            self.bytes as f64,
            pp[Protocol::Tcp.index()] as f64,
            pp[Protocol::Udp.index()] as f64,
            (pp[Protocol::Icmp.index()] + pp[Protocol::Icmpv6.index()]) as f64,
            (pp[Protocol::OtherIp.index()] + pp[Protocol::NonIp.index()]) as f64,
            self.distinct_sources as f64,
            self.distinct_destinations as f64,
            self.distinct_destination_ports as f64,
            self.syn_ratio(),
            self.synack_ratio(),
            self.rst_ratio(),
            self.destination_port_entropy,
            self.new_flows as f64,
        ]
    }
}

/// The window being filled.
pub struct Window {
    cap: usize,
    packets: u64,
    bytes: u64,
    protocol_packets: [u64; 6],
    source_bytes: FxHashMap<IpAddr, u64>,
    sources: HyperLogLog,
    destinations_exact: FxHashSet<IpAddr>,
    destinations: HyperLogLog,
    sources_over: bool,
    destinations_over: bool,
    port_counts: Box<[u32]>,
    touched_ports: Vec<u16>,
    tcp_syn: u64,
    tcp_synack: u64,
    tcp_rst: u64,
    new_flows: u64,
    flows: u64,
    tcp_flows: u64,
}

impl Window {
    pub fn new(distinct_cap: usize) -> Self {
        Self {
            cap: distinct_cap,
            packets: 0,
            bytes: 0,
            protocol_packets: [0; 6],
            source_bytes: FxHashMap::default(),
            sources: HyperLogLog::new(),
            destinations_exact: FxHashSet::default(),
            destinations: HyperLogLog::new(),
            sources_over: false,
            destinations_over: false,
            port_counts: vec![0u32; 65_536].into_boxed_slice(),
            touched_ports: Vec::new(),
            tcp_syn: 0,
            tcp_synack: 0,
            tcp_rst: 0,
            new_flows: 0,
            flows: 0,
            tcp_flows: 0,
        }
    }

    /// Adds one packet: its counters and its addresses. The analyser goes through the
    /// flow table instead; the tests and the fuzz target feed packets one by one.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn add(&mut self, p: &PacketSummary) {
        self.count(p);
        if p.protocol != Protocol::NonIp {
            self.add_source(p.src, u64::from(p.wire_len));
            self.add_destination(p.dst);
        }
    }

    /// One flow with a packet in this window, counted once however many it carried.
    pub fn add_flow(&mut self, protocol: Protocol, dst_port: u16) {
        self.flows += 1;
        if protocol == Protocol::Tcp {
            self.tcp_flows += 1;
        }
        if protocol.has_ports() && dst_port != 0 {
            let slot = &mut self.port_counts[usize::from(dst_port)];
            if *slot == 0 {
                self.touched_ports.push(dst_port);
            }
            *slot = slot.saturating_add(1);
        }
    }

    /// Adds one packet's counters, not its addresses: those come per flow, from
    /// [`crate::flows::FlowTable::fold_window`], or per packet from [`Window::add`].
    pub fn count(&mut self, p: &PacketSummary) {
        self.packets += 1;
        self.bytes += u64::from(p.wire_len);
        self.protocol_packets[p.protocol.index()] += 1;
        if p.protocol == Protocol::Tcp {
            let f = p.tcp_flags;
            if f & TCP_SYN != 0 {
                if f & TCP_ACK != 0 {
                    self.tcp_synack += 1;
                } else {
                    self.tcp_syn += 1;
                }
            }
            if f & TCP_RST != 0 {
                self.tcp_rst += 1;
            }
        }
    }

    /// `bytes` sent by `src` in this window.
    pub fn add_source(&mut self, src: IpAddr, bytes: u64) {
        let cap = self.cap;
        let len = self.source_bytes.len();
        match self.source_bytes.get_mut(&src) {
            Some(b) => *b += bytes,
            None if len < cap => {
                self.source_bytes.insert(src, bytes);
            }
            None => {
                // The HyperLogLog only starts when the exact set is full, seeded with
                // what the set holds: a window under the cap costs no extra hashing.
                if !self.sources_over {
                    self.sources_over = true;
                    for a in self.source_bytes.keys() {
                        self.sources.insert(address_hash(a));
                    }
                }
                self.sources.insert(address_hash(&src));
            }
        }
    }

    /// `dst` received traffic in this window.
    pub fn add_destination(&mut self, dst: IpAddr) {
        if self.destinations_exact.len() < self.cap {
            self.destinations_exact.insert(dst);
        } else if !self.destinations_exact.contains(&dst) {
            if !self.destinations_over {
                self.destinations_over = true;
                for a in &self.destinations_exact {
                    self.destinations.insert(address_hash(a));
                }
            }
            self.destinations.insert(address_hash(&dst));
        }
    }

    pub fn note_new_flow(&mut self) {
        self.new_flows += 1;
    }

    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// Closes the window: returns its stats and starts an empty one.
    pub fn close(&mut self, start_ns: u64, end_ns: u64, top_n: usize) -> WindowStats {
        let mut port_total = 0u64;
        for &port in &self.touched_ports {
            port_total += u64::from(self.port_counts[usize::from(port)]);
        }
        let mut entropy = 0.0;
        if port_total > 0 {
            for &port in &self.touched_ports {
                let c = self.port_counts[usize::from(port)];
                let q = f64::from(c) / port_total as f64;
                entropy -= q * q.log2();
                self.port_counts[usize::from(port)] = 0;
            }
        }
        let exact = !self.sources_over && !self.destinations_over;
        let sources = if self.sources_over {
            self.sources.estimate()
        } else {
            self.source_bytes.len() as u64
        };
        let destinations = if self.destinations_over {
            self.destinations.estimate()
        } else {
            self.destinations_exact.len() as u64
        };
        let mut talkers: Vec<(IpAddr, u64)> =
            self.source_bytes.iter().map(|(a, b)| (*a, *b)).collect();
        let order = |a: &(IpAddr, u64), b: &(IpAddr, u64)| b.1.cmp(&a.1).then(a.0.cmp(&b.0));
        if top_n < talkers.len() && top_n > 0 {
            talkers.select_nth_unstable_by(top_n - 1, order);
        }
        talkers.truncate(top_n);
        talkers.sort_unstable_by(order);
        let stats = WindowStats {
            start_ns,
            end_ns,
            packets: self.packets,
            bytes: self.bytes,
            protocol_packets: self.protocol_packets,
            distinct_sources: sources,
            distinct_destinations: destinations,
            distinct_destination_ports: self.touched_ports.len() as u64,
            distinct_exact: exact,
            tcp_syn: self.tcp_syn,
            tcp_synack: self.tcp_synack,
            tcp_rst: self.tcp_rst,
            new_flows: self.new_flows,
            flows: self.flows,
            tcp_flows: self.tcp_flows,
            destination_port_entropy: entropy.max(0.0),
            top_talkers: talkers,
        };
        self.packets = 0;
        self.bytes = 0;
        self.protocol_packets = [0; 6];
        // Keep the allocations when the window was modest; release them after a flood.
        if self.source_bytes.capacity() > 4096 {
            self.source_bytes = FxHashMap::default();
            self.destinations_exact = FxHashSet::default();
        } else {
            self.source_bytes.clear();
            self.destinations_exact.clear();
        }
        self.sources.clear();
        self.destinations.clear();
        self.sources_over = false;
        self.destinations_over = false;
        self.touched_ports.clear();
        self.tcp_syn = 0;
        self.tcp_synack = 0;
        self.tcp_rst = 0;
        self.new_flows = 0;
        self.flows = 0;
        self.tcp_flows = 0;
        stats
    }
}

fn mix64(mut z: u64) -> u64 {
    // SplitMix64's finalizer: every input bit reaches every output bit, which the
    // HyperLogLog's register choice and rank need.
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn address_hash(a: &IpAddr) -> u64 {
    match a {
        IpAddr::V4(v4) => mix64(u64::from(u32::from(*v4))),
        IpAddr::V6(v6) => {
            let x = u128::from(*v6);
            mix64((x >> 64) as u64 ^ mix64(x as u64 ^ 0x9e37_79b9_7f4a_7c15))
        }
    }
}

const HLL_BITS: u32 = 12;
const HLL_REGISTERS: usize = 1 << HLL_BITS;

/// HyperLogLog (Flajolet et al. 2007) with linear counting for small cardinalities.
struct HyperLogLog {
    registers: Box<[u8]>,
    used: bool,
}

impl HyperLogLog {
    fn new() -> Self {
        Self {
            registers: vec![0u8; HLL_REGISTERS].into_boxed_slice(),
            used: false,
        }
    }

    #[inline]
    fn insert(&mut self, hash: u64) {
        let index = (hash >> (64 - HLL_BITS)) as usize;
        let rest = hash << HLL_BITS;
        let rank = (rest.leading_zeros().min(64 - HLL_BITS) + 1) as u8;
        let r = &mut self.registers[index];
        if rank > *r {
            *r = rank;
        }
        self.used = true;
    }

    fn estimate(&self) -> u64 {
        let m = HLL_REGISTERS as f64;
        let mut sum = 0.0;
        let mut zeros = 0usize;
        for &r in self.registers.iter() {
            sum += 2f64.powi(-i32::from(r));
            if r == 0 {
                zeros += 1;
            }
        }
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let raw = alpha * m * m / sum;
        let e = if raw <= 2.5 * m && zeros > 0 {
            m * (m / zeros as f64).ln()
        } else {
            raw
        };
        e.round() as u64
    }

    fn clear(&mut self) {
        if self.used {
            self.registers.fill(0);
            self.used = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn udp(src: u32, dst: u32, dport: u16) -> PacketSummary {
        PacketSummary {
            ts_ns: 0,
            wire_len: 60,
            protocol: Protocol::Udp,
            src: IpAddr::V4(Ipv4Addr::from(src)),
            dst: IpAddr::V4(Ipv4Addr::from(dst)),
            src_port: 1000,
            dst_port: dport,
            tcp_flags: 0,
            truncated: false,
            parse_error: false,
        }
    }

    #[test]
    fn entropy_and_distinct_ports_are_exact() {
        let mut w = Window::new(1000);
        for port in [53, 53, 80, 443] {
            w.add(&udp(1, 2, port));
            w.add_flow(Protocol::Udp, port);
        }
        let s = w.close(0, 1, 5);
        assert_eq!(s.distinct_destination_ports, 3);
        assert!((s.destination_port_entropy - 1.5).abs() < 1e-12);
        assert_eq!(s.vector().len(), features().len());
        let empty = w.close(1, 2, 5);
        assert_eq!(empty.packets, 0);
        assert_eq!(empty.destination_port_entropy, 0.0);
    }

    #[test]
    fn past_the_cap_distinct_counts_are_estimated_within_five_percent() {
        let base = u32::from(Ipv4Addr::new(198, 18, 0, 0));
        let mut w = Window::new(1000);
        for i in 0..50_000u32 {
            w.add(&udp(base + i, base + (i % 7), 9));
        }
        let s = w.close(0, 1, 3);
        assert!(!s.distinct_exact);
        let err = (s.distinct_sources as f64 - 50_000.0).abs() / 50_000.0;
        assert!(err < 0.05, "estimate {}", s.distinct_sources);
        assert!(
            (6..=8).contains(&s.distinct_destinations),
            "{}",
            s.distinct_destinations
        );
        assert_eq!(s.top_talkers.len(), 3);
    }
}
