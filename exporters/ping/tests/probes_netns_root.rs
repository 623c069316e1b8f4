//! tcp, http and dns probes against real servers in network namespaces (198.18.0.0/15):
//! Python's http.server over HTTP and HTTPS with certificates made by openssl (one
//! expiring in 2 days, a chain whose intermediate expires before its leaf), a TCP
//! listener that refuses and then accepts, dnsmasq whose answer changes, and a real
//! Prometheus evaluating the repository's rules. Needs root, `iproute2`, `python3`,
//! `openssl`, `dnsmasq` (Debian `dnsmasq-base`) and Prometheus from `.cache/stack/`
//! (fetched by scripts/fetch-tools.sh when missing).

mod support;

use std::time::{Duration, Instant};

use support::servers::{Dnsmasq, Pki, ProbeServers, Prometheus};
use support::{metric, Exporter, NetnsHost};

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test needs root (CI runs as root)"
    );
}

fn status_of(body: &str, target: &str) -> Option<&'static str> {
    ["ok", "warning", "down", "unknown"].into_iter().find(|s| {
        metric(
            body,
            "vigia_ping_status",
            &[("target", target), ("status", s)],
        ) == Some(1.0)
    })
}

fn attempts(body: &str, target: &str) -> f64 {
    metric(body, "vigia_probe_attempts_total", &[("target", target)]).unwrap_or(0.0)
}

/// Failed probes of `target`, all reasons.
fn failures(body: &str, target: &str) -> f64 {
    body.lines()
        .filter(|l| l.starts_with("vigia_probe_failures_total{"))
        .filter(|l| l.contains(&format!("target=\"{target}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn transitions(e: &Exporter) -> Vec<serde_json::Value> {
    std::fs::read_to_string(e.dir.path().join("transitions.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

fn changes_of(log: &[serde_json::Value], target: &str) -> Vec<(String, String)> {
    log.iter()
        .filter(|l| l["target"] == target)
        .map(|l| {
            (
                l["from"].as_str().unwrap().to_string(),
                l["to"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// The board's view of `target`.
fn board_tile(e: &Exporter, target: &str) -> serde_json::Value {
    let (status, body) = e.get("/api/status");
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    json["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == target)
        .unwrap_or_else(|| panic!("no {target} in {body}"))
        .clone()
}

#[test]
fn root_http_probes_judge_status_body_redirects_and_certificates() {
    require_root();
    let host = NetnsHost::new();
    let a = host.addr;
    let pki = Pki::new();
    let root = pki.root("vigia-test-root", 30);
    let leaf_2d = pki.issue("portal-2d", &root, 2, false, &format!("IP:{a}"));
    let inter_10d = pki.issue("vigia-test-intermediate", &root, 10, true, "");
    let leaf_60d = pki.issue("shop-60d", &inter_10d, 60, false, &format!("IP:{a}"));
    let chain_a = pki.chain("a", &[&leaf_2d]);
    let chain_b = pki.chain("b", &[&leaf_60d, &inter_10d]);
    let _servers = ProbeServers::start(
        &host.ns,
        &[
            "--http".into(),
            format!("{a}:80"),
            "--https".into(),
            format!("{a}:443:{}:{}", chain_a.display(), leaf_2d.key.display()),
            "--https".into(),
            format!("{a}:8443:{}:{}", chain_b.display(), leaf_60d.key.display()),
        ],
    );
    let ca = root.cert.display();
    let e = Exporter::start_with_files(
        &format!(
            "defaults: {{interval: 1s, count: 1, timeout: 900ms, warning_rtt: 200ms}}\n\
             targets:\n\
             \x20 - {{name: portal, address: \"http://{a}/\", probe: http, expect_body: Welcome, labels: {{site: centro}}}}\n\
             \x20 - {{name: portal-slow, address: \"http://{a}/slow\", probe: http}}\n\
             \x20 - {{name: portal-missing, address: \"http://{a}/missing\", probe: http}}\n\
             \x20 - {{name: portal-redir, address: \"http://{a}/redir\", probe: http, expect_body: Welcome}}\n\
             \x20 - {{name: portal-noredir, address: \"http://{a}/redir\", probe: http, follow_redirects: false, expect_status: [302]}}\n\
             \x20 - {{name: portal-post, address: \"http://{a}/\", probe: http, method: post, body: \"x=1\", headers: {{X-Probe: vigia}}, expect_status: [501]}}\n\
             targets_file: \"{{dir}}/targets.txt\"\n\
             transition_log: {{path: \"{{dir}}/transitions.jsonl\"}}\n"
        ),
        &[(
            "targets.txt",
            &format!(
                "portal-maint     http://{a}/maintenance probe=http fail_if_body=\"(?i)maintenance\"\n\
                 portal-404-ok    http://{a}/missing     probe=http expect_status=404\n\
                 secure           https://{a}/           probe=http tls_ca_file={ca} site=centro\n\
                 secure-chain     https://{a}:8443/      probe=http tls_ca_file={ca}\n\
                 secure-untrusted https://{a}/           probe=http\n\
                 web-tls          {a}:443                probe=tcp tls=true tls_ca_file={ca}\n\
                 to-https         http://{a}/to-https    probe=http tls_ca_file={ca}\n"
            ),
        )],
    );
    let names = [
        "portal",
        "portal-slow",
        "portal-missing",
        "portal-redir",
        "portal-noredir",
        "portal-post",
        "portal-maint",
        "portal-404-ok",
        "secure",
        "secure-chain",
        "secure-untrusted",
        "web-tls",
        "to-https",
    ];
    let body = e.wait_metrics(Duration::from_secs(20), "two probes of each", |b| {
        names.iter().all(|n| attempts(b, n) >= 2.0)
    });
    let want = [
        ("portal", "ok"),
        ("portal-slow", "warning"),
        ("portal-missing", "down"),
        ("portal-redir", "ok"),
        ("portal-noredir", "ok"),
        // The server has no POST: 501 is what a POST gets (a GET would get 200).
        ("portal-post", "ok"),
        ("portal-maint", "down"),
        ("portal-404-ok", "ok"),
        ("secure", "ok"),
        ("secure-chain", "ok"),
        ("secure-untrusted", "down"),
        ("web-tls", "ok"),
        ("to-https", "ok"),
    ];
    for (name, status) in want {
        assert_eq!(status_of(&body, name), Some(status), "{name}\n{body}");
        let up = if status == "down" { 0.0 } else { 1.0 };
        assert_eq!(
            metric(&body, "vigia_ping_up", &[("target", name)]),
            Some(up),
            "{name}"
        );
    }
    let code = |t: &str| metric(&body, "vigia_probe_http_status_code", &[("target", t)]);
    assert_eq!(code("portal"), Some(200.0));
    assert_eq!(code("portal-missing"), Some(404.0));
    assert_eq!(code("portal-noredir"), Some(302.0));
    assert_eq!(code("portal-redir"), Some(200.0));
    assert_eq!(
        code("secure-untrusted"),
        Some(0.0),
        "no response without TLS"
    );
    let redirects = |t: &str| metric(&body, "vigia_probe_http_redirects", &[("target", t)]);
    assert_eq!(redirects("portal-redir"), Some(1.0));
    assert_eq!(redirects("portal-noredir"), Some(0.0));
    // http:// redirected to https://: over TLS in the end, the certificate seen.
    assert_eq!(redirects("to-https"), Some(1.0));
    assert_eq!(
        metric(&body, "vigia_probe_http_tls", &[("target", "to-https")]),
        Some(1.0)
    );
    // Failures by reason, and only the reason that happened.
    for (t, reason) in [
        ("portal-missing", "status_code"),
        ("portal-maint", "body"),
        ("secure-untrusted", "tls"),
    ] {
        let n = metric(
            &body,
            "vigia_probe_failures_total",
            &[("target", t), ("reason", reason)],
        );
        assert!(n.is_some_and(|n| n >= 2.0), "{t}: {n:?}\n{body}");
        assert_eq!(failures(&body, t), n.unwrap(), "{t}: other reasons");
    }
    assert_eq!(failures(&body, "portal"), 0.0);
    // Phases: TLS only where there is TLS; each phase took some time.
    let phase = |t: &str, p: &str| {
        metric(
            &body,
            "vigia_probe_phase_duration_seconds",
            &[("target", t), ("phase", p)],
        )
    };
    for p in ["resolve", "connect", "tls", "processing", "transfer"] {
        assert!(phase("secure", p).is_some(), "secure {p}\n{body}");
    }
    assert!(phase("portal", "tls").is_none());
    assert!(phase("portal-slow", "processing").unwrap() >= 0.3);
    let total = metric(
        &body,
        "vigia_probe_duration_seconds",
        &[("target", "portal-slow")],
    );
    assert!(total.unwrap() >= 0.3, "{total:?}");
    assert_eq!(
        metric(&body, "vigia_probe_http_tls", &[("target", "secure")]),
        Some(1.0)
    );
    assert!(body.contains(&format!(
        "vigia_probe_tls_version_info{{target=\"secure\",address=\"https://{a}/\",probe=\"http\",site=\"centro\",tls_version=\"TLS 1.3\"}} 1"
    )), "{body}");

    // Certificates, against openssl's own reading of the files: the 2-day leaf; the chain
    // whose intermediate (10 days) runs out before its leaf (60 days); and the untrusted
    // server's, reported although the handshake was refused.
    let leaf = |t: &str| {
        metric(
            &body,
            "vigia_probe_tls_leaf_cert_expiry_timestamp_seconds",
            &[("target", t)],
        )
    };
    let earliest = |t: &str| {
        metric(
            &body,
            "vigia_probe_tls_earliest_cert_expiry_timestamp_seconds",
            &[("target", t)],
        )
    };
    let two_days = Pki::expiry(&leaf_2d.cert) as f64;
    assert_eq!(leaf("secure"), Some(two_days));
    assert_eq!(earliest("secure"), Some(two_days));
    assert_eq!(leaf("secure-untrusted"), Some(two_days));
    assert_eq!(leaf("web-tls"), Some(two_days));
    assert_eq!(leaf("to-https"), Some(two_days));
    assert_eq!(
        leaf("secure-chain"),
        Some(Pki::expiry(&leaf_60d.cert) as f64)
    );
    assert_eq!(
        earliest("secure-chain"),
        Some(Pki::expiry(&inter_10d.cert) as f64)
    );
    assert!(leaf("portal").is_none());

    // The board: each tile's kind and last result.
    let tile = board_tile(&e, "secure");
    assert_eq!(tile["probe"], "http");
    assert_eq!(tile["status"], "ok");
    let detail = tile["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("HTTP 200, certificate expires in 2 d"),
        "{detail}"
    );
    let tile = board_tile(&e, "portal-missing");
    assert_eq!(tile["detail"], "status 404 is not one of 2xx");
    let tile = board_tile(&e, "secure-untrusted");
    assert!(
        tile["detail"].as_str().unwrap().contains("UnknownIssuer"),
        "{tile}"
    );
    assert_eq!(board_tile(&e, "web-tls")["probe"], "tcp");

    // The transition log: kind and cause.
    let log = transitions(&e);
    assert_eq!(
        changes_of(&log, "portal-missing"),
        pairs(&[("unknown", "down")])
    );
    let line = log
        .iter()
        .find(|l| l["target"] == "portal-missing")
        .unwrap();
    assert_eq!(line["probe"], "http");
    assert_eq!(line["error"], "status 404 is not one of 2xx");
    assert_eq!(changes_of(&log, "portal"), pairs(&[("unknown", "ok")]));
}

/// `target`'s probes one by one: (number, succeeded, status after it), from its counters.
#[derive(Default)]
struct ProbeWatch {
    seen: Vec<(u64, bool, &'static str)>,
    attempts: f64,
    failures: f64,
}

impl ProbeWatch {
    /// Records probes until `until` holds for the last one.
    fn until(
        &mut self,
        e: &Exporter,
        target: &str,
        within: Duration,
        until: impl Fn(&(u64, bool, &'static str)) -> bool,
    ) {
        let deadline = Instant::now() + within;
        loop {
            let body = e.metrics();
            let (n, f) = (attempts(&body, target), failures(&body, target));
            if n > self.attempts {
                assert_eq!(
                    n,
                    self.attempts + 1.0,
                    "a probe went unseen: {:?}",
                    self.seen
                );
                let probe = (
                    n as u64,
                    f == self.failures,
                    status_of(&body, target).unwrap(),
                );
                self.seen.push(probe);
                (self.attempts, self.failures) = (n, f);
                if until(&probe) {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "timed out; probes so far: {:?}\n{}",
                self.seen,
                e.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn root_tcp_listener_refuses_then_accepts() {
    require_root();
    let host = NetnsHost::new();
    let a = host.addr;
    let e = Exporter::start(&format!(
        "defaults: {{interval: 500ms, count: 1, timeout: 400ms, down_after: 2}}\n\
         targets:\n\
         \x20 - {{name: ssh, address: \"{a}:2222\", probe: tcp, expect: '^SSH-2\\.0-'}}\n\
         \x20 - {{name: smtp, address: \"{a}:2223\", probe: tcp, send: 'EHLO vigia\\r\\n', expect: '^220 '}}\n\
         transition_log: {{path: \"{{dir}}/transitions.jsonl\"}}\n"
    ));
    // Nothing listens: refused, down after exactly two refused probes.
    let mut ssh = ProbeWatch::default();
    ssh.until(&e, "ssh", Duration::from_secs(10), |p| p.2 == "down");
    assert_eq!(
        ssh.seen,
        [(1, false, "unknown"), (2, false, "down")],
        "down_after 2"
    );
    let body = e.metrics();
    assert!(
        metric(
            &body,
            "vigia_probe_failures_total",
            &[("target", "ssh"), ("reason", "connect")]
        )
        .is_some_and(|n| n >= 2.0),
        "{body}"
    );
    assert!(board_tile(&e, "ssh")["detail"]
        .as_str()
        .unwrap()
        .ends_with("connection refused"));

    // A listener starts: ok at its first probe. The other port answers, but not what
    // `expect` wants.
    let servers = ProbeServers::start(
        &host.ns,
        &[
            "--banner".into(),
            format!("{a}:2222:SSH-2.0-vigia_test"),
            "--banner".into(),
            format!("{a}:2223:SSH-2.0-not_smtp"),
        ],
    );
    ssh.until(&e, "ssh", Duration::from_secs(10), |p| p.1);
    assert_eq!(ssh.seen.last().unwrap().2, "ok", "{:?}", ssh.seen);
    let body = e.wait_metrics(Duration::from_secs(10), "smtp's wrong banner", |b| {
        metric(
            b,
            "vigia_probe_failures_total",
            &[("target", "smtp"), ("reason", "expect")],
        )
        .is_some()
    });
    assert!(
        metric(
            &body,
            "vigia_probe_phase_duration_seconds",
            &[("target", "ssh"), ("phase", "expect")]
        )
        .is_some(),
        "{body}"
    );
    let detail = board_tile(&e, "smtp")["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        detail.contains("/^220 /") && detail.contains("SSH-2.0-not_smtp"),
        "{detail}"
    );

    // The listener goes away: down again after exactly two failed probes.
    drop(servers);
    let from = ssh.seen.len();
    ssh.until(&e, "ssh", Duration::from_secs(10), |p| p.2 == "down");
    // (A probe already under way when the listener went may still have succeeded.)
    let after: Vec<_> = ssh.seen[from..]
        .iter()
        .filter(|p| !p.1)
        .map(|p| (p.1, p.2))
        .collect();
    assert_eq!(
        after,
        [(false, "ok"), (false, "down")],
        "one failed probe is tolerated: {:?}",
        ssh.seen
    );
    assert_eq!(
        changes_of(&transitions(&e), "ssh"),
        pairs(&[("unknown", "down"), ("down", "ok"), ("ok", "down")])
    );
}

#[test]
fn root_dns_answer_changes_and_rcodes_are_judged() {
    require_root();
    let host = NetnsHost::new();
    let a = host.addr;
    let dns = Dnsmasq::start(&host.ns, a, "198.18.9.5 www.vigia.test\n");
    let e = Exporter::start(&format!(
        "defaults: {{interval: 500ms, count: 1, timeout: 400ms}}\n\
         targets:\n\
         \x20 - {{name: resolver, address: \"{a}\", probe: dns, query_name: www.vigia.test, expect_answer: '^198\\.18\\.9\\.5$'}}\n\
         \x20 - {{name: resolver-tcp, address: \"{a}:53\", probe: dns, query_name: www.vigia.test, transport: tcp}}\n\
         \x20 - {{name: nx-expected, address: \"{a}\", probe: dns, query_name: nothere.vigia.test, expect_rcode: NXDOMAIN}}\n\
         \x20 - {{name: nx, address: \"{a}\", probe: dns, query_name: nothere.vigia.test}}\n\
         \x20 - {{name: no-server, address: \"{a}:5353\", probe: dns, query_name: www.vigia.test}}\n\
         transition_log: {{path: \"{{dir}}/transitions.jsonl\"}}\n"
    ));
    let body = e.wait_metrics(Duration::from_secs(10), "first answers", |b| {
        ["resolver", "resolver-tcp", "nx-expected", "nx", "no-server"]
            .iter()
            .all(|t| attempts(b, t) >= 1.0)
    });
    for (t, status) in [
        ("resolver", "ok"),
        ("resolver-tcp", "ok"),
        ("nx-expected", "ok"),
        ("nx", "down"),
        ("no-server", "down"),
    ] {
        assert_eq!(status_of(&body, t), Some(status), "{t}\n{body}");
    }
    let rcode = |b: &str, t: &str| metric(b, "vigia_probe_dns_rcode", &[("target", t)]);
    assert_eq!(rcode(&body, "resolver"), Some(0.0));
    assert_eq!(rcode(&body, "nx"), Some(3.0));
    assert_eq!(rcode(&body, "no-server"), None, "no answer, no rcode");
    assert_eq!(
        metric(
            &body,
            "vigia_probe_dns_answer_rrs",
            &[("target", "resolver")]
        ),
        Some(1.0)
    );
    assert!(metric(
        &body,
        "vigia_probe_phase_duration_seconds",
        &[("target", "resolver-tcp"), ("phase", "connect")]
    )
    .is_some());
    assert_eq!(board_tile(&e, "resolver")["detail"], "NOERROR 198.18.9.5");
    assert_eq!(
        board_tile(&e, "nx")["detail"],
        "rcode NXDOMAIN is not one of NOERROR"
    );
    assert!(
        metric(
            &body,
            "vigia_probe_failures_total",
            &[("target", "no-server"), ("reason", "connect")]
        )
        .is_some(),
        "{body}"
    );

    // The answer changes: the resolver that expects the old one is down, the one that
    // expects nothing follows it.
    dns.set_hosts("198.18.9.6 www.vigia.test\n");
    let body = e.wait_metrics(Duration::from_secs(10), "the new answer", |b| {
        status_of(b, "resolver") == Some("down")
    });
    assert_eq!(status_of(&body, "resolver-tcp"), Some("ok"));
    assert!(
        metric(
            &body,
            "vigia_probe_failures_total",
            &[("target", "resolver"), ("reason", "answer")]
        )
        .is_some(),
        "{body}"
    );
    assert_eq!(
        board_tile(&e, "resolver")["detail"],
        "no answer matches /^198\\.18\\.9\\.5$/: got 198.18.9.6"
    );
    // resolver-tcp probes on its own schedule: its next round after the change says so
    // (CI once read its tile between the UDP resolver's round and its own).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let tcp_detail = board_tile(&e, "resolver-tcp")["detail"].clone();
        if tcp_detail == "NOERROR 198.18.9.6" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "resolver-tcp still says {tcp_detail} 10 s after the answer changed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // And back.
    dns.set_hosts("198.18.9.5 www.vigia.test\n");
    e.wait_metrics(Duration::from_secs(10), "the old answer again", |b| {
        status_of(b, "resolver") == Some("ok")
    });
    assert_eq!(
        changes_of(&transitions(&e), "resolver"),
        pairs(&[("unknown", "ok"), ("ok", "down"), ("down", "ok")])
    );
}

/// A firing alert: (alertname, target, severity).
type Alert = (String, String, String);

/// Seed 001's alert for every probe kind: a tcp service, a web portal and a resolver that
/// answer nothing are PingTargetDown in a real Prometheus running the shipped rules (their
/// `for` shortened to 5 s), and the alerts resolve once real servers answer.
#[test]
fn root_prometheus_fires_and_resolves_target_down_for_tcp_http_and_dns() {
    require_root();
    let host = NetnsHost::new();
    let a = host.addr;
    let e = Exporter::start(&format!(
        "defaults: {{interval: 1s, count: 1, timeout: 900ms, down_after: 2}}\n\
         targets:\n\
         \x20 - {{name: radius-tcp, address: \"{a}:2224\", probe: tcp}}\n\
         \x20 - {{name: portal, address: \"http://{a}:8080/\", probe: http}}\n\
         \x20 - {{name: resolver, address: \"{a}\", probe: dns, query_name: www.vigia.test}}\n"
    ));
    let prometheus = Prometheus::start_with_down_for(e.addr, "5s");
    let kinds = ["radius-tcp", "portal", "resolver"];
    let down = |f: &[Alert]| -> Vec<String> {
        f.iter()
            .filter(|(name, _, _)| name == "PingTargetDown")
            .map(|(_, t, _)| t.clone())
            .collect()
    };
    let wait = |what: &str, cond: &dyn Fn(&[String]) -> bool| {
        prometheus.wait_firing(what, Duration::from_secs(40), &|f| cond(&down(f)));
    };
    // Nothing listens yet: each is down, and its alert fires after the `for`, not before.
    let started = Instant::now();
    wait("PingTargetDown for the three", &|f| {
        kinds.iter().all(|k| f.iter().any(|t| t == k))
    });
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "fired {:?} after the start, before its `for`",
        started.elapsed()
    );
    let body = e.metrics();
    for (k, kind) in kinds.into_iter().zip(["tcp", "http", "dns"]) {
        assert_eq!(
            metric(
                &body,
                "vigia_ping_status",
                &[("target", k), ("probe", kind), ("status", "down")]
            ),
            Some(1.0),
            "{k}: not down as a {kind} probe\n{body}"
        );
    }

    // Real servers answer: every alert resolves.
    let _servers = ProbeServers::start(
        &host.ns,
        &[
            "--banner".into(),
            format!("{a}:2224:RADIUS-accounting-test"),
            "--http".into(),
            format!("{a}:8080"),
        ],
    );
    let _dns = Dnsmasq::start(&host.ns, a, "198.18.9.5 www.vigia.test\n");
    wait("every PingTargetDown resolved", &|f| f.is_empty());
    let body = e.metrics();
    for k in kinds {
        assert_eq!(status_of(&body, k), Some("ok"), "{k}\n{body}");
    }
}

#[test]
fn root_prometheus_fires_and_resolves_the_certificate_alerts() {
    require_root();
    let host = NetnsHost::new();
    let a = host.addr;
    let pki = Pki::new();
    let root = pki.root("vigia-test-root", 90);
    let leaf_2d = pki.issue("portal-2d", &root, 2, false, &format!("IP:{a}"));
    let inter_10d = pki.issue("vigia-test-intermediate", &root, 10, true, "");
    let leaf_60d = pki.issue("shop-60d", &inter_10d, 60, false, &format!("IP:{a}"));
    let serve = |chain: &std::path::Path, key: &std::path::Path| {
        ProbeServers::start(
            &host.ns,
            &[
                "--https".into(),
                format!("{a}:443:{}:{}", chain.display(), key.display()),
                "--https".into(),
                format!(
                    "{a}:8443:{}:{}",
                    pki.chain("shop", &[&leaf_60d, &inter_10d]).display(),
                    leaf_60d.key.display()
                ),
            ],
        )
    };
    let servers = serve(&pki.chain("portal", &[&leaf_2d]), &leaf_2d.key);
    let ca = root.cert.display();
    let e = Exporter::start(&format!(
        "defaults: {{interval: 1s, count: 1, timeout: 900ms}}\n\
         targets:\n\
         \x20 - {{name: portal, address: \"https://{a}/\", probe: http, tls_ca_file: \"{ca}\"}}\n\
         \x20 - {{name: shop, address: \"https://{a}:8443/\", probe: http, tls_ca_file: \"{ca}\"}}\n"
    ));
    let prometheus = Prometheus::start(e.addr);
    let alert = |t: &str, s: &str| {
        (
            "ProbeCertificateExpiry".to_string(),
            t.to_string(),
            s.to_string(),
        )
    };
    let wait = |what: &str, cond: &dyn Fn(&[Alert]) -> bool| {
        prometheus.wait_firing(what, Duration::from_secs(30), cond)
    };
    // The 2-day certificate: critical (and warning); the chain whose intermediate has 10
    // days left: warning only.
    let firing = wait("the certificate alerts", &|f| {
        f.contains(&alert("portal", "critical")) && f.contains(&alert("shop", "warning"))
    });
    assert!(firing.contains(&alert("portal", "warning")), "{firing:?}");
    assert!(!firing.contains(&alert("shop", "critical")), "{firing:?}");
    let left = prometheus
        .query("vigia_probe_tls_earliest_cert_expiry_timestamp_seconds{target=\"portal\"} - time()")
        .unwrap();
    assert!(
        (1.9 * 86400.0..2.0 * 86400.0 + 1.0).contains(&left),
        "{left}"
    );

    // The portal's certificate is renewed (60 days, from the root): both of its alerts
    // resolve at the next probe; the shop's goes on.
    drop(servers);
    let renewed = pki.issue("portal-60d", &root, 60, false, &format!("IP:{a}"));
    let _servers = serve(&pki.chain("portal-new", &[&renewed]), &renewed.key);
    let firing = wait("the renewal", &|f| !f.iter().any(|(_, t, _)| t == "portal"));
    assert!(firing.contains(&alert("shop", "warning")), "{firing:?}");
}
