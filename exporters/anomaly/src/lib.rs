//! Streaming anomaly scores for vigia's exporters.
//!
//! No maintained streaming Isolation Forest or Half-Space Trees crate exists, so vigia
//! keeps one small, seeded, dependency-free implementation here, shared by `vigia-host`
//! (one feature vector per collection interval) and `vigia-capture` (one per traffic
//! window). Both talk to it through [`Detector`].
//!
//! # How a point is scored
//!
//! [`HalfSpaceTrees`] is an ensemble of Half-Space Trees (Tan, Ting and Liu, IJCAI 2011).
//! Each tree halves a random work space around the learned feature ranges and counts how
//! many points of the reference (the latest full windows, see below) fall in each cell; a
//! new point descends until its cell holds fewer than a tenth of the reference points, and
//! `log2(1 + mass * 2^depth)` there is its log-density in that tree. Per tree,
//!
//! `tree score = clamp(1 - log_mass(x) / median leave-one-out log_mass(reference), 0, 1)`
//!
//! so 0 means "as dense as the reference window's typical point" and 1 means "in a cell
//! that held no reference point".
//!
//! Unlike the paper, each tree splits only a random subspace of [`FEATURES_PER_TREE`] (3)
//! features, dealt so that every feature is covered by about `trees * 3 / dims` trees,
//! and the raw score is the largest, over features, of the mean tree score of the trees
//! covering that feature. With all features in every tree, a shift in one or two
//! features among eight or twelve is averaged away by the trees that never split them
//! (measured: a 50-sigma spike in one of twelve features scored under 0.15); with
//! subspaces it scores 1. A point outside a tree's work space (far beyond anything seen)
//! falls in an extra cell of the feature it is furthest out by, one per side and doubling
//! distance, holding the reference points that were also out there, usually none; so
//! reference points a little out (an outage's retries) do not make a point much further
//! out (a scan) look familiar.
//!
//! A feature's noise floor ([`Feature::noise_floor`]: [`Feature::min_spread`], or for a
//! [`Feature::counting`] feature the counting noise of the reference median, if larger)
//! is the smallest spread it is taken to have: its learned range spans at least 4.65
//! floors, its z-score divides by at least one, and no tree splits it into cells
//! narrower than two floors (a node whose position picks it then splits another feature
//! of its subspace, or is a leaf). Without the last, the trees split on below the floor
//! down to the reference's own jitter, and a value one step past the largest seen (14
//! connections in a second where 30 reference windows held at most 12) fell in empty
//! cells and scored over the threshold.
//!
//! Last, the raw score is calibrated against the reference itself: each reference point
//! is scored as if it were new (left out of its own cell), and the 99th percentile of
//! those raw scores maps to 0.5. Raw scores below it map linearly onto `[0, 0.5]`, above
//! it onto `[0.5, 1]`; that percentile is capped at a raw 0.9, so a reference holding more
//! than 1 % of outliers (an attack inside it) cannot cap the next window's scores at 0.5.
//! Without this, how high calm points score depends on the window size and the number of
//! features (measured with 8 features, uncalibrated: calm median 0.23 and 5 % of calm
//! points above 0.7 at a window of 60; 0.15 and 0.4 % at 250), and so would every
//! threshold.
//!
//! # What the score and a threshold of 0.7 mean
//!
//! - `0`: as dense as the reference window's typical point, or denser;
//! - `0.5`: as unusual as the most unusual 1 % of the reference window;
//! - `0.7`: 40 % of the way from there to `1`;
//! - `1`: in cells that held no reference point, in every tree covering some feature.
//!
//! Measured by the tests and `examples/measure.rs` on seeded Gaussian streams (50 trees,
//! window 250): 0.02 % to 0.1 % of calm points reach 0.7 with 4 to 12 features (0.1 % to
//! 0.25 % with 2; 0 to 0.07 % at windows of 30 to 120); a mean shift of 10 standard deviations
//! in one feature, or of 6 in two of eight, reaches it at the first point; a spike of 30
//! standard deviations in one feature scores 1. Shifts of 3 standard deviations in every
//! feature, or of 5 in one, land around 0.5 to 0.8: at the threshold's edge. A lasting
//! change scores high for about one window and is then the new normal; with a reference
//! of one window (the default 250) the return to the old state then scores high in turn,
//! with a reference of several windows the old state is still in it.
//!
//! On the traffic of a host running the vigia stack (vigia-capture's 15 features,
//! `tests/stack_traffic.rs`, two hours with an outage, flushes of thousands of writes,
//! five `nmap -sS` scans and three `hping3 --syn` bursts): 0.4 % of calm windows reach
//! 0.7 at 2 s windows and `window_size: 30`, 0.2 % at 10 s and 60, and every scan and
//! burst scores 1 (before the multi-window reference, the trim and the outside cells:
//! 2.4 % and 0.8 %, and a scan in each configuration missed).
//!
//! Beside the score, [`Score::contributions`] gives each feature's robust z-score against
//! the reference window (median, and the MAD or, when larger, the mean absolute
//! deviation, so discrete counts do not get a spread of 0), and [`Score::top_features`]
//! ranks them: the explanation an operator reads ("destination ports 9 sigma above
//! normal").
//!
//! # Warm-up and windows
//!
//! The first `window_size` points (at least 30) only learn: feature ranges (1 % and 99 %
//! quantiles of the observed values, after the optional log transform of
//! [`Scaling::Log`]) and the first reference profile. During that warm-up
//! [`Detector::warm`] is false and every score is 0. After it, each point is scored
//! against the reference and then learned; every `window_size` points the reference is
//! rebuilt and the ranges move 10 % of the way towards the reference's.
//!
//! The reference is the latest `ceil(250 / window_size)` windows
//! ([`REFERENCE_POINTS`]): one window at the default `window_size` of 250, nine at
//! 30, so a short warm-up does not leave the detector measuring densities on 30 points
//! for good. It grows by a window at each rebuild until it spans that many. Of its
//! points, those that scored at or above the threshold are left out, highest score first,
//! up to 2 % of them ([`MAX_HELD_OUT_SHARE`]): an attack in the recent past does not
//! teach the detector that the next one is normal, while a state that keeps coming back
//! is still learned.
//!
//! # Inputs
//!
//! The dimension is fixed at construction; a vector of another length returns
//! [`DimsMismatch`] and changes nothing. NaN is replaced by the reference median (before
//! warm-up, by the feature's last usable value), so it neither raises nor explains a
//! score; ±infinity and magnitudes beyond `1e150` become `±1e150`, an extreme that scores
//! as anomalous. Every replacement is counted in [`Score::replaced_inputs`]. Nothing
//! panics on any input.
//!
//! # Cost and memory
//!
//! A call descends every tree once, `O(trees × depth)`, and every `window_size` points the
//! trees are rebuilt from the reference, `O(trees × reference points × depth)`: the same
//! amortized cost per point at the default window (a reference of 9 windows of 30 costs
//! 9 times that per point, still tens of microseconds); measured about 7.5 µs of CPU per call with 50 trees, a window
//! of 250 and 2 to 12 features on a 2-core machine under load
//! (`cargo run --release -p vigia-anomaly --example measure`). The depth matters little
//! for few features: descent stops at the size limit long before depth 15. The paper keeps two counters in every node of complete trees,
//! `trees × 2^(depth + 1)` nodes (50 trees of depth 15: 3.3 million). Descent never goes
//! below a cell under the size limit, so this implementation keeps the reference windows'
//! points (fewer than `(window_size + 250) × dims` values, plus the window being filled)
//! and builds only the nodes that can be read: at most
//! `1 + 2 × depth × ⌊n / ⌊n / 10⌋⌋` per tree for a reference of `n` points, that is
//! `1 + 20 × depth` for round window sizes and never more than `1 + 26 × depth` (50
//! trees of depth 15: at most 15,050 nodes of 24 bytes, about 350 KiB; in the tests
//! about 2,300 are used).

mod config;
mod hst;
mod rng;
mod scaling;

pub use config::{AnomalyConfig, ConfigProblem, MAX_DEPTH, MAX_TREES, MAX_WINDOW, MIN_WINDOW};
pub use hst::{HalfSpaceTrees, FEATURES_PER_TREE, MAX_HELD_OUT_SHARE, REFERENCE_POINTS};
pub use rng::SplitMix64;
pub use scaling::{Feature, Scaling, SATURATION};

use std::fmt;

/// A streaming anomaly detector: scores each point against what it learned so far, then
/// learns it.
pub trait Detector {
    /// Scores `x` (one value per feature, in the order given at construction), then adds
    /// it to the latest window. A vector of the wrong length is rejected and not learned.
    fn score_and_learn(&mut self, x: &[f64]) -> Result<Score, DimsMismatch>;
    /// Scores and learns `count` copies of `x`, as `count` calls of
    /// [`Detector::score_and_learn`] would; the verdicts come as runs of equal ones.
    /// [`HalfSpaceTrees`] does it at a cost that does not grow with `count` once its
    /// reference holds only `x`; this default calls `score_and_learn` `count` times.
    fn score_and_learn_repeated(
        &mut self,
        x: &[f64],
        count: u64,
    ) -> Result<Vec<ScoreRun>, DimsMismatch> {
        let mut runs: Vec<ScoreRun> = Vec::new();
        for _ in 0..count {
            let score = self.score_and_learn(x)?;
            match runs.last_mut() {
                Some(last) if last.score == score => last.count += 1,
                _ => runs.push(ScoreRun { score, count: 1 }),
            }
        }
        Ok(runs)
    }
    /// False during warm-up, while every score is 0.
    fn warm(&self) -> bool;
    /// Number of features per point.
    fn dims(&self) -> usize;
}

/// The verdict on one point.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    /// Anomaly score in `[0, 1]`; 1 is the most anomalous. 0 during warm-up.
    pub value: f64,
    /// Whether the detector had a reference window when it scored this point.
    pub warm: bool,
    /// Robust z-score of each feature against the reference window, signed (positive:
    /// above the reference median), in the feature's scaled units (log for
    /// [`Scaling::Log`]), bounded to ±1e6. All 0 during warm-up.
    pub contributions: Vec<f64>,
    /// How many inputs were NaN, infinite or beyond ±1e150 and were replaced.
    pub replaced_inputs: usize,
}

/// `count` points in a row that got the same verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreRun {
    pub score: Score,
    pub count: u64,
}

/// One feature's share in an explanation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Contribution {
    /// Index of the feature, in construction order.
    pub feature: usize,
    /// Its signed robust z-score.
    pub z: f64,
}

impl Score {
    /// Whether this point is anomalous at `threshold` (never during warm-up).
    pub fn exceeds(&self, threshold: f64) -> bool {
        self.warm && self.value >= threshold
    }

    /// The `k` features furthest from the reference window, largest |z| first (ties by
    /// feature index, so the order is deterministic).
    pub fn top_features(&self, k: usize) -> Vec<Contribution> {
        let mut ranked: Vec<Contribution> = self
            .contributions
            .iter()
            .enumerate()
            .map(|(feature, &z)| Contribution { feature, z })
            .collect();
        ranked.sort_by(|a, b| {
            b.z.abs()
                .total_cmp(&a.z.abs())
                .then(a.feature.cmp(&b.feature))
        });
        ranked.truncate(k);
        ranked
    }
}

/// A point whose length differs from the detector's dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DimsMismatch {
    pub expected: usize,
    pub got: usize,
}

impl fmt::Display for DimsMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "anomaly detector expects {} features per point, got {}",
            self.expected, self.got
        )
    }
}

impl std::error::Error for DimsMismatch {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detectors_move_between_threads_and_behind_the_trait() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<HalfSpaceTrees>();
        let detector = HalfSpaceTrees::new(&AnomalyConfig::default(), vec![Feature::linear("x")])
            .expect("valid detector");
        let mut boxed: Box<dyn Detector + Send> = Box::new(detector);
        assert_eq!(boxed.dims(), 1);
        assert!(!boxed.warm());
        assert_eq!(boxed.score_and_learn(&[1.0]).unwrap().value, 0.0);
    }

    #[test]
    fn top_features_rank_by_magnitude_and_keep_the_sign() {
        let score = Score {
            value: 0.9,
            warm: true,
            contributions: vec![1.0, -7.0, 7.0, 0.5],
            replaced_inputs: 0,
        };
        let top = score.top_features(3);
        assert_eq!(
            top,
            vec![
                Contribution {
                    feature: 1,
                    z: -7.0
                },
                Contribution { feature: 2, z: 7.0 },
                Contribution { feature: 0, z: 1.0 },
            ]
        );
        assert!(score.exceeds(0.7));
        assert!(!score.exceeds(0.95));
        assert!(score.top_features(0).is_empty());
    }
}
