//! Feature scaling: raw values to the unit range the trees split.
//!
//! Half-space trees split a fixed work space, so every feature must land on a comparable
//! scale. The range of each feature is learned from the warm-up window (robust quantiles,
//! so one spike during warm-up does not squash everything else) and then follows each
//! later window slowly. Values outside the learned range are kept, not clamped to it: the
//! trees send them to their outermost cells, which is exactly where anomalies should go.

/// How a feature's raw value is transformed before its range is learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scaling {
    /// The value as it is (CPU share, load, ratios).
    Linear,
    /// `sign(x) * ln(1 + |x|)`, for heavy-tailed magnitudes (packet counts, byte rates)
    /// whose normal variation spans orders of magnitude.
    Log,
}

/// One input of the detector: a name for explanations, its scaling and its noise floor.
#[derive(Debug, Clone, PartialEq)]
pub struct Feature {
    pub name: String,
    pub scaling: Scaling,
    /// Smallest spread (standard deviation, in transformed units) the feature is taken
    /// to have, however still it was in the reference: a change well under this is
    /// noise, not news. 0 (the default) learns the spread from the data alone, which
    /// makes a feature that barely moved (a host's memory share, steady at 0.300 for
    /// minutes) flag a move of 1 % of memory as never seen.
    pub min_spread: f64,
    /// Only values above the reference are news: a value below what the reference
    /// windows held scores as the least unusual value at or above it would (each tree
    /// takes the densest of the cells the point reaches when this feature is raised),
    /// and its z-score is reported as 0. For counts whose drops are not what the detector
    /// is for (a bulk transfer that ends, a quiet hour), while their rises are (a flood,
    /// a scan). Off by default: both directions are news.
    pub rising: bool,
    /// The value counts independent events (packets, connections in a window): its noise
    /// floor is at least the counting (Poisson) noise of the reference median `m`,
    /// `sqrt(1 + m)` events, which is `1 / sqrt(1 + m)` in [`Scaling::Log`] units. A
    /// window of 14 new connections where the reference held 7 to 12 is then the jitter
    /// of a count of 10, not a state never seen, while 2,000 (a scan) is still 20
    /// floors out; a count of 0 to 2 (an ARP exchange) moves by one floor. Off by
    /// default: [`Feature::min_spread`] alone.
    pub counting: bool,
}

impl Feature {
    pub fn linear(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            scaling: Scaling::Linear,
            min_spread: 0.0,
            rising: false,
            counting: false,
        }
    }

    pub fn log(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            scaling: Scaling::Log,
            min_spread: 0.0,
            rising: false,
            counting: false,
        }
    }

    /// The same feature, scored on its rises only (see [`Feature::rising`]).
    pub fn rising(mut self) -> Self {
        self.rising = true;
        self
    }

    /// The same feature, a count of events (see [`Feature::counting`]).
    pub fn counting(mut self) -> Self {
        self.counting = true;
        self
    }

    /// The noise floor in transformed units against a reference whose median (in
    /// transformed units) is `median`: [`Feature::min_spread`], or the counting noise of
    /// a count at that median when [`Feature::counting`] is larger.
    pub fn noise_floor(&self, median: f64) -> f64 {
        if !self.counting || !median.is_finite() {
            return self.min_spread;
        }
        let counting = match self.scaling {
            // ln(1 + m) = |median|: sqrt(1 + m) / (1 + m).
            Scaling::Log => (-0.5 * median.abs()).exp(),
            Scaling::Linear => (1.0 + median.abs()).sqrt(),
        };
        self.min_spread.max(counting)
    }

    /// The same feature with a noise floor (see [`Feature::min_spread`]).
    pub fn with_min_spread(mut self, min_spread: f64) -> Self {
        self.min_spread = min_spread;
        self
    }
}

/// Width of a normal distribution's 1 %..99 % quantile range in standard deviations: the
/// narrowest learned range of a feature with a noise floor is this many floors wide.
const RANGE_SIGMAS: f64 = 2.0 * 2.326;

/// Largest magnitude a raw input keeps. Infinities map to it and larger values are
/// clamped to it, so every later difference and quotient stays finite.
pub const SATURATION: f64 = 1e150;

/// Largest magnitude of a normalized value. The trees' work space spans a few units, so
/// anything beyond this is already in the outermost cell; the bound keeps arithmetic finite.
const NORMALIZED_LIMIT: f64 = 1e6;

/// Share of the gap between the learned range and each new window's range that is
/// closed at every window swap: slow enough that a burst of anomalies barely moves it,
/// fast enough that a lasting change of scale is followed within tens of windows.
const RANGE_ADAPTATION: f64 = 0.1;

/// Quantiles of a window that define its range (robust against a few spikes).
const RANGE_LOW_QUANTILE: f64 = 0.01;
const RANGE_HIGH_QUANTILE: f64 = 0.99;

impl Scaling {
    pub(crate) fn transform(self, x: f64) -> f64 {
        match self {
            Scaling::Linear => x,
            Scaling::Log => x.signum() * x.abs().ln_1p(),
        }
    }
}

/// Bounds a raw, non-NaN input. Returns the value to use and whether it was replaced:
/// infinities and magnitudes beyond [`SATURATION`] become `±SATURATION`, an extreme, so
/// they still score as anomalous. (NaN carries no direction; the detector substitutes a
/// neutral value for it.)
pub(crate) fn saturate(x: f64) -> (f64, bool) {
    if x.is_infinite() {
        (x.signum() * SATURATION, true)
    } else {
        let bounded = x.clamp(-SATURATION, SATURATION);
        (bounded, bounded != x)
    }
}

/// Learned range of one feature in transformed units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Range {
    low: f64,
    high: f64,
}

impl Range {
    /// The range of a sorted window of transformed values.
    pub(crate) fn of_sorted(sorted: &[f64]) -> Self {
        Self {
            low: quantile(sorted, RANGE_LOW_QUANTILE),
            high: quantile(sorted, RANGE_HIGH_QUANTILE),
        }
    }

    /// This range, widened about its centre to span at least `RANGE_SIGMAS` noise floors.
    pub(crate) fn with_floor(self, min_spread: f64) -> Self {
        let min_width = RANGE_SIGMAS * min_spread;
        if self.high - self.low >= min_width {
            return self;
        }
        let centre = 0.5 * (self.low + self.high);
        Self {
            low: centre - 0.5 * min_width,
            high: centre + 0.5 * min_width,
        }
    }

    /// Moves this range part of the way towards a newer window's range.
    pub(crate) fn follow(&mut self, newer: Range) {
        self.low += RANGE_ADAPTATION * (newer.low - self.low);
        self.high += RANGE_ADAPTATION * (newer.high - self.high);
    }

    /// Origin and width of the mapping to the unit interval. A feature that did not vary
    /// gets a width of its own magnitude (at least 1) centred on its value, so a later
    /// change of about that size stands out instead of dividing by zero.
    pub(crate) fn origin_and_width(&self) -> (f64, f64) {
        let width = self.high - self.low;
        let scale = self.low.abs().max(self.high.abs()).max(1.0);
        if width > scale * 1e-9 {
            (self.low, width)
        } else {
            (0.5 * (self.low + self.high) - 0.5 * scale, scale)
        }
    }

    pub(crate) fn normalize(&self, t: f64) -> f64 {
        let (origin, width) = self.origin_and_width();
        ((t - origin) / width).clamp(-NORMALIZED_LIMIT, NORMALIZED_LIMIT)
    }
}

/// Linear-interpolated quantile of a sorted, non-empty slice.
pub(crate) fn quantile(sorted: &[f64], q: f64) -> f64 {
    let position = q * (sorted.len() - 1) as f64;
    let below = position.floor() as usize;
    let above = position.ceil() as usize;
    let fraction = position - below as f64;
    sorted[below] + fraction * (sorted[above] - sorted[below])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_scaling_is_symmetric_and_finite() {
        assert_eq!(Scaling::Log.transform(0.0), 0.0);
        assert!((Scaling::Log.transform(std::f64::consts::E - 1.0) - 1.0).abs() < 1e-12);
        assert_eq!(
            Scaling::Log.transform(-1000.0),
            -Scaling::Log.transform(1000.0)
        );
        assert!(Scaling::Log.transform(SATURATION).is_finite());
    }

    #[test]
    fn saturate_bounds_what_cannot_be_used() {
        assert_eq!(saturate(f64::INFINITY), (SATURATION, true));
        assert_eq!(saturate(f64::NEG_INFINITY), (-SATURATION, true));
        assert_eq!(saturate(1e300), (SATURATION, true));
        assert_eq!(saturate(-2.5), (-2.5, false));
    }

    #[test]
    fn constant_feature_gets_a_usable_width() {
        let range = Range::of_sorted(&[5.0; 20]);
        assert_eq!(range.normalize(5.0), 0.5);
        assert_eq!(range.normalize(10.0), 1.5);
        let zero = Range::of_sorted(&[0.0; 20]);
        assert_eq!(zero.normalize(0.0), 0.5);
        assert_eq!(zero.normalize(1.0), 1.5);
    }

    #[test]
    fn extreme_values_normalize_to_finite_numbers() {
        let range = Range::of_sorted(&[0.0, 1e-300, 2e-300]);
        for t in [SATURATION, -SATURATION, 0.0] {
            assert!(range.normalize(t).is_finite());
        }
        let wide = Range::of_sorted(&[-SATURATION, SATURATION]);
        assert!(wide.normalize(SATURATION).is_finite());
    }
}
