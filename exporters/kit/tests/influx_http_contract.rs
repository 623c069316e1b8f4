//! What the InfluxDB writer puts on the wire, recorded by a small HTTP server on
//! loopback: the `api: v2` request (no InfluxDB 2 server can run here), the v1 query and
//! headers, gzip bodies, retries of the same bytes after a 5xx, no retry after a 401,
//! the default `host` tag, batches of at most `batch_size` lines in order, the retry
//! delay's growth and cap, and what shutdown does with the queue.

use std::collections::{HashMap, VecDeque};
use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use vigia_kit::exposition::Format;
use vigia_kit::influx::{InfluxApi, InfluxConfig, InfluxWriter, Point};
use vigia_kit::Metrics;

#[derive(Debug, Clone)]
struct Recorded {
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    headers: HeaderMap,
    body: Vec<u8>,
    arrived: Instant,
}

#[derive(Default)]
struct Recorder {
    requests: Mutex<Vec<Recorded>>,
    /// Answers for the next requests, in order; 204 once they run out.
    script: Mutex<VecDeque<(StatusCode, &'static str)>>,
}

async fn record(
    State(rec): State<Arc<Recorder>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let query = uri
        .query()
        .map(|q| {
            q.split('&')
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    (k.to_string(), v.to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    let arrived = Instant::now();
    rec.requests.lock().unwrap().push(Recorded {
        arrived,
        method,
        path: uri.path().to_string(),
        query,
        headers,
        body: body.to_vec(),
    });
    let (status, body) = rec
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or((StatusCode::NO_CONTENT, ""));
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
}

async fn recorder() -> (Arc<Recorder>, SocketAddr) {
    let rec = Arc::new(Recorder::default());
    let app = axum::Router::new().fallback(record).with_state(rec.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (rec, addr)
}

fn requests(rec: &Recorder) -> Vec<Recorded> {
    rec.requests.lock().unwrap().clone()
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn sample(metrics: &Metrics, key: &str) -> f64 {
    let text = metrics.encode(Format::Classic);
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            (k == key).then(|| v.parse().unwrap())
        })
        .unwrap_or_else(|| panic!("{key} missing from:\n{text}"))
}

fn at(nanos: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(nanos)
}

fn three_points() -> Vec<Point> {
    vec![
        Point::new("tcp_connections")
            .tag("port", "443")
            .tag("state", "established")
            .field("count", 12i64)
            .timestamp(at(1_700_000_000_000_000_001)),
        Point::new("tcp_connections")
            .tag("port", "22")
            .tag("state", "time_wait")
            .field("count", 3i64)
            .timestamp(at(1_700_000_000_000_000_002)),
        Point::new("anomaly")
            .tag("host", "edge 1")
            .field("score", 0.25)
            .field("note", "ok")
            .timestamp(at(1_700_000_000_000_000_003)),
    ]
}

/// The writer adds the configured `host` to the first two; the third sets its own.
const THREE_LINES: &str =
    "tcp_connections,host=agent-1,port=443,state=established count=12i 1700000000000000001\n\
tcp_connections,host=agent-1,port=22,state=time_wait count=3i 1700000000000000002\n\
anomaly,host=edge\\ 1 score=0.25,note=\"ok\" 1700000000000000003\n";

/// A v1 config whose points get `host=agent-1` unless they set `host` themselves.
fn agent_config(url: String, database: &str) -> InfluxConfig {
    let mut cfg = InfluxConfig::v1(url, database);
    cfg.tags.insert("host".into(), "agent-1".into());
    cfg
}

fn query_map(r: &Recorded) -> HashMap<String, String> {
    r.query.iter().cloned().collect()
}

#[tokio::test]
async fn v2_request_has_the_documented_method_path_query_headers_and_body() {
    let (rec, addr) = recorder().await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("influx-token");
    std::fs::write(&token_file, "s3cr3t-t0ken==\n").unwrap();
    let mut cfg = agent_config(format!("http://{addr}"), "unused");
    cfg.api = InfluxApi::V2;
    cfg.database = None;
    cfg.org = Some("noc".into());
    cfg.bucket = Some("ports".into());
    cfg.token_file = Some(token_file);
    cfg.batch_size = 3;
    let mut metrics = Metrics::new("vigia-test");
    let writer = InfluxWriter::start(&cfg, &mut metrics).unwrap();
    for p in three_points() {
        writer.write(p);
    }
    wait_for("one request", || !requests(&rec).is_empty()).await;
    wait_for("written counted", || {
        sample(&metrics, "vigia_influxdb_points_written_total") == 3.0
    })
    .await;

    let reqs = requests(&rec);
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.method, Method::POST);
    assert_eq!(r.path, "/api/v2/write");
    assert_eq!(
        r.query,
        vec![
            ("org".to_string(), "noc".to_string()),
            ("bucket".to_string(), "ports".to_string()),
            ("precision".to_string(), "ns".to_string()),
        ]
    );
    assert_eq!(r.headers["authorization"], "Token s3cr3t-t0ken==");
    assert_eq!(r.headers["content-type"], "text/plain; charset=utf-8");
    assert!(r.headers.get("content-encoding").is_none());
    assert_eq!(String::from_utf8(r.body.clone()).unwrap(), THREE_LINES);
    writer.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn v1_request_names_database_and_retention_policy_and_sends_no_token_when_none() {
    let (rec, addr) = recorder().await;
    // A path prefix, as behind a reverse proxy.
    let mut cfg = InfluxConfig::v1(format!("http://{addr}/influx/"), "vigia db");
    cfg.retention_policy = Some("two_weeks".into());
    cfg.batch_size = 3;
    let mut metrics = Metrics::new("vigia-test");
    let writer = InfluxWriter::start(&cfg, &mut metrics).unwrap();
    for p in three_points() {
        writer.write(p);
    }
    wait_for("one request", || !requests(&rec).is_empty()).await;
    let r = &requests(&rec)[0];
    assert_eq!(r.method, Method::POST);
    assert_eq!(r.path, "/influx/write");
    assert_eq!(
        query_map(r),
        HashMap::from([
            ("db".to_string(), "vigia+db".to_string()),
            ("rp".to_string(), "two_weeks".to_string()),
            ("precision".to_string(), "ns".to_string()),
        ])
    );
    // The test process has no VIGIA_INFLUXDB_TOKEN and the config no token_file.
    assert!(std::env::var_os("VIGIA_INFLUXDB_TOKEN").is_none());
    assert!(r.headers.get("authorization").is_none());
    // No `tags` configured: `host` is this machine's hostname.
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let expected = THREE_LINES.replace(
        "host=agent-1",
        &format!("host={}", hostname.trim().replace(' ', "\\ ")),
    );
    assert_eq!(String::from_utf8(r.body.clone()).unwrap(), expected);
    writer.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn server_error_is_retried_with_the_same_gzip_body() {
    let (rec, addr) = recorder().await;
    rec.script.lock().unwrap().extend([
        (
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"error":"engine: cache maximum memory size exceeded"}"#,
        ),
        (StatusCode::INTERNAL_SERVER_ERROR, r#"{"error":"timeout"}"#),
    ]);
    let mut cfg = agent_config(format!("http://{addr}"), "vigia");
    cfg.gzip = true;
    cfg.batch_size = 3;
    cfg.max_backoff = Duration::from_millis(200);
    let mut metrics = Metrics::new("vigia-test");
    let writer = InfluxWriter::start(&cfg, &mut metrics).unwrap();
    for p in three_points() {
        writer.write(p);
    }
    wait_for("three attempts", || requests(&rec).len() == 3).await;
    wait_for("written counted", || {
        sample(&metrics, "vigia_influxdb_points_written_total") == 3.0
    })
    .await;
    let reqs = requests(&rec);
    for r in &reqs {
        assert_eq!(r.headers["content-encoding"], "gzip");
        let mut text = String::new();
        flate2::read::GzDecoder::new(&r.body[..])
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, THREE_LINES);
        assert_eq!(r.body, reqs[0].body, "a retry resends the same bytes");
    }
    assert_eq!(
        sample(
            &metrics,
            "vigia_influxdb_write_errors_total{reason=\"server_error\"}"
        ),
        2.0
    );
    assert_eq!(
        sample(&metrics, "vigia_errors_total{source=\"influxdb\"}"),
        2.0
    );
    assert_eq!(
        sample(
            &metrics,
            "vigia_influxdb_points_dropped_total{reason=\"rejected\"}"
        ),
        0.0
    );
    writer.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn unauthorized_is_not_retried() {
    let (rec, addr) = recorder().await;
    rec.script.lock().unwrap().push_back((
        StatusCode::UNAUTHORIZED,
        r#"{"code":"unauthorized","message":"unauthorized access"}"#,
    ));
    let mut cfg = agent_config(format!("http://{addr}"), "vigia");
    cfg.batch_size = 3;
    let mut metrics = Metrics::new("vigia-test");
    let writer = InfluxWriter::start(&cfg, &mut metrics).unwrap();
    for p in three_points() {
        writer.write(p);
    }
    wait_for("rejected counted", || {
        sample(
            &metrics,
            "vigia_influxdb_points_dropped_total{reason=\"rejected\"}",
        ) == 3.0
    })
    .await;
    // Several initial backoffs long: a retry would have arrived by now.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(requests(&rec).len(), 1);
    assert_eq!(
        sample(
            &metrics,
            "vigia_influxdb_write_errors_total{reason=\"client_error\"}"
        ),
        1.0
    );
    assert_eq!(sample(&metrics, "vigia_influxdb_points_written_total"), 0.0);
    writer.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn shutdown_flushes_what_is_queued_before_the_interval() {
    let (rec, addr) = recorder().await;
    let mut cfg = agent_config(format!("http://{addr}"), "vigia");
    cfg.flush_interval = Duration::from_secs(3600);
    let mut metrics = Metrics::new("vigia-test");
    let writer = InfluxWriter::start(&cfg, &mut metrics).unwrap();
    for p in three_points() {
        writer.write(p);
    }
    assert_eq!(sample(&metrics, "vigia_influxdb_queue_points"), 3.0);
    assert!(
        requests(&rec).is_empty(),
        "nothing sent before the interval"
    );
    writer.shutdown(Duration::from_secs(5)).await;
    let reqs = requests(&rec);
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        String::from_utf8(reqs[0].body.clone()).unwrap(),
        THREE_LINES
    );
    assert_eq!(sample(&metrics, "vigia_influxdb_points_written_total"), 3.0);
    assert_eq!(sample(&metrics, "vigia_influxdb_queue_points"), 0.0);

    // After shutdown nothing is accepted, and that is counted too.
    writer.write(Point::new("late").field("v", 1i64));
    assert_eq!(
        sample(
            &metrics,
            "vigia_influxdb_points_dropped_total{reason=\"shutdown\"}"
        ),
        1.0
    );
}

#[tokio::test]
async fn shutdown_gives_up_within_its_bound_and_counts_what_is_left() {
    // A loopback port with nothing listening: every attempt is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = agent_config(format!("http://127.0.0.1:{port}"), "vigia");
    cfg.batch_size = 2;
    cfg.flush_interval = Duration::from_millis(20);
    let mut metrics = Metrics::new("vigia-test");
    let writer = InfluxWriter::start(&cfg, &mut metrics).unwrap();
    for p in three_points() {
        writer.write(p);
    }
    wait_for("a refused attempt", || {
        sample(
            &metrics,
            "vigia_influxdb_write_errors_total{reason=\"network\"}",
        ) >= 1.0
    })
    .await;
    let started = Instant::now();
    writer.shutdown(Duration::from_millis(300)).await;
    let took = started.elapsed();
    // Generous margin for a loaded machine; without the bound it would retry forever.
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    assert_eq!(
        sample(
            &metrics,
            "vigia_influxdb_points_dropped_total{reason=\"shutdown\"}"
        ),
        3.0
    );
    assert_eq!(sample(&metrics, "vigia_influxdb_queue_points"), 0.0);
    assert_eq!(sample(&metrics, "vigia_influxdb_points_written_total"), 0.0);
}

#[tokio::test]
async fn invalid_points_are_counted_not_sent() {
    let (rec, addr) = recorder().await;
    let mut cfg = agent_config(format!("http://{addr}"), "vigia");
    cfg.batch_size = 1;
    let mut metrics = Metrics::new("vigia-test");
    let writer = InfluxWriter::start(&cfg, &mut metrics).unwrap();
    writer.write(Point::new("m").field("v", f64::NAN));
    writer.write(Point::new("m").tag("only", "tags"));
    writer.write(Point::new("m").field("v", 1i64).timestamp(at(7)));
    wait_for("the valid point", || !requests(&rec).is_empty()).await;
    assert_eq!(
        sample(
            &metrics,
            "vigia_influxdb_points_dropped_total{reason=\"invalid\"}"
        ),
        2.0
    );
    assert_eq!(requests(&rec)[0].body, b"m,host=agent-1 v=1i 7\n");
    writer.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn start_refuses_a_bad_config_with_the_field_path() {
    let mut cfg = InfluxConfig::v1("http://127.0.0.1:1", "vigia");
    cfg.batch_size = 200_000;
    let mut metrics = Metrics::new("vigia-test");
    let err = InfluxWriter::start(&cfg, &mut metrics).unwrap_err();
    assert_eq!(err.path, "influxdb.batch_size");
    assert!(err.to_string().contains("queue_capacity"), "{err}");
}

fn seq_point(seq: u64) -> Point {
    Point::new("seq")
        .field("n", seq as i64)
        .timestamp(at(1_700_000_000_000_000_000 + seq))
}

fn body_lines(r: &Recorded) -> Vec<String> {
    String::from_utf8(r.body.clone())
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn a_queue_longer_than_batch_size_goes_out_in_batches_in_order() {
    let (rec, addr) = recorder().await;
    // The first batch fails once, so the rest queue up behind it while it waits.
    rec.script
        .lock()
        .unwrap()
        .push_back((StatusCode::SERVICE_UNAVAILABLE, r#"{"error":"busy"}"#));
    let mut cfg = agent_config(format!("http://{addr}"), "vigia");
    cfg.batch_size = 4;
    // Only full batches go out before shutdown: the sizes are known exactly.
    cfg.flush_interval = Duration::from_secs(3600);
    let mut metrics = Metrics::new("vigia-test");
    let writer = InfluxWriter::start(&cfg, &mut metrics).unwrap();
    for seq in 0..4 {
        writer.write(seq_point(seq));
    }
    wait_for("the first attempt", || !requests(&rec).is_empty()).await;
    for seq in 4..13 {
        writer.write(seq_point(seq));
    }
    assert!(
        sample(&metrics, "vigia_influxdb_queue_points") >= 9.0,
        "more than batch_size points queued"
    );
    wait_for("the full batches", || requests(&rec).len() == 4).await;
    writer.shutdown(Duration::from_secs(5)).await;

    let reqs = requests(&rec);
    let sizes: Vec<usize> = reqs.iter().map(|r| body_lines(r).len()).collect();
    assert_eq!(
        sizes,
        [4, 4, 4, 4, 1],
        "the failed batch, its retry, then the rest"
    );
    assert_eq!(reqs[0].body, reqs[1].body, "the retry is the same batch");
    let delivered: Vec<String> = reqs[1..].iter().flat_map(body_lines).collect();
    let expected: Vec<String> = (0..13)
        .map(|seq| {
            seq_point(seq)
                .tag("host", "agent-1")
                .to_line(at(0), false)
                .unwrap()
                .trim_end()
                .to_string()
        })
        .collect();
    assert_eq!(
        delivered, expected,
        "every point once, in the order written"
    );
    assert_eq!(
        sample(&metrics, "vigia_influxdb_points_written_total"),
        13.0
    );
}

#[tokio::test]
async fn retry_delay_doubles_from_100ms_and_stops_at_max_backoff() {
    let (rec, addr) = recorder().await;
    const FAILURES: usize = 8;
    rec.script.lock().unwrap().extend(
        std::iter::repeat((StatusCode::SERVICE_UNAVAILABLE, r#"{"error":"down"}"#)).take(FAILURES),
    );
    let mut cfg = agent_config(format!("http://{addr}"), "vigia");
    cfg.batch_size = 1;
    cfg.max_backoff = Duration::from_millis(500);
    let mut metrics = Metrics::new("vigia-test");
    let writer = InfluxWriter::start(&cfg, &mut metrics).unwrap();
    writer.write(seq_point(0));
    wait_for("every attempt", || requests(&rec).len() == FAILURES + 1).await;
    wait_for("written counted", || {
        sample(&metrics, "vigia_influxdb_points_written_total") == 1.0
    })
    .await;
    writer.shutdown(Duration::from_secs(5)).await;

    let reqs = requests(&rec);
    let gaps: Vec<Duration> = reqs
        .windows(2)
        .map(|w| w[1].arrived - w[0].arrived)
        .collect();
    // Delay before attempt n+1: the backoff (100 ms doubled per failure, at most 500 ms)
    // with jitter, so between half of it and all of it. A loaded machine only adds time,
    // so the lower bounds are exact; the upper ones get a whole second of slack.
    let backoff = [100u64, 200, 400, 500, 500, 500, 500, 500].map(Duration::from_millis);
    let slack = Duration::from_secs(1);
    eprintln!("gaps between attempts: {gaps:?}");
    for (i, (gap, b)) in gaps.iter().zip(backoff).enumerate() {
        assert!(
            *gap >= b / 2,
            "gap {i} is {gap:?}, shorter than half its backoff {b:?}: {gaps:?}"
        );
        assert!(
            *gap <= b + slack,
            "gap {i} is {gap:?}, far longer than its backoff {b:?}: {gaps:?}"
        );
    }
    // Growth: the third delay is at least twice the longest possible first one.
    assert!(gaps[2] >= 2 * backoff[0], "{gaps:?}");
    // The cap: uncapped, the sixth delay would be at least 1.6 s (3.2 s halved) and the
    // eighth at least 6.4 s; capped, every one of them stays under 1.5 s.
    for gap in &gaps[5..] {
        assert!(*gap < Duration::from_millis(1500), "not capped: {gaps:?}");
    }
    assert_eq!(
        sample(
            &metrics,
            "vigia_influxdb_write_errors_total{reason=\"server_error\"}"
        ),
        FAILURES as f64
    );
}
