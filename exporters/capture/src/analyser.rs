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

use serde_json::json;
use vigia_kit::influx::InfluxWriter;

use crate::capture::Event;
use crate::config::{Config, PacketRowsConfig, PacketRowsMode};
use crate::flows::{FinishedFlow, FlowTable, Observed};
use crate::influx_rows;
use crate::metrics::{CaptureMetrics, FeatureLabel, TalkerLabel};
use crate::parse::{PacketSummary, Protocol};
use crate::scoring::{WindowScorer, WindowVerdict};
use crate::window::{Window, WindowStats};

/// Most empty windows a gap in a replayed file produces; a longer gap (a file that
/// jumps by days) restarts the windows at the next packet.
const MAX_GAP_WINDOWS: u64 = 10_000;

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
                Some(rx.recv().unwrap_or(Event::End))
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
        let mut packets = [0u64; 6];
        let mut bytes = [0u64; 6];
        let (mut parse_errors, mut truncated) = (0u64, 0u64);
        for p in batch {
            if !self.live {
                self.advance_offline(p.ts_ns);
            }
            let i = p.protocol.index();
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
        for i in 0..6 {
            if packets[i] > 0 {
                self.metrics.packets[i].inc_by(packets[i]);
                self.metrics.bytes[i].inc_by(bytes[i]);
            }
            self.totals.packets += packets[i];
            self.totals.bytes += bytes[i];
        }
        self.metrics.parse_errors.inc_by(parse_errors);
        self.metrics.truncated.inc_by(truncated);
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
        let start = match self.window_start {
            Some(s) => s,
            None => {
                self.window_start = Some(floor(ts, self.window_ns));
                return;
            }
        };
        if ts < start + self.window_ns {
            return;
        }
        let gap = (ts - start) / self.window_ns;
        if gap > MAX_GAP_WINDOWS {
            self.close_window(start, start + self.window_ns);
            tracing::info!(
                skipped_windows = gap,
                "gap in the capture: windows restart at the next packet"
            );
            self.window_start = Some(floor(ts, self.window_ns));
            return;
        }
        self.close_due_windows(ts);
    }

    fn close_due_windows(&mut self, now: u64) {
        while let Some(start) = self.window_start {
            let end = start + self.window_ns;
            if now < end {
                break;
            }
            self.close_window(start, end);
            self.window_start = Some(end);
        }
    }

    fn close_window(&mut self, start: u64, end: u64) {
        self.flows.fold_window(&mut self.window);
        let stats = self.window.close(start, end, self.top_n);
        let verdict = self.scorer.score(&stats);
        self.last_score = verdict.score;
        let m = &self.metrics;
        m.windows.inc();
        m.score.set(verdict.score);
        m.warm.set(i64::from(verdict.warm));
        m.last_window_end.set(end as f64 / 1e9);
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
        self.totals.windows += 1;
        if verdict.anomalous {
            m.anomalous_windows.inc();
            self.totals.anomalous_windows += 1;
            tracing::info!(
                score = verdict.score,
                top = ?verdict.top,
                packets = stats.packets,
                "anomalous window"
            );
            if let Some(w) = &self.writer {
                w.write(influx_rows::anomaly_window(
                    &stats,
                    &verdict,
                    self.threshold,
                ));
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
            print_window(&stats, Some(&verdict));
        }
        self.flows.expire(end, &mut self.finished);
        self.emit_finished_flows();
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
                    print_window(&stats, None);
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

fn print_window(stats: &WindowStats, verdict: Option<&WindowVerdict>) {
    let mut protocols = serde_json::Map::new();
    for p in Protocol::ALL {
        protocols.insert(p.as_str().into(), stats.protocol_packets[p.index()].into());
    }
    let line = json!({
        "start": stats.start_ns as f64 / 1e9,
        "end": stats.end_ns as f64 / 1e9,
        "partial": verdict.is_none(),
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
