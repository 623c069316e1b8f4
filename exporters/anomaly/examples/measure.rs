//! Prints the numbers the crate documentation quotes: calm false-positive rate, scores
//! after steps and spikes, and the cost of one `score_and_learn` call.
//!
//! `cargo run --release -p vigia-anomaly --example measure [trees] [window_size]`

use std::time::Instant;

use vigia_anomaly::{AnomalyConfig, Detector, Feature, HalfSpaceTrees, SplitMix64};

const CALM: usize = 5_000;
const THRESHOLD: f64 = 0.7;

fn calm_point(rng: &mut SplitMix64, dims: usize) -> Vec<f64> {
    (0..dims)
        .map(|j| 10.0 * j as f64 + rng.next_gaussian())
        .collect()
}

fn main() {
    let trees = std::env::args()
        .nth(1)
        .and_then(|arg| arg.parse().ok())
        .unwrap_or(AnomalyConfig::default().trees);
    let window_size = std::env::args()
        .nth(2)
        .and_then(|arg| arg.parse().ok())
        .unwrap_or(AnomalyConfig::default().window_size);
    for dims in [2, 4, 8, 12] {
        for seed in [1, 2] {
            let config = AnomalyConfig {
                trees,
                window_size,
                seed,
                ..AnomalyConfig::default()
            };
            let features = (0..dims)
                .map(|i| Feature::linear(format!("f{i}")))
                .collect();
            let mut detector = HalfSpaceTrees::new(&config, features).expect("valid config");
            let mut rng = SplitMix64::new(100 + seed);
            for _ in 0..config.window_size {
                detector
                    .score_and_learn(&calm_point(&mut rng, dims))
                    .unwrap();
            }
            let started = Instant::now();
            let cpu_started = thread_cpu_ns();
            let mut calm: Vec<f64> = (0..CALM)
                .map(|_| {
                    detector
                        .score_and_learn(&calm_point(&mut rng, dims))
                        .unwrap()
                        .value
                })
                .collect();
            let per_call = started.elapsed() / CALM as u32;
            let cpu_per_call = (thread_cpu_ns() - cpu_started) / CALM as u64;
            let false_positives = calm.iter().filter(|&&v| v >= THRESHOLD).count();
            calm.sort_by(f64::total_cmp);
            let mut line = format!(
                "dims {dims:2} seed {seed}: {per_call:>9.2?} wall, {cpu_per_call} ns CPU per call, calm >= {THRESHOLD}: \
                 {false_positives}/{CALM}, median {:.2}, p99 {:.2}, max {:.2};",
                calm[CALM / 2],
                calm[CALM * 99 / 100],
                calm[CALM - 1]
            );
            for (shifted, sigmas) in [(1, 5.0), (1, 10.0), (2, 6.0), (dims, 3.0)] {
                let mut copy = detector.clone();
                let mut stream = SplitMix64::new(999);
                let first: Vec<String> = (0..5)
                    .map(|_| {
                        let mut point = calm_point(&mut stream, dims);
                        for value in point.iter_mut().take(shifted) {
                            *value += sigmas;
                        }
                        format!("{:.2}", copy.score_and_learn(&point).unwrap().value)
                    })
                    .collect();
                line += &format!(" step {shifted}x{sigmas}: [{}]", first.join(" "));
            }
            let mut spike = calm_point(&mut rng, dims);
            spike[0] += 30.0;
            let value = detector.score_and_learn(&spike).unwrap().value;
            println!("{line} spike 30: {value:.2}");
        }
    }
}

/// Nanoseconds this thread spent on a CPU (Linux schedstat), so that a busy machine does
/// not inflate the cost per call the way wall time does.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
