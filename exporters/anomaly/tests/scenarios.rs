//! Feature vectors shaped like the ones vigia-host and vigia-capture feed the detector,
//! with the changes their end-to-end tests provoke (a CPU load test, a port scan).

use vigia_anomaly::{AnomalyConfig, Detector, Feature, HalfSpaceTrees, SplitMix64};

const THRESHOLD: f64 = 0.7;

fn lognormal(rng: &mut SplitMix64, median: f64, sigma: f64) -> f64 {
    median * (sigma * rng.next_gaussian()).exp()
}

fn host_features() -> Vec<Feature> {
    vec![
        Feature::linear("cpu_busy_share"),
        Feature::linear("load1"),
        Feature::log("memory_used_bytes"),
        Feature::log("network_receive_bytes_per_second"),
        Feature::log("network_transmit_bytes_per_second"),
        Feature::log("disk_read_bytes_per_second"),
        Feature::log("disk_written_bytes_per_second"),
        Feature::linear("processes"),
    ]
}

/// One collection interval of a quiet server; `stress` adds what `stress-ng --cpu 2`
/// does in its first intervals: both CPUs busy, a few more processes, load rising slowly.
fn host_interval(rng: &mut SplitMix64, stress: Option<usize>) -> Vec<f64> {
    let mut cpu = (0.08 + 0.03 * rng.next_gaussian()).clamp(0.0, 1.0);
    let mut load1 = (0.4 + 0.15 * rng.next_gaussian()).abs();
    let mut processes = (180.0 + 3.0 * rng.next_gaussian()).round();
    if let Some(interval) = stress {
        cpu = (0.97 + 0.01 * rng.next_gaussian()).clamp(0.0, 1.0);
        // The 1-minute load average approaches 2 with a 60 s time constant (5 s steps).
        load1 += (2.0 - load1) * (1.0 - (-5.0 * (interval + 1) as f64 / 60.0).exp());
        processes += 3.0;
    }
    let disk_read = if rng.next_f64() < 0.7 {
        0.0
    } else {
        lognormal(rng, 4e4, 1.0)
    };
    vec![
        cpu,
        load1,
        lognormal(rng, 2e9, 0.01),
        lognormal(rng, 2e5, 0.8),
        lognormal(rng, 5e4, 0.8),
        disk_read,
        lognormal(rng, 1e5, 1.0),
        processes,
    ]
}

#[test]
fn host_load_test_is_flagged_explained_and_forgotten_when_it_stops() {
    let config = AnomalyConfig {
        window_size: 60,
        ..AnomalyConfig::default()
    };
    for seed in 1..=3 {
        let mut detector = HalfSpaceTrees::new(&config, host_features()).unwrap();
        let mut rng = SplitMix64::new(seed * 1000);
        let mut calm_false_positives = 0;
        let mut calm_scored = 0;
        for _ in 0..300 {
            let score = detector
                .score_and_learn(&host_interval(&mut rng, None))
                .unwrap();
            calm_false_positives += usize::from(score.exceeds(THRESHOLD));
            calm_scored += usize::from(score.warm);
        }
        let stress: Vec<_> = (0..12)
            .map(|interval| {
                detector
                    .score_and_learn(&host_interval(&mut rng, Some(interval)))
                    .unwrap()
            })
            .collect();
        let after: Vec<f64> = (0..60)
            .map(|_| {
                detector
                    .score_and_learn(&host_interval(&mut rng, None))
                    .unwrap()
                    .value
            })
            .collect();
        let flagged = stress.iter().filter(|s| s.exceeds(THRESHOLD)).count();
        let after_false_positives = after.iter().filter(|&&v| v >= THRESHOLD).count();
        eprintln!(
            "seed {seed}: calm {calm_false_positives} of {calm_scored} above {THRESHOLD}; \
             load test {flagged} of 12 flagged (first {:.3}, {:.3}); after it {} of 60",
            stress[0].value, stress[1].value, after_false_positives
        );
        assert!(calm_false_positives * 50 < calm_scored);
        assert!(stress[0].exceeds(THRESHOLD) && stress[1].exceeds(THRESHOLD));
        assert!(flagged >= 10);
        assert_eq!(stress[0].top_features(1)[0].feature, 0, "cpu_busy_share");
        assert!(after_false_positives <= 2, "{after:?}");
    }
}

fn capture_features() -> Vec<Feature> {
    vec![
        Feature::log("packets"),
        Feature::log("bytes"),
        Feature::log("tcp_packets"),
        Feature::log("udp_packets"),
        Feature::log("icmp_packets"),
        Feature::log("distinct_sources"),
        Feature::log("distinct_destinations"),
        Feature::log("distinct_destination_ports"),
        Feature::linear("syn_ratio"),
        Feature::linear("synack_ratio"),
        Feature::linear("rst_ratio"),
        Feature::linear("destination_port_entropy_bits"),
        Feature::log("new_flows"),
    ]
}

/// One 10 s window of a lab network: an HTTP client, pings and an iperf3 stream; with
/// `scan`, plus what `nmap -sS` against 1,000 ports adds to it.
fn capture_window(rng: &mut SplitMix64, scan: bool) -> Vec<f64> {
    let tcp = lognormal(rng, 9000.0, 0.2);
    let udp = lognormal(rng, 40.0, 0.3).round();
    let icmp = (20.0 + 2.0 * rng.next_gaussian()).round().max(0.0);
    let flows = lognormal(rng, 30.0, 0.3).round();
    let mut window = [
        tcp + udp + icmp,
        1200.0 * tcp + 300.0 * udp + 84.0 * icmp,
        tcp,
        udp,
        icmp,
        (4.0 + rng.next_f64() * 2.0).round(),
        (5.0 + rng.next_f64() * 3.0).round(),
        (6.0 + rng.next_f64() * 4.0).round(),
        (flows / tcp).min(1.0),
        (flows / tcp).min(1.0),
        (0.002 + 0.001 * rng.next_gaussian()).max(0.0),
        2.0 + 0.3 * rng.next_gaussian(),
        flows,
    ];
    if scan {
        let probes = 2000.0;
        window[0] += 2.0 * probes;
        window[1] += 2.0 * 60.0 * probes;
        window[2] += 2.0 * probes;
        window[7] += 1000.0;
        window[8] = (window[8] * tcp + probes) / window[2];
        window[10] = (window[10] * tcp + probes * 0.95) / window[2];
        window[11] = 9.5;
        window[12] += probes;
    }
    window.to_vec()
}

#[test]
fn port_scan_window_is_flagged_and_explained() {
    let config = AnomalyConfig {
        window_size: 60,
        ..AnomalyConfig::default()
    };
    let names: Vec<String> = capture_features().into_iter().map(|f| f.name).collect();
    for seed in 1..=3 {
        let mut detector = HalfSpaceTrees::new(&config, capture_features()).unwrap();
        let mut rng = SplitMix64::new(seed * 2000);
        let mut calm_false_positives = 0;
        let mut calm_scored = 0;
        for _ in 0..400 {
            let score = detector
                .score_and_learn(&capture_window(&mut rng, false))
                .unwrap();
            calm_false_positives += usize::from(score.exceeds(THRESHOLD));
            calm_scored += usize::from(score.warm);
        }
        let scan = detector
            .score_and_learn(&capture_window(&mut rng, true))
            .unwrap();
        let top: Vec<&str> = scan
            .top_features(3)
            .iter()
            .map(|c| names[c.feature].as_str())
            .collect();
        eprintln!(
            "seed {seed}: calm {calm_false_positives} of {calm_scored} above {THRESHOLD}; \
             scan window {:.3}, top features {top:?}",
            scan.value
        );
        assert!(calm_false_positives * 50 < calm_scored);
        assert!(scan.value >= 0.9, "{scan:?}");
        assert!(
            top.iter().any(|name| *name == "distinct_destination_ports"
                || *name == "rst_ratio"
                || *name == "destination_port_entropy_bits"),
            "{top:?}"
        );
    }
}
