//! The rows vigia-capture writes, in a real InfluxDB 1.x (`influxd`, Debian package
//! `influxdb`), read back with the Traffic dashboard's own InfluxQL queries.
//!
//! A replay of 45 s of traffic from about 400 addresses (TCP connections, UDP flows of
//! which three start in the same microsecond every second, and a port scan) with flow
//! and packet rows on. What a user would see: every flow and every packet of an
//! anomalous window is a row (none overwritten by another with the same tags and time),
//! the number of series does not grow with the addresses (`src`, `dst`, `dst_port` are
//! fields), and each InfluxDB panel of `grafana/dashboards/traffic.json` returns the
//! rows and sums of what was captured.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use vigia_kit::testing::Influxd;

const T0_US: u64 = 1_700_000_000_000_000;
const SECONDS: u64 = 45;
const SCAN_SECOND: u64 = 38;
const HOST: &str = "vigia-test";

/// A flow as the test wrote it: what its row must say.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Written {
    first_us: u64,
    /// Its rank in the file among flows of the same first microsecond.
    index: usize,
    src: String,
    dst: String,
    protocol: &'static str,
    src_port: u16,
    dst_port: u16,
    packets: u64,
    bytes: u64,
}

#[derive(Default)]
struct Trace {
    records: Vec<Record>,
    flows: Vec<Written>,
}

impl Trace {
    /// One flow of `frames` (time offset in microseconds from `at_us`, frame).
    #[allow(clippy::too_many_arguments)]
    fn flow(
        &mut self,
        at_us: u64,
        protocol: &'static str,
        src: [u8; 4],
        src_port: u16,
        dst: [u8; 4],
        dst_port: u16,
        frames: Vec<(u64, Vec<u8>)>,
    ) {
        let bytes = frames.iter().map(|(_, f)| f.len() as u64).sum();
        self.flows.push(Written {
            first_us: at_us,
            index: self.flows.len(),
            src: std::net::Ipv4Addr::from(src).to_string(),
            dst: std::net::Ipv4Addr::from(dst).to_string(),
            protocol,
            src_port,
            dst_port,
            packets: frames.len() as u64,
            bytes,
        });
        for (offset, frame) in frames {
            self.records.push(Record::new(at_us + offset, frame));
        }
    }

    fn generate() -> Trace {
        let mut t = Trace::default();
        let server = [198, 18, 0, 1];
        let resolver = [198, 18, 0, 53];
        let mut client = 0u32;
        let mut next_client = || {
            client += 1;
            [198, 18, 1 + (client / 250) as u8, 1 + (client % 250) as u8]
        };
        for s in 0..SECONDS {
            let second = T0_US + s * 1_000_000;
            // Six HTTPS connections, each from a new address.
            for c in 0..6u64 {
                let at = second + 10_000 + c * 150_000;
                let a = next_client();
                let port = 40_000 + (s * 6 + c) as u16;
                t.flow(
                    at,
                    "tcp",
                    a,
                    port,
                    server,
                    443,
                    vec![
                        (0, tcp(a, port, server, 443, "S")),
                        (100, tcp(server, 443, a, port, "SA")),
                        (200, tcp(a, port, server, 443, "A")),
                        (300, tcp(a, port, server, 443, "PA")),
                        (400, tcp(server, 443, a, port, "FA")),
                    ],
                );
            }
            // Three DNS queries from three new addresses in one microsecond: the same
            // tags and the same capture time, three rows.
            let at = second + 500_000;
            for _ in 0..3 {
                let a = next_client();
                t.flow(
                    at,
                    "udp",
                    a,
                    53_000,
                    resolver,
                    53,
                    vec![
                        (0, udp(a, 53_000, resolver, 53, b"query")),
                        (30, udp(resolver, 53, a, 53_000, b"answer!")),
                    ],
                );
            }
            if s == SCAN_SECOND {
                // A SYN scan of 800 ports, each answered by a RST.
                let scanner = [198, 18, 9, 9];
                for p in 0..800u64 {
                    let port = 1 + p as u16;
                    t.flow(
                        second + 600_000 + p * 400,
                        "tcp",
                        scanner,
                        61_000,
                        server,
                        port,
                        vec![
                            (0, tcp(scanner, 61_000, server, port, "S")),
                            (50, tcp(server, port, scanner, 61_000, "RA")),
                        ],
                    );
                }
            }
        }
        // By time; packets of one microsecond stay in the order they were written.
        t.records.sort_by_key(|r| r.ts_us);
        t
    }

    fn bytes_by_protocol(&self) -> BTreeMap<&'static str, u64> {
        let mut sums = BTreeMap::new();
        for f in &self.flows {
            *sums.entry(f.protocol).or_default() += f.bytes;
        }
        sums
    }
}

/// A dashboard query as Grafana sends it for host `host` (a regex: `.*` is All) and the
/// trace's time range, with `$__interval` at 1 s.
fn as_grafana_sends(q: &str, host: &str) -> String {
    let from_ms = T0_US / 1000 - 60_000;
    let to_ms = T0_US / 1000 + (SECONDS + 60) * 1000;
    q.replace("$__interval", "1s")
        .replace(
            "$timeFilter",
            &format!("time >= {from_ms}ms and time <= {to_ms}ms"),
        )
        .replace("$host", host)
}

/// The InfluxDB panels of the Traffic dashboard: title and query.
fn traffic_panels() -> BTreeMap<String, String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../grafana/dashboards/traffic.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut panels = BTreeMap::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            if target["datasource"]["type"] == "influxdb" {
                panels.insert(
                    panel["title"].as_str().unwrap().to_string(),
                    target["query"].as_str().unwrap().to_string(),
                );
            }
        }
    }
    panels
}

fn count(influxd: &Influxd, q: &str) -> u64 {
    influxd
        .rows("vigia", q)
        .first()
        .and_then(|r| r.get("count"))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

#[test]
fn flow_and_packet_rows_are_all_there_in_few_series_and_the_dashboard_reads_them() {
    let influxd = Influxd::start();
    influxd.create_database("vigia");
    let trace = Trace::generate();
    let dir = tempfile::tempdir().unwrap();
    let file = write_pcap(dir.path(), "trace.pcap", LINKTYPE_ETHERNET, &trace.records);
    let config = format!(
        "file: {}\nwindow: 1s\nflows:\n  idle_timeout: 5s\nanomaly:\n  window_size: 30\n\
         packet_rows:\n  mode: anomalous\n\
         influxdb:\n  url: {}\n  database: vigia\n  flush_interval: 100ms\n  tags:\n    host: {HOST}\n",
        file.display(),
        influxd.url()
    );
    let e = Exporter::start(&config, &[]);

    // The replay is over when every flow is finished; the rows follow within a flush.
    let flows = trace.flows.len() as f64;
    let finished = e.wait_for(
        "vigia_capture_flows_finished_total",
        flows,
        Duration::from_secs(60),
    );
    assert_eq!(finished, Some(flows), "{}", e.stderr());
    let anomalous = e.value("vigia_capture_anomalous_windows_total").unwrap();
    assert!(
        anomalous >= 1.0,
        "the scan was not anomalous: {}",
        e.metrics()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let rows = loop {
        let rows = count(&influxd, "SELECT count(\"packets\") FROM \"vigia_flow\"");
        if rows >= trace.flows.len() as u64 || Instant::now() > deadline {
            break rows;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // Every flow, the three of each microsecond too.
    assert_eq!(
        rows,
        trace.flows.len() as u64,
        "vigia_flow rows for {} flows",
        trace.flows.len()
    );

    // Addresses and ports are fields: a handful of series for ~400 addresses.
    let sources: BTreeSet<&str> = trace.flows.iter().map(|f| f.src.as_str()).collect();
    assert!(sources.len() > 400, "{} sources", sources.len());
    for measurement in ["vigia_flow", "vigia_packet"] {
        let series = influxd.query(
            Some("vigia"),
            &format!("SHOW SERIES FROM \"{measurement}\""),
        );
        let keys: Vec<String> = series["results"][0]["series"][0]["values"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| v[0].as_str().unwrap().to_string())
            .collect();
        // protocol (tcp, udp) x end (idle, active, evicted, end) at most, one host.
        assert!(
            !keys.is_empty() && keys.len() <= 8,
            "{measurement}: {} series, such as {:?}",
            keys.len(),
            &keys[..keys.len().min(5)]
        );
        let tags: BTreeSet<String> = influxd
            .rows("vigia", &format!("SHOW TAG KEYS FROM \"{measurement}\""))
            .iter()
            .map(|r| r["tagKey"].as_str().unwrap().to_string())
            .collect();
        assert!(
            tags.iter()
                .all(|t| ["protocol", "end", "host"].contains(&t.as_str())),
            "{measurement} tags: {tags:?}"
        );
        let fields: BTreeMap<String, String> = influxd
            .rows("vigia", &format!("SHOW FIELD KEYS FROM \"{measurement}\""))
            .iter()
            .map(|r| {
                (
                    r["fieldKey"].as_str().unwrap().to_string(),
                    r["fieldType"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        for (field, kind) in [
            ("src", "string"),
            ("dst", "string"),
            ("src_port", "integer"),
            ("dst_port", "integer"),
        ] {
            assert_eq!(
                fields.get(field).map(String::as_str),
                Some(kind),
                "{measurement}: {fields:?}"
            );
        }
    }

    // Every packet of the anomalous windows is a row, those of one microsecond too.
    let windows = influxd.rows(
        "vigia",
        "SELECT \"packets\", \"score\" FROM \"vigia_anomaly_window\"",
    );
    assert_eq!(windows.len() as f64, anomalous, "{windows:?}");
    let packets_in_anomalous: u64 = windows.iter().map(|w| w["packets"].as_u64().unwrap()).sum();
    assert_eq!(
        count(&influxd, "SELECT count(\"bytes\") FROM \"vigia_packet\""),
        packets_in_anomalous
    );

    println!(
        "{} flow rows from {} sources, {} anomalous windows, {packets_in_anomalous} packet rows",
        trace.flows.len(),
        sources.len(),
        anomalous
    );

    // The dashboard's panels, with this host selected and with All.
    let panels = traffic_panels();
    assert_eq!(panels.len(), 4, "{panels:?}");
    for host in ["vigia\\-test", ".*"] {
        let read = |title: &str| influxd.rows("vigia", &as_grafana_sends(&panels[title], host));

        let newest: Vec<Written> = {
            let mut all = trace.flows.clone();
            all.sort();
            all.into_iter().rev().take(100).collect()
        };
        let table: Vec<Written> = read("Finished flows, newest first (InfluxDB)")
            .iter()
            .map(|r| Written {
                first_us: 0,
                index: 0,
                src: r["src"].as_str().unwrap().to_string(),
                dst: r["dst"].as_str().unwrap().to_string(),
                protocol: if r["protocol"] == "tcp" { "tcp" } else { "udp" },
                src_port: r["src_port"].as_u64().unwrap() as u16,
                dst_port: r["dst_port"].as_u64().unwrap() as u16,
                packets: r["packets"].as_u64().unwrap(),
                bytes: r["bytes"].as_u64().unwrap(),
            })
            .collect();
        let strip = |f: &Written| Written {
            first_us: 0,
            index: 0,
            ..f.clone()
        };
        assert_eq!(
            table,
            newest.iter().map(strip).collect::<Vec<_>>(),
            "host {host}: the flow table is the 100 newest flows, newest first"
        );

        let mut sums: BTreeMap<String, u64> = BTreeMap::new();
        for r in read("Bytes of finished flows by protocol (InfluxDB)") {
            *sums
                .entry(r["protocol"].as_str().unwrap().to_string())
                .or_default() += r["sum"].as_u64().unwrap();
        }
        let want: BTreeMap<String, u64> = trace
            .bytes_by_protocol()
            .into_iter()
            .map(|(p, b)| (p.to_string(), b))
            .collect();
        assert_eq!(sums, want, "host {host}: bytes by protocol");

        let scores = read("Anomalous windows (InfluxDB)");
        assert!(
            !scores.is_empty() && scores.iter().all(|r| r["max"].as_f64().unwrap() >= 0.7),
            "host {host}: {scores:?}"
        );
        let explained = read("Anomalous windows and what moved (InfluxDB)");
        assert_eq!(explained.len() as f64, anomalous, "host {host}");
        assert!(
            explained
                .iter()
                .all(|r| r["top_features"].as_str().is_some_and(|t| t.contains(":+"))),
            "host {host}: {explained:?}"
        );
    }
    // Another host's selection sees none of these rows.
    let other = influxd.rows(
        "vigia",
        &as_grafana_sends(
            &panels["Finished flows, newest first (InfluxDB)"],
            "other\\-host",
        ),
    );
    assert!(other.is_empty(), "{other:?}");
}
