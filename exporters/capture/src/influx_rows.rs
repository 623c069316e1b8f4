//! The rows vigia-capture writes to InfluxDB (seed 002's second path):
//!
//! - `vigia_flow`: one per finished flow;
//! - `vigia_packet`: one per packet of an anomalous window, or per sampled packet;
//! - `vigia_anomaly_window`: one per window whose score reached the threshold.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use vigia_kit::influx::Point;

use crate::flows::FinishedFlow;
use crate::parse::PacketSummary;
use crate::scoring::WindowVerdict;
use crate::window::WindowStats;

fn at(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

/// A finished flow, stamped with its first packet's time (plus its rank among the flows
/// of that microsecond, in the nanoseconds). Addresses and ports are fields: as tags,
/// every address pair and port made a series of its own (unbounded on `any`).
pub fn flow(f: &FinishedFlow, window_score: f64) -> Point {
    let flow = &f.flow;
    Point::new("vigia_flow")
        .tag("protocol", flow.protocol.as_str())
        .tag("end", f.reason.as_str())
        .field("src", flow.src.to_string())
        .field("dst", flow.dst.to_string())
        .field("packets", flow.packets)
        .field("bytes", flow.bytes)
        .field("duration_seconds", flow.duration_seconds())
        .field("src_port", flow.src_port)
        .field("dst_port", flow.dst_port)
        .field("window_score", window_score)
        .timestamp(at(flow.first_ns + u64::from(flow.seq % 1000)))
}

/// One packet. Capture timestamps have microsecond resolution; `seq` (the packet's rank
/// among packets of the same microsecond) goes into the nanoseconds, so two packets of
/// one microsecond stay two rows.
pub fn packet(p: &PacketSummary, seq: u64, window_score: f64) -> Point {
    Point::new("vigia_packet")
        .tag("protocol", p.protocol.as_str())
        .field("src", p.src.to_string())
        .field("dst", p.dst.to_string())
        .field("src_port", p.src_port)
        .field("dst_port", p.dst_port)
        .field("bytes", p.wire_len)
        .field("tcp_flags", u32::from(p.tcp_flags))
        .field("window_score", window_score)
        .timestamp(at(p.ts_ns + seq % 1000))
}

/// An anomalous window with its top features, stamped with the window's start.
pub fn anomaly_window(stats: &WindowStats, verdict: &WindowVerdict, threshold: f64) -> Point {
    let explanation: Vec<String> = verdict
        .top
        .iter()
        .map(|(name, z)| format!("{name}:{z:+.1}"))
        .collect();
    let mut p = Point::new("vigia_anomaly_window")
        .field("score", verdict.score)
        .field("threshold", threshold)
        .field("packets", stats.packets)
        .field("bytes", stats.bytes)
        .field("distinct_sources", stats.distinct_sources)
        .field(
            "distinct_destination_ports",
            stats.distinct_destination_ports,
        )
        .field("top_features", explanation.join(","))
        .field(
            "duration_seconds",
            stats.end_ns.saturating_sub(stats.start_ns) as f64 / 1e9,
        );
    for (i, (name, z)) in verdict.top.iter().enumerate() {
        p = p
            .field(format!("top{}_feature", i + 1), *name)
            .field(format!("top{}_zscore", i + 1), *z);
    }
    p.timestamp(at(stats.start_ns))
}
