//! Fuzz target: any bytes, on any datalink vigia-capture reads, through the packet
//! parser and the window features. Nothing may panic, and the features must be finite.
#![no_main]

// The modules under test, compiled from the exporter's own sources (it is a binary
// crate, so there is no library to depend on).
#[path = "../../src/parse.rs"]
#[allow(dead_code)]
mod parse;
#[path = "../../src/window.rs"]
#[allow(dead_code)]
mod window;

use libfuzzer_sys::fuzz_target;
use parse::{summarize, Datalink};

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
    // The input is also split into several frames, so the window sees distinct
    // addresses and ports from one input.
    for (i, frame) in rest.chunks(64.max(rest.len() / 4 + 1)).enumerate() {
        let wire_len = frame.len() as u32 + u32::from(selector & 0x0f);
        let p = summarize(link, frame, wire_len, i as u64);
        w.add(&p);
    }
    let _ = summarize(link, rest, rest.len() as u32, 0);
    let stats = w.close(0, 1, 5);
    for v in stats.vector() {
        assert!(v.is_finite(), "feature not finite: {stats:?}");
    }
});
