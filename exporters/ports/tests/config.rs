//! Startup behaviour of the real binary: the seed's environment variables, and bad
//! configuration rejected with a message naming the field and exit status 2, before
//! anything listens.

mod common;

use std::net::{SocketAddr, TcpListener};

use common::{command, free_port, port_series, run_to_exit, write_file, Exporter};

#[test]
fn seed_env_vars_set_ports_and_listen_port() {
    let port = free_port();
    let mut cmd = command();
    cmd.env("PUERTOS_A_MONITOREAR", " 22, 80 ,443")
        .env("PROMETHEUS_PORT", port.to_string());
    let reach: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let exporter = Exporter::start_with(&mut cmd, None, Some(reach));
    let series = port_series(&exporter.scrape());
    let mut ports: Vec<u16> = series.keys().map(|(p, _, _)| *p).collect();
    ports.sort();
    ports.dedup();
    assert_eq!(ports, vec![22, 80, 443]);
    assert_eq!(series.len(), 3 * 2 * 11);
    assert!(
        exporter.stderr().contains(&format!("0.0.0.0:{port}")),
        "listens on all addresses like the seed: {}",
        exporter.stderr()
    );
}

#[test]
fn listen_address_flag_wins_over_prometheus_port() {
    let seed_port = free_port();
    let mut cmd = command();
    cmd.env("PUERTOS_A_MONITOREAR", "22")
        .env("PROMETHEUS_PORT", seed_port.to_string());
    let exporter = Exporter::start_with(&mut cmd, None, None);
    assert_eq!(port_series(&exporter.scrape()).len(), 22);
    assert!(
        common::http_get(
            format!("127.0.0.1:{seed_port}").parse().unwrap(),
            "/metrics"
        )
        .is_err(),
        "PROMETHEUS_PORT must be ignored when --web.listen-address is given"
    );
}

#[test]
fn config_file_ports_and_check_config() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(
        dir.path(),
        "ports.yaml",
        "ports: [22, 443]\nsource: procfs\n",
    );
    let (status, stderr) = run_to_exit(
        command()
            .arg("--config.file")
            .arg(&file)
            .arg("--check-config"),
    );
    assert_eq!(status.code(), Some(0), "{stderr}");
    let exporter = Exporter::start("ports: [8443]\nsource: procfs\n");
    let series = port_series(&exporter.scrape());
    assert!(series.keys().all(|(p, _, _)| *p == 8443));
}

/// Runs the binary with `env` and `yaml` (if any) and expects exit 2 and `needle` in
/// the message.
fn assert_rejected(env: &[(&str, &str)], yaml: Option<&str>, needle: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command();
    for (k, v) in env {
        cmd.env(k, v);
    }
    if let Some(yaml) = yaml {
        cmd.arg("--config.file")
            .arg(write_file(dir.path(), "ports.yaml", yaml));
    }
    let listen = format!("127.0.0.1:{}", free_port());
    cmd.arg("--web.listen-address").arg(&listen);
    let (status, stderr) = run_to_exit(&mut cmd);
    assert_eq!(
        status.code(),
        Some(2),
        "env {env:?} yaml {yaml:?}: expected exit 2, got {status}: {stderr}"
    );
    assert!(
        stderr.contains(needle),
        "env {env:?} yaml {yaml:?}: message does not name {needle:?}: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn bad_seed_ports_exit_2_naming_the_variable() {
    for bad in ["abc", "70000", "0", "", "22,,80", "22,22"] {
        assert_rejected(
            &[("PUERTOS_A_MONITOREAR", bad)],
            None,
            "`PUERTOS_A_MONITOREAR`",
        );
    }
}

#[test]
fn bad_prometheus_port_exits_2_naming_the_variable() {
    for bad in ["abc", "0", "70000"] {
        assert_rejected(
            &[("PUERTOS_A_MONITOREAR", "22"), ("PROMETHEUS_PORT", bad)],
            None,
            "`PROMETHEUS_PORT`",
        );
    }
}

#[test]
fn bad_config_files_exit_2_naming_the_field() {
    let cases = [
        ("ports: [22, 70000]\n", "`ports[1]`"),
        ("ports: []\n", "`ports`"),
        ("source: netlink\n", "`ports`"),
        ("ports: [22, 22]\n", "`ports[1]`"),
        ("ports: [22]\nsource: magic\n", "`source`"),
        ("ports: [22]\nprot: 1\n", "unknown field `prot`"),
        (
            "ports: [22]\nsource: procfs\nprocfs_root: /nonexistent-proc\n",
            "`procfs_root`",
        ),
        ("ports: [22\n", "ports.yaml"),
    ];
    for (yaml, needle) in cases {
        assert_rejected(&[], Some(yaml), needle);
    }
    assert_rejected(&[("VIGIA_PORTS__PORTS", "[1, 99999]")], None, "`ports[1]`");
}

#[test]
fn listen_port_in_use_exits_2_naming_the_address() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut cmd = command();
    cmd.env("PUERTOS_A_MONITOREAR", "22")
        .arg("--web.listen-address")
        .arg(&addr);
    let (status, stderr) = run_to_exit(&mut cmd);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&addr), "message names {addr}: {stderr}");
}

#[test]
fn sigterm_stops_the_exporter_with_status_0() {
    let mut exporter = Exporter::start("ports: [22]\n");
    assert_eq!(port_series(&exporter.scrape()).len(), 22);
    let status = exporter.terminate();
    assert_eq!(status.code(), Some(0), "{}", exporter.stderr());
    assert!(
        common::http_get(exporter.addr, "/metrics").is_err(),
        "no longer listening"
    );
}
