//! When netlink sock_diag is unavailable (a sandbox that filters netlink sockets), `auto`
//! falls back to procfs with a warning and `netlink` refuses to start. The failure is
//! real: `strace` makes the exporter's first `socket()` call, the netlink one, fail with
//! EPERM as a seccomp filter would.

mod common;

use std::net::TcpListener;

use common::{
    command_under_strace, port_series, run_to_exit, sample, unused_ports, write_file, Exporter,
};

const FAIL_FIRST_SOCKET: [&str; 4] = [
    "-e",
    "trace=socket",
    "-e",
    "inject=socket:error=EPERM:when=1",
];

#[test]
fn auto_falls_back_to_procfs_when_netlink_is_refused_strace() {
    let port = unused_ports(1)[0];
    let _listener = TcpListener::bind(("::1", port)).unwrap();
    let mut cmd = command_under_strace(&FAIL_FIRST_SOCKET);
    let exporter = Exporter::start_with(&mut cmd, Some(&format!("ports: [{port}]\n")), None);
    let body = exporter.scrape();
    assert_eq!(
        sample(&body, "vigia_ports_source_info{source=\"procfs\"}"),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        port_series(&body)[&(port, "local".to_string(), "listen".to_string())],
        1
    );
    let log = exporter.stderr();
    assert!(
        log.contains("level=warn") && log.contains("reading procfs instead"),
        "the fallback is logged as a warning: {log}"
    );
}

#[test]
fn explicit_netlink_source_refused_exits_2_naming_source_strace() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(dir.path(), "ports.yaml", "ports: [22]\nsource: netlink\n");
    let mut cmd = command_under_strace(&FAIL_FIRST_SOCKET);
    cmd.arg("--config.file").arg(file);
    let (status, stderr) = run_to_exit(&mut cmd);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("field `source`"), "{stderr}");
    assert!(stderr.contains("Operation not permitted"), "{stderr}");
}
