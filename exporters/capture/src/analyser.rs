//! The analyser thread: packet summaries from the capture queue through the flow table
//! and the current window; each closed window is scored, exposed and, when anomalous,
//! written to InfluxDB with its explanation.
//!
//! Windows follow packet timestamps in a file replay (so a replay gives the same windows
//! and scores however fast it runs) and the wall clock in a live capture (so a quiet link
//! still closes windows, with zero packets).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::counter::Counter;
use serde_json::json;
use vigia_kit::influx::InfluxWriter;

use crate::capture::Event;
use crate::config::{Config, PacketRowsConfig, PacketRowsMode};
use crate::flows::{FinishedFlow, FlowTable, Observed};
use crate::influx_rows;
use crate::metrics::{
    traffic_index, traffic_label, CaptureMetrics, FeatureLabel, TalkerLabel, TRAFFIC_SERIES,
};
use crate::parse::{Family, PacketSummary, Protocol, BAD_TIMESTAMP};
use crate::scoring::{WindowScorer, WindowVerdict};
use crate::window::{Window, WindowStats};

/// What the analyser prints in `--exit-at-eof` mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// Nothing (server mode).
    None,
    /// One JSON line per window, then the summary.
    Windows,
    /// The summary line only (`--bench`).
    Summary,
}

/// Totals of one run.
#[derive(Debug, Default, Clone)]
pub struct Totals {
    pub packets: u64,
    pub bytes: u64,
    pub parse_errors: u64,
    pub truncated: u64,
    pub flows_finished: u64,
    pub windows: u64,
    pub anomalous_windows: u64,
    pub bad_timestamps: u64,
    /// A replay stopped by a signal before the end of its input.
    pub interrupted: bool,
}

pub struct Analyser {
    window_ns: u64,
    top_n: usize,
    live: bool,
    flows: FlowTable,
    window: Window,
    scorer: WindowScorer,
    threshold: f64,
    metrics: CaptureMetrics,
    /// Packet and byte counters by `traffic_index`, looked up once.
    traffic: [Option<(Counter, Counter)>; TRAFFIC_SERIES],
    writer: Option<InfluxWriter>,
    flow_rows: bool,
    packet_rows: PacketRowsConfig,
    sample_every: u64,
    sampled: u64,
    window_packets: Vec<PacketSummary>,
    window_start: Option<u64>,
    last_score: f64,
    finished: Vec<FinishedFlow>,
    evictions_reported: u64,
    same_ts: (u64, u64),
    /// Time of the last packet analysed, for packets whose own time is unusable.
    last_ts: u64,
    report: Report,
    totals: Totals,
}

impl Analyser {
    pub fn new(
        config: &Config,
        scorer: WindowScorer,
        metrics: CaptureMetrics,
        writer: Option<InfluxWriter>,
        live: bool,
        report: Report,
    ) -> Self {
        let packet_rows = config.packet_rows.clone();
        let sample_every = if packet_rows.mode == PacketRowsMode::Sample {
            (1.0 / packet_rows.sample_rate).round().max(1.0) as u64
        } else {
            0
        };
        Self {
            window_ns: config.window.as_nanos() as u64,
            top_n: config.top_talkers,
            live,
            flows: FlowTable::new(
                config.flows.idle_timeout,
                config.flows.active_timeout,
                config.flows.max_flows,
            ),
            window: Window::new(config.distinct_cap),
            scorer,
            threshold: config.anomaly.threshold,
            metrics,
            traffic: std::array::from_fn(|_| None),
            flow_rows: config.flow_rows && writer.is_some(),
            writer,
            packet_rows,
            sample_every,
            sampled: 0,
            window_packets: Vec::new(),
            window_start: None,
            last_score: 0.0,
            finished: Vec::new(),
            evictions_reported: 0,
            same_ts: (0, 0),
            last_ts: if live { now_ns() } else { 0 },
            report,
            totals: Totals::default(),
        }
    }

    /// Runs until the capture ends or `stop` is set. `Err` carries a capture failure
    /// (after everything read before it was analysed).
    pub fn run(&mut self, rx: Receiver<Event>, stop: Arc<AtomicBool>) -> Result<Totals, String> {
        let started = Instant::now();
        let mut failure = None;
        if self.live {
            self.window_start = Some(floor(now_ns(), self.window_ns));
        }
        loop {
            let event = if self.live {
                let end = self.window_start.unwrap_or(0) + self.window_ns;
                let wait = Duration::from_nanos(end.saturating_sub(now_ns()));
                match rx.recv_timeout(wait.min(Duration::from_millis(500))) {
                    Ok(e) => Some(e),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => Some(Event::End),
                }
            } else {
                // A file waits for packets, but looks at `stop` at least this often: a
                // replay from a pipe may have nothing to read for as long as its writer
                // likes, and SIGTERM must end it all the same.
                match rx.recv_timeout(Duration::from_millis(100)) {
                    Ok(e) => Some(e),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => Some(Event::End),
                }
            };
            match event {
                Some(Event::Packets(batch)) => self.batch(&batch),
                Some(Event::End) => break,
                Some(Event::Failed(e)) => {
                    failure = Some(e);
                    break;
                }
                None => {}
            }
            if !self.live && stop.load(Ordering::Relaxed) {
                self.totals.interrupted = true;
                break;
            }
            if self.live {
                self.close_due_windows(now_ns());
                if stop.load(Ordering::Relaxed) {
                    // Drain what the capture thread still hands over, then stop.
                    while let Ok(Event::Packets(batch)) =
                        rx.recv_timeout(Duration::from_millis(200))
                    {
                        self.batch(&batch);
                    }
                    break;
                }
            }
        }
        self.finish(started.elapsed());
        match failure {
            Some(e) => Err(e),
            None => Ok(self.totals.clone()),
        }
    }

    fn batch(&mut self, batch: &[PacketSummary]) {
        let mut packets = [0u64; TRAFFIC_SERIES];
        let mut bytes = [0u64; TRAFFIC_SERIES];
        let (mut parse_errors, mut truncated, mut bad_timestamps) = (0u64, 0u64, 0u64);
        for p in batch {
            let fixed;
            let p = if p.ts_ns == BAD_TIMESTAMP {
                // Filed with the packet before it, never at time 0 (see capture::Seconds).
                bad_timestamps += 1;
                fixed = PacketSummary {
                    ts_ns: self.last_ts,
                    ..*p
                };
                &fixed
            } else {
                p
            };
            self.last_ts = p.ts_ns;
            if !self.live {
                self.advance_offline(p.ts_ns);
            }
            let i = traffic_index(p.protocol, p.family());
            packets[i] += 1;
            bytes[i] += u64::from(p.wire_len);
            parse_errors += u64::from(p.parse_error);
            truncated += u64::from(p.truncated);
            // The addresses reach the window through the flow table, per flow.
            self.window.count(p);
            if p.protocol != Protocol::NonIp
                && self.flows.observe(p, &mut self.finished) == Observed::New
            {
                self.window.note_new_flow();
            }
            match self.packet_rows.mode {
                PacketRowsMode::Off => {}
                PacketRowsMode::Anomalous => {
                    if self.window_packets.len() < self.packet_rows.max_per_window {
                        self.window_packets.push(*p);
                    }
                }
                PacketRowsMode::Sample => {
                    self.sampled += 1;
                    if self.sampled % self.sample_every == 0 {
                        self.write_packet(p);
                    }
                }
            }
        }
        for i in 0..TRAFFIC_SERIES {
            if packets[i] > 0 {
                let (protocol, family) = (Protocol::ALL[i / 3], Family::ALL[i % 3]);
                let counters = self.traffic[i].get_or_insert_with(|| {
                    let label = traffic_label(protocol, family);
                    (
                        self.metrics.packets.get_or_create(&label).clone(),
                        self.metrics.bytes.get_or_create(&label).clone(),
                    )
                });
                counters.0.inc_by(packets[i]);
                counters.1.inc_by(bytes[i]);
            }
            self.totals.packets += packets[i];
            self.totals.bytes += bytes[i];
        }
        self.metrics.parse_errors.inc_by(parse_errors);
        self.metrics.truncated.inc_by(truncated);
        self.metrics.bad_timestamps.inc_by(bad_timestamps);
        self.totals.bad_timestamps += bad_timestamps;
        self.totals.parse_errors += parse_errors;
        self.totals.truncated += truncated;
        self.emit_finished_flows();
    }

    fn write_packet(&mut self, p: &PacketSummary) {
        if let Some(w) = &self.writer {
            if self.same_ts.0 == p.ts_ns {
                self.same_ts.1 += 1;
            } else {
                self.same_ts = (p.ts_ns, 0);
            }
            w.write(influx_rows::packet(p, self.same_ts.1, self.last_score));
        }
    }

    /// Closes the windows a packet at `ts` lies beyond (file replay).
    fn advance_offline(&mut self, ts: u64) {
        match self.window_start {
            Some(_) => self.close_due_windows(ts),
            None => self.window_start = Some(floor(ts, self.window_ns)),
        }
    }

    /// Closes the current window if `now` lies beyond it, and every empty window between
    /// it and `now` at once: a gap of a day or of ten years costs what a few windows cost
    /// (see [`WindowScorer::score_repeated`]), and the detector learns each of them as
    /// empty, as a live capture of a quiet link would.
    fn close_due_windows(&mut self, now: u64) {
        let Some(start) = self.window_start else {
            return;
        };
        let end = start.saturating_add(self.window_ns);
        if now < end {
            return;
        }
        self.close_window(start, end);
        let empty = (now - end) / self.window_ns;
        if empty > 0 {
            self.close_empty_windows(end, empty);
        }
        self.window_start = Some(end + empty * self.window_ns);
    }

    fn close_window(&mut self, start: u64, end: u64) {
        self.flows.fold_window(&mut self.window);
        let stats = self.window.close(start, end, self.top_n);
        let verdict = self.scorer.score(&stats);
        self.publish(&stats, &verdict, 1);
        self.flows.expire(end, &mut self.finished);
        self.emit_finished_flows();
    }

    /// `count` empty windows from `from` on, scored as runs of equal verdicts.
    fn close_empty_windows(&mut self, from: u64, count: u64) {
        self.flows.fold_window(&mut self.window);
        let empty = self.window.close(from, from + self.window_ns, self.top_n);
        let mut at = from;
        for (verdict, n) in self.scorer.score_repeated(&empty, count) {
            let run = WindowStats {
                start_ns: at,
                end_ns: at + n * self.window_ns,
                ..empty.clone()
            };
            self.publish(&run, &verdict, n);
            at = run.end_ns;
        }
        self.flows.expire(at, &mut self.finished);
        self.emit_finished_flows();
    }

    /// Exposes, writes and prints the verdict on `count` windows of equal stats that
    /// `stats` spans (one, or a run of empty ones).
    fn publish(&mut self, stats: &WindowStats, verdict: &WindowVerdict, count: u64) {
        self.last_score = verdict.score;
        let m = &self.metrics;
        m.windows.inc_by(count);
        m.score.set(verdict.score);
        m.warm.set(i64::from(verdict.warm));
        m.last_window_end.set(stats.end_ns as f64 / 1e9);
        let vector = stats.vector();
        for (i, name) in self.scorer.names().iter().enumerate() {
            let label = FeatureLabel {
                feature: (*name).to_string(),
            };
            m.feature_values.get_or_create(&label).set(vector[i]);
            m.feature_zscores
                .get_or_create(&label)
                .set(verdict.zscores[i]);
        }
        // Last window's top sources only: the old ranks and addresses go away.
        m.top_talkers.clear();
        for (rank, (address, bytes)) in stats.top_talkers.iter().enumerate() {
            m.top_talkers
                .get_or_create(&TalkerLabel {
                    rank: (rank + 1) as u8,
                    address: address.to_string(),
                })
                .set(i64::try_from(*bytes).unwrap_or(i64::MAX));
        }
        self.totals.windows += count;
        if verdict.anomalous {
            m.anomalous_windows.inc_by(count);
            self.totals.anomalous_windows += count;
            tracing::info!(
                score = verdict.score,
                top = ?verdict.top,
                packets = stats.packets,
                windows = count,
                "anomalous window"
            );
            if let Some(w) = &self.writer {
                // One row per window, as for any other; a run of anomalous empty windows
                // is bounded by the detector's reference span (the run ends once quiet
                // is all the reference holds).
                for i in 0..count {
                    let start_ns = stats.start_ns + i * self.window_ns;
                    let one = WindowStats {
                        start_ns,
                        end_ns: start_ns + self.window_ns,
                        ..stats.clone()
                    };
                    w.write(influx_rows::anomaly_window(&one, verdict, self.threshold));
                }
            }
            if self.packet_rows.mode == PacketRowsMode::Anomalous {
                let packets = std::mem::take(&mut self.window_packets);
                for p in &packets {
                    self.write_packet(p);
                }
                self.window_packets = packets;
            }
        }
        self.window_packets.clear();
        if self.report == Report::Windows {
            print_window(stats, Some(verdict), count);
        }
    }

    fn emit_finished_flows(&mut self) {
        let evictions = self.flows.evictions();
        if evictions > self.evictions_reported {
            self.metrics
                .flow_evictions
                .inc_by(evictions - self.evictions_reported);
            self.evictions_reported = evictions;
        }
        self.metrics.flows_active.set(self.flows.len() as i64);
        if self.finished.is_empty() {
            return;
        }
        let n = self.finished.len() as u64;
        self.metrics.flows_finished.inc_by(n);
        self.totals.flows_finished += n;
        if self.flow_rows {
            if let Some(w) = &self.writer {
                for f in &self.finished {
                    w.write(influx_rows::flow(f, self.last_score));
                }
            }
        }
        self.finished.clear();
    }

    /// End of the capture: the partial window is reported (not scored: it is shorter
    /// than the others) and every flow is finished.
    fn finish(&mut self, elapsed: Duration) {
        self.flows.fold_window(&mut self.window);
        if let Some(start) = self.window_start {
            if self.window.packets() > 0 {
                let stats = self.window.close(start, start + self.window_ns, self.top_n);
                if self.report == Report::Windows {
                    print_window(&stats, None, 1);
                }
            }
        }
        self.flows.drain(&mut self.finished);
        self.emit_finished_flows();
        if self.report != Report::None {
            let t = &self.totals;
            let secs = elapsed.as_secs_f64();
            let line = json!({
                "summary": {
                    "packets": t.packets,
                    "bytes": t.bytes,
                    "parse_errors": t.parse_errors,
                    "truncated": t.truncated,
                    "bad_timestamps": t.bad_timestamps,
                    "interrupted": t.interrupted,
                    "flows_finished": t.flows_finished,
                    "flow_evictions": self.flows.evictions(),
                    "windows": t.windows,
                    "anomalous_windows": t.anomalous_windows,
                    "elapsed_seconds": secs,
                    "packets_per_second": if secs > 0.0 { t.packets as f64 / secs } else { 0.0 },
                }
            });
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }
}

/// One line per window, or per run of `windows` empty windows with one verdict (`start`
/// and `end` span the run).
fn print_window(stats: &WindowStats, verdict: Option<&WindowVerdict>, windows: u64) {
    let mut protocols = serde_json::Map::new();
    for p in Protocol::ALL {
        protocols.insert(p.as_str().into(), stats.protocol_packets[p.index()].into());
    }
    let line = json!({
        "start": stats.start_ns as f64 / 1e9,
        "end": stats.end_ns as f64 / 1e9,
        "partial": verdict.is_none(),
        "windows": windows,
        "packets": stats.packets,
        "bytes": stats.bytes,
        "protocols": protocols,
        "distinct_sources": stats.distinct_sources,
        "distinct_destinations": stats.distinct_destinations,
        "distinct_destination_ports": stats.distinct_destination_ports,
        "distinct_exact": stats.distinct_exact,
        "tcp_syn": stats.tcp_syn,
        "tcp_synack": stats.tcp_synack,
        "tcp_rst": stats.tcp_rst,
        "syn_ratio": stats.syn_ratio(),
        "synack_ratio": stats.synack_ratio(),
        "rst_ratio": stats.rst_ratio(),
        "flows": stats.flows,
        "tcp_flows": stats.tcp_flows,
        "destination_port_entropy": stats.destination_port_entropy,
        "new_flows": stats.new_flows,
        "top_talkers": stats.top_talkers.iter().map(|(a, b)| json!([a.to_string(), b])).collect::<Vec<_>>(),
        "score": verdict.map(|v| v.score),
        "warm": verdict.map(|v| v.warm),
        "anomalous": verdict.map(|v| v.anomalous),
        "top_features": verdict.map(|v| v.top.iter().map(|(n, z)| json!([n, z])).collect::<Vec<_>>()),
    });
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
}

fn floor(ts: u64, step: u64) -> u64 {
    ts - ts % step.max(1)
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
