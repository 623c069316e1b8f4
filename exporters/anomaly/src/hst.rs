//! Streaming Half-Space Trees (Tan, Ting and Liu, "Fast Anomaly Detection for Streaming
//! Data", IJCAI 2011).
//!
//! Each tree halves a random work space around the unit cube: a node splits one dimension
//! (chosen by a seeded hash of the node's position) at the middle of its current extent.
//! The reference mass profile counts how many reference points fall in each node. A new
//! point descends until it reaches a node holding fewer than a tenth of the reference
//! points (or the maximum depth); `mass * 2^depth` there is a density estimate, large
//! where the reference was dense.
//!
//! The paper keeps two counters per node of a complete tree (`2^(depth+1)` nodes per tree)
//! and swaps them every window. Descent never goes below a node under the size limit, so
//! only nodes whose parent holds at least a tenth of the reference points are ever read.
//! This implementation keeps the reference windows' points instead and, at each swap,
//! rebuilds exactly those nodes from them: the same masses, with at most
//! `1 + 2 * depth * 10` nodes per tree (for round reference sizes) however deep the trees
//! are.
//!
//! Departures from the paper, explained with the measurements behind them in the crate
//! documentation: each tree splits a random subspace of [`FEATURES_PER_TREE`] features;
//! points beyond the work space fall in outside cells at doubling distances; the ensemble
//! score is the largest per-feature mean of per-tree scores, calibrated against the
//! reference's own (leave-one-out) raw scores; the reference spans the latest windows up to
//! [`REFERENCE_POINTS`], less the highest-scoring anomalies ([`MAX_HELD_OUT_SHARE`]).

use std::collections::VecDeque;

use crate::config::{AnomalyConfig, ConfigProblem};
use crate::rng::{mix, SplitMix64};
use crate::scaling::{quantile, saturate, Feature, Range};
use crate::{Detector, DimsMismatch, Score, ScoreRun};

/// Scale factor from the median absolute deviation to a standard deviation under a
/// normal distribution.
const MAD_TO_SIGMA: f64 = 1.4826;

/// Scale factor from the mean absolute deviation to a standard deviation under a normal
/// distribution (sqrt(pi / 2)).
const MEAN_AD_TO_SIGMA: f64 = 1.2533;

/// Smallest spread used for a feature's z-score, as a share of its learned width, so a
/// feature that never moved still yields a finite (large) z-score when it does.
const MIN_SPREAD_SHARE: f64 = 0.01;

/// Features each tree splits. Three keeps every tree's cells small enough, with a window
/// of a few hundred points, to tell a shifted feature from its usual range; two gave more
/// false positives and all features diluted single-feature shifts (crate documentation).
pub const FEATURES_PER_TREE: usize = 3;

/// Share of the reference window's own raw scores that calibrate below 0.5.
const CALM_QUANTILE: f64 = 0.99;

/// Largest share of the reference windows' points left out of the reference profile:
/// those that scored highest, at or above the threshold (ties: the most recent first).
/// Without it, a scan or an outage taken into the reference makes the next scan look
/// familiar for as long as the reference lasts (measured on stack traffic with 10 s
/// windows: scans after two earlier ones scored 0.5). Leaving out every anomalous point
/// instead never learns a state that keeps coming back once it has scored high (silent
/// windows on a quiet link: 7.4 % of calm windows flagged, against 1.1 %); with a share
/// this small such a state still enters the reference, beyond the share.
pub const MAX_HELD_OUT_SHARE: f64 = 0.02;

/// Ceiling of the calibration point. A reference window with more than 1 % outliers
/// (an attack or a load test inside it) would otherwise put it at 1 and cap every score
/// of the next window at 0.5; with the ceiling, a point in cells no reference point
/// shares still scores 1.
const MAX_CALM_RAW_SCORE: f64 = 0.9;

/// Outside cells per feature and side of a tree's work space, at doubling distances:
/// from under 1/8 of the work space's width to 2^19 widths and beyond (the furthest a
/// normalized value goes). With one cell per side, an outage's SYN retries in the
/// reference put a port scan, much further out, in a cell that was not empty.
const OUTSIDE_BINS: usize = 24;

/// Largest reported |z|: beyond this every explanation says the same thing.
const MAX_Z: f64 = 1e6;

/// Fewest points the reference profile spans once enough have been seen: the reference
/// is the latest `ceil(REFERENCE_POINTS / window_size)` windows, so a short window (30
/// points, for a warm-up of a minute) still measures densities on about 250 points. On
/// 30 points, a state seen once a minute (no ping in a 2 s window, a scrape landing with
/// a batch write) had an empty cell in most references: 2.4 % of calm stack windows
/// flagged at `window_size: 30`, 0.4 % with this. At the default window of 250 the
/// reference is the previous window, as in the paper.
pub const REFERENCE_POINTS: usize = 250;

/// Narrowest cell of a tree along a feature, in noise floors ([`Feature::noise_floor`]):
/// a node whose halves would be narrower than this along the feature its position
/// picks splits another feature of its subspace instead, or none (it is a leaf).
/// Without it the floor only widened the learned range and the trees split on, down to
/// the reference's own jitter: on 30 reference windows of ~10 new HTTP connections a
/// second, a window of 14 (one step past the largest seen) fell in empty cells of every
/// tree splitting the connection count or the SYN ratios, which move together, and
/// scored 0.73 (real traffic, `vigia-capture`'s `tests/detection_netns_root.rs`). Two
/// floors: a cell spans the jitter of a value on either side of its centre.
const CELL_FLOORS: f64 = 2.0;

/// Half-Space Trees ensemble with per-feature scaling and robust z-score explanations.
#[derive(Debug, Clone)]
pub struct HalfSpaceTrees {
    config: AnomalyConfig,
    features: Vec<Feature>,
    trees: Vec<Tree>,
    /// Latest window, row-major (`window_size` rows of `dims` transformed values).
    latest: Vec<f64>,
    /// Whether each value of `latest` was observed as given (not a replacement).
    latest_observed: Vec<bool>,
    /// The score of each row of `latest` (0 during warm-up).
    latest_scores: Vec<f64>,
    /// The windows the reference is built from, oldest first.
    history: VecDeque<Window>,
    reference: Option<Reference>,
    /// Last finite transformed value per feature, the stand-in for NaN during warm-up.
    last_finite: Vec<f64>,
    /// Scratch row of normalized values, reused to avoid an allocation per point.
    normalized: Vec<f64>,
    /// Scratch per-tree scores.
    tree_scores: Vec<f64>,
    /// For each feature, the trees whose subspace holds it.
    trees_by_feature: Vec<Vec<usize>>,
    /// Which features are scored on their rises only ([`Feature::rising`]); `None` when
    /// none is, so such detectors take the plain descent.
    rising: Option<Vec<bool>>,
}

/// One window of points as they were learned.
#[derive(Debug, Clone, Default)]
struct Window {
    /// Row-major transformed values.
    values: Vec<f64>,
    /// Whether each value was observed as given (not a replacement).
    observed: Vec<bool>,
    /// Each row's score when it came.
    scores: Vec<f64>,
}

/// What the detector knows about the reference window.
#[derive(Debug, Clone)]
struct Reference {
    /// Points the profile was built from.
    points: usize,
    ranges: Vec<Range>,
    median: Vec<f64>,
    spread: Vec<f64>,
    /// The `CALM_QUANTILE` of the reference points' own raw scores: the point of the
    /// raw scale that calibrates to 0.5.
    calm_raw_score: f64,
}

impl Reference {
    /// Maps a raw score to the published scale: `[0, calm]` onto `[0, 0.5]` and
    /// `[calm, 1]` onto `[0.5, 1]`, so 0.5 means "as unusual as the most unusual 1 % of
    /// the reference window" whatever the window size and the number of features.
    fn calibrate(&self, raw: f64) -> f64 {
        let calm = self.calm_raw_score;
        let value = if raw <= calm {
            // calm > 0 here unless raw is 0 too, which is 0 on any scale.
            if calm > 0.0 {
                0.5 * raw / calm
            } else {
                0.0
            }
        } else {
            0.5 + 0.5 * (raw - calm) / (1.0 - calm)
        };
        value.clamp(0.0, 1.0)
    }
}

#[derive(Debug, Clone)]
struct Tree {
    seed: u64,
    /// Features this tree splits (a random subspace).
    subspace: Vec<usize>,
    /// Median leave-one-out log-mass of the reference points in this tree: the level a
    /// score of 0 stands for.
    typical_log_mass: f64,
    /// Reference points outside the work space, by cell: for each subspace feature and
    /// side, [`OUTSIDE_BINS`] cells at doubling distances from the work space, and a
    /// point belongs to the one of the feature it is furthest out by. A lasting shift
    /// beyond the work space is learned like any other region, while a spike the other
    /// way, or much further out than what the reference holds there, still finds its
    /// cell empty.
    outside_mass: Vec<u32>,
    /// Work space per dimension: `[s - 2 max(s, 1-s), s + 2 max(s, 1-s)]` for a uniform
    /// random `s`, as in the paper, so every tree covers the unit cube off-centre.
    space_low: Vec<f64>,
    space_high: Vec<f64>,
    nodes: Vec<Node>,
}

#[derive(Debug, Clone, Copy)]
struct Node {
    /// Reference points in this node.
    mass: u32,
    /// Index of the left child; the right child follows it. 0 marks a leaf (the root is
    /// never anyone's child).
    left: u32,
    dim: u32,
    split: f64,
    /// The largest `log2(1 + mass * 2^depth)` of the leaves under this node: what a
    /// point reaching all of them (below the node's cell in every rising feature) scores.
    best: f64,
}

impl Node {
    const LEAF: Node = Node {
        mass: 0,
        left: 0,
        dim: 0,
        split: 0.0,
        best: 0.0,
    };
}

impl HalfSpaceTrees {
    /// A detector over `features` (their count fixes the input dimension). Fails on an
    /// invalid configuration or an empty feature list.
    pub fn new(config: &AnomalyConfig, features: Vec<Feature>) -> Result<Self, ConfigProblem> {
        config.validate("anomaly")?;
        if features.is_empty() {
            return Err(ConfigProblem::new(
                "features",
                "the detector needs at least one feature",
            ));
        }
        if let Some(bad) = features
            .iter()
            .find(|f| !(f.min_spread.is_finite() && f.min_spread >= 0.0))
        {
            return Err(ConfigProblem::new(
                "features",
                format!(
                    "feature {:?} has a noise floor of {}: it must be finite and at least 0",
                    bad.name, bad.min_spread
                ),
            ));
        }
        if features.len() > u32::MAX as usize {
            return Err(ConfigProblem::new("features", "too many features"));
        }
        let dims = features.len();
        let mut rng = SplitMix64::new(config.seed);
        let subspace_size = dims.min(FEATURES_PER_TREE);
        // Features are dealt to trees from shuffled decks so that each one is covered by
        // about `trees * FEATURES_PER_TREE / dims` trees, never by none.
        if config.trees * subspace_size < dims {
            return Err(ConfigProblem::new(
                "anomaly.trees",
                format!(
                    "{} trees of {subspace_size} features cannot cover {dims} features; \
                     use at least {}",
                    config.trees,
                    dims.div_ceil(subspace_size)
                ),
            ));
        }
        let mut deck: Vec<usize> = Vec::with_capacity(dims);
        let trees = (0..config.trees)
            .map(|_| {
                let seed = rng.next_u64();
                let mut subspace = Vec::with_capacity(subspace_size);
                while subspace.len() < subspace_size {
                    if deck.is_empty() {
                        deck.extend(0..dims);
                        shuffle(&mut deck, &mut rng);
                    }
                    let feature = deck.pop().unwrap_or_default();
                    if !subspace.contains(&feature) {
                        subspace.push(feature);
                    } else {
                        // Seen in this tree already: put it back for a later tree.
                        deck.insert(0, feature);
                    }
                }
                subspace.sort_unstable();
                let mut space_low = Vec::with_capacity(dims);
                let mut space_high = Vec::with_capacity(dims);
                for _ in 0..dims {
                    let s = rng.next_f64();
                    let half = 2.0 * s.max(1.0 - s);
                    space_low.push(s - half);
                    space_high.push(s + half);
                }
                Tree {
                    seed,
                    typical_log_mass: 0.0,
                    outside_mass: vec![0; 2 * subspace_size * OUTSIDE_BINS],
                    subspace,
                    space_low,
                    space_high,
                    nodes: vec![Node::LEAF],
                }
            })
            .collect::<Vec<Tree>>();
        let trees_by_feature = (0..dims)
            .map(|feature| {
                trees
                    .iter()
                    .enumerate()
                    .filter(|(_, tree)| tree.subspace.contains(&feature))
                    .map(|(index, _)| index)
                    .collect()
            })
            .collect();
        let rising = features
            .iter()
            .any(|f| f.rising)
            .then(|| features.iter().map(|f| f.rising).collect());
        Ok(Self {
            rising,
            tree_scores: vec![0.0; trees.len()],
            trees_by_feature,
            config: config.clone(),
            trees,
            latest: Vec::with_capacity(config.window_size * dims),
            latest_observed: Vec::with_capacity(config.window_size * dims),
            latest_scores: Vec::with_capacity(config.window_size),
            history: VecDeque::new(),
            reference: None,
            last_finite: vec![0.0; dims],
            normalized: vec![0.0; dims],
            features,
        })
    }

    pub fn features(&self) -> &[Feature] {
        &self.features
    }

    pub fn config(&self) -> &AnomalyConfig {
        &self.config
    }

    /// Points still needed before the first score (0 once warm).
    pub fn warmup_remaining(&self) -> usize {
        if self.reference.is_some() {
            0
        } else {
            self.config.window_size - self.latest.len() / self.dims()
        }
    }

    /// Nodes currently held by all trees together (the memory the profiles use).
    pub fn node_count(&self) -> usize {
        self.trees.iter().map(|tree| tree.nodes.len()).sum()
    }

    /// Windows the reference spans once the detector has seen them.
    pub fn reference_windows(&self) -> usize {
        reference_windows(self.config.window_size)
    }

    /// Points in the current reference profile (0 during warm-up).
    pub fn reference_points(&self) -> usize {
        self.reference.as_ref().map_or(0, |r| r.points)
    }

    /// The uncalibrated score of a normalized point: per tree `1 - log_mass / typical`,
    /// averaged over the trees that cover each feature, and the largest of those averages.
    fn raw_score(&mut self, point: &[f64]) -> f64 {
        let rising = self.rising.as_deref();
        for (tree, score) in self.trees.iter().zip(self.tree_scores.iter_mut()) {
            *score = tree.score(tree.scored_log_mass(point, false, rising));
        }
        largest_feature_mean(&self.trees_by_feature, &self.tree_scores)
    }

    /// The points of the reference windows (values and whether each was observed), but
    /// the highest-scoring anomalies, at most [`MAX_HELD_OUT_SHARE`] of them.
    fn trimmed_reference(&self) -> (Vec<f64>, Vec<bool>) {
        let dims = self.dims();
        let total: usize = self.history.iter().map(|w| w.scores.len()).sum();
        let budget = (MAX_HELD_OUT_SHARE * total as f64) as usize;
        // (window, row) of the anomalies, highest score first, then the most recent.
        let mut anomalies: Vec<(usize, usize)> = Vec::new();
        if budget > 0 {
            for (w, window) in self.history.iter().enumerate() {
                for (row, &score) in window.scores.iter().enumerate() {
                    if score >= self.config.threshold {
                        anomalies.push((w, row));
                    }
                }
            }
            let score = |&(w, row): &(usize, usize)| self.history[w].scores[row];
            anomalies.sort_by(|a, b| score(b).total_cmp(&score(a)).then(b.cmp(a)));
            anomalies.truncate(budget);
            anomalies.sort_unstable();
        }
        let mut values = Vec::with_capacity((total - anomalies.len()) * dims);
        let mut observed = Vec::with_capacity(values.capacity());
        let mut held_out = anomalies.iter().peekable();
        for (w, window) in self.history.iter().enumerate() {
            for row in 0..window.scores.len() {
                if held_out.peek() == Some(&&(w, row)) {
                    held_out.next();
                    continue;
                }
                values.extend_from_slice(&window.values[row * dims..(row + 1) * dims]);
                observed.extend_from_slice(&window.observed[row * dims..(row + 1) * dims]);
            }
        }
        (values, observed)
    }

    /// Ends a window: it joins the windows the reference is built from, the oldest one
    /// leaves, and the profile is rebuilt from their points but the few that scored
    /// highest at or above the threshold (the trim, [`MAX_HELD_OUT_SHARE`]).
    fn swap_windows(&mut self) {
        let dims = self.dims();
        let window = Window {
            values: std::mem::take(&mut self.latest),
            observed: std::mem::take(&mut self.latest_observed),
            scores: std::mem::take(&mut self.latest_scores),
        };
        self.history.push_back(window);
        while self.history.len() > self.reference_windows() {
            // The oldest window's buffers are reused for the next one.
            if let Some(mut old) = self.history.pop_front() {
                old.values.clear();
                old.observed.clear();
                old.scores.clear();
                self.latest = old.values;
                self.latest_observed = old.observed;
                self.latest_scores = old.scores;
            }
        }
        let (points, points_observed) = self.trimmed_reference();
        let rows = points.len() / dims;
        let mut column = Vec::with_capacity(rows);
        let mut ranges = Vec::with_capacity(dims);
        let mut median = Vec::with_capacity(dims);
        let mut spread = Vec::with_capacity(dims);
        let mut floors = Vec::with_capacity(dims);
        for feature in 0..dims {
            // Statistics come from observed values only: replaced ones (NaN, infinities,
            // saturated magnitudes) would drag the quantiles wherever they were put.
            column.clear();
            column.extend(
                (0..rows)
                    .filter(|&row| points_observed[row * dims + feature])
                    .map(|row| points[row * dims + feature]),
            );
            if column.is_empty() {
                match &self.reference {
                    Some(previous) => {
                        ranges.push(previous.ranges[feature]);
                        median.push(previous.median[feature]);
                        spread.push(previous.spread[feature]);
                        floors.push(self.features[feature].noise_floor(previous.median[feature]));
                        continue;
                    }
                    None => column.push(self.last_finite[feature]),
                }
            }
            column.sort_by(f64::total_cmp);
            let window_range = Range::of_sorted(&column);
            let mid = quantile(&column, 0.5);
            let min_spread = self.features[feature].noise_floor(mid);
            let range = match &self.reference {
                Some(previous) => {
                    let mut range = previous.ranges[feature];
                    range.follow(window_range);
                    range
                }
                None => window_range,
            }
            .with_floor(min_spread);
            for value in column.iter_mut() {
                *value = (*value - mid).abs();
            }
            column.sort_by(f64::total_cmp);
            let mad = quantile(&column, 0.5);
            // A discrete feature (a count of 4, 5 or 6 sources) has a MAD of 0 or next to
            // it; the mean absolute deviation still sees its spread.
            let mean_ad = column.iter().sum::<f64>() / column.len() as f64;
            let sigma = (MAD_TO_SIGMA * mad).max(MEAN_AD_TO_SIGMA * mean_ad);
            let (_, width) = range.origin_and_width();
            spread.push(sigma.max(MIN_SPREAD_SHARE * width).max(min_spread));
            floors.push(min_spread);
            median.push(mid);
            ranges.push(range);
        }

        let normalized: Vec<f64> = points
            .chunks_exact(dims)
            .flat_map(|row| {
                row.iter()
                    .zip(&ranges)
                    .map(|(t, range)| range.normalize(*t))
            })
            .collect();
        // Equal points fall in the same cells and measure the same, so the trees are grown
        // from the distinct points, each weighing as many as it stands for, and each is
        // measured once: after a quiet spell the reference holds hundreds of copies of the
        // empty window, and measuring each copy made such a rebuild cost about 6 ms
        // instead of 0.15 ms (packets a day apart: 34 ms of CPU a day, now 0.9 ms;
        // bench/RESULTS.md, quiet spells).
        let distinct = Distinct::of(&normalized, dims);
        let size_limit = (rows / 10).max(1) as u32;
        let max_depth = self.config.depth as u32;
        let resolution: Vec<f64> = floors
            .iter()
            .zip(&ranges)
            .map(|(floor, range)| {
                let (_, width) = range.origin_and_width();
                CELL_FLOORS * floor / width
            })
            .collect();
        let mut order: Vec<u32> = Vec::with_capacity(distinct.weights.len());
        for tree in &mut self.trees {
            order.clear();
            order.extend(0..distinct.weights.len() as u32);
            tree.rebuild(
                &distinct,
                dims,
                &mut order,
                size_limit,
                max_depth,
                &resolution,
            );
        }

        // Each reference point measured as if it were new (left out of its own cell):
        // per tree, the median is the level a tree score of 0 stands for; over the
        // ensemble, the reference's own raw scores show how high calm points go.
        // With rising features, the reference points are measured as new points are (the
        // densest cell reachable by raising them) for the calibration, and as they are
        // for the typical level.
        let trees = self.trees.len();
        let rising = self.rising.as_deref();
        let kinds = distinct.weights.len();
        let mut log_masses = vec![0.0; kinds * trees];
        let mut plain = vec![0.0; kinds];
        let mut sorted = Vec::with_capacity(rows);
        for (t, tree) in self.trees.iter_mut().enumerate() {
            for (d, point) in distinct.points.chunks_exact(dims).enumerate() {
                plain[d] = tree.log_mass(point, true);
                log_masses[d * trees + t] = match rising {
                    Some(_) => tree.scored_log_mass(point, true, rising),
                    None => plain[d],
                };
            }
            sorted.clear();
            sorted.extend(distinct.of_row.iter().map(|&d| plain[d as usize]));
            sorted.sort_by(f64::total_cmp);
            tree.typical_log_mass = quantile(&sorted, 0.5);
        }
        let distinct_raw_scores: Vec<f64> = log_masses
            .chunks_exact(trees)
            .map(|row| {
                for ((tree, score), &log_mass) in
                    self.trees.iter().zip(self.tree_scores.iter_mut()).zip(row)
                {
                    *score = tree.score(log_mass);
                }
                largest_feature_mean(&self.trees_by_feature, &self.tree_scores)
            })
            .collect();
        let mut raw_scores: Vec<f64> = distinct
            .of_row
            .iter()
            .map(|&d| distinct_raw_scores[d as usize])
            .collect();
        raw_scores.sort_by(f64::total_cmp);
        let calm_raw_score = quantile(&raw_scores, CALM_QUANTILE).min(MAX_CALM_RAW_SCORE);

        self.reference = Some(Reference {
            points: rows,
            ranges,
            median,
            spread,
            calm_raw_score,
        });
    }

    /// The calibrated score and the z-scores of a transformed row against the reference
    /// (0 and zeros during warm-up). Learns nothing.
    fn score_row(&mut self, row: &[f64]) -> (f64, Vec<f64>) {
        let dims = self.dims();
        let mut contributions = vec![0.0; dims];
        let Some(reference) = &self.reference else {
            return (0.0, contributions);
        };
        let mut normalized = std::mem::take(&mut self.normalized);
        for feature in 0..dims {
            let t = row[feature];
            normalized[feature] = reference.ranges[feature].normalize(t);
            let mut z = (t - reference.median[feature]) / reference.spread[feature];
            if self.features[feature].rising {
                z = z.max(0.0);
            }
            contributions[feature] = z.clamp(-MAX_Z, MAX_Z);
        }
        let raw = self.raw_score(&normalized);
        self.normalized = normalized;
        let value = self.reference.as_ref().map_or(0.0, |r| r.calibrate(raw));
        (value, contributions)
    }

    /// What learning `x` would store: its transformed values, whether each was observed
    /// as given, and how many were replaced (as [`Detector::score_and_learn`] does it).
    fn transformed(&self, x: &[f64]) -> (Vec<f64>, Vec<bool>, usize) {
        let mut values = Vec::with_capacity(x.len());
        let mut observed = Vec::with_capacity(x.len());
        let mut replaced_inputs = 0;
        for (feature, &raw) in x.iter().enumerate() {
            let (t, replaced) = if raw.is_nan() {
                let fallback = match &self.reference {
                    Some(reference) => reference.median[feature],
                    None => self.last_finite[feature],
                };
                (fallback, true)
            } else {
                let (value, replaced) = saturate(raw);
                (self.features[feature].scaling.transform(value), replaced)
            };
            values.push(t);
            observed.push(!replaced);
            replaced_inputs += usize::from(replaced);
        }
        (values, observed, replaced_inputs)
    }

    /// Whether every window the reference is built from holds nothing but `row`: from
    /// there on, more windows of it change only the learned ranges (see
    /// [`HalfSpaceTrees::score_and_learn_repeated`]).
    fn saturated_on(&self, row: &[f64], observed: &[bool]) -> bool {
        let dims = self.dims();
        self.reference.is_some()
            && self.latest.is_empty()
            && self.history.len() == self.reference_windows()
            && self.history.iter().all(|w| {
                w.values
                    .chunks_exact(dims)
                    .zip(w.observed.chunks_exact(dims))
                    .all(|(v, o)| v == row && o == observed)
            })
    }

    /// Scores and learns `count` copies of `x`, exactly as `count` calls of
    /// [`Detector::score_and_learn`] would, at a cost that does not grow with `count`
    /// once the reference holds nothing but `x` (an exporter's quiet hours: a capture's
    /// empty windows, however many). Returns the verdicts as runs of equal ones.
    ///
    /// Copies of one point that land in the same window all get its first copy's verdict
    /// (the reference only changes between windows), so each window costs one score and
    /// its rebuild. Once every window the reference is built from holds only `x`, a
    /// rebuild gives the same trees, medians and calibration whatever the ranges, every
    /// copy scores the same, and the only state that still moves is each feature's range
    /// (10 % of the way towards `x` per window, [`Range::follow`]): the remaining windows
    /// cost one range step per feature each, stopped when the step no longer changes it
    /// (floating point reaches that within a few hundred steps), and one real rebuild.
    pub fn score_and_learn_repeated(
        &mut self,
        x: &[f64],
        count: u64,
    ) -> Result<Vec<ScoreRun>, DimsMismatch> {
        let dims = self.dims();
        if x.len() != dims {
            return Err(DimsMismatch {
                expected: dims,
                got: x.len(),
            });
        }
        let window = self.config.window_size as u64;
        let mut runs: Vec<ScoreRun> = Vec::new();
        let push = |runs: &mut Vec<ScoreRun>, score: Score, count: u64| match runs.last_mut() {
            Some(last) if last.score == score => last.count += count,
            _ => runs.push(ScoreRun { score, count }),
        };
        let mut left = count;
        while left > 0 {
            if left >= window {
                let (row, observed, replaced_inputs) = self.transformed(x);
                if self.saturated_on(&row, &observed) {
                    let windows = left / window;
                    let (value, contributions) = self.score_row(&row);
                    let score = Score {
                        value,
                        warm: true,
                        contributions,
                        replaced_inputs,
                    };
                    self.fast_forward(&row, &observed, windows, value);
                    push(&mut runs, score, windows * window);
                    left -= windows * window;
                    continue;
                }
            }
            let score = self.score_and_learn(x)?;
            left -= 1;
            let mut copies = 1;
            let rows = (self.latest.len() / dims) as u64;
            if rows > 0 {
                // No rebuild happened: the rest of this window gets the same verdict.
                let k = left.min(window - rows);
                let start = self.latest.len() - dims;
                for _ in 0..k {
                    self.latest.extend_from_within(start..start + dims);
                    self.latest_observed.extend_from_within(start..start + dims);
                    self.latest_scores.push(score.value);
                }
                left -= k;
                copies += k;
                if self.latest.len() == self.config.window_size * dims {
                    self.swap_windows();
                }
            }
            push(&mut runs, score, copies);
        }
        Ok(runs)
    }

    /// `windows` whole windows of `row` on a saturated detector: all but the last move
    /// the ranges and the scores the history holds, the last is learned for real.
    fn fast_forward(&mut self, row: &[f64], observed: &[bool], windows: u64, value: f64) {
        let skipped = windows - 1;
        // The windows that would have replaced the oldest ones hold the same points, with
        // this score.
        for _ in 0..skipped.min(self.history.len() as u64) {
            if let Some(mut oldest) = self.history.pop_front() {
                oldest.scores.fill(value);
                self.history.push_back(oldest);
            }
        }
        if let Some(reference) = &mut self.reference {
            for feature in 0..row.len() {
                if !observed[feature] {
                    // No observed value: every rebuild carries the range over.
                    continue;
                }
                let target = Range::of_sorted(&[row[feature]]);
                // The reference holds only `row`: its median is the row's value.
                let floor = self.features[feature].noise_floor(row[feature]);
                let mut range = reference.ranges[feature];
                for _ in 0..skipped {
                    let mut next = range;
                    next.follow(target);
                    let next = next.with_floor(floor);
                    if next == range {
                        break;
                    }
                    range = next;
                }
                reference.ranges[feature] = range;
            }
        }
        let rows = self.config.window_size;
        for _ in 0..rows {
            self.latest.extend_from_slice(row);
            self.latest_observed.extend_from_slice(observed);
            self.latest_scores.push(value);
        }
        self.swap_windows();
    }
}

impl Detector for HalfSpaceTrees {
    fn score_and_learn_repeated(
        &mut self,
        x: &[f64],
        count: u64,
    ) -> Result<Vec<ScoreRun>, DimsMismatch> {
        HalfSpaceTrees::score_and_learn_repeated(self, x, count)
    }

    fn score_and_learn(&mut self, x: &[f64]) -> Result<Score, DimsMismatch> {
        let dims = self.dims();
        if x.len() != dims {
            return Err(DimsMismatch {
                expected: dims,
                got: x.len(),
            });
        }
        let mut replaced_inputs = 0;
        let start = self.latest.len();
        for (feature, &raw) in x.iter().enumerate() {
            // NaN stands in as a neutral value: the reference median once there is one,
            // the last usable value before that.
            let fallback = match &self.reference {
                Some(reference) => reference.median[feature],
                None => self.last_finite[feature],
            };
            let (transformed, replaced) = if raw.is_nan() {
                (fallback, true)
            } else {
                let (value, replaced) = saturate(raw);
                (self.features[feature].scaling.transform(value), replaced)
            };
            if !replaced {
                self.last_finite[feature] = transformed;
            }
            replaced_inputs += usize::from(replaced);
            self.latest.push(transformed);
            self.latest_observed.push(!replaced);
        }

        let row = self.latest[start..].to_vec();
        let (value, contributions) = self.score_row(&row);
        self.latest_scores.push(value);
        let score = Score {
            value,
            warm: self.reference.is_some(),
            contributions,
            replaced_inputs,
        };

        if self.latest.len() == self.config.window_size * dims {
            self.swap_windows();
        }
        Ok(score)
    }

    fn warm(&self) -> bool {
        self.reference.is_some()
    }

    fn dims(&self) -> usize {
        self.features.len()
    }
}

impl Tree {
    /// Rebuilds the mass profile from the distinct points `order` lists (each weighing
    /// as many points as it stands for).
    fn rebuild(
        &mut self,
        distinct: &Distinct,
        dims: usize,
        order: &mut [u32],
        size_limit: u32,
        max_depth: u32,
        resolution: &[f64],
    ) {
        let points = &distinct.points[..];
        self.nodes.clear();
        self.nodes.push(Node::LEAF);
        let mut low = self.space_low.clone();
        let mut high = self.space_high.clone();
        self.outside_mass.fill(0);
        let mut kept = 0;
        for i in 0..order.len() {
            let row = order[i] as usize;
            match self.outside_side(&points[row * dims..(row + 1) * dims], None) {
                Some(side) => self.outside_mass[side] += distinct.weights[row],
                None => {
                    order.swap(i, kept);
                    kept += 1;
                }
            }
        }
        let order = &mut order[..kept];
        let mut grow = Grow {
            points,
            weights: &distinct.weights,
            dims,
            size_limit,
            max_depth,
            resolution,
            low: &mut low,
            high: &mut high,
        };
        grow.node(self, 0, 1, 0, order);
        // Children come after their parent: depths forwards, best leaves backwards.
        let mut depths = vec![0u32; self.nodes.len()];
        for i in 0..self.nodes.len() {
            let left = self.nodes[i].left as usize;
            if left != 0 {
                depths[left] = depths[i] + 1;
                depths[left + 1] = depths[i] + 1;
            }
        }
        for i in (0..self.nodes.len()).rev() {
            let node = self.nodes[i];
            self.nodes[i].best = if node.left == 0 {
                (1.0 + f64::from(node.mass) * f64::from(depths[i]).exp2()).log2()
            } else {
                let left = node.left as usize;
                self.nodes[left].best.max(self.nodes[left + 1].best)
            };
        }
    }

    /// This tree's score for a log-mass: 0 at or above the typical level, 1 for an empty
    /// cell, 0 for a tree that learned nothing (its reference points all left alone).
    fn score(&self, log_mass: f64) -> f64 {
        if self.typical_log_mass > 0.0 {
            (1.0 - log_mass / self.typical_log_mass).clamp(0.0, 1.0)
        } else {
            0.0
        }
    }

    /// `log2(1 + mass * 2^depth)` at the node where `point` stops. With `leave_one_out`
    /// the point is taken to be one of the reference points and not counted in its own
    /// mass, so reference points are measured the way new points are.
    fn log_mass(&self, point: &[f64], leave_one_out: bool) -> f64 {
        let (mass, depth) = self.terminal(point);
        let mass = if leave_one_out {
            mass.saturating_sub(1)
        } else {
            mass
        };
        (1.0 + f64::from(mass) * f64::from(depth).exp2()).log2()
    }

    /// The log-mass a point is scored with: where it stops descending or, with rising
    /// features (`rising[feature]`), the largest over the cells it reaches when any of
    /// them is raised (a value below a split on a rising feature may go either way).
    fn scored_log_mass(&self, point: &[f64], leave_one_out: bool, rising: Option<&[bool]>) -> f64 {
        let Some(rising) = rising else {
            return self.log_mass(point, leave_one_out);
        };
        // Raising by nothing is one of the choices: the point's own cell counts too (a point
        // below the work space in a rising feature, in an outside cell the reference shares).
        let own = self.log_mass(point, leave_one_out);
        let own_outside = self.outside_side(point, None);
        let raised = match self.outside_side(point, Some(rising)) {
            Some(side) => {
                let mut mass = self.outside_mass[side];
                if leave_one_out && own_outside == Some(side) {
                    mass = mass.saturating_sub(1);
                }
                (1.0 + f64::from(mass)).log2()
            }
            None => {
                let mut lows = [f64::NEG_INFINITY; FEATURES_PER_TREE];
                for (slot, &d) in self.subspace.iter().enumerate() {
                    lows[slot] = self.space_low[d];
                }
                let all_rising = self.subspace.iter().all(|&d| rising[d]);
                let cell = Cell {
                    lows,
                    all_rising,
                    own: leave_one_out && own_outside.is_none(),
                };
                self.densest(0, 0, point, rising, cell)
            }
        };
        own.max(raised)
    }

    /// The largest `log2(1 + mass * 2^depth)` under node `index` that `point` reaches with
    /// its rising features raised (`cell.own`: this node is on the point's own path, where
    /// a leave-one-out measure does not count the point itself).
    fn densest(&self, index: usize, depth: u32, point: &[f64], rising: &[bool], cell: Cell) -> f64 {
        let node = self.nodes[index];
        if node.left == 0 {
            let mass = if cell.own {
                node.mass.saturating_sub(1)
            } else {
                node.mass
            };
            return (1.0 + f64::from(mass) * f64::from(depth).exp2()).log2();
        }
        // At or below the cell's lower corner in every (rising) feature: every leaf under
        // it is reachable.
        if !cell.own
            && cell.all_rising
            && self
                .subspace
                .iter()
                .zip(&cell.lows)
                .all(|(&d, &low)| point[d] <= low)
        {
            return node.best;
        }
        let dim = node.dim as usize;
        let left = node.left as usize;
        let mut upper = cell;
        if let Some(slot) = self.subspace.iter().position(|&d| d == dim) {
            upper.lows[slot] = node.split;
        }
        if point[dim] >= node.split {
            return self.densest(left + 1, depth + 1, point, rising, upper);
        }
        let below = self.densest(left, depth + 1, point, rising, cell);
        if !rising[dim] {
            return below;
        }
        upper.own = false;
        below.max(self.densest(left + 1, depth + 1, point, rising, upper))
    }

    /// Mass and depth of the node where `point` stops descending.
    fn terminal(&self, point: &[f64]) -> (u32, u32) {
        if let Some(side) = self.outside_side(point, None) {
            return (self.outside_mass[side], 0);
        }
        let mut index = 0;
        let mut depth = 0;
        loop {
            let node = self.nodes[index];
            if node.left == 0 {
                return (node.mass, depth);
            }
            index = node.left as usize + usize::from(point[node.dim as usize] >= node.split);
            depth += 1;
        }
    }

    /// Which outside cell `point` belongs to, or `None` inside the work space. With
    /// `rising`, a rising feature below the work space does not put the point outside (it
    /// may be raised into it).
    fn outside_side(&self, point: &[f64], rising: Option<&[bool]>) -> Option<usize> {
        let mut furthest: Option<(usize, f64)> = None;
        for (slot, &d) in self.subspace.iter().enumerate() {
            let (low, high) = (self.space_low[d], self.space_high[d]);
            let (side, excess) = if point[d] < low {
                if rising.is_some_and(|r| r[d]) {
                    continue;
                }
                (0, low - point[d])
            } else if point[d] >= high {
                (1, point[d] - high)
            } else {
                continue;
            };
            // In work-space widths, so every feature's cells have the same sizes.
            let excess = excess / (high - low);
            if !matches!(furthest, Some((_, e)) if e >= excess) {
                furthest = Some((2 * slot + side, excess));
            }
        }
        furthest.map(|(side, excess)| {
            // Bin 0 holds excesses under 1/8 of a width, then one bin per doubling.
            let bin = (excess.log2().floor() + 4.0).clamp(0.0, (OUTSIDE_BINS - 1) as f64);
            side * OUTSIDE_BINS + bin as usize
        })
    }

    /// The split dimension of the node at heap position `position`: fixed by the tree's
    /// seed, so rebuilding a window never reshapes the tree.
    fn split_dim(&self, position: u64) -> usize {
        let pick = mix(self.seed ^ position.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        self.subspace[(pick % self.subspace.len() as u64) as usize]
    }
}

/// Where a rising descent is: the lower corner of the current cell in the tree's
/// subspace, whether every feature of the subspace is rising, and whether the cell is on
/// the point's own path.
#[derive(Clone, Copy)]
struct Cell {
    lows: [f64; FEATURES_PER_TREE],
    all_rising: bool,
    own: bool,
}

/// State of one rebuild: the window's points and the current node's extent.
struct Grow<'a> {
    points: &'a [f64],
    /// How many reference points each of `points` stands for.
    weights: &'a [u32],
    dims: usize,
    size_limit: u32,
    max_depth: u32,
    /// Narrowest cell per dimension, in normalized units: a node does not split a
    /// feature whose halves would be narrower (its noise floor, [`CELL_FLOORS`]).
    resolution: &'a [f64],
    low: &'a mut [f64],
    high: &'a mut [f64],
}

impl Grow<'_> {
    /// `dim` when this node can still be halved along it; otherwise the next feature of
    /// the tree's subspace that can (in subspace order, wrapping), or `None`: every
    /// feature of the subspace is at its noise floor here and the node is a leaf.
    fn resolvable(&self, tree: &Tree, dim: usize) -> Option<usize> {
        let can = |d: usize| 0.5 * (self.high[d] - self.low[d]) >= self.resolution[d];
        if can(dim) {
            return Some(dim);
        }
        let start = tree.subspace.iter().position(|&d| d == dim).unwrap_or(0);
        (1..tree.subspace.len())
            .map(|k| tree.subspace[(start + k) % tree.subspace.len()])
            .find(|&d| can(d))
    }

    fn node(
        &mut self,
        tree: &mut Tree,
        index: usize,
        position: u64,
        depth: u32,
        members: &mut [u32],
    ) {
        let mass = members.iter().map(|&m| self.weights[m as usize]).sum();
        tree.nodes[index].mass = mass;
        if mass < self.size_limit || depth == self.max_depth {
            return;
        }
        let Some(dim) = self.resolvable(tree, tree.split_dim(position)) else {
            return;
        };
        let split = 0.5 * (self.low[dim] + self.high[dim]);
        let mut left_count = 0;
        for i in 0..members.len() {
            if self.points[members[i] as usize * self.dims + dim] < split {
                members.swap(i, left_count);
                left_count += 1;
            }
        }
        let left = tree.nodes.len();
        tree.nodes.push(Node::LEAF);
        tree.nodes.push(Node::LEAF);
        tree.nodes[index] = Node {
            mass,
            left: left as u32,
            dim: dim as u32,
            split,
            best: 0.0,
        };
        let (left_members, right_members) = members.split_at_mut(left_count);

        let saved = self.high[dim];
        self.high[dim] = split;
        self.node(tree, left, position * 2, depth + 1, left_members);
        self.high[dim] = saved;

        let saved = self.low[dim];
        self.low[dim] = split;
        self.node(tree, left + 1, position * 2 + 1, depth + 1, right_members);
        self.low[dim] = saved;
    }
}

/// The distinct rows of a row-major set of points (equal meaning the same bits).
struct Distinct {
    /// Each distinct row once, row-major, in the order of its first appearance.
    points: Vec<f64>,
    /// How many rows each one stands for.
    weights: Vec<u32>,
    /// For every row of the set, which distinct row it is.
    of_row: Vec<u32>,
}

impl Distinct {
    fn of(points: &[f64], dims: usize) -> Distinct {
        let rows = points.len() / dims.max(1);
        let row = |r: usize| &points[r * dims..(r + 1) * dims];
        // total_cmp is equal exactly when the bits are (0.0 and -0.0 differ, a NaN equals
        // itself), so equal rows sort next to each other.
        let compare = |a: usize, b: usize| {
            row(a)
                .iter()
                .zip(row(b))
                .map(|(x, y)| x.total_cmp(y))
                .find(|o| o.is_ne())
                .unwrap_or(std::cmp::Ordering::Equal)
        };
        let mut order: Vec<usize> = (0..rows).collect();
        order.sort_by(|&a, &b| compare(a, b).then(a.cmp(&b)));
        let mut first_row = vec![0usize; rows];
        for (i, &r) in order.iter().enumerate() {
            first_row[r] = if i > 0 && compare(order[i - 1], r).is_eq() {
                first_row[order[i - 1]]
            } else {
                r
            };
        }
        let mut distinct = Distinct {
            points: Vec::new(),
            weights: Vec::new(),
            of_row: vec![0; rows],
        };
        let mut index_of_first = vec![u32::MAX; rows];
        for (r, &first) in first_row.iter().enumerate() {
            if index_of_first[first] == u32::MAX {
                index_of_first[first] = distinct.weights.len() as u32;
                distinct.points.extend_from_slice(row(first));
                distinct.weights.push(0);
            }
            let d = index_of_first[first];
            distinct.weights[d as usize] += 1;
            distinct.of_row[r] = d;
        }
        distinct
    }
}

/// Windows a reference spans: enough for [`REFERENCE_POINTS`], at least one.
fn reference_windows(window_size: usize) -> usize {
    REFERENCE_POINTS.div_ceil(window_size.max(1)).max(1)
}

/// For each feature the mean score of the trees covering it; the largest of those means.
fn largest_feature_mean(trees_by_feature: &[Vec<usize>], tree_scores: &[f64]) -> f64 {
    trees_by_feature
        .iter()
        .filter(|trees| !trees.is_empty())
        .map(|trees| trees.iter().map(|&t| tree_scores[t]).sum::<f64>() / trees.len() as f64)
        .fold(0.0, f64::max)
}

/// Fisher-Yates shuffle driven by the detector's seeded generator.
fn shuffle(items: &mut [usize], rng: &mut SplitMix64) {
    for i in (1..items.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Distinct {
        /// Every row on its own, weighing one: what the trees were grown from before.
        fn each(points: &[f64], dims: usize) -> Distinct {
            let rows = points.len() / dims;
            Distinct {
                points: points.to_vec(),
                weights: vec![1; rows],
                of_row: (0..rows as u32).collect(),
            }
        }
    }

    /// A quiet spell's reference: mostly copies of one empty row, a few busy rows, some
    /// of them repeated, and a row that differs from the empty one only by a zero's sign.
    fn reference_points(dims: usize) -> Vec<f64> {
        let mut rng = SplitMix64::new(5);
        let mut busy: Vec<Vec<f64>> = (0..4)
            .map(|_| (0..dims).map(|_| rng.next_f64()).collect())
            .collect();
        let mut negative_zero = vec![0.0; dims];
        negative_zero[1] = -0.0;
        busy.push(negative_zero);
        let mut points = Vec::new();
        for i in 0..300 {
            match i % 37 {
                0..=4 => points.extend_from_slice(&busy[i % 37]),
                5 => points.extend((0..dims).map(|_| rng.next_f64() * 3.0 - 1.0)),
                _ => points.extend(std::iter::repeat(0.0).take(dims)),
            }
        }
        points
    }

    #[test]
    fn distinct_rows_are_equal_bits_with_their_counts() {
        let dims = 4;
        let points = reference_points(dims);
        let d = Distinct::of(&points, dims);
        assert_eq!(d.weights.iter().sum::<u32>(), 300);
        assert_eq!(d.of_row.len(), 300);
        for (r, row) in points.chunks_exact(dims).enumerate() {
            let k = d.of_row[r] as usize;
            let same = &d.points[k * dims..(k + 1) * dims];
            assert!(row
                .iter()
                .zip(same)
                .all(|(a, b)| a.to_bits() == b.to_bits()));
        }
        // The empty row, the -0.0 row, four busy rows, and each of the 8 one-off rows.
        assert_eq!(d.weights.len(), 1 + 1 + 4 + 8);
    }

    #[test]
    fn trees_grown_from_distinct_points_equal_trees_grown_from_every_point() {
        let dims = 6;
        let features = (0..dims)
            .map(|i| Feature::linear(format!("f{i}")).rising())
            .collect();
        let config = AnomalyConfig {
            trees: 20,
            ..AnomalyConfig::default()
        };
        let detector = HalfSpaceTrees::new(&config, features).unwrap();
        let points = reference_points(dims);
        let rising = vec![true; dims];
        for tree in &detector.trees {
            let (mut a, mut b) = (tree.clone(), tree.clone());
            for (t, distinct) in [
                (&mut a, Distinct::of(&points, dims)),
                (&mut b, Distinct::each(&points, dims)),
            ] {
                let mut order: Vec<u32> = (0..distinct.weights.len() as u32).collect();
                t.rebuild(&distinct, dims, &mut order, 30, 15, &[0.0; 6]);
            }
            assert_eq!(a.outside_mass, b.outside_mass);
            assert_eq!(a.nodes.len(), b.nodes.len());
            for (x, y) in a.nodes.iter().zip(&b.nodes) {
                assert_eq!(
                    (x.mass, x.left, x.dim, x.split.to_bits(), x.best.to_bits()),
                    (y.mass, y.left, y.dim, y.split.to_bits(), y.best.to_bits())
                );
            }
            for point in points.chunks_exact(dims) {
                for loo in [false, true] {
                    assert_eq!(
                        a.scored_log_mass(point, loo, Some(&rising)).to_bits(),
                        b.scored_log_mass(point, loo, Some(&rising)).to_bits()
                    );
                }
            }
        }
    }
}
