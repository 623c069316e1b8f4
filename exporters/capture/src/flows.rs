//! The flow table: packets grouped by 5-tuple in both directions, finished by idle and
//! active timeouts, bounded in size.

use std::net::IpAddr;

use rustc_hash::FxHashMap;

use crate::parse::{PacketSummary, Protocol};

/// A 5-tuple in canonical order (lower endpoint first), so both directions of a
/// conversation land on the same key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub protocol: Protocol,
    pub low: (IpAddr, u16),
    pub high: (IpAddr, u16),
}

impl FlowKey {
    pub fn of(p: &PacketSummary) -> FlowKey {
        let a = (p.src, p.src_port);
        let b = (p.dst, p.dst_port);
        let (low, high) = if a <= b { (a, b) } else { (b, a) };
        FlowKey {
            protocol: p.protocol,
            low,
            high,
        }
    }
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
    map: FxHashMap<FlowKey, Flow>,
    idle_ns: u64,
    active_ns: u64,
    max_flows: usize,
    evictions: u64,
}

impl FlowTable {
    pub fn new(idle: std::time::Duration, active: std::time::Duration, max_flows: usize) -> Self {
        Self {
            map: FxHashMap::default(),
            idle_ns: idle.as_nanos().min(u128::from(u64::MAX)) as u64,
            active_ns: active.as_nanos().min(u128::from(u64::MAX)) as u64,
            max_flows: max_flows.max(1),
            evictions: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Flows evicted so far because the table was full.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Adds an IP packet to its flow; flows it finishes are pushed to `finished`.
    pub fn observe(&mut self, p: &PacketSummary, finished: &mut Vec<FinishedFlow>) -> Observed {
        let key = FlowKey::of(p);
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
        };
        if let Some(flow) = self.map.get_mut(&key) {
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
            *flow = Flow {
                src: flow.src,
                dst: flow.dst,
                src_port: flow.src_port,
                dst_port: flow.dst_port,
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
        self.map.insert(key, fresh);
        Observed::New
    }

    /// Evicts the longest-idle sixteenth of the table (at least one flow). Evicting in
    /// batches keeps a flood of new flows at O(1) amortized per packet instead of a scan
    /// of the whole table per packet.
    fn evict_oldest_idle(&mut self, finished: &mut Vec<FinishedFlow>) {
        let n = (self.map.len() / 16).max(1);
        let mut ages: Vec<(u64, FlowKey)> = self.map.iter().map(|(k, f)| (f.last_ns, *k)).collect();
        if n < ages.len() {
            ages.select_nth_unstable_by_key(n - 1, |(last, _)| *last);
            ages.truncate(n);
        }
        ages.sort_unstable_by_key(|(last, _)| *last);
        for (_, key) in ages {
            if let Some(flow) = self.map.remove(&key) {
                finished.push(FinishedFlow {
                    flow,
                    reason: FinishReason::Evicted,
                });
                self.evictions += 1;
            }
        }
    }

    /// Finishes flows idle or active past their timeouts at `now_ns`.
    pub fn expire(&mut self, now_ns: u64, finished: &mut Vec<FinishedFlow>) {
        let (idle_ns, active_ns) = (self.idle_ns, self.active_ns);
        self.map.retain(|_, flow| {
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

    /// Finishes every flow (end of file, shutdown).
    pub fn drain(&mut self, finished: &mut Vec<FinishedFlow>) {
        finished.extend(self.map.drain().map(|(_, flow)| FinishedFlow {
            flow,
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
