//! Bad configuration: exit status 2 and a message naming the field, before anything
//! listens or any packet is sent.

mod support;

use std::process::Command;

/// Runs vigia-ping (not --check-config: the real start) and returns (code, stderr).
fn start(yaml: &str, extra_files: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in extra_files {
        std::fs::write(dir.path().join(name), content).unwrap();
    }
    let config = dir.path().join("c.yaml");
    std::fs::write(&config, yaml.replace("{dir}", dir.path().to_str().unwrap())).unwrap();
    let port = support::free_port();
    let out = Command::new(support::binary())
        .arg("--config.file")
        .arg(&config)
        .args(["--web.listen-address", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn bad_config_exits_2_naming_the_field() {
    let cases: &[(&str, &str)] = &[
        (
            "targets: [{name: a, address: 127.0.0.1}]\nintervall: 5s\n",
            "intervall",
        ),
        (
            "targets: [{name: a, address: 127.0.0.1, colour: red}]\n",
            "colour",
        ),
        (
            "targets: [{name: a, address: 127.0.0.300}]\n",
            "`targets[0].address`",
        ),
        (
            "targets: [{name: a, address: 'not a host'}]\n",
            "`targets[0].address`",
        ),
        ("defaults: {interval: 0s}\n", "`defaults.interval`"),
        (
            "targets: [{name: a, address: 127.0.0.1, interval: 0s}]\n",
            "`targets[0].interval`",
        ),
        ("defaults: {count: 0}\n", "`defaults.count`"),
        (
            "defaults: {interval: 1s, count: 5, timeout: 1s}\n",
            "`defaults.timeout`",
        ),
        (
            "targets: [{name: a, address: 127.0.0.1}, {name: a, address: 127.0.0.2}]\n",
            "`targets[1].name`",
        ),
        (
            "targets: [{name: a, address: 127.0.0.1, labels: {address: x}}]\n",
            "`targets[0].labels.address`",
        ),
        (
            "targets: [{name: a, address: 127.0.0.1, labels: {bad-name: x}}]\n",
            "`targets[0].labels.bad-name`",
        ),
        ("socket: icmp\n", "`socket`"),
        (
            "transition_log: {path: \"{dir}/no/such/dir/t.jsonl\"}\n",
            "`transition_log.path`",
        ),
        (
            "influxdb: {url: \"ftp://127.0.0.1\", database: x}\n",
            "influxdb",
        ),
        (
            "targets_file: \"{dir}/targets.txt\"\ntargets: [{name: a, address: 127.0.0.1}]\n",
            "targets.txt line 2",
        ),
        (
            "targets: [{name: a, address: 127.0.0.1, parent: nobody}]\n",
            "`targets[0].parent`: no target is named \"nobody\"",
        ),
        (
            "targets_file: \"{dir}/loop.txt\"\n",
            "loop.txt line 1: parent`: parents form a loop: x -> y -> x",
        ),
        (
            "maintenance_file: \"{dir}/maintenance.txt\"\n",
            "maintenance.txt line 2: end`",
        ),
    ];
    for (yaml, field) in cases {
        let (code, err) = start(
            yaml,
            &[
                ("targets.txt", "b 127.0.0.2\na 127.0.0.3\n"),
                ("loop.txt", "x 127.0.0.2 parent=y\ny 127.0.0.3 parent=x\n"),
                (
                    "maintenance.txt",
                    "# works\n2026-12-05T02:00:00Z 2026-12-05 site=centro fibre\n",
                ),
            ],
        );
        assert_eq!(code, Some(2), "{yaml}: {err}");
        assert!(err.contains(field), "{yaml}: expected {field} in: {err}");
        assert!(err.starts_with("vigia-ping: "), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn env_overrides_are_validated_too() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.yaml");
    std::fs::write(&config, "targets: [{name: a, address: 127.0.0.1}]\n").unwrap();
    let out = Command::new(support::binary())
        .arg("--config.file")
        .arg(&config)
        .arg("--check-config")
        .env("VIGIA_PING__DEFAULTS__COUNT", "0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`defaults.count`"));
}

#[test]
fn check_config_accepts_a_good_config_without_probing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("targets.txt"),
        "# NOC list\nolt-1 198.18.0.1 site=centro kind=olt\nrouter-2 router-2.example site=\"San Martín\"\n",
    )
    .unwrap();
    let config = dir.path().join("c.yaml");
    std::fs::write(
        &config,
        format!(
            "defaults: {{interval: 10s, count: 5, timeout: 1s, warning_rtt: 150ms}}\n\
             targets_file: \"{}/targets.txt\"\n\
             targets: [{{name: dslam-1, address: \"::1\", labels: {{site: norte}}, down_after: 3}}]\n\
             influxdb: {{url: \"http://127.0.0.1:8086\", database: vigia}}\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let out = Command::new(support::binary())
        .arg("--config.file")
        .arg(&config)
        .arg("--check-config")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
