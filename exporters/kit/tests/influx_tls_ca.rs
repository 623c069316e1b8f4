//! The InfluxDB writer over `https://` to a server whose certificate a private authority
//! signed (a site writing to its NOC's ingress): with `ca_file` naming that authority the
//! points arrive; without it, or with another authority, the TLS handshake fails, nothing
//! arrives and the failure is counted; a `ca_file` that is missing or holds no certificate
//! is a configuration error naming `influxdb.ca_file`. Real certificates from `openssl`.

mod web_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use vigia_kit::exposition::Format;
use vigia_kit::influx::{InfluxConfig, InfluxWriter, Point};
use vigia_kit::Metrics;
use web_support::Pki;

/// An HTTPS server on loopback presenting `server.crt` (signed by the PKI's `ca`) that
/// answers every request 204 and counts the lines it was sent.
async fn tls_server(pki: &Pki) -> (Arc<AtomicUsize>, u16) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (cert, key) = pki.pair("server");
    let certs = rustls_pemfile::certs(&mut std::io::BufReader::new(
        std::fs::File::open(cert).unwrap(),
    ))
    .collect::<Result<Vec<_>, _>>()
    .unwrap();
    let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(
        std::fs::File::open(key).unwrap(),
    ))
    .unwrap()
    .unwrap();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let lines = Arc::new(AtomicUsize::new(0));
    let counted = lines.clone();
    let app = axum::Router::new().fallback(move |body: axum::body::Bytes| {
        let counted = counted.clone();
        async move {
            let text = String::from_utf8_lossy(&body).to_string();
            counted.fetch_add(text.lines().count(), Ordering::SeqCst);
            axum::http::StatusCode::NO_CONTENT
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let app = app.clone();
            tokio::spawn(async move {
                // A client that does not trust the certificate ends here.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let _ = Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app))
                    .await;
            });
        }
    });
    (lines, port)
}

fn sample(metrics: &Metrics, name: &str) -> f64 {
    metrics
        .encode(Format::Classic)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(k, _)| k.split('{').next() == Some(name))
        .map(|(_, v)| v.parse::<f64>().unwrap())
        .sum()
}

fn config(port: u16) -> InfluxConfig {
    let mut cfg = InfluxConfig::v1(format!("https://localhost:{port}"), "vigia");
    cfg.flush_interval = Duration::from_millis(50);
    cfg.max_backoff = Duration::from_millis(200);
    cfg
}

async fn write_two(cfg: &InfluxConfig) -> (InfluxWriter, Metrics) {
    let mut metrics = Metrics::new("vigia-test");
    let writer = InfluxWriter::start(cfg, &mut metrics).unwrap();
    for i in 0..2i64 {
        writer.write(Point::new("m").field("v", i));
    }
    (writer, metrics)
}

#[tokio::test]
async fn ca_file_makes_a_private_authority_trusted() {
    let pki = Pki::generate();
    let (lines, port) = tls_server(&pki).await;
    let mut cfg = config(port);
    cfg.ca_file = Some(pki.path("ca.crt"));
    let (writer, metrics) = write_two(&cfg).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while sample(&metrics, "vigia_influxdb_points_written_total") < 2.0 {
        assert!(Instant::now() < deadline, "points not written over TLS");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(lines.load(Ordering::SeqCst), 2);
    writer.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn without_the_authority_the_server_is_not_trusted_and_nothing_is_sent() {
    let pki = Pki::generate();
    let (lines, port) = tls_server(&pki).await;
    for ca in [None, Some(pki.path("foreign-ca.crt"))] {
        let mut cfg = config(port);
        cfg.ca_file = ca.clone();
        let (writer, metrics) = write_two(&cfg).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while sample(&metrics, "vigia_influxdb_write_errors_total") < 1.0 {
            assert!(Instant::now() < deadline, "no write error counted ({ca:?})");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(sample(&metrics, "vigia_influxdb_points_written_total"), 0.0);
        // Still queued for a retry, not dropped: a fixed CA later delivers them.
        assert_eq!(sample(&metrics, "vigia_influxdb_points_dropped_total"), 0.0);
        writer.shutdown(Duration::from_millis(100)).await;
    }
    assert_eq!(lines.load(Ordering::SeqCst), 0);
}

#[test]
fn a_ca_file_that_cannot_be_used_names_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("not-pem.crt");
    std::fs::write(&not_pem, "hello\n").unwrap();
    for path in [dir.path().join("missing.crt"), not_pem] {
        let mut cfg = InfluxConfig::v1("https://localhost:8443", "vigia");
        cfg.ca_file = Some(path.clone());
        let e = cfg.validate("influxdb").unwrap_err();
        assert_eq!(e.path, "influxdb.ca_file", "{path:?}: {e}");
        assert!(e.message.contains(&path.display().to_string()), "{e}");
    }
}
