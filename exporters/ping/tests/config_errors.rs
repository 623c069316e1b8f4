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

#[test]
fn non_utf8_environment_is_ignored_or_rejected_without_panic() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let run = |name: &str, value: &[u8]| {
        let out = Command::new(support::binary())
            .arg("--check-config")
            .env(name, OsStr::from_bytes(value))
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run("SOME_OTHER_PROGRAM", b"caf\xe9");
    assert_eq!(code, Some(0), "{err}");
    let (code, err) = run("VIGIA_PING__DEFAULTS__INTERVAL", b"1\xffs");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("`VIGIA_PING__DEFAULTS__INTERVAL`"), "{err}");
    assert!(err.contains("not valid UTF-8"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// Runs vigia-ping with `--check-config` and for real (only `--check-config` when
/// `check_only`: a valid config would start the exporter); both must give the same verdict.
fn both(yaml: &str, files: &[(&str, &str)], check_only: bool) -> Vec<(Option<i32>, String)> {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in files {
        std::fs::write(dir.path().join(name), content).unwrap();
    }
    let config = dir.path().join("c.yaml");
    std::fs::write(&config, yaml.replace("{dir}", dir.path().to_str().unwrap())).unwrap();
    let port = support::free_port();
    let run = |check: bool| {
        let mut cmd = Command::new(support::binary());
        cmd.arg("--config.file")
            .arg(&config)
            .args(["--web.listen-address", &format!("127.0.0.1:{port}")]);
        if check {
            cmd.arg("--check-config");
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    if check_only {
        vec![run(true)]
    } else {
        vec![run(true), run(false)]
    }
}

#[test]
fn floors_caps_and_files_are_errors_at_check_and_at_start_alike() {
    let long_name = "n".repeat(20_000);
    let long_label = "v".repeat(300);
    // (config, files beside it, field named, what the error says)
    type Case<'a> = (String, &'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: Vec<Case> = vec![
        (
            "defaults: {interval: 1ns}\n".into(),
            &[],
            "`defaults.interval`",
            "below the floor of 100ms",
        ),
        (
            "defaults: {interval: 1s, count: 1000, timeout: 1ms}\n".into(),
            &[],
            "`defaults.count`",
            "below the floor of one every 10ms",
        ),
        (
            "targets: [{name: a, address: 127.0.0.1, interval: 1s, count: 1, timeout: 100us}]\n"
                .into(),
            &[],
            "`targets[0].timeout`",
            "below the floor of 1ms",
        ),
        (
            "targets: [{name: a, address: \"127.0.0.1\\n\"}]\n".into(),
            &[],
            "`targets[0].address`",
            "control characters",
        ),
        (
            "targets: [{name: a, address: \"127.0.0.1\\u001b[31m\"}]\n".into(),
            &[],
            "`targets[0].address`",
            "control characters",
        ),
        (
            format!("targets: [{{name: {long_name}, address: 127.0.0.1}}]\n"),
            &[],
            "`targets[0].name`",
            "20000 characters long, more than the 128 allowed",
        ),
        (
            format!("targets: [{{name: a, address: 127.0.0.1, labels: {{site: {long_label}}}}}]\n"),
            &[],
            "`targets[0].labels.site`",
            "more than the 256 allowed",
        ),
        (
            "transition_log: {path: \"{dir}/no/such/dir/t.jsonl\"}\n".into(),
            &[],
            "`transition_log.path`",
            "no/such/dir",
        ),
        (
            "targets_file: \"{dir}/t.txt\"\n".into(),
            &[("t.txt", "")],
            "t.txt`",
            "lists no target (0 bytes)",
        ),
        (
            "targets_file: \"{dir}/t.txt\"\n".into(),
            &[("t.txt", "# NOC list\n\n")],
            "t.txt`",
            "comments only",
        ),
        (
            "targets_file: \"{dir}/t.txt\"\n".into(),
            &[("t.txt", "a 127.0.0.1 interval=1ns\n")],
            "t.txt line 1: interval`",
            "below the floor",
        ),
    ];
    for (yaml, files, field, says) in &cases {
        for (code, err) in both(yaml, files, false) {
            let short = &yaml[..yaml.len().min(120)];
            assert_eq!(code, Some(2), "{short}: {err}");
            assert!(err.contains(field), "{short}: expected {field} in: {err}");
            assert!(err.contains(says), "{short}: expected {says:?} in: {err}");
            assert!(!err.contains("panicked"), "{err}");
        }
    }
    // Allowed, an empty targets file is valid.
    let checked = both(
        "targets_file: \"{dir}/t.txt\"\ntargets_file_allow_empty: true\n",
        &[("t.txt", "")],
        true,
    );
    assert_eq!(checked[0].0, Some(0), "{}", checked[0].1);
}

/// tcp, http and dns targets: every wrong setting is refused at load, at `--check-config`
/// and at a real start alike, naming the field in the config (or the line and key in the
/// targets file), with exit status 2.
#[test]
fn bad_probe_settings_name_the_field_at_check_and_at_start() {
    type Case<'a> = (&'a str, &'a str, &'a str, &'a str);
    // (config, targets file, field named, what the error says)
    let cases: &[Case] = &[
        (
            "targets: [{name: a, address: 127.0.0.1, probe: htp}]\n",
            "",
            "`targets[0].probe`",
            "htp",
        ),
        (
            "targets: [{name: a, address: \"http://198.18.0.1/\", probe: http, expect_body: \"(unclosed\"}]\n",
            "",
            "`targets[0].expect_body`",
            "not a valid regular expression",
        ),
        (
            "targets: [{name: a, address: \"198.18.0.1:22\", probe: tcp, expect: \"[a-\"}]\n",
            "",
            "`targets[0].expect`",
            "not a valid regular expression",
        ),
        (
            "targets: [{name: a, address: \"198.18.0.1:0\", probe: tcp}]\n",
            "",
            "`targets[0].address`",
            "port 0",
        ),
        (
            "targets: [{name: a, address: \"http://198.18.0.1:0/\", probe: http}]\n",
            "",
            "`targets[0].address`",
            "port 0",
        ),
        (
            "targets: [{name: a, address: \"198.18.0.53:0\", probe: dns, query_name: www.example}]\n",
            "",
            "`targets[0].address`",
            "port 0",
        ),
        (
            "targets: [{name: a, address: \"htp:/portal\", probe: http}]\n",
            "",
            "`targets[0].address`",
            "scheme",
        ),
        (
            "targets: [{name: a, address: \"not a url\", probe: http}]\n",
            "",
            "`targets[0].address`",
            "not a URL",
        ),
        (
            "targets: [{name: a, address: \"https://portal.example/\"}]\n",
            "",
            "`targets[0].address`",
            "probe: http",
        ),
        (
            "targets: [{name: a, address: \"http://198.18.0.1/\", probe: http, query_name: x}]\n",
            "",
            "`targets[0].query_name`",
            "setting of dns probes; this target's probe is http",
        ),
        (
            "targets: [{name: a, address: 198.18.0.1, count: 3, probe: dns, query_name: x}]\n",
            "",
            "`targets[0].count`",
            "setting of icmp probes",
        ),
        (
            "targets: [{name: a, address: 198.18.0.1, expect_status: [200]}]\n",
            "",
            "`targets[0].expect_status`",
            "setting of http probes; this target's probe is icmp",
        ),
        (
            "targets: [{name: a, address: \"https://198.18.0.1/\", probe: http, expect_status: [200, 999]}]\n",
            "",
            "`targets[0].expect_status`",
            "\"999\" is not an HTTP status code",
        ),
        (
            "targets: [{name: a, address: \"https://198.18.0.1/\", probe: http, tls_ca_file: \"{dir}/none.pem\"}]\n",
            "",
            "`targets[0].tls_ca_file`",
            "cannot read",
        ),
        (
            "targets: [{name: a, address: \"198.18.0.1:443\", probe: tcp, tls_server_name: x.example}]\n",
            "",
            "`targets[0].tls_server_name`",
            "without `tls: true`",
        ),
        (
            "targets: [{name: a, address: 198.18.0.53, probe: dns}]\n",
            "",
            "`targets[0].query_name`",
            "needs the name",
        ),
        (
            "targets: [{name: a, address: 198.18.0.53, probe: dns, query_name: x.example, query_type: AAAAA}]\n",
            "",
            "`targets[0].query_type`",
            "not a DNS record type",
        ),
        (
            "targets: [{name: a, address: 198.18.0.53, probe: dns, query_name: x.example, expect_rcode: NOPE}]\n",
            "",
            "`targets[0].expect_rcode`",
            "not a DNS rcode",
        ),
        (
            "targets: [{name: a, address: \"http://198.18.0.1/\", probe: http, labels: {phase: x}}]\n",
            "",
            "`targets[0].labels.phase`",
            "clashes",
        ),
        (
            "targets: [{name: a, address: 198.18.0.1, labels: {probe: x}}]\n",
            "",
            "`targets[0].labels.probe`",
            "clashes",
        ),
        // The targets file: the line and the key.
        (
            "targets_file: \"{dir}/t.txt\"\n",
            "ok 198.18.0.1\nportal http://198.18.0.2/ probe=htp\n",
            "t.txt line 2: probe`",
            "not a probe kind",
        ),
        (
            "targets_file: \"{dir}/t.txt\"\n",
            "portal http://198.18.0.2/ probe=http expect_body=(x\n",
            "t.txt line 1: expect_body`",
            "not a valid regular expression",
        ),
        (
            "targets_file: \"{dir}/t.txt\"\n",
            "radius 198.18.0.3:0 probe=tcp\n",
            "t.txt line 1: address`",
            "port 0",
        ),
        (
            "targets_file: \"{dir}/t.txt\"\n",
            "portal http//198.18.0.2 probe=http\n",
            "t.txt line 1: address`",
            "not a URL",
        ),
        (
            "targets_file: \"{dir}/t.txt\"\n",
            "portal http://198.18.0.2/ probe=http query_type=A\n",
            "t.txt line 1: query_type`",
            "setting of dns probes",
        ),
        (
            "targets_file: \"{dir}/t.txt\"\n",
            "portal http://198.18.0.2/ probe=http expect_stauts=200\n",
            "t.txt line 1: expect_stauts`",
            "not a setting of any probe kind",
        ),
        (
            "targets_file: \"{dir}/t.txt\"\n",
            "portal http://198.18.0.2/ probe=http expect_status=200 expect_status=301\n",
            "t.txt line 1: expect_status`",
            "given twice",
        ),
    ];
    for (yaml, file, field, says) in cases {
        let files: Vec<(&str, &str)> = if file.is_empty() {
            vec![]
        } else {
            vec![("t.txt", *file)]
        };
        for (code, err) in both(yaml, &files, false) {
            assert_eq!(code, Some(2), "{yaml} {file}: {err}");
            assert!(
                err.contains(field),
                "{yaml} {file}: expected {field} in: {err}"
            );
            assert!(
                err.contains(says),
                "{yaml} {file}: expected {says:?} in: {err}"
            );
            assert!(!err.contains("panicked"), "{err}");
        }
    }
    // Every kind's settings together, in YAML and in the file: accepted.
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .arg("-keyout")
        .arg(dir.path().join("ca.key"))
        .arg("-out")
        .arg(&ca)
        .args(["-days", "30", "-subj", "/CN=vigia test CA"])
        .output()
        .expect("openssl (Debian package openssl)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let good = format!(
        "targets:\n\
         \x20 - {{name: portal, address: \"https://198.18.0.1:8443/login?x=1\", probe: http, method: post, body: \"a=1\",\n\
         \x20    headers: {{Host: portal.example, X-Probe: vigia}}, expect_status: \"200,3xx\", expect_body: Welcome,\n\
         \x20    fail_if_body: \"(?i)error\", max_redirects: 3, tls_ca_file: \"{ca}\", tls_server_name: portal.example}}\n\
         \x20 - {{name: ssh, address: \"198.18.0.1:22\", probe: tcp, expect: \"^SSH-2\\\\.0\", send: 'QUIT\\r\\n'}}\n\
         \x20 - {{name: smtps, address: \"[::1]:465\", probe: tcp, tls: true, tls_insecure_skip_verify: true}}\n\
         \x20 - {{name: resolver, address: 198.18.0.53, probe: dns, query_name: www.example, query_type: aaaa,\n\
         \x20    transport: tcp, recursion_desired: false, expect_rcode: [NOERROR, NXDOMAIN], expect_answer: \"^2001:db8::\"}}\n\
         targets_file: \"{dir}/t.txt\"\n",
        ca = ca.display(),
        dir = dir.path().display(),
    );
    std::fs::write(
        dir.path().join("t.txt"),
        format!(
            "olt-1 198.18.0.1 site=centro kind=olt\n\
             portal-2 https://198.18.0.2/ probe=http expect_status=200,301 expect_body=\"Bienvenido a\" header=\"Host: portal.example\" follow_redirects=false tls_ca_file={} site=sur\n\
             radius 198.18.0.3:1812 probe=tcp kind=radius\n\
             dns-2 198.18.0.4:5353 probe=dns query_name=www.example expect_rcode=NXDOMAIN transport=udp\n",
            ca.display()
        ),
    )
    .unwrap();
    let config = dir.path().join("c.yaml");
    std::fs::write(&config, good).unwrap();
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
