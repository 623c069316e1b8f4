//! The anomaly score of each window: `vigia-anomaly`'s Half-Space Trees over the
//! [`crate::window::features`] vector.

use vigia_anomaly::{AnomalyConfig, Detector, HalfSpaceTrees, Score};
use vigia_kit::ConfigError;

use crate::window::{features, WindowStats};

/// How many features explain an anomalous window.
pub const TOP_FEATURES: usize = 3;

/// The verdict on one window.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowVerdict {
    pub score: f64,
    pub warm: bool,
    pub anomalous: bool,
    /// Robust z-score of each feature, in [`features`] order.
    pub zscores: Vec<f64>,
    /// The features furthest from the reference windows, largest |z| first.
    pub top: Vec<(&'static str, f64)>,
}

pub struct WindowScorer {
    detector: HalfSpaceTrees,
    names: Vec<&'static str>,
    threshold: f64,
}

/// Feature names as `'static` strings, for labels and rows.
pub fn feature_names() -> Vec<&'static str> {
    features()
        .into_iter()
        .map(|f| &*Box::leak(f.name.into_boxed_str()))
        .collect()
}

impl WindowScorer {
    pub fn new(config: &AnomalyConfig) -> Result<Self, ConfigError> {
        let detector = HalfSpaceTrees::new(config, features())
            .map_err(|p| ConfigError::new(p.path, p.message))?;
        Ok(Self {
            detector,
            names: feature_names(),
            threshold: config.threshold,
        })
    }

    pub fn names(&self) -> &[&'static str] {
        &self.names
    }

    pub fn score(&mut self, stats: &WindowStats) -> WindowVerdict {
        let x = stats.vector();
        match self.detector.score_and_learn(&x) {
            Ok(score) => self.verdict(score),
            // The vector is built from `features()` itself, so this cannot happen; if it
            // ever did, the window is reported unscored rather than ending the capture.
            Err(e) => {
                tracing::error!(error = %e, "window not scored");
                self.unscored()
            }
        }
    }

    /// `count` windows like `stats` in a row (a quiet spell: empty windows), scored and
    /// learned as one by one, at a cost that does not grow with `count`
    /// ([`HalfSpaceTrees::score_and_learn_repeated`]): runs of windows with one verdict.
    pub fn score_repeated(&mut self, stats: &WindowStats, count: u64) -> Vec<(WindowVerdict, u64)> {
        let x = stats.vector();
        match self.detector.score_and_learn_repeated(&x, count) {
            Ok(runs) => runs
                .into_iter()
                .map(|run| (self.verdict(run.score), run.count))
                .collect(),
            Err(e) => {
                tracing::error!(error = %e, "windows not scored");
                vec![(self.unscored(), count)]
            }
        }
    }

    fn verdict(&self, score: Score) -> WindowVerdict {
        let top = score
            .top_features(TOP_FEATURES)
            .into_iter()
            .map(|c| (self.names[c.feature], c.z))
            .collect();
        WindowVerdict {
            score: score.value,
            warm: score.warm,
            anomalous: score.exceeds(self.threshold),
            zscores: score.contributions,
            top,
        }
    }

    fn unscored(&self) -> WindowVerdict {
        WindowVerdict {
            score: 0.0,
            warm: false,
            anomalous: false,
            zscores: vec![0.0; self.names.len()],
            top: Vec::new(),
        }
    }
}
