//! The InfluxDB writer against a real InfluxDB 1.x server (`influxd` from the Debian
//! package `influxdb`), started privately by each test on free loopback ports with its
//! data in a temporary directory. Proves through `/query` what arrived.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use vigia_kit::exposition::Format;
use vigia_kit::influx::{InfluxConfig, InfluxWriter, Point};
use vigia_kit::Metrics;

/// A private `influxd`: its own config, data, meta and WAL directories, and ports.
struct Influxd {
    dir: tempfile::TempDir,
    config: PathBuf,
    http_port: u16,
    child: Option<Child>,
    client: reqwest::Client,
}

fn influxd_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("influxd"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`influxd` not found in PATH: these tests need the real InfluxDB 1.x server; \
                 install the Debian package `influxdb` (apt-get install influxdb)"
            )
        })
}

fn free_ports<const N: usize>() -> [u16; N] {
    // All listeners are held until every port is known, so the N ports differ.
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port"))
        .collect();
    let mut ports = [0u16; N];
    for (p, l) in ports.iter_mut().zip(&listeners) {
        *p = l.local_addr().unwrap().port();
    }
    ports
}

/// Rewrites `influxd config` output (the packaged defaults) so that everything the server
/// stores goes under `dir` and everything it listens on is on loopback.
fn private_config(defaults: &str, dir: &Path, http_port: u16, rpc_port: u16) -> String {
    let mut out = String::new();
    let mut section = String::new();
    for line in defaults.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            section = trimmed.trim_matches(|c| c == '[' || c == ']').to_string();
        }
        let key = trimmed.split('=').next().unwrap_or("").trim();
        let indent = &line[..line.len() - line.trim_start().len()];
        let replacement = match (section.as_str(), key) {
            ("", "reporting-enabled") => Some("false".to_string()),
            ("", "bind-address") => Some(format!("\"127.0.0.1:{rpc_port}\"")),
            ("meta", "dir") => Some(format!("\"{}\"", dir.join("meta").display())),
            ("data", "dir") => Some(format!("\"{}\"", dir.join("data").display())),
            ("data", "wal-dir") => Some(format!("\"{}\"", dir.join("wal").display())),
            ("data", "query-log-enabled") => Some("false".to_string()),
            ("http", "bind-address") => Some(format!("\"127.0.0.1:{http_port}\"")),
            ("http", "log-enabled") => Some("false".to_string()),
            ("monitor", "store-enabled") => Some("false".to_string()),
            // Services that are off by default; bound to loopback anyway, should a
            // packaged config ever turn one on.
            (_, "bind-address") => Some("\"127.0.0.1:0\"".to_string()),
            _ => None,
        };
        match replacement {
            Some(value) => out.push_str(&format!("{indent}{key} = {value}\n")),
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

impl Influxd {
    async fn start() -> Self {
        let binary = influxd_binary();
        let defaults = Command::new(&binary)
            .arg("config")
            .stderr(Stdio::null())
            .output()
            .expect("run `influxd config`");
        assert!(defaults.status.success(), "`influxd config` failed");
        let defaults = String::from_utf8(defaults.stdout).expect("utf-8 config");
        let dir = tempfile::tempdir().expect("tempdir");
        let [http_port, rpc_port] = free_ports::<2>();
        let text = private_config(&defaults, dir.path(), http_port, rpc_port);
        for needle in [
            format!("127.0.0.1:{http_port}"),
            format!("127.0.0.1:{rpc_port}"),
            dir.path().join("wal").display().to_string(),
        ] {
            assert!(
                text.contains(&needle),
                "config rewrite missed {needle}:\n{text}"
            );
        }
        let config = dir.path().join("influxdb.conf");
        std::fs::write(&config, text).unwrap();
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let mut server = Self {
            dir,
            config,
            http_port,
            child: None,
            client,
        };
        server.run().await;
        server
    }

    /// Starts `influxd` with this config and waits until `/ping` answers.
    async fn run(&mut self) {
        assert!(self.child.is_none(), "influxd is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("influxd.log"))
            .unwrap();
        let child = Command::new(influxd_binary())
            .arg("run")
            .arg("-config")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn influxd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ping = self
                .client
                .get(format!("{}/ping", self.url()))
                .timeout(Duration::from_millis(500))
                .send()
                .await;
            if matches!(&ping, Ok(r) if r.status().as_u16() == 204) {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("influxd exited with {status}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "influxd did not answer /ping within 30 s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no chance to finish requests or flush anything.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    fn log(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("influxd.log")).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    async fn query(&self, db: &str, q: &str) -> serde_json::Value {
        let mut url = reqwest::Url::parse(&format!("{}/query", self.url())).unwrap();
        url.query_pairs_mut()
            .append_pair("db", db)
            .append_pair("q", q);
        let resp = self.client.post(url).send().await.expect("query influxd");
        assert!(resp.status().is_success(), "query {q}: {}", resp.status());
        let body = resp.bytes().await.expect("query answer");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("query answer is JSON");
        assert!(
            body["results"][0]["error"].is_null(),
            "query {q} failed: {body}"
        );
        body
    }

    async fn create_database(&self, db: &str) {
        self.query(db, &format!("CREATE DATABASE \"{db}\"")).await;
    }

    /// The `values` rows of the first series of the first result (empty when none).
    async fn rows(&self, db: &str, q: &str) -> Vec<Vec<serde_json::Value>> {
        let body = self.query(db, q).await;
        let values = &body["results"][0]["series"][0]["values"];
        serde_json::from_value(values.clone()).unwrap_or_default()
    }
}

impl Drop for Influxd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Samples of the classic exposition, keyed by `name{labels}` as printed.
fn scrape(metrics: &Metrics) -> HashMap<String, f64> {
    metrics
        .encode(Format::Classic)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((key.to_string(), value.parse().ok()?))
        })
        .collect()
}

fn sample(metrics: &Metrics, key: &str) -> f64 {
    *scrape(metrics)
        .get(key)
        .unwrap_or_else(|| panic!("{key} missing from /metrics"))
}

fn written(m: &Metrics) -> f64 {
    sample(m, "vigia_influxdb_points_written_total")
}

fn dropped(m: &Metrics, reason: &str) -> f64 {
    sample(
        m,
        &format!("vigia_influxdb_points_dropped_total{{reason=\"{reason}\"}}"),
    )
}

fn write_errors(m: &Metrics, reason: &str) -> f64 {
    sample(
        m,
        &format!("vigia_influxdb_write_errors_total{{reason=\"{reason}\"}}"),
    )
}

async fn wait_for(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A point with a distinct timestamp per sequence number, so InfluxDB keeps each one.
fn numbered(base: SystemTime, seq: u64) -> Point {
    Point::new("points")
        .tag("source", "writer-test")
        .field("seq", seq as i64)
        .timestamp(base + Duration::from_millis(seq))
}

fn base_time() -> SystemTime {
    // Whole seconds, an hour back: inside the default retention policy and shard.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    UNIX_EPOCH + Duration::from_secs(now - 3600)
}

/// Log lines of every writer in this test binary, for asserting what operators read.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || LogSink(sink.clone()))
            .init();
        buf
    })
    .clone()
}

struct LogSink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogSink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        // Still shown by `cargo test` on failure.
        let _ = std::io::stderr().write_all(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn config(server: &Influxd, db: &str) -> InfluxConfig {
    let mut c = InfluxConfig::v1(server.url(), db);
    c.timeout = Duration::from_secs(2);
    c.max_backoff = Duration::from_millis(400);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_while_writing_every_point_arrives_exactly_once() {
    captured_logs();
    let mut server = Influxd::start().await;
    server.create_database("vigia").await;
    let mut cfg = config(&server, "vigia");
    cfg.batch_size = 200;
    cfg.flush_interval = Duration::from_millis(100);
    let mut metrics = Metrics::new("vigia-test");
    let writer = InfluxWriter::start(&cfg, &mut metrics).unwrap();

    // Writes continue through the whole outage: 20 points every 10 ms, bounded in
    // count and time.
    let base = base_time();
    let sent = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let (writer, sent, stop) = (writer.clone(), sent.clone(), stop.clone());
        tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut seq = 0u64;
            while !stop.load(Ordering::SeqCst) && seq < 40_000 && Instant::now() < deadline {
                for _ in 0..20 {
                    writer.write(numbered(base, seq));
                    seq += 1;
                }
                sent.store(seq, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };

    wait_for("first points delivered", Duration::from_secs(10), || {
        written(&metrics) > 0.0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.kill();
    let sent_at_kill = sent.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let sent_before_restart = sent.load(Ordering::SeqCst);
    let queued_in_outage = sample(&metrics, "vigia_influxdb_queue_points");
    server.run().await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::SeqCst);
    producer.await.unwrap();
    let total = sent.load(Ordering::SeqCst);
    writer.shutdown(Duration::from_secs(20)).await;

    assert!(
        sent_before_restart > sent_at_kill + 500,
        "writes continued during the outage ({sent_at_kill} -> {sent_before_restart})"
    );
    assert!(
        queued_in_outage >= 500.0,
        "queue held the outage's points: {queued_in_outage}"
    );
    assert!(
        write_errors(&metrics, "network") + write_errors(&metrics, "timeout") >= 1.0,
        "the outage was seen as failed writes"
    );
    for reason in ["queue_full", "rejected", "invalid", "shutdown"] {
        assert_eq!(dropped(&metrics, reason), 0.0, "dropped {reason}");
    }
    assert_eq!(written(&metrics), total as f64);
    assert_eq!(sample(&metrics, "vigia_influxdb_queue_points"), 0.0);
    assert!(sample(&metrics, "vigia_influxdb_last_success_timestamp_seconds") > 1.0e9);

    // Every sequence number once: the count and the sum of 0..total both match, and no
    // timestamp holds a second value (a duplicate would need a second timestamp).
    let rows = server
        .rows(
            "vigia",
            "SELECT count(seq), sum(seq), min(seq), max(seq) FROM points",
        )
        .await;
    let n = total as i64;
    assert_eq!(
        rows[0][1..].to_vec(),
        vec![
            serde_json::json!(n),
            serde_json::json!(n * (n - 1) / 2),
            serde_json::json!(0),
            serde_json::json!(n - 1)
        ],
        "count, sum, min, max of seq"
    );
    // Queryable by the agent host and time (seed 004): the writer tagged every row with
    // this machine's hostname, as no `tags` were configured.
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let base_ns = base.duration_since(UNIX_EPOCH).unwrap().as_nanos();
    let rows = server
        .rows(
            "vigia",
            &format!(
                "SELECT count(seq) FROM points WHERE \"host\" = '{}' AND time >= {base_ns} AND time < {}",
                hostname.trim(),
                base_ns + u128::from(total) * 1_000_000
            ),
        )
        .await;
    assert_eq!(rows[0][1], serde_json::json!(n), "rows by host and time");
    let rows = server
        .rows(
            "vigia",
            "SELECT count(seq) FROM points WHERE \"host\" = 'another-agent'",
        )
        .await;
    assert!(rows.is_empty(), "no row under another host: {rows:?}");
    eprintln!(
        "outage test: {total} points, {sent_at_kill}..{sent_before_restart} written while the server was down"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_writing_one_database_stay_apart_by_their_host_tag() {
    captured_logs();
    let server = Influxd::start().await;
    server.create_database("vigia").await;
    let base = base_time();
    let mut writers = Vec::new();
    for (agent, count) in [("agent-a", 3u64), ("agent-b", 5)] {
        let mut cfg = config(&server, "vigia");
        cfg.tags.insert("host".into(), agent.into());
        cfg.tags.insert("site".into(), "lab".into());
        let mut metrics = Metrics::new("vigia-test");
        let writer = InfluxWriter::start(&cfg, &mut metrics).unwrap();
        // The same series and timestamps from both: only the host tag tells them apart.
        for seq in 0..count {
            writer.write(numbered(base, seq));
        }
        writers.push(writer);
    }
    for w in &writers {
        w.shutdown(Duration::from_secs(10)).await;
    }
    for (agent, count) in [("agent-a", 3), ("agent-b", 5)] {
        let rows = server
            .rows(
                "vigia",
                &format!(
                    "SELECT count(seq) FROM points WHERE \"host\" = '{agent}' AND \"site\" = 'lab'"
                ),
            )
            .await;
        assert_eq!(rows[0][1], serde_json::json!(count), "rows of {agent}");
    }
    let body = server
        .query("vigia", "SHOW TAG VALUES FROM points WITH KEY = \"host\"")
        .await;
    let hosts: Vec<&str> = body["results"][0]["series"][0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v[1].as_str().unwrap())
        .collect();
    assert_eq!(hosts, ["agent-a", "agent-b"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_longer_than_the_queue_keeps_the_newest_points() {
    captured_logs();
    let mut server = Influxd::start().await;
    server.create_database("vigia").await;
    let mut cfg = config(&server, "vigia");
    cfg.batch_size = 50;
    cfg.queue_capacity = 500;
    cfg.flush_interval = Duration::from_millis(50);
    let mut metrics = Metrics::new("vigia-test");
    let writer = InfluxWriter::start(&cfg, &mut metrics).unwrap();
    assert_eq!(
        sample(&metrics, "vigia_influxdb_queue_capacity_points"),
        500.0
    );
    let base = base_time();

    const BEFORE: u64 = 300;
    const DURING: u64 = 2000;
    for seq in 0..BEFORE {
        writer.write(numbered(base, seq));
        if seq % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    wait_for(
        "points before the outage delivered",
        Duration::from_secs(10),
        || written(&metrics) == BEFORE as f64,
    )
    .await;

    server.kill();
    for seq in BEFORE..BEFORE + DURING {
        writer.write(numbered(base, seq));
        if seq % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    // While the server is down the queue is full and everything beyond it was evicted.
    assert_eq!(sample(&metrics, "vigia_influxdb_queue_points"), 500.0);
    assert_eq!(dropped(&metrics, "queue_full"), (DURING - 500) as f64);

    server.run().await;
    writer.shutdown(Duration::from_secs(20)).await;

    let total = BEFORE + DURING;
    let lost = dropped(&metrics, "queue_full");
    assert_eq!(lost, (DURING - 500) as f64);
    for reason in ["rejected", "invalid", "shutdown"] {
        assert_eq!(dropped(&metrics, reason), 0.0, "dropped {reason}");
    }
    assert_eq!(written(&metrics), total as f64 - lost);

    let rows = server.rows("vigia", "SELECT seq FROM points").await;
    let stored: Vec<u64> = rows.iter().map(|r| r[1].as_u64().unwrap()).collect();
    assert_eq!(
        stored.len() as f64,
        total as f64 - lost,
        "rows = written - dropped"
    );
    let mut present = vec![false; total as usize];
    for s in &stored {
        assert!(!present[*s as usize], "seq {s} stored twice");
        present[*s as usize] = true;
    }
    let missing: Vec<u64> = (0..total).filter(|s| !present[*s as usize]).collect();
    let (first, last) = (missing[0], *missing.last().unwrap());
    assert_eq!(
        missing.len() as u64,
        last - first + 1,
        "the dropped points are one run of the oldest waiting ones"
    );
    assert!(first >= BEFORE, "nothing sent before the outage was lost");
    assert!(
        first - BEFORE <= cfg.batch_size as u64,
        "only the batch in flight ({} points) was kept ahead of the dropped run",
        first - BEFORE
    );
    assert!(
        (last + 1..total).all(|s| present[s as usize]),
        "the newest points all survived"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_made_after_the_first_writes_gets_every_point_once() {
    // A stack that starts together: the exporter writes before InfluxDB's setup has made
    // the database. The 404s are retried (logged with the server's message and counted),
    // and once the database exists every point arrives, none twice.
    let logs = captured_logs();
    let server = Influxd::start().await;
    let mut cfg = config(&server, "made_late");
    cfg.flush_interval = Duration::from_millis(50);
    cfg.max_backoff = Duration::from_millis(400);
    let mut metrics = Metrics::new("vigia-test");
    let writer = InfluxWriter::start(&cfg, &mut metrics).unwrap();
    let base = base_time();
    for seq in 0..10 {
        writer.write(numbered(base, seq));
    }
    wait_for("two 404s counted", Duration::from_secs(10), || {
        write_errors(&metrics, "not_found") >= 2.0
    })
    .await;
    assert_eq!(dropped(&metrics, "rejected"), 0.0);
    assert_eq!(written(&metrics), 0.0);
    assert_eq!(sample(&metrics, "vigia_influxdb_queue_points"), 10.0);
    let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    let line = text
        .lines()
        .find(|l| l.contains("made_late"))
        .unwrap_or_else(|| panic!("no log line names the database:\n{text}"));
    assert!(line.contains("database not found"), "{line}");
    assert!(line.contains("not_found"), "{line}");

    server.create_database("made_late").await;
    for seq in 10..20 {
        writer.write(numbered(base, seq));
    }
    wait_for("all 20 written", Duration::from_secs(10), || {
        written(&metrics) == 20.0
    })
    .await;
    writer.shutdown(Duration::from_secs(5)).await;
    assert_eq!(write_errors(&metrics, "client_error"), 0.0);
    for reason in ["queue_full", "rejected", "invalid", "shutdown"] {
        assert_eq!(dropped(&metrics, reason), 0.0, "{reason}");
    }
    let rows = server
        .rows("made_late", "SELECT count(seq), sum(seq) FROM points")
        .await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0][1].as_f64(), Some(20.0), "count: {rows:?}");
    assert_eq!(
        rows[0][2].as_f64(),
        Some((0..20).sum::<u64>() as f64),
        "sum: {rows:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_write_counts_only_the_points_influxdb_refused() {
    captured_logs();
    let server = Influxd::start().await;
    server.create_database("partial").await;
    let mut cfg = config(&server, "partial");
    cfg.batch_size = 4;
    cfg.flush_interval = Duration::from_secs(60);
    let mut metrics = Metrics::new("vigia-test");
    let writer = InfluxWriter::start(&cfg, &mut metrics).unwrap();
    let base = base_time();
    let at = |ms: u64| base + Duration::from_millis(ms);

    // The first batch makes `v` an integer field...
    for ms in 0..4 {
        writer.write(Point::new("typed").field("v", ms as i64).timestamp(at(ms)));
    }
    wait_for("first batch", Duration::from_secs(10), || {
        written(&metrics) == 4.0
    })
    .await;
    // ...so the floats of the second batch conflict and InfluxDB writes only the rest.
    writer.write(Point::new("typed").field("v", 1.5).timestamp(at(10)));
    writer.write(Point::new("typed").field("v", 11i64).timestamp(at(11)));
    writer.write(Point::new("typed").field("v", 2.5).timestamp(at(12)));
    writer.write(Point::new("typed").field("v", 13i64).timestamp(at(13)));
    wait_for("second batch", Duration::from_secs(10), || {
        dropped(&metrics, "rejected") > 0.0
    })
    .await;
    assert_eq!(dropped(&metrics, "rejected"), 2.0);
    assert_eq!(written(&metrics), 6.0);
    assert_eq!(write_errors(&metrics, "client_error"), 1.0);
    let rows = server.rows("partial", "SELECT count(v) FROM typed").await;
    assert_eq!(rows[0][1], serde_json::json!(6));
    writer.shutdown(Duration::from_secs(5)).await;
}

#[test]
fn private_config_moves_every_path_and_listener() {
    let defaults = "reporting-enabled = true\nbind-address = \"127.0.0.1:8088\"\n\n[meta]\n  dir = \"/var/lib/influxdb/meta\"\n\n[data]\n  dir = \"/var/lib/influxdb/data\"\n  wal-dir = \"/var/lib/influxdb/wal\"\n\n[http]\n  bind-address = \":8086\"\n\n[[udp]]\n  enabled = false\n  bind-address = \":8089\"\n";
    let text = private_config(defaults, Path::new("private-root"), 1111, 2222);
    assert!(text.contains("reporting-enabled = false\n"));
    assert!(text.contains("bind-address = \"127.0.0.1:2222\"\n"));
    assert!(text.contains("  dir = \"private-root/meta\"\n"));
    assert!(text.contains("  wal-dir = \"private-root/wal\"\n"));
    assert!(text.contains("  bind-address = \"127.0.0.1:1111\"\n"));
    assert!(text.contains("  bind-address = \"127.0.0.1:0\"\n"));
    assert!(!text.contains("/var/lib"), "{text}");
}
