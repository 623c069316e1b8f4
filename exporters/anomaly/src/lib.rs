//! Streaming anomaly scores for vigia's exporters.
//!
//! No maintained streaming Isolation Forest or Half-Space Trees crate exists, so vigia
//! keeps one small, seeded, dependency-free implementation here, shared by `vigia-host`
//! (one feature vector per collection interval) and `vigia-capture` (one per traffic
//! window). Both talk to it through [`Detector`].
//!
//! # What the score means
//!
//! [`HalfSpaceTrees`] estimates, with an ensemble of random half-space trees, how much of
//! the reference window's mass lies around a new point (Tan, Ting and Liu, IJCAI 2011).
//! The score compares the point's log-mass with the median log-mass of the reference
//! points themselves:
//!
//! `score = clamp(1 - log_mass(x) / median(log_mass(reference)), 0, 1)`
//!
//! - `0`: the point sits where the reference window was as dense as usual (or denser);
//! - `1`: the point fell into cells that held no reference point in any tree;
//! - `0.7` (the default threshold): the point's estimated density is below the typical
//!   density raised to the power 0.3, i.e. its neighbourhood is emptier than the typical
//!   point's by a factor of `2^(0.7 * typical)` (typical is around 10 to 20 bits). In
//!   practice, on stationary noise fewer than 1 % of points reach it, while a shift of a
//!   few standard deviations in several features, or one value far outside anything seen,
//!   reaches it at the first point. The unit tests measure both.
//!
//! A single feature moving by a few standard deviations while the others stay put is the
//! hard case for any density estimate in many dimensions: look at
//! [`Score::top_features`], which ranks features by their robust z-score against the
//! reference window (median and MAD), for that.
//!
//! # Warm-up and windows
//!
//! The first `window_size` points only learn: feature ranges (1 % and 99 % quantiles)
//! and the first reference profile. During that warm-up [`Detector::warm`] is false and
//! every score is 0. After it, each point is scored against the previous full window and
//! then learned; every `window_size` points the latest window becomes the reference and
//! the ranges move 10 % of the way towards the newer window's. A lasting change therefore
//! scores high for about one window and is then accepted as the new normal.
//!
//! # Inputs
//!
//! The dimension is fixed at construction; a vector of another length returns
//! [`DimsMismatch`] and changes nothing. NaN is replaced by the reference median (before
//! warm-up, by the feature's last usable value); ±infinity and magnitudes beyond
//! `1e150` become `±1e150`, an extreme that scores as anomalous. Every replacement is
//! counted in [`Score::non_finite_inputs`]. Nothing panics on any input.
//!
//! # Cost
//!
//! A call descends every tree once: `O(trees × depth)`, plus a rebuild of the trees from
//! the latest window every `window_size` points, `O(trees × window_size × depth)`, i.e.
//! the same amortized cost per point. Memory: the latest window (`window_size × dims`
//! values) and the nodes that can ever be read. A complete tree would hold
//! `2^(depth + 1)` nodes (with the default 25 trees and depth 15, 1.6 million); descent
//! stops below `window_size / 10` reference points, so only nodes whose parent holds at
//! least that many exist: at most `1 + 2 × depth × 10` per tree for windows of 20 points
//! or more (301 per tree, 7,525 nodes of 24 bytes, about 180 KiB, with the defaults).

mod config;
mod hst;
mod rng;
mod scaling;

pub use config::{AnomalyConfig, ConfigProblem, MAX_DEPTH, MAX_TREES, MAX_WINDOW, MIN_WINDOW};
pub use hst::HalfSpaceTrees;
pub use rng::SplitMix64;
pub use scaling::{Feature, Scaling, SATURATION};

use std::fmt;

/// A streaming anomaly detector: scores each point against what it learned so far, then
/// learns it.
pub trait Detector {
    /// Scores `x` (one value per feature, in the order given at construction), then adds
    /// it to the latest window. A vector of the wrong length is rejected and not learned.
    fn score_and_learn(&mut self, x: &[f64]) -> Result<Score, DimsMismatch>;
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
    pub non_finite_inputs: usize,
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
