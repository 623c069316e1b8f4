//! `/metrics` as a scraper sees it, from the kit's real server on a loopback port:
//! the format follows the `Accept` header Prometheus sends (OpenMetrics, ending in
//! `# EOF`), anything else gets the classic 0.0.4 text, and `Accept-Encoding: gzip`
//! gets a gzip body.

mod web_support;

use std::io::Read as _;

use reqwest::header::{ACCEPT, ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE};
use vigia_kit::web_config::WebConfig;
use vigia_kit::Metrics;
use web_support::TestServer;

/// A server whose registry holds a counter too (`vigia_errors_total{source="test"}`),
/// the family whose name differs between the formats.
fn server() -> TestServer {
    let metrics = Metrics::new("vigia-test");
    metrics.errors().touch("test");
    TestServer::start_with(WebConfig::none(), metrics)
}

/// What Prometheus 2.x sends when scraping (scrape_protocols' default order).
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
/// What Prometheus 2.42 (Debian bookworm's) sends.
const PROMETHEUS_2_42_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

struct Answer {
    content_type: String,
    content_encoding: Option<String>,
    body: Vec<u8>,
}

fn get(server: &TestServer, headers: &[(reqwest::header::HeaderName, &str)]) -> Answer {
    // reqwest is built without a default crypto provider; plain HTTP still wants one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // Without reqwest's gzip feature nothing is decoded: the bytes are the server's.
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .unwrap();
        let mut req = client.get(server.url("http", "/metrics"));
        for (name, value) in headers {
            req = req.header(name, *value);
        }
        let resp = req.send().await.expect("GET /metrics");
        assert_eq!(resp.status(), 200);
        let header = |name| {
            resp.headers()
                .get(name)
                .map(|v: &reqwest::header::HeaderValue| v.to_str().unwrap().to_string())
        };
        let content_type = header(CONTENT_TYPE).expect("a Content-Type");
        let content_encoding = header(CONTENT_ENCODING);
        Answer {
            content_type,
            content_encoding,
            body: resp.bytes().await.unwrap().to_vec(),
        }
    })
}

fn text(a: &Answer) -> String {
    String::from_utf8(a.body.clone()).expect("a text body")
}

fn gunzip(a: &Answer) -> String {
    let mut out = String::new();
    flate2::read::GzDecoder::new(&a.body[..])
        .read_to_string(&mut out)
        .expect("a gzip body");
    out
}

fn assert_openmetrics(body: &str) {
    assert!(body.ends_with("# EOF\n"), "no `# EOF` at the end:\n{body}");
    assert!(body.contains("# TYPE vigia_build info\n"), "{body}");
    assert!(body.contains("# TYPE vigia_errors counter\n"), "{body}");
    assert!(
        body.contains("vigia_errors_total{source=\"test\"} 0\n"),
        "{body}"
    );
    assert!(
        body.contains("vigia_build_info{exporter=\"vigia-test\""),
        "{body}"
    );
}

fn assert_classic(body: &str) {
    assert!(
        !body.contains("# EOF"),
        "OpenMetrics' `# EOF` in classic text:\n{body}"
    );
    assert!(body.contains("# TYPE vigia_build_info gauge\n"), "{body}");
    assert!(
        body.contains("# TYPE vigia_errors_total counter\n"),
        "{body}"
    );
    assert!(
        body.contains("vigia_build_info{exporter=\"vigia-test\""),
        "{body}"
    );
    assert!(!body.contains("_created"), "{body}");
}

#[test]
fn prometheus_accept_header_gets_openmetrics() {
    let server = server();
    for accept in [PROMETHEUS_ACCEPT, PROMETHEUS_2_42_ACCEPT] {
        let a = get(&server, &[(ACCEPT, accept)]);
        assert!(
            a.content_type
                .starts_with("application/openmetrics-text; version=1.0.0"),
            "{accept}: {}",
            a.content_type
        );
        assert_eq!(a.content_encoding, None);
        assert_openmetrics(&text(&a));
    }
}

#[test]
fn no_or_other_accept_header_gets_classic_text() {
    let server = server();
    for headers in [
        vec![],
        vec![(ACCEPT, "*/*")],
        vec![(ACCEPT, "text/plain")],
        vec![(ACCEPT, "application/openmetrics-text;q=0,text/plain;q=0.5")],
    ] {
        let a = get(&server, &headers);
        assert_eq!(
            a.content_type, "text/plain; version=0.0.4; charset=utf-8",
            "{headers:?}"
        );
        assert_classic(&text(&a));
    }
}

#[test]
fn accept_encoding_gzip_gets_a_gzip_body_in_either_format() {
    let server = server();
    let a = get(&server, &[(ACCEPT_ENCODING, "gzip")]);
    assert_eq!(a.content_encoding.as_deref(), Some("gzip"));
    assert!(a.content_type.starts_with("text/plain; version=0.0.4"));
    assert_eq!(&a.body[..2], [0x1f, 0x8b], "gzip magic");
    assert_classic(&gunzip(&a));

    let a = get(
        &server,
        &[(ACCEPT, PROMETHEUS_ACCEPT), (ACCEPT_ENCODING, "gzip")],
    );
    assert_eq!(a.content_encoding.as_deref(), Some("gzip"));
    assert!(a.content_type.starts_with("application/openmetrics-text"));
    assert_openmetrics(&gunzip(&a));

    // Not asked for: not compressed.
    let a = get(&server, &[(ACCEPT_ENCODING, "identity")]);
    assert_eq!(a.content_encoding, None);
    assert_classic(&text(&a));
}
