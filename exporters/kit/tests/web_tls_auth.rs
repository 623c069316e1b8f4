//! TLS and basic auth as an operator's Prometheus meets them: the kit's server with a web
//! config file, certificates from `openssl`, hashes from `htpasswd -B`, and `curl` as the
//! client.

mod web_support;

use std::time::Duration;

use web_support::*;

fn cacert(pki: &Pki) -> String {
    pki.path("ca.crt").display().to_string()
}

#[test]
fn https_with_basic_auth_serves_metrics_only_to_the_right_password() {
    let pki = Pki::generate();
    let alice = htpasswd_bcrypt("alice", "correct horse:battery");
    let bob = htpasswd_bcrypt("bob", "hunter2");
    let path = pki.web_config(&format!(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n\
         basic_auth_users:\n  alice: '{alice}'\n  bob: '{bob}'\n"
    ));
    let web = load(&path);
    assert!(web.is_tls() && web.has_basic_auth());
    let server = TestServer::start(web);
    let metrics = server.url("https", "/metrics");
    let ca = cacert(&pki);

    let ok = curl(
        &metrics,
        &["--cacert", &ca, "-u", "alice:correct horse:battery"],
    );
    assert_eq!(ok.status, 200, "{ok:?}");
    assert!(ok.body.contains("vigia_build_info{"), "{}", ok.body);
    // Again (now from the cache), and the other user.
    let again = curl(
        &metrics,
        &["--cacert", &ca, "-u", "alice:correct horse:battery"],
    );
    assert_eq!(again.status, 200, "{again:?}");
    let bob_ok = curl(&metrics, &["--cacert", &ca, "-u", "bob:hunter2"]);
    assert_eq!(bob_ok.status, 200, "{bob_ok:?}");

    let huge = format!("Authorization: Basic {}", "QUFB".repeat(2000));
    let refused: &[(&str, Vec<&str>)] = &[
        ("wrong password", vec!["-u", "alice:correct horse"]),
        (
            "other user's password",
            vec!["-u", "bob:correct horse:battery"],
        ),
        ("unknown user", vec!["-u", "mallory:hunter2"]),
        ("no credentials", vec![]),
        (
            "not base64",
            vec!["-H", "Authorization: Basic !!!not-base64!!!"],
        ),
        ("no colon", vec!["-H", "Authorization: Basic YWxpY2U="]),
        (
            "other scheme",
            vec!["-H", "Authorization: Bearer YWxpY2U6aHVudGVyMg=="],
        ),
        ("empty header", vec!["-H", "Authorization;"]),
        (
            "empty user and password",
            vec!["-H", "Authorization: Basic Og=="],
        ),
        ("huge", vec!["-H", &huge]),
    ];
    for (what, extra) in refused {
        let mut args = vec!["--cacert", ca.as_str()];
        args.extend(extra);
        let r = curl(&metrics, &args);
        assert_eq!(r.status, 401, "{what}: {r:?}");
        assert!(
            r.header("www-authenticate")
                .is_some_and(|v| v.starts_with("Basic")),
            "{what}: {r:?}"
        );
        assert!(!r.body.contains("vigia_build_info"), "{what}: {}", r.body);
    }

    // Every path is protected, as with exporter-toolkit.
    for path in ["/", "/-/healthy", "/-/ready", "/nope"] {
        let r = curl(&server.url("https", path), &["--cacert", &ca]);
        assert_eq!(r.status, 401, "{path}: {r:?}");
    }
    let healthy = curl(
        &server.url("https", "/-/healthy"),
        &["--cacert", &ca, "-u", "bob:hunter2"],
    );
    assert_eq!((healthy.status, healthy.body.as_str()), (200, "Healthy\n"));

    // The server is still alive after all of that.
    let last = curl(&metrics, &["--cacert", &ca, "-u", "bob:hunter2"]);
    assert_eq!(last.status, 200, "{last:?}");
}

#[test]
fn tls_port_refuses_plain_http_and_untrusted_clients() {
    let pki = Pki::generate();
    let path =
        pki.web_config("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n");
    let server = TestServer::start(load(&path));

    let plain = curl(&server.url("http", "/metrics"), &[]);
    assert_eq!(plain.status, 400, "{plain:?}");
    assert!(
        plain.body.contains("HTTP request to an HTTPS server"),
        "{plain:?}"
    );
    assert!(!plain.body.contains("vigia_build_info"));

    // curl does not know our CA: the certificate really is the one we configured.
    let untrusted = curl(&server.url("https", "/metrics"), &[]);
    assert_eq!(untrusted.status, 0, "{untrusted:?}");
    assert_eq!(untrusted.exit, 60, "{untrusted:?}");

    // Certificate valid for localhost too (SAN), and no auth configured: 200.
    let by_name = curl(
        &format!("https://localhost:{}/metrics", server.addr.port()),
        &[
            "--cacert",
            &cacert(&pki),
            "--resolve",
            &format!("localhost:{}:127.0.0.1", server.addr.port()),
        ],
    );
    assert_eq!(by_name.status, 200, "{by_name:?}");
    assert!(by_name.body.contains("vigia_build_info{"));
}

#[test]
fn min_and_max_version_are_enforced() {
    let pki = Pki::generate();
    let ca = cacert(&pki);

    let path = pki.web_config(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS13\n",
    );
    let server = TestServer::start(load(&path));
    let url = server.url("https", "/metrics");
    let old_client = curl(&url, &["--cacert", &ca, "--tls-max", "1.2"]);
    assert_eq!(old_client.status, 0, "{old_client:?}");
    assert_ne!(old_client.exit, 0, "{old_client:?}");
    let new_client = curl(&url, &["--cacert", &ca, "--tlsv1.3"]);
    assert_eq!(new_client.status, 200, "{new_client:?}");

    let path = pki.web_config(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  max_version: TLS12\n",
    );
    let server = TestServer::start(load(&path));
    let url = server.url("https", "/metrics");
    let only13 = curl(&url, &["--cacert", &ca, "--tlsv1.3"]);
    assert_eq!(only13.status, 0, "{only13:?}");
    let tls12 = curl(&url, &["--cacert", &ca, "--tls-max", "1.2"]);
    assert_eq!(tls12.status, 200, "{tls12:?}");
}

#[test]
fn cipher_suites_and_curves_limit_the_handshake() {
    let pki = Pki::generate();
    let ca = cacert(&pki);
    let path = pki.web_config(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  max_version: TLS12\n\
         \x20 cipher_suites: [TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384]\n\
         \x20 curve_preferences: [CurveP384]\n",
    );
    let server = TestServer::start(load(&path));
    let url = server.url("https", "/metrics");

    let listed = curl(
        &url,
        &["--cacert", &ca, "--ciphers", "ECDHE-RSA-AES256-GCM-SHA384"],
    );
    assert_eq!(listed.status, 200, "{listed:?}");
    let unlisted = curl(
        &url,
        &["--cacert", &ca, "--ciphers", "ECDHE-RSA-AES128-GCM-SHA256"],
    );
    assert_eq!(unlisted.status, 0, "{unlisted:?}");
    let wrong_curve = curl(&url, &["--cacert", &ca, "--curves", "X25519"]);
    assert_eq!(wrong_curve.status, 0, "{wrong_curve:?}");
    let right_curve = curl(&url, &["--cacert", &ca, "--curves", "P-384"]);
    assert_eq!(right_curve.status, 200, "{right_curve:?}");
}

#[test]
fn http2_and_response_headers_follow_http_server_config() {
    let pki = Pki::generate();
    let ca = cacert(&pki);
    let hash = htpasswd_bcrypt("prom", "scrape");
    let path = pki.web_config(&format!(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n\
         http_server_config:\n  headers:\n    X-Frame-Options: deny\n    X-Content-Type-Options: nosniff\n\
         \x20   Strict-Transport-Security: max-age=31536000\n    Content-Security-Policy: \"\"\n\
         basic_auth_users:\n  prom: '{hash}'\n"
    ));
    let server = TestServer::start(load(&path));
    let url = server.url("https", "/metrics");

    let ok = curl(&url, &["--cacert", &ca, "--http2", "-u", "prom:scrape"]);
    assert_eq!((ok.status, ok.http_version.as_str()), (200, "2"), "{ok:?}");
    // Also on a refusal, so a browser never frames even the login challenge.
    let refused = curl(&url, &["--cacert", &ca, "--http2"]);
    assert_eq!(refused.status, 401, "{refused:?}");
    for r in [&ok, &refused] {
        assert_eq!(r.header("x-frame-options"), Some("deny"), "{r:?}");
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{r:?}");
        assert_eq!(
            r.header("strict-transport-security"),
            Some("max-age=31536000"),
            "{r:?}"
        );
        // Blank means unset.
        assert_eq!(r.header("content-security-policy"), None, "{r:?}");
    }

    let path = pki.web_config(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n\
         http_server_config:\n  http2: false\n",
    );
    let server = TestServer::start(load(&path));
    let r = curl(
        &server.url("https", "/metrics"),
        &["--cacert", &ca, "--http2"],
    );
    assert_eq!((r.status, r.http_version.as_str()), (200, "1.1"), "{r:?}");
}

#[test]
fn rate_limit_answers_429_after_the_burst() {
    let pki = Pki::generate();
    // One request per hour after a burst of 2: the third request inside the test is over.
    let path = pki.web_config("rate_limit:\n  interval: 1h\n  burst: 2\n");
    let server = TestServer::start(load(&path));
    let url = server.url("http", "/-/healthy");
    assert_eq!(curl(&url, &[]).status, 200);
    assert_eq!(curl(&url, &[]).status, 200);
    let third = curl(&url, &[]);
    assert_eq!(third.status, 429, "{third:?}");
}

#[test]
fn renewed_certificate_is_served_without_restart() {
    let pki = Pki::generate();
    let ca = cacert(&pki);
    let path = pki.web_config("tls_server_config:\n  cert_file: live.crt\n  key_file: live.key\n");
    std::fs::copy(pki.path("server.crt"), pki.path("live.crt")).unwrap();
    std::fs::copy(pki.path("server.key"), pki.path("live.key")).unwrap();
    let server = TestServer::start(load(&path));
    let url = server.url("https", "/-/healthy");

    let before = curl(&url, &["--cacert", &ca, "-v"]);
    assert_eq!(before.status, 200, "{before:?}");
    assert!(before.stderr.contains("CN=localhost"), "{}", before.stderr);

    pki.leaf(
        "renewed",
        "ca",
        "renewed.localhost",
        "ec",
        "serverAuth",
        "IP:127.0.0.1, DNS:localhost",
    );
    // A half-done renewal (new key, old certificate) keeps the old pair in service.
    std::fs::copy(pki.path("renewed.key"), pki.path("live.key")).unwrap();
    let half = curl(&url, &["--cacert", &ca, "-v"]);
    assert_eq!(half.status, 200, "{half:?}");
    assert!(half.stderr.contains("CN=localhost"), "{}", half.stderr);

    // mtime resolution can be coarse: make sure the certificate's stamp changes.
    std::thread::sleep(Duration::from_millis(20));
    std::fs::copy(pki.path("renewed.crt"), pki.path("live.crt")).unwrap();
    let after = curl(&url, &["--cacert", &ca, "-v"]);
    assert_eq!(after.status, 200, "{after:?}");
    assert!(
        after.stderr.contains("CN=renewed.localhost"),
        "{}",
        after.stderr
    );
}
