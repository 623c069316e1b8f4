//! Everything vigia-capture exposes on `/metrics`.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use vigia_kit::Metrics;

use crate::capture::CaptureCounters;
use crate::parse::{Family as ParseFamily, Protocol};

pub fn traffic_label(protocol: Protocol, family: ParseFamily) -> ProtocolLabel {
    ProtocolLabel {
        protocol: protocol.as_str(),
        family: family.as_str(),
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProtocolLabel {
    pub protocol: &'static str,
    pub family: &'static str,
}

/// Series per protocol and IP family, indexed by [`traffic_index`].
pub const TRAFFIC_SERIES: usize = 6 * 3;

pub fn traffic_index(protocol: Protocol, family: ParseFamily) -> usize {
    protocol.index() * 3 + family as usize
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabel {
    pub stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TalkerLabel {
    pub rank: u8,
    pub address: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FeatureLabel {
    pub feature: String,
}

/// The analyser's metrics. Per-packet counts are added once per batch, not per packet.
#[derive(Clone)]
pub struct CaptureMetrics {
    /// Packet and byte counters by [`traffic_index`]; a pair of protocol and family that
    /// cannot happen (TCP outside IP) is never created.
    pub packets: Family<ProtocolLabel, Counter>,
    pub bytes: Family<ProtocolLabel, Counter>,
    pub parse_errors: Counter,
    pub truncated: Counter,
    pub bad_timestamps: Counter,
    pub flows_active: Gauge,
    pub flow_evictions: Counter,
    pub flows_finished: Counter,
    pub top_talkers: Family<TalkerLabel, Gauge>,
    pub score: Gauge<f64, AtomicU64>,
    pub warm: Gauge,
    pub windows: Counter,
    pub anomalous_windows: Counter,
    pub feature_values: Family<FeatureLabel, Gauge<f64, AtomicU64>>,
    pub feature_zscores: Family<FeatureLabel, Gauge<f64, AtomicU64>>,
    pub last_window_end: Gauge<f64, AtomicU64>,
}

impl CaptureMetrics {
    /// Registers every metric; the capture thread's drop counters come back separately.
    pub fn register(metrics: &mut Metrics, threshold: f64) -> (Self, CaptureCounters) {
        let r = metrics.registry_mut();
        let packets = Family::<ProtocolLabel, Counter>::default();
        let bytes = Family::<ProtocolLabel, Counter>::default();
        // The usual pairs exist from the start (at 0), so rate() has a series to read.
        for (protocol, family) in [
            (Protocol::Tcp, ParseFamily::Ipv4),
            (Protocol::Tcp, ParseFamily::Ipv6),
            (Protocol::Udp, ParseFamily::Ipv4),
            (Protocol::Udp, ParseFamily::Ipv6),
            (Protocol::Icmp, ParseFamily::Ipv4),
            (Protocol::Icmpv6, ParseFamily::Ipv6),
            (Protocol::OtherIp, ParseFamily::Ipv4),
            (Protocol::OtherIp, ParseFamily::Ipv6),
            (Protocol::NonIp, ParseFamily::None),
        ] {
            let label = traffic_label(protocol, family);
            drop(packets.get_or_create(&label));
            drop(bytes.get_or_create(&label));
        }
        r.register(
            "vigia_capture_packets",
            "Packets captured, by protocol and IP family (none: not IP)",
            packets.clone(),
        );
        r.register(
            "vigia_capture_bytes",
            "Bytes on the wire of captured packets, by protocol and IP family (none: not IP)",
            bytes.clone(),
        );
        let dropped = Family::<StageLabel, Counter>::default();
        // One statement per series: a `get_or_create` guard lives until the end of its
        // statement, and a second one in the same statement would deadlock on it.
        let kernel_dropped = dropped
            .get_or_create(&StageLabel { stage: "kernel" })
            .clone();
        let queue_dropped = dropped
            .get_or_create(&StageLabel { stage: "queue" })
            .clone();
        let counters = CaptureCounters {
            kernel_dropped,
            queue_dropped,
        };
        r.register(
            "vigia_capture_dropped_packets",
            "Packets lost before analysis: by the kernel or interface (kernel) or because the analyser fell behind (queue)",
            dropped,
        );
        let m = CaptureMetrics {
            packets,
            bytes,
            parse_errors: Counter::default(),
            truncated: Counter::default(),
            bad_timestamps: Counter::default(),
            flows_active: Gauge::default(),
            flow_evictions: Counter::default(),
            flows_finished: Counter::default(),
            top_talkers: Family::default(),
            score: Gauge::default(),
            warm: Gauge::default(),
            windows: Counter::default(),
            anomalous_windows: Counter::default(),
            feature_values: Family::default(),
            feature_zscores: Family::default(),
            last_window_end: Gauge::default(),
        };
        r.register(
            "vigia_capture_parse_errors",
            "Packets with a header that could not be decoded (still counted in vigia_capture_packets_total)",
            m.parse_errors.clone(),
        );
        r.register(
            "vigia_capture_truncated_packets",
            "Packets cut short by the snaplen or the sender; counted with the layers that were there",
            m.truncated.clone(),
        );
        r.register(
            "vigia_capture_bad_timestamps",
            "Packets whose capture time cannot be represented (before 1970 or after 2554); analysed at the time of the packet before them",
            m.bad_timestamps.clone(),
        );
        r.register(
            "vigia_capture_flows_active",
            "Flows in the flow table",
            m.flows_active.clone(),
        );
        r.register(
            "vigia_capture_flow_evictions",
            "Flows evicted because the flow table was full (flows.max_flows)",
            m.flow_evictions.clone(),
        );
        r.register(
            "vigia_capture_flows_finished",
            "Flows finished by timeout, eviction or the end of the capture",
            m.flows_finished.clone(),
        );
        r.register(
            "vigia_capture_top_talker_bytes",
            "Bytes sent in the last window by its top sources (rank 1 is the largest)",
            m.top_talkers.clone(),
        );
        r.register(
            "vigia_capture_anomaly_score",
            "Anomaly score of the last window, 0 (usual) to 1 (never seen); 0 during warm-up",
            m.score.clone(),
        );
        let threshold_gauge = Gauge::<f64, AtomicU64>::default();
        threshold_gauge.set(threshold);
        r.register(
            "vigia_capture_anomaly_threshold",
            "Score at or above which a window counts as anomalous (anomaly.threshold)",
            threshold_gauge,
        );
        r.register(
            "vigia_capture_anomaly_warm",
            "Whether the detector has learned its first anomaly.window_size windows (1) or is warming up (0)",
            m.warm.clone(),
        );
        r.register(
            "vigia_capture_windows",
            "Feature windows closed",
            m.windows.clone(),
        );
        r.register(
            "vigia_capture_anomalous_windows",
            "Windows whose score reached the threshold",
            m.anomalous_windows.clone(),
        );
        r.register(
            "vigia_capture_window_feature",
            "Value of each feature in the last window (counts per window, ratios, entropy in bits)",
            m.feature_values.clone(),
        );
        r.register(
            "vigia_capture_anomaly_feature_zscore",
            "Robust z-score of each feature of the last window against the reference windows",
            m.feature_zscores.clone(),
        );
        r.register(
            "vigia_capture_last_window_end_timestamp_seconds",
            "End of the last closed window (packet time in a file replay)",
            m.last_window_end.clone(),
        );
        (m, counters)
    }
}
