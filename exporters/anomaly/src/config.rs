//! The `anomaly:` block that exporters embed in their YAML configuration.

use std::fmt;

use serde::Deserialize;

/// Detector settings, shared by every exporter that scores anomalies.
///
/// ```yaml
/// anomaly:
///   trees: 50
///   depth: 15
///   window_size: 250
///   threshold: 0.7
///   seed: 1
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnomalyConfig {
    /// Number of half-space trees in the ensemble. Each splits 3 features, so every
    /// feature is covered by about `trees * 3 / features` trees; more trees give a
    /// smoother score and fewer false positives.
    pub trees: usize,
    /// Maximum depth of each tree. Descent also stops where the reference window holds
    /// fewer than `window_size / 10` points, so small feature vectors rarely reach it.
    pub depth: usize,
    /// Points per window: the first window is the warm-up, and the reference profile is
    /// replaced by the latest window every `window_size` points.
    pub window_size: usize,
    /// Score at or above which a point counts as anomalous (used by the exporters).
    pub threshold: f64,
    /// Seed of the random trees. The same seed and the same input give the same scores.
    pub seed: u64,
}

impl Default for AnomalyConfig {
    fn default() -> Self {
        // Depth and window are the values of Tan, Ting and Liu (2011). The paper's 25
        // trees split every feature; ours split 3 each, and 50 is the smallest count that
        // kept calm false positives under 1 % at 12 features (25 gave 1.0 to 1.2 %).
        Self {
            trees: 50,
            depth: 15,
            window_size: 250,
            threshold: 0.7,
            seed: 1,
        }
    }
}

/// Largest accepted `depth`: node positions are 64-bit heap indices, and deeper trees
/// would not resolve anything a window of at most `MAX_WINDOW` points can fill.
pub const MAX_DEPTH: usize = 30;
pub const MAX_TREES: usize = 1000;
pub const MIN_WINDOW: usize = 30;
pub const MAX_WINDOW: usize = 1_000_000;

impl AnomalyConfig {
    /// Checks ranges. `path` is where this block sits in the exporter's configuration
    /// (`"anomaly"`), so the error names the full field path (`anomaly.trees`).
    pub fn validate(&self, path: &str) -> Result<(), ConfigProblem> {
        let field = |name: &str| {
            if path.is_empty() {
                name.to_string()
            } else {
                format!("{path}.{name}")
            }
        };
        if !(1..=MAX_TREES).contains(&self.trees) {
            return Err(ConfigProblem::new(
                field("trees"),
                format!("must be between 1 and {MAX_TREES}, got {}", self.trees),
            ));
        }
        if !(1..=MAX_DEPTH).contains(&self.depth) {
            return Err(ConfigProblem::new(
                field("depth"),
                format!("must be between 1 and {MAX_DEPTH}, got {}", self.depth),
            ));
        }
        if !(MIN_WINDOW..=MAX_WINDOW).contains(&self.window_size) {
            return Err(ConfigProblem::new(
                field("window_size"),
                format!(
                    "must be between {MIN_WINDOW} and {MAX_WINDOW}, got {}",
                    self.window_size
                ),
            ));
        }
        if !(self.threshold > 0.0 && self.threshold <= 1.0) {
            return Err(ConfigProblem::new(
                field("threshold"),
                format!(
                    "must be greater than 0 and at most 1, got {}",
                    self.threshold
                ),
            ));
        }
        Ok(())
    }
}

/// A configuration problem naming the offending field, shaped like the runtime kit's
/// `ConfigError` (path and message) so exporters convert it field for field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub path: String,
    pub message: String,
}

impl ConfigProblem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "field `{}`: {}", self.path, self.message)
    }
}

impl std::error::Error for ConfigProblem {}
