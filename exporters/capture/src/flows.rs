//! The flow table: packets grouped by 5-tuple in both directions, finished by idle and
//! active timeouts, bounded in size.
//!
//! Each entry also keeps its flow's share of the current window (bytes per direction),
//! which the window takes when it closes ([`FlowTable::fold_window`]): the window's
//! address sets then cost a lookup per flow and window instead of two per packet.

use std::net::IpAddr;

use rustc_hash::FxHashMap;

use crate::parse::{PacketSummary, Protocol};
use crate::window::Window;

/// A 5-tuple in canonical order (lower endpoint first), so both directions of a
/// conversation land on the same key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub protocol: Protocol,
    pub low: (IpAddr, u16),
    pub high: (IpAddr, u16),
}

impl FlowKey {
    /// The packet's key, and whether its source is the key's `low` endpoint.
    pub fn of(p: &PacketSummary) -> (FlowKey, bool) {
        let a = (p.src, p.src_port);
        let b = (p.dst, p.dst_port);
        let from_low = a <= b;
        let (low, high) = if from_low { (a, b) } else { (b, a) };
        (
            FlowKey {
                protocol: p.protocol,
                low,
                high,
            },
            from_low,
        )
    }
}

/// A flow's traffic in one window, per direction.
#[derive(Debug, Clone, Copy, Default)]
struct WindowShare {
    /// The window ([`FlowTable::epoch`]) these counts belong to; older counts are stale.
    epoch: u32,
    low_sent: bool,
    high_sent: bool,
    bytes_from_low: u64,
    bytes_from_high: u64,
}

impl WindowShare {
    fn new(epoch: u32) -> Self {
        Self {
            epoch,
            ..Self::default()
        }
    }

    /// Adds a packet; returns whether this was the flow's first in the window.
    #[inline]
    fn add(&mut self, epoch: u32, from_low: bool, bytes: u32) -> bool {
        let first = self.epoch != epoch;
        if first {
            *self = Self::new(epoch);
        }
        if from_low {
            self.low_sent = true;
            self.bytes_from_low += u64::from(bytes);
        } else {
            self.high_sent = true;
            self.bytes_from_high += u64::from(bytes);
        }
        first
    }

    /// What the window would have recorded packet by packet: each sending endpoint as a
    /// source (with its bytes) and its peer as a destination.
    fn fold(&self, key: &FlowKey, dst_port: u16, window: &mut Window) {
        window.add_flow(key.protocol, dst_port);
        if self.low_sent {
            window.add_source(key.low.0, self.bytes_from_low);
            window.add_destination(key.high.0);
        }
        if self.high_sent {
            window.add_source(key.high.0, self.bytes_from_high);
            window.add_destination(key.low.0);
        }
    }
}

struct Entry {
    flow: Flow,
    share: WindowShare,
}

/// One flow, oriented as its first packet went (the initiator is `src`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    pub protocol: Protocol,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    pub first_ns: u64,
    pub last_ns: u64,
    pub packets: u64,
    pub bytes: u64,
    /// Rank among the flows that started in the same microsecond (capture times have
    /// microsecond resolution): it keeps their InfluxDB rows apart, whose tags no longer
    /// tell them apart.
    pub seq: u16,
}

impl Flow {
    pub fn duration_seconds(&self) -> f64 {
        self.last_ns.saturating_sub(self.first_ns) as f64 / 1e9
    }
}

/// Why a flow left the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    Idle,
    Active,
    Evicted,
    /// End of the file or shutdown.
    End,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Idle => "idle",
            FinishReason::Active => "active",
            FinishReason::Evicted => "evicted",
            FinishReason::End => "end",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FinishedFlow {
    pub flow: Flow,
    pub reason: FinishReason,
}

/// Whether a packet opened a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    Existing,
    /// A flow nobody had seen (or one idle past its timeout that came back).
    New,
    /// An active flow re-opened after its active timeout: the same conversation.
    Continued,
}

pub struct FlowTable {
    map: FxHashMap<FlowKey, Entry>,
    idle_ns: u64,
    active_ns: u64,
    max_flows: usize,
    evictions: u64,
    /// The current window, counted from 1 (a default share, epoch 0, is stale).
    epoch: u32,
    /// Whether any entry holds a share of the current window.
    touched: bool,
    /// Current-window shares of flows evicted before the window closed.
    departed: Vec<(FlowKey, u16, WindowShare)>,
    starts: SameMicrosecond,
}

/// Counts the flows that start within one microsecond.
#[derive(Debug, Default)]
struct SameMicrosecond {
    microsecond: u64,
    count: u16,
}

impl SameMicrosecond {
    fn next(&mut self, ts_ns: u64) -> u16 {
        let us = ts_ns / 1000;
        if us == self.microsecond {
            self.count = self.count.wrapping_add(1);
        } else {
            (self.microsecond, self.count) = (us, 0);
        }
        self.count
    }
}

impl FlowTable {
    pub fn new(idle: std::time::Duration, active: std::time::Duration, max_flows: usize) -> Self {
        Self {
            map: FxHashMap::default(),
            idle_ns: idle.as_nanos().min(u128::from(u64::MAX)) as u64,
            active_ns: active.as_nanos().min(u128::from(u64::MAX)) as u64,
            max_flows: max_flows.max(1),
            evictions: 0,
            epoch: 1,
            touched: false,
            departed: Vec::new(),
            starts: SameMicrosecond::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Flows evicted so far because the table was full.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Adds an IP packet to its flow (and to the flow's share of the current window);
    /// flows it finishes are pushed to `finished`.
    pub fn observe(&mut self, p: &PacketSummary, finished: &mut Vec<FinishedFlow>) -> Observed {
        let (key, from_low) = FlowKey::of(p);
        let fresh = Flow {
            protocol: p.protocol,
            src: p.src,
            dst: p.dst,
            src_port: p.src_port,
            dst_port: p.dst_port,
            first_ns: p.ts_ns,
            last_ns: p.ts_ns,
            packets: 1,
            bytes: u64::from(p.wire_len),
            seq: 0,
        };
        if let Some(entry) = self.map.get_mut(&key) {
            // A flow finished and restarted below keeps its share: the window's counts
            // do not depend on flow boundaries.
            if entry.share.add(self.epoch, from_low, p.wire_len) {
                self.touched = true;
            }
            let flow = &mut entry.flow;
            let idle = p.ts_ns.saturating_sub(flow.last_ns) > self.idle_ns;
            let old = p.ts_ns.saturating_sub(flow.first_ns) > self.active_ns;
            if !idle && !old {
                flow.last_ns = flow.last_ns.max(p.ts_ns);
                flow.packets += 1;
                flow.bytes += u64::from(p.wire_len);
                return Observed::Existing;
            }
            let reason = if idle {
                FinishReason::Idle
            } else {
                FinishReason::Active
            };
            finished.push(FinishedFlow {
                flow: *flow,
                reason,
            });
            // The continuation keeps the original orientation.
            let seq = self.starts.next(p.ts_ns);
            *flow = Flow {
                src: flow.src,
                dst: flow.dst,
                src_port: flow.src_port,
                dst_port: flow.dst_port,
                seq,
                ..fresh
            };
            return if idle {
                Observed::New
            } else {
                Observed::Continued
            };
        }
        if self.map.len() >= self.max_flows {
            self.evict_oldest_idle(finished);
        }
        let mut share = WindowShare::new(self.epoch);
        share.add(self.epoch, from_low, p.wire_len);
        self.touched = true;
        let flow = Flow {
            seq: self.starts.next(p.ts_ns),
            ..fresh
        };
        self.map.insert(key, Entry { flow, share });
        Observed::New
    }

    /// Hands every flow's share of the current window to `window` (call it just before
    /// the window closes), and starts the next window.
    pub fn fold_window(&mut self, window: &mut Window) {
        if self.touched {
            for (key, entry) in &self.map {
                if entry.share.epoch == self.epoch {
                    entry.share.fold(key, entry.flow.dst_port, window);
                }
            }
        }
        for (key, dst_port, share) in self.departed.drain(..) {
            share.fold(&key, dst_port, window);
        }
        self.epoch = self.epoch.wrapping_add(1).max(1);
        self.touched = false;
    }

    /// Evicts the longest-idle sixteenth of the table (at least one flow). Evicting in
    /// batches keeps a flood of new flows at O(1) amortized per packet instead of a scan
    /// of the whole table per packet.
    fn evict_oldest_idle(&mut self, finished: &mut Vec<FinishedFlow>) {
        let n = (self.map.len() / 16).max(1);
        let mut ages: Vec<(u64, FlowKey)> =
            self.map.iter().map(|(k, e)| (e.flow.last_ns, *k)).collect();
        if n < ages.len() {
            ages.select_nth_unstable_by_key(n - 1, |(last, _)| *last);
            ages.truncate(n);
        }
        ages.sort_unstable_by_key(|(last, _)| *last);
        for (_, key) in ages {
            if let Some(entry) = self.map.remove(&key) {
                if entry.share.epoch == self.epoch {
                    self.departed.push((key, entry.flow.dst_port, entry.share));
                }
                finished.push(FinishedFlow {
                    flow: entry.flow,
                    reason: FinishReason::Evicted,
                });
                self.evictions += 1;
            }
        }
    }

    /// Finishes flows idle or active past their timeouts at `now_ns`. Call it after
    /// [`FlowTable::fold_window`]: the shares of expired flows are dropped.
    pub fn expire(&mut self, now_ns: u64, finished: &mut Vec<FinishedFlow>) {
        let (idle_ns, active_ns) = (self.idle_ns, self.active_ns);
        self.map.retain(|_, entry| {
            let flow = &entry.flow;
            let reason = if now_ns.saturating_sub(flow.last_ns) > idle_ns {
                FinishReason::Idle
            } else if now_ns.saturating_sub(flow.first_ns) > active_ns {
                FinishReason::Active
            } else {
                return true;
            };
            finished.push(FinishedFlow {
                flow: *flow,
                reason,
            });
            false
        });
    }

    /// Finishes every flow (end of file, shutdown), after [`FlowTable::fold_window`].
    pub fn drain(&mut self, finished: &mut Vec<FinishedFlow>) {
        finished.extend(self.map.drain().map(|(_, entry)| FinishedFlow {
            flow: entry.flow,
            reason: FinishReason::End,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::time::Duration;

    fn packet(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, ts_s: u64) -> PacketSummary {
        PacketSummary {
            ts_ns: ts_s * 1_000_000_000,
            wire_len: 100,
            protocol: Protocol::Tcp,
            src: IpAddr::V4(Ipv4Addr::from(src)),
            dst: IpAddr::V4(Ipv4Addr::from(dst)),
            src_port: sport,
            dst_port: dport,
            tcp_flags: 0,
            truncated: false,
            parse_error: false,
        }
    }

    #[test]
    fn both_directions_are_one_flow_oriented_by_the_first_packet() {
        let mut t = FlowTable::new(Duration::from_secs(10), Duration::from_secs(100), 100);
        let mut done = Vec::new();
        let a = [198, 18, 0, 9];
        let b = [198, 18, 0, 1];
        assert_eq!(
            t.observe(&packet(a, 5000, b, 80, 0), &mut done),
            Observed::New
        );
        assert_eq!(
            t.observe(&packet(b, 80, a, 5000, 1), &mut done),
            Observed::Existing
        );
        assert_eq!(t.len(), 1);
        t.drain(&mut done);
        let f = done[0].flow;
        assert_eq!(
            (f.src, f.src_port, f.dst_port),
            (IpAddr::V4(a.into()), 5000, 80)
        );
        assert_eq!((f.packets, f.bytes), (2, 200));
        assert_eq!(f.duration_seconds(), 1.0);
    }

    #[test]
    fn idle_and_active_timeouts_finish_flows() {
        let mut t = FlowTable::new(Duration::from_secs(10), Duration::from_secs(25), 100);
        let mut done = Vec::new();
        let (a, b) = ([198, 18, 0, 2], [198, 18, 0, 3]);
        t.observe(&packet(a, 1, b, 2, 0), &mut done);
        assert_eq!(t.observe(&packet(a, 1, b, 2, 20), &mut done), Observed::New);
        assert_eq!(done.pop().unwrap().reason, FinishReason::Idle);
        for s in (25..=50).step_by(5) {
            t.observe(&packet(a, 1, b, 2, s), &mut done);
        }
        assert_eq!(done.pop().unwrap().reason, FinishReason::Active);
        t.observe(&packet(a, 7, b, 8, 50), &mut done);
        t.expire(61_000_000_000, &mut done);
        assert_eq!(t.len(), 0);
        assert_eq!(done.len(), 2);
    }

    /// Windows filled per flow (counters per packet, addresses folded from the flow
    /// table's shares) against windows filled packet by packet, over traffic with idle
    /// and active timeouts and evictions. Under the distinct cap every statistic is the
    /// same; over it, all but which sources the exact top-talker table happened to keep.
    #[test]
    fn window_shares_give_what_packet_by_packet_addresses_give() {
        for cap in [1 << 16, 40] {
            let mut rng = vigia_anomaly::SplitMix64::new(0xf10e);
            let mut table =
                FlowTable::new(Duration::from_millis(700), Duration::from_secs(2), 1500);
            let mut per_packet = Window::new(cap);
            let mut per_flow = Window::new(cap);
            let mut done = Vec::new();
            let protocols = [
                Protocol::Tcp,
                Protocol::Udp,
                Protocol::Icmp,
                Protocol::OtherIp,
                Protocol::NonIp,
            ];
            let address = |i: u64| -> IpAddr {
                if i % 5 == 0 {
                    IpAddr::V6(std::net::Ipv6Addr::new(
                        0x2001, 0xdb8, 0, 0, 0, 0, 0, i as u16,
                    ))
                } else {
                    IpAddr::V4(Ipv4Addr::new(198, 18, (i >> 8) as u8, i as u8))
                }
            };
            let second = 1_000_000_000u64;
            for w in 0..12u64 {
                let mut ts = w * second;
                for i in 0..3_000 {
                    ts += rng.next_u64() % 300_000;
                    let mut protocol = protocols[(rng.next_u64() % 5) as usize];
                    let (mut src, dst) =
                        (address(rng.next_u64() % 90), address(rng.next_u64() % 90));
                    // One long conversation, never idle, so active timeouts happen too; the
                    // last windows carry only it: no new flow in them.
                    let long = i % 40 == 0 || w >= 10;
                    if long {
                        (protocol, src) = (Protocol::Udp, address(1));
                    }
                    let v6 = |a: IpAddr| a.is_ipv6();
                    // One family per packet, as on the wire.
                    let dst = match (long, v6(src) == v6(dst)) {
                        (true, _) => address(2),
                        (false, true) => dst,
                        (false, false) => src,
                    };
                    let p = PacketSummary {
                        ts_ns: ts.min((w + 1) * second - 1),
                        wire_len: 60 + (rng.next_u64() % 1400) as u32,
                        protocol,
                        src,
                        dst,
                        src_port: if long { 7 } else { (rng.next_u64() % 4) as u16 },
                        dst_port: if long {
                            9
                        } else {
                            80 + (rng.next_u64() % 3) as u16
                        },
                        tcp_flags: rng.next_u64() as u8,
                        truncated: false,
                        parse_error: false,
                    };
                    per_packet.add(&p);
                    per_flow.count(&p);
                    if protocol != Protocol::NonIp {
                        table.observe(&p, &mut done);
                    }
                }
                let (start, end) = (w * second, (w + 1) * second);
                table.fold_window(&mut per_flow);
                let a = per_packet.close(start, end, 5);
                let mut b = per_flow.close(start, end, 5);
                if !a.distinct_exact {
                    b.top_talkers = a.top_talkers.clone();
                }
                // Per-flow statistics exist on the flow-table side only (a window fed
                // packet by packet knows no flows); tests/offline.rs checks them exactly.
                let mut a = a;
                a.flows = b.flows;
                a.tcp_flows = b.tcp_flows;
                a.distinct_destination_ports = b.distinct_destination_ports;
                a.destination_port_entropy = b.destination_port_entropy;
                assert_eq!(a, b, "window {w}, cap {cap}");
                table.expire(end, &mut done);
            }
            let reasons: Vec<FinishReason> = done.iter().map(|f| f.reason).collect();
            for r in [
                FinishReason::Idle,
                FinishReason::Active,
                FinishReason::Evicted,
            ] {
                assert!(reasons.contains(&r), "{r:?} never happened");
            }
        }
    }

    #[test]
    fn a_full_table_evicts_the_longest_idle_and_counts_them() {
        let mut t = FlowTable::new(Duration::from_secs(1000), Duration::from_secs(1000), 32);
        let mut done = Vec::new();
        for i in 0..32u16 {
            t.observe(
                &packet([198, 18, 0, 1], i, [198, 18, 0, 2], 80, u64::from(i)),
                &mut done,
            );
        }
        // Flow 0 is refreshed, so flow 1 is now the longest idle.
        t.observe(
            &packet([198, 18, 0, 1], 0, [198, 18, 0, 2], 80, 40),
            &mut done,
        );
        t.observe(
            &packet([198, 18, 0, 1], 999, [198, 18, 0, 2], 80, 41),
            &mut done,
        );
        assert_eq!(t.len(), 31);
        assert_eq!(t.evictions(), 2);
        let ports: Vec<u16> = done.iter().map(|f| f.flow.src_port).collect();
        assert_eq!(ports, vec![1, 2]);
        assert!(done.iter().all(|f| f.reason == FinishReason::Evicted));
    }
}
