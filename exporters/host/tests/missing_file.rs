//! One file missing from the host (here `/proc/net/dev`, on the fixture tree) fails
//! only the collector that reads it: node_scrape_collector_success 0 for netdev and 1
//! for the others, the anomaly score keeps being computed from the rest (its warm-up
//! counts down, its network features are marked unavailable), and the failure is
//! logged once, not every scrape or interval; when the file is back, both say so once.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{logged, unpack_tree, Launch, Scrape};

const WINDOW: usize = 30;

fn success(s: &Scrape, collector: &str) -> Option<f64> {
    s.value("node_scrape_collector_success", &[("collector", collector)])
}

fn available(s: &Scrape, feature: &str) -> Option<f64> {
    s.value(
        "vigia_host_anomaly_feature_available",
        &[("feature", feature)],
    )
}

/// Scrapes until `done` holds, for at most `limit`; returns the last scrape.
fn scrape_until(
    addr: std::net::SocketAddr,
    limit: Duration,
    done: impl Fn(&Scrape) -> bool,
) -> Scrape {
    let start = Instant::now();
    loop {
        let s = Scrape::fetch(addr);
        if done(&s) || start.elapsed() > limit {
            return s;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_missing_proc_net_dev_fails_netdev_alone_and_the_score_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    unpack_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/node-tree.txt"),
        &tree,
    );
    let net_dev = tree.join("proc/net/dev");
    let saved = std::fs::read(&net_dev).unwrap();
    std::fs::remove_file(&net_dev).unwrap();
    let log = dir.path().join("vigia-host.log");
    let t = tree.display();
    let args = [
        format!("--path.procfs={t}/proc"),
        format!("--path.sysfs={t}/sys"),
        format!("--path.rootfs={t}"),
        format!("--path.udev.data={t}/udev/data"),
        "--no-collector.netdev.netlink".into(),
        "--log.format=json".into(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let window = WINDOW.to_string();
    let run = Launch {
        env: &[
            ("VIGIA_HOST__ANOMALY__INTERVAL", "100ms"),
            ("VIGIA_HOST__ANOMALY__WINDOW_SIZE", &window),
            (
                "VIGIA_HOST__CONTAINERS__DOCKER_SOCKET",
                "/nonexistent-vigia.sock",
            ),
        ],
        args: &args,
        log: Some(&log),
        ..Launch::default()
    }
    .start();

    // The detector warms up from the parts it can read: WINDOW + 1 intervals of 100 ms (both the smallest allowed).
    let s = scrape_until(run.addr, Duration::from_secs(10), |s| {
        s.value("vigia_host_anomaly_warm", &[]) == Some(1.0)
    });
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(s.value("vigia_host_anomaly_warm", &[]), Some(1.0), "{text}");
    assert_eq!(
        s.value("vigia_host_anomaly_warmup_remaining_intervals", &[]),
        Some(0.0)
    );
    assert!(s.value("vigia_host_anomaly_score", &[]).is_some());
    assert_eq!(success(&s, "netdev"), Some(0.0));
    for ok in [
        "cpu",
        "meminfo",
        "stat",
        "diskstats",
        "loadavg",
        "netstat",
        "netclass",
    ] {
        assert_eq!(success(&s, ok), Some(1.0), "{ok} reads its own files");
    }
    assert!(s.family("node_network_receive_bytes_total").is_empty());
    assert_eq!(s.family("node_cpu_seconds_total").len(), 4 * 8);
    assert_eq!(available(&s, "network_receive_bytes_per_second"), Some(0.0));
    assert_eq!(
        available(&s, "network_transmit_bytes_per_second"),
        Some(0.0)
    );
    assert_eq!(available(&s, "cpu_utilisation"), Some(1.0));
    assert_eq!(available(&s, "disk_read_bytes_per_second"), Some(1.0));

    // More scrapes and intervals: still one line each.
    for _ in 0..3 {
        Scrape::fetch(run.addr);
    }
    std::thread::sleep(Duration::from_millis(300));
    let text = std::fs::read_to_string(&log).unwrap();
    let anomaly = logged(
        &log,
        "anomaly: cannot read a part of the host: its features are held at their last value and the score goes on from the others (logged once until it reads again)",
    );
    assert_eq!(anomaly.len(), 1, "{text}");
    assert_eq!(anomaly[0]["part"], "net/dev");
    let failed = logged(
        &log,
        "source failed: its metrics are missing until it recovers (logged once)",
    );
    let netdev: Vec<_> = failed.iter().filter(|f| f["source"] == "netdev").collect();
    assert_eq!(netdev.len(), 1, "{text}");
    assert!(
        netdev[0]["error"]
            .as_str()
            .unwrap_or("")
            .contains("net/dev"),
        "{text}"
    );

    // The file is back: the collector and the features are too, said once.
    std::fs::write(&net_dev, saved).unwrap();
    let s = scrape_until(run.addr, Duration::from_secs(5), |s| {
        available(s, "network_receive_bytes_per_second") == Some(1.0)
    });
    assert_eq!(success(&s, "netdev"), Some(1.0));
    assert_eq!(available(&s, "network_receive_bytes_per_second"), Some(1.0));
    assert!(!s.family("node_network_receive_bytes_total").is_empty());
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        logged(&log, "anomaly: part of the host readable again").len(),
        1,
        "{text}"
    );
    let recovered = logged(&log, "source recovered");
    assert_eq!(
        recovered.iter().filter(|f| f["source"] == "netdev").count(),
        1,
        "{text}"
    );
}
