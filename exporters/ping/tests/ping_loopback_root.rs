//! Real ICMP echo to loopback addresses, through both kinds of socket, and the startup
//! error when the process may open neither. Needs root (raw sockets, namespaces) and
//! `iproute2`, `procps`, `util-linux` (setpriv).

mod support;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use support::{metric, require_tool, Exporter, Netns};

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test needs root (CI runs as root)"
    );
}

const TARGETS: [(&str, &str); 4] = [
    ("lo-a", "127.0.0.1"),
    ("lo-b", "127.0.0.2"),
    ("lo-c", "127.0.0.3"),
    ("lo-v6", "::1"),
];

fn loopback_config(socket: &str) -> String {
    let mut yaml = format!(
        "socket: {socket}\ndefaults: {{interval: 1s, count: 2, timeout: 300ms}}\ntargets:\n"
    );
    for (name, addr) in TARGETS {
        yaml.push_str(&format!(
            "  - {{name: {name}, address: \"{addr}\", labels: {{site: lab, kind: server}}}}\n"
        ));
    }
    yaml
}

/// After real rounds every loopback request has its reply, counted exactly, and the
/// per-target series carry the target's own labels.
fn assert_healthy_counts(e: &Exporter, names: &[(&str, &str)], socket: &str) {
    let body = e.wait_metrics(
        Duration::from_secs(15),
        "three rounds of every target",
        |b| {
            names.iter().all(|(n, _)| {
                metric(b, "vigia_ping_requests_total", &[("target", n)]).is_some_and(|v| v >= 6.0)
            })
        },
    );
    assert_eq!(
        metric(&body, "vigia_ping_targets", &[]),
        Some(names.len() as f64)
    );
    assert_eq!(
        metric(
            &body,
            "vigia_ping_socket_info",
            &[("family", "ipv4"), ("type", socket)]
        ),
        Some(1.0),
        "{body}"
    );
    for (name, addr) in names {
        let l = [("target", *name), ("address", *addr)];
        let requests = metric(&body, "vigia_ping_requests_total", &l).unwrap();
        let replies = metric(&body, "vigia_ping_replies_total", &l).unwrap();
        assert_eq!(requests % 2.0, 0.0, "{name}: whole rounds of 2");
        assert_eq!(
            replies, requests,
            "{name}: every loopback request answered\n{body}"
        );
        assert_eq!(
            metric(&body, "vigia_ping_rtt_seconds_count", &l),
            Some(replies)
        );
        let ok = [("target", *name), ("status", "ok")];
        assert_eq!(metric(&body, "vigia_ping_status", &ok), Some(1.0), "{body}");
        let down = [("target", *name), ("status", "down")];
        assert_eq!(metric(&body, "vigia_ping_status", &down), Some(0.0));
        assert_eq!(metric(&body, "vigia_ping_up", &l), Some(1.0));
        assert_eq!(metric(&body, "vigia_ping_send_errors_total", &l), Some(0.0));
        let rtt = metric(&body, "vigia_ping_last_rtt_seconds", &l).unwrap();
        assert!(rtt > 0.0 && rtt < 0.1, "{name}: loopback RTT {rtt}");
        assert!(
            body.contains(&format!(
                "vigia_ping_up{{target=\"{name}\",address=\"{addr}\",probe=\"icmp\",kind=\"server\",site=\"lab\"}} 1"
            )),
            "{name}: own labels missing\n{body}"
        );
    }
    assert_eq!(e.get("/-/ready").0, 200);
}

#[test]
fn root_loopback_raw_socket_counts_exact() {
    require_root();
    let e = Exporter::start(&loopback_config("raw"));
    assert_healthy_counts(&e, &TARGETS, "raw");
}

#[test]
fn root_netns_loopback_datagram_socket_counts_exact() {
    require_root();
    // ping_group_range is per network namespace: widen it in a private one only.
    let ns = Netns::isolated();
    ns.sysctl("net.ipv4.ping_group_range=0 2147483647");
    let e = Exporter::start_in(&ns, &loopback_config("datagram"));
    assert_healthy_counts(&e, &TARGETS, "datagram");
}

/// Starts vigia-ping as an unprivileged user without capabilities in `ns`; returns its
/// exit code (`None`: still running after 3 s, then killed) and its stderr.
fn run_unprivileged(ns: &Netns, yaml: &str) -> (Option<i32>, String) {
    require_tool("setpriv");
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = dir.path().join("c.yaml");
    std::fs::write(&config, yaml).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let stderr_path = dir.path().join("stderr");
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns.name])
        .args([
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ])
        .args(["--inh-caps=-all", "--bounding-set=-all"])
        .arg(support::binary())
        .arg("--config.file")
        .arg(&config)
        .args(["--web.listen-address", "127.0.0.1:9471"])
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (code, std::fs::read_to_string(&stderr_path).unwrap())
}

#[test]
fn root_netns_no_icmp_permission_exits_2_saying_what_is_missing() {
    require_root();
    let ns = Netns::isolated();
    ns.sysctl("net.ipv4.ping_group_range=1 0");
    let targets = "targets: [{name: a, address: 127.0.0.1}]\n";

    let (code, err) = run_unprivileged(&ns, targets);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("CAP_NET_RAW") && err.contains("ping_group_range"),
        "{err}"
    );
    assert!(err.contains("\"1 0\""), "the current range is shown: {err}");
    assert!(
        !err.contains("listening"),
        "nothing listens before the check: {err}"
    );

    let (code, err) = run_unprivileged(&ns, &format!("socket: datagram\n{targets}"));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("socket: datagram") && err.contains("ping_group_range"),
        "{err}"
    );

    // With the group inside the range, the same user runs on a datagram socket...
    ns.sysctl("net.ipv4.ping_group_range=0 2147483647");
    let (code, err) = run_unprivileged(&ns, targets);
    assert_eq!(code, None, "still running: {err}");
    assert!(err.contains("socket=datagram"), "{err}");
    // ...but a forced raw socket still needs CAP_NET_RAW.
    let (code, err) = run_unprivileged(&ns, &format!("socket: raw\n{targets}"));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("socket: raw") && err.contains("CAP_NET_RAW"),
        "{err}"
    );
}
