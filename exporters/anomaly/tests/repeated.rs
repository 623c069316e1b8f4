//! `score_and_learn_repeated`: the same verdicts and the same detector afterwards as
//! learning every copy one by one, at a cost that does not grow with the count (an
//! exporter's quiet hours, however long, as one call).

use vigia_anomaly::{AnomalyConfig, Detector, Feature, HalfSpaceTrees, SplitMix64};

fn detector(window_size: usize, rising: bool) -> HalfSpaceTrees {
    let features = (0..6)
        .map(|i| {
            let f = if i % 2 == 0 {
                Feature::log(format!("count{i}"))
            } else {
                Feature::linear(format!("share{i}")).with_min_spread(0.01)
            };
            if rising {
                f.rising()
            } else {
                f
            }
        })
        .collect();
    let config = AnomalyConfig {
        trees: 20,
        window_size,
        ..AnomalyConfig::default()
    };
    HalfSpaceTrees::new(&config, features).unwrap()
}

fn busy(rng: &mut SplitMix64) -> Vec<f64> {
    (0..6)
        .map(|i| {
            if i % 2 == 0 {
                200.0 + 50.0 * rng.next_f64()
            } else {
                0.3 + 0.05 * rng.next_f64()
            }
        })
        .collect()
}

/// Every score of `a` and `b` on the same points after the repeats, bit for bit.
fn same_afterwards(a: &mut HalfSpaceTrees, b: &mut HalfSpaceTrees, seed: u64) {
    let mut rng = SplitMix64::new(seed);
    for i in 0..200 {
        let x = busy(&mut rng);
        assert_eq!(
            a.score_and_learn(&x).unwrap(),
            b.score_and_learn(&x).unwrap(),
            "point {i} after the repeats"
        );
    }
}

#[test]
fn repeats_give_what_one_by_one_gives() {
    let quiet = vec![0.0; 6];
    for rising in [false, true] {
        for window in [30, 60] {
            // Before warm-up, inside the first windows, across the saturation point and
            // far beyond it, from every phase of a window.
            for (warm_points, count) in [
                (0, 45),
                (10, 29),
                (95, 1),
                (95, 30),
                (95, 31),
                (95, 400),
                (100, 1_000),
                (250, 3_333),
            ] {
                let mut a = detector(window, rising);
                let mut b = detector(window, rising);
                let mut rng = SplitMix64::new(7);
                for _ in 0..warm_points {
                    let x = busy(&mut rng);
                    assert_eq!(a.score_and_learn(&x), b.score_and_learn(&x));
                }
                let runs = a.score_and_learn_repeated(&quiet, count).unwrap();
                assert_eq!(runs.iter().map(|r| r.count).sum::<u64>(), count);
                let mut one_by_one = Vec::new();
                for _ in 0..count {
                    one_by_one.push(b.score_and_learn(&quiet).unwrap());
                }
                let expanded: Vec<_> = runs
                    .iter()
                    .flat_map(|r| std::iter::repeat(r.score.clone()).take(r.count as usize))
                    .collect();
                let first = expanded.iter().zip(&one_by_one).position(|(x, y)| x != y);
                assert_eq!(
                    first.map(|i| (i, &expanded[i], &one_by_one[i])),
                    None,
                    "rising {rising}, window {window}, {warm_points} points then {count} quiet"
                );
                assert_eq!(a.reference_points(), b.reference_points());
                same_afterwards(&mut a, &mut b, 11);
            }
        }
    }
}

#[test]
fn a_billion_repeats_cost_what_a_few_windows_cost() {
    let mut d = detector(30, true);
    let mut rng = SplitMix64::new(3);
    for _ in 0..120 {
        d.score_and_learn(&busy(&mut rng)).unwrap();
    }
    // A billion windows would take hours one by one; the runs say what each got.
    let runs = d
        .score_and_learn_repeated(&[0.0; 6], 1_000_000_000)
        .unwrap();
    assert_eq!(runs.iter().map(|r| r.count).sum::<u64>(), 1_000_000_000);
    assert!(runs.len() < 40, "{} runs", runs.len());
    // After so long a quiet spell, quiet is the normal state and busy windows are news.
    let last = runs.last().unwrap();
    assert_eq!(last.score.value, 0.0);
    assert!(d.score_and_learn(&busy(&mut rng)).unwrap().value >= 0.7);
}
