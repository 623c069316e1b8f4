//! The push to a real InfluxDB 1.x (`influxd` from the Debian package `influxdb`), started
//! privately on loopback: the counts the exporter reads must arrive as rows.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, unused_ports, Exporter};

fn influxd_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("influxd"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`influxd` not found in PATH: this test needs the real InfluxDB 1.x server; \
                 install the Debian package `influxdb`"
            )
        })
}

/// A private influxd: data under a temporary directory, listening on loopback only.
struct Influxd {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Influxd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Rewrites the packaged defaults (`influxd config`): storage under `dir`, every listener
/// on loopback, no reporting.
fn private_config(defaults: &str, dir: &Path, http_port: u16, rpc_port: u16) -> String {
    let mut out = String::new();
    let mut section = String::new();
    for line in defaults.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            section = trimmed.trim_matches(['[', ']']).to_string();
        }
        let key = trimmed.split('=').next().unwrap_or("").trim();
        let value = match (section.as_str(), key) {
            ("", "reporting-enabled") => Some("false".to_string()),
            ("", "bind-address") => Some(format!("\"127.0.0.1:{rpc_port}\"")),
            ("meta", "dir") => Some(format!("\"{}\"", dir.join("meta").display())),
            ("data", "dir") => Some(format!("\"{}\"", dir.join("data").display())),
            ("data", "wal-dir") => Some(format!("\"{}\"", dir.join("wal").display())),
            ("http", "bind-address") => Some(format!("\"127.0.0.1:{http_port}\"")),
            ("http", "log-enabled") => Some("false".to_string()),
            ("monitor", "store-enabled") => Some("false".to_string()),
            (_, "bind-address") => Some("\"127.0.0.1:0\"".to_string()),
            _ => None,
        };
        match value {
            Some(v) => out.push_str(&format!("{key} = {v}\n")),
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

fn start_influxd() -> Influxd {
    let binary = influxd_binary();
    let defaults = Command::new(&binary)
        .arg("config")
        .stderr(Stdio::null())
        .output()
        .expect("run `influxd config`");
    assert!(defaults.status.success(), "`influxd config` failed");
    let dir = tempfile::tempdir().unwrap();
    let (http_port, rpc_port) = (free_port(), free_port());
    assert_ne!(http_port, rpc_port);
    let config = dir.path().join("influxdb.conf");
    let text = private_config(
        &String::from_utf8_lossy(&defaults.stdout),
        dir.path(),
        http_port,
        rpc_port,
    );
    assert!(text.contains(&format!("127.0.0.1:{http_port}")), "{text}");
    std::fs::write(&config, text).unwrap();
    let log = std::fs::File::create(dir.path().join("influxd.log")).unwrap();
    let child = Command::new(&binary)
        .arg("run")
        .arg("-config")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start influxd");
    let addr: SocketAddr = format!("127.0.0.1:{http_port}").parse().unwrap();
    let mut server = Influxd {
        child,
        addr,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok((204, _)) = common::http_request(addr, "GET", "/ping") {
            return server;
        }
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!("influxd exited with {status}");
        }
        assert!(
            Instant::now() < deadline,
            "influxd did not answer /ping within 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn query(server: &Influxd, method: &str, q: &str) -> serde_json::Value {
    let path = format!("/query?db=vigia&q={}", common::percent_encode(q));
    let (status, body) = common::http_request(server.addr, method, &path).expect("query influxd");
    assert_eq!(status, 200, "{q}: {body}");
    let value: serde_json::Value = serde_json::from_str(&body).expect("JSON answer");
    assert!(value["results"][0]["error"].is_null(), "{q}: {value}");
    value
}

/// The single value of a `SELECT last(...)` answer, if there is a row yet.
fn last_value(answer: &serde_json::Value) -> Option<i64> {
    answer["results"][0]["series"][0]["values"][0][1].as_i64()
}

#[test]
fn pushed_counts_arrive_as_rows_in_a_real_influxdb() {
    let influxd = start_influxd();
    query(&influxd, "POST", "CREATE DATABASE vigia");
    let port = unused_ports(1)[0];
    let _listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let _exporter = Exporter::start(&format!(
        "ports: [{port}]\nhost: vigia-test\ninfluxdb_interval: 1s\ninfluxdb:\n  url: http://{}\n  database: vigia\n  flush_interval: 100ms\n",
        influxd.addr
    ));

    let listen = format!(
        "SELECT last(\"count\") FROM \"vigia_port_connections\" WHERE \"host\" = 'vigia-test' AND \"port\" = '{port}' AND \"side\" = 'local' AND \"state\" = 'listen'"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let value = loop {
        let answer = query(&influxd, "GET", &listen);
        if let Some(v) = last_value(&answer) {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "no row arrived within 60 s: {answer}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(value, 1, "one listener on port {port}");

    let established = format!(
        "SELECT last(\"count\") FROM \"vigia_port_connections\" WHERE \"host\" = 'vigia-test' AND \"port\" = '{port}' AND \"side\" = 'remote' AND \"state\" = 'established'"
    );
    assert_eq!(
        last_value(&query(&influxd, "GET", &established)),
        Some(0),
        "zeros are pushed too"
    );

    let host_listen = "SELECT last(\"count\") FROM \"vigia_tcp_connections\" WHERE \"host\" = 'vigia-test' AND \"state\" = 'listen'";
    let host = last_value(&query(&influxd, "GET", host_listen)).expect("host-wide row");
    assert!(
        host >= 2,
        "host-wide listeners include ours and influxd's: {host}"
    );

    let tags = query(
        &influxd,
        "GET",
        "SHOW TAG KEYS FROM \"vigia_port_connections\"",
    );
    let keys: Vec<&str> = tags["results"][0]["series"][0]["values"]
        .as_array()
        .expect("tag keys")
        .iter()
        .filter_map(|v| v[0].as_str())
        .collect();
    assert_eq!(keys, ["host", "port", "side", "state"]);
}
