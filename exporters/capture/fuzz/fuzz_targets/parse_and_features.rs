//! Fuzz target: any bytes, on any datalink vigia-capture reads, through the packet
//! parser and the window features, both packet by packet and as the analyser fills them
//! (counters per packet, addresses per flow from the flow table). Nothing may panic, the
//! features must be finite, and both ways must give the same window.
#![no_main]

// The modules under test, compiled from the exporter's own sources (it is a binary
// crate, so there is no library to depend on).
#[path = "../../src/parse.rs"]
#[allow(dead_code)]
mod parse;
#[path = "../../src/window.rs"]
#[allow(dead_code)]
mod window;
#[path = "../../src/flows.rs"]
#[allow(dead_code)]
mod flows;

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use parse::{summarize, Datalink, Protocol};

const LINKS: [Datalink; 7] = [
    Datalink::Ethernet,
    Datalink::LinuxSll,
    Datalink::LinuxSll2,
    Datalink::RawIp,
    Datalink::Ipv4,
    Datalink::Ipv6,
    Datalink::Null,
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let link = LINKS[usize::from(selector) % LINKS.len()];
    let mut w = window::Window::new(16);
    let mut per_flow = window::Window::new(16);
    let mut table = flows::FlowTable::new(Duration::from_nanos(2), Duration::from_nanos(3), 2);
    let mut finished = Vec::new();
    // The input is also split into several frames, so the window sees distinct
    // addresses and ports from one input.
    for (i, frame) in rest.chunks(64.max(rest.len() / 4 + 1)).enumerate() {
        let wire_len = frame.len() as u32 + u32::from(selector & 0x0f);
        let p = summarize(link, frame, wire_len, i as u64);
        w.add(&p);
        per_flow.count(&p);
        if p.protocol != Protocol::NonIp {
            table.observe(&p, &mut finished);
        }
    }
    let _ = summarize(link, rest, rest.len() as u32, 0);
    table.fold_window(&mut per_flow);
    let stats = w.close(0, 1, 5);
    for v in stats.vector() {
        assert!(v.is_finite(), "feature not finite: {stats:?}");
    }
    let mut other = per_flow.close(0, 1, 5);
    for v in other.vector() {
        assert!(v.is_finite(), "feature not finite: {other:?}");
    }
    if !stats.distinct_exact {
        // Past the cap, which sources the exact table kept depends on the order.
        other.top_talkers = stats.top_talkers.clone();
    }
    // Per-flow statistics exist on the flow-table side only.
    let mut stats = stats;
    stats.flows = other.flows;
    stats.tcp_flows = other.tcp_flows;
    stats.distinct_destination_ports = other.distinct_destination_ports;
    stats.destination_port_entropy = other.destination_port_entropy;
    assert_eq!(stats, other, "per packet and per flow differ");
});
