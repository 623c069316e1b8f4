//! Graceful shutdown over TLS with basic auth: a scrape in flight when shutdown is
//! triggered still gets its whole answer; afterwards the port is closed.

mod web_support;

use std::sync::mpsc;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use vigia_kit::{Metrics, Source, SourceError};
use web_support::*;

/// A source that takes its time, and says when a scrape has reached it.
struct SlowSource {
    started: Mutex<mpsc::Sender<()>>,
    takes: Duration,
}

impl Source for SlowSource {
    fn name(&self) -> &'static str {
        "slow"
    }

    fn collect(&self, encoder: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
        let _ = self.started.lock().unwrap().send(());
        std::thread::sleep(self.takes);
        let family = encoder.encode_descriptor(
            "vigia_test_slow_answer",
            "Set by a source that sleeps before answering",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(42).encode(family)?;
        Ok(())
    }
}

#[test]
fn in_flight_scrape_finishes_after_shutdown_is_triggered() {
    let pki = Pki::generate();
    let hash = htpasswd_bcrypt("prom", "scrape");
    let path = pki.web_config(&format!(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n\
         basic_auth_users:\n  prom: '{hash}'\n"
    ));
    let (started_tx, started_rx) = mpsc::channel();
    let mut metrics = Metrics::new("vigia-test");
    metrics.register_source(SlowSource {
        started: Mutex::new(started_tx),
        takes: Duration::from_millis(1500),
    });
    let mut server = TestServer::start_with(load(&path), metrics);
    let url = server.url("https", "/metrics");
    let ca = pki.path("ca.crt").display().to_string();

    let scrape = {
        let (url, ca) = (url.clone(), ca.clone());
        std::thread::spawn(move || curl(&url, &["--cacert", &ca, "-u", "prom:scrape"]))
    };
    started_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the scrape reached the slow source");
    assert!(
        server.shutdown(Duration::from_secs(10)),
        "serve did not return after the in-flight scrape"
    );

    let r = scrape.join().unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains("vigia_test_slow_answer 42"), "{}", r.body);
    assert!(
        r.body
            .contains("vigia_scrape_collector_success{collector=\"slow\"} 1"),
        "{}",
        r.body
    );

    // After shutdown nothing listens any more.
    let after = curl(&url, &["--cacert", &ca, "-u", "prom:scrape"]);
    assert_eq!((after.status, after.exit), (0, 7), "{after:?}");
}
