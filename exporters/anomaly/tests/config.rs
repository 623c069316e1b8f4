//! The `anomaly:` block as an exporter's configuration loader sees it.

use vigia_anomaly::{AnomalyConfig, ConfigProblem, Feature, HalfSpaceTrees};

fn parse(json: &str) -> Result<AnomalyConfig, serde_json::Error> {
    serde_json::from_str(json)
}

#[test]
fn omitted_fields_take_the_documented_defaults() {
    let config = parse("{}").unwrap();
    assert_eq!(config, AnomalyConfig::default());
    assert_eq!(
        (
            config.trees,
            config.depth,
            config.window_size,
            config.threshold,
            config.seed
        ),
        (50, 15, 250, 0.7, 1)
    );
    let config = parse(r#"{"window_size": 60, "seed": 42}"#).unwrap();
    assert_eq!(config.window_size, 60);
    assert_eq!(config.seed, 42);
    assert_eq!(config.trees, 50);
}

#[test]
fn unknown_fields_are_rejected_by_name() {
    let error = parse(r#"{"tress": 10}"#).unwrap_err().to_string();
    assert!(error.contains("unknown field `tress`"), "{error}");
}

#[test]
fn out_of_range_values_name_the_field() {
    let cases = [
        (
            r#"{"trees": 0}"#,
            "anomaly.trees",
            "must be between 1 and 1000, got 0",
        ),
        (
            r#"{"depth": 0}"#,
            "anomaly.depth",
            "must be between 1 and 30, got 0",
        ),
        (
            r#"{"depth": 31}"#,
            "anomaly.depth",
            "must be between 1 and 30, got 31",
        ),
        (
            r#"{"window_size": 29}"#,
            "anomaly.window_size",
            "must be between 30 and 1000000, got 29",
        ),
        (
            r#"{"threshold": 0}"#,
            "anomaly.threshold",
            "must be greater than 0 and at most 1, got 0",
        ),
        (
            r#"{"threshold": 1.5}"#,
            "anomaly.threshold",
            "must be greater than 0 and at most 1, got 1.5",
        ),
    ];
    for (json, path, message) in cases {
        let problem = parse(json).unwrap().validate("anomaly").unwrap_err();
        assert_eq!(problem, ConfigProblem::new(path, message), "{json}");
        assert_eq!(problem.to_string(), format!("field `{path}`: {message}"));
    }
    // Nested deeper, the prefix is kept whole.
    let problem = parse(r#"{"trees": 0}"#)
        .unwrap()
        .validate("collectors.anomaly")
        .unwrap_err();
    assert_eq!(problem.path, "collectors.anomaly.trees");
}

#[test]
fn the_detector_refuses_what_it_cannot_build() {
    let config = AnomalyConfig::default();
    let error = HalfSpaceTrees::new(&config, Vec::new()).unwrap_err();
    assert_eq!(error.path, "features");
    // 4 trees of 3 features cannot cover 13 features.
    let config = AnomalyConfig {
        trees: 4,
        ..AnomalyConfig::default()
    };
    let features = (0..13).map(|i| Feature::linear(format!("f{i}"))).collect();
    let error = HalfSpaceTrees::new(&config, features).unwrap_err();
    assert_eq!(error.path, "anomaly.trees");
    assert!(
        error.message.contains("use at least 5"),
        "{}",
        error.message
    );
    let invalid = AnomalyConfig {
        window_size: 0,
        ..AnomalyConfig::default()
    };
    let error = HalfSpaceTrees::new(&invalid, vec![Feature::linear("x")]).unwrap_err();
    assert_eq!(error.path, "anomaly.window_size");
}
