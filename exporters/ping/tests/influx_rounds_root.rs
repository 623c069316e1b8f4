//! Each round's result lands as a row of `vigia_ping_round` in a real InfluxDB 1.x
//! (`influxd` from the Debian package `influxdb`). Needs root (raw ICMP, a namespace).

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{Exporter, Influxd, NetnsHost};

/// Rows of `SELECT * ...` as maps from column to value.
fn rows(answer: &Value) -> Vec<serde_json::Map<String, Value>> {
    let Some(series) = answer["results"][0]["series"].as_array() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for s in series {
        let columns: Vec<&str> = s["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        for v in s["values"].as_array().unwrap() {
            let row = columns
                .iter()
                .zip(v.as_array().unwrap())
                .map(|(c, v)| (c.to_string(), v.clone()))
                .collect();
            out.push(row);
        }
    }
    out
}

#[test]
fn root_influxdb_gets_one_row_per_round() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test needs root (CI runs as root)"
    );
    let influx = Influxd::start();
    influx.create_database("vigia");
    let dead = NetnsHost::new();
    dead.set_echo_ignore(true);
    let e = Exporter::start(&format!(
        "defaults: {{interval: 1s, count: 2, timeout: 300ms}}\n\
         targets:\n  - {{name: lo, address: 127.0.0.1, labels: {{site: lab, kind: server}}}}\n  \
         - {{name: dead, address: {}}}\n  \
         - {{name: influx-port, address: \"{influx}\", probe: tcp, labels: {{site: lab}}}}\n  \
         - {{name: influx-ping, address: \"http://{influx}/ping\", probe: http, expect_status: [204]}}\n  \
         - {{name: closed-port, address: \"{}:1\", probe: tcp}}\n\
         influxdb: {{url: \"http://{influx}\", database: vigia, flush_interval: 200ms}}\n",
        dead.addr,
        dead.addr,
        influx = influx.addr
    ));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let (ok_rows, dead_rows) = loop {
        let ok_rows = rows(&influx.query(
            "vigia",
            "SELECT * FROM vigia_ping_round WHERE target = 'lo'",
        ));
        let dead_rows = rows(&influx.query(
            "vigia",
            "SELECT * FROM vigia_ping_round WHERE target = 'dead'",
        ));
        let services = ["influx-port", "influx-ping", "closed-port"].map(|t| {
            rows(&influx.query(
                "vigia",
                &format!("SELECT * FROM vigia_ping_round WHERE target = '{t}'"),
            ))
            .len()
        });
        if ok_rows.len() >= 3 && dead_rows.len() >= 2 && services.iter().all(|n| *n >= 2) {
            break (ok_rows, dead_rows);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "rows so far: {ok_rows:?} {dead_rows:?}\n{}",
            e.stderr()
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    for r in &ok_rows {
        assert_eq!(r["site"], "lab");
        assert_eq!(r["kind"], "server");
        assert_eq!(r["address"], "127.0.0.1");
        assert_eq!(r["ip"], "127.0.0.1");
        assert_eq!(r["sent"], 2);
        assert_eq!(r["received"], 2);
        assert_eq!(r["loss_ratio"], 0);
        assert_eq!(r["status"], "ok");
        let (min, avg, max) = (
            r["min_rtt_seconds"].as_f64().unwrap(),
            r["avg_rtt_seconds"].as_f64().unwrap(),
            r["max_rtt_seconds"].as_f64().unwrap(),
        );
        assert!(0.0 < min && min <= avg && avg <= max && max < 0.1, "{r:?}");
    }
    // One row per round: timestamps one interval apart.
    let times: Vec<i64> = rows(&influx.query(
        "vigia",
        "SELECT sent FROM vigia_ping_round WHERE target = 'lo'",
    ))
    .iter()
    .map(|r| {
        let t = humantime::parse_rfc3339(r["time"].as_str().unwrap()).unwrap();
        t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
    })
    .collect();
    for w in times.windows(2) {
        assert!((w[1] - w[0] - 1000).abs() < 200, "{times:?}");
    }
    for r in &dead_rows {
        assert_eq!(r["sent"], 2);
        assert_eq!(r["received"], 0);
        assert_eq!(r["loss_ratio"], 1);
        assert_eq!(r["status"], "down");
        assert_eq!(r["avg_rtt_seconds"], Value::Null);
    }
    // tcp and http rounds: the same measurement, tagged with their kind, with the
    // probe's duration and, when it failed, why.
    for r in &ok_rows {
        assert_eq!(r["probe"], "icmp");
    }
    let service = |t: &str| {
        rows(&influx.query(
            "vigia",
            &format!("SELECT * FROM vigia_ping_round WHERE target = '{t}'"),
        ))
    };
    for (t, kind) in [("influx-port", "tcp"), ("influx-ping", "http")] {
        for r in service(t) {
            assert_eq!(r["probe"], kind, "{r:?}");
            assert_eq!(r["status"], "ok", "{r:?}");
            assert_eq!(
                (r["sent"].clone(), r["received"].clone()),
                (1.into(), 1.into())
            );
            let d = r["duration_seconds"].as_f64().unwrap();
            assert!(d > 0.0 && d < 0.5, "{r:?}");
            assert_eq!(r["error"], Value::Null);
        }
    }
    for r in service("influx-ping") {
        assert_eq!(r["http_status_code"], 204, "{r:?}");
    }
    for r in service("closed-port") {
        assert_eq!(r["status"], "down");
        assert_eq!(r["received"], 0);
        assert_eq!(r["failure"], "connect");
        assert!(
            r["error"].as_str().unwrap().ends_with("connection refused"),
            "{r:?}"
        );
    }
}
