//! Bad web config files are refused at load, with the field's path and the reason, so the
//! exporter exits with status 2 before it listens.

mod web_support;

use std::path::Path;

use vigia_kit::web_config::WebConfig;
use vigia_kit::ConfigError;
use web_support::*;

fn error(path: &Path) -> ConfigError {
    match WebConfig::load(path) {
        Ok(web) => panic!("{} was accepted: {web:?}", path.display()),
        Err(e) => e,
    }
}

fn tls(extra: &str) -> String {
    format!("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n{extra}")
}

#[test]
fn each_bad_file_names_its_field() {
    let pki = Pki::generate();
    std::fs::write(
        pki.path("garbage.pem"),
        "-----BEGIN CERTIFICATE-----\n!!! not base64 !!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    std::fs::write(
        pki.path("not-x509.pem"),
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    std::fs::write(pki.path("empty.pem"), "").unwrap();
    let md5 = htpasswd_md5("alice", "pw");
    let bcrypt = htpasswd_bcrypt("bob", "pw");
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "unknown top-level field",
            "basic_auth_user:\n  bob: x\n".into(),
            "basic_auth_user",
            "unknown field",
        ),
        (
            "unknown TLS field",
            tls("  cert_key: x\n"),
            "tls_server_config.cert_key",
            "unknown field",
        ),
        (
            "missing certificate file",
            "tls_server_config:\n  cert_file: missing.crt\n  key_file: server.key\n".into(),
            "tls_server_config.cert_file",
            "missing.crt",
        ),
        (
            "missing key file",
            "tls_server_config:\n  cert_file: server.crt\n  key_file: nope.key\n".into(),
            "tls_server_config.key_file",
            "nope.key",
        ),
        (
            "certificate file that is not PEM",
            "tls_server_config:\n  cert_file: garbage.pem\n  key_file: server.key\n".into(),
            "tls_server_config.cert_file",
            "bad PEM",
        ),
        (
            "PEM that holds no certificate",
            "tls_server_config:\n  cert_file: not-x509.pem\n  key_file: server.key\n".into(),
            "tls_server_config.cert_file",
            "not a valid X.509 certificate",
        ),
        (
            "empty certificate file",
            "tls_server_config:\n  cert_file: empty.pem\n  key_file: server.key\n".into(),
            "tls_server_config.cert_file",
            "no PEM certificate",
        ),
        (
            "certificate given as key",
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.crt\n".into(),
            "tls_server_config.key_file",
            "private key",
        ),
        (
            "key of another certificate",
            "tls_server_config:\n  cert_file: server.crt\n  key_file: client.key\n".into(),
            "tls_server_config.cert_file",
            "does not go with",
        ),
        (
            "missing client CA file",
            tls("  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: no-ca.crt\n"),
            "tls_server_config.client_ca_file",
            "no-ca.crt",
        ),
        (
            "verification without a CA",
            tls("  client_auth_type: RequireAndVerifyClientCert\n"),
            "tls_server_config.client_ca_file",
            "client_ca_file",
        ),
        (
            "CA without client auth",
            tls("  client_ca_file: ca.crt\n"),
            "tls_server_config.client_auth_type",
            "NoClientCert",
        ),
        (
            "SANs without a required certificate",
            tls("  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.crt\n  client_allowed_sans: [a.vigia.test]\n"),
            "tls_server_config.client_allowed_sans",
            "RequireAndVerifyClientCert",
        ),
        (
            "unknown client auth type",
            tls("  client_auth_type: RequireSomething\n"),
            "tls_server_config.client_auth_type",
            "RequireSomething",
        ),
        (
            "TLS 1.1",
            tls("  min_version: TLS11\n"),
            "tls_server_config.min_version",
            "rustls",
        ),
        (
            "versions upside down",
            tls("  min_version: TLS13\n  max_version: TLS12\n"),
            "tls_server_config.min_version",
            "max_version",
        ),
        (
            "CBC cipher suite",
            tls("  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA]\n"),
            "tls_server_config.cipher_suites[1]",
            "rustls",
        ),
        (
            "P-521",
            tls("  curve_preferences: [CurveP521]\n"),
            "tls_server_config.curve_preferences[0]",
            "CurveP521",
        ),
        (
            "e-mail SAN",
            tls("  client_auth_type: RequireAnyClientCert\n  client_allowed_sans: [noc@vigia.test]\n"),
            "tls_server_config.client_allowed_sans[0]",
            "e-mail",
        ),
        (
            "htpasswd MD5 hash",
            format!("basic_auth_users:\n  bob: '{bcrypt}'\n  alice: '{md5}'\n"),
            "basic_auth_users.alice",
            "Apache MD5",
        ),
        (
            "plain text password",
            "basic_auth_users:\n  alice: hunter2\n".into(),
            "basic_auth_users.alice",
            "not a bcrypt hash",
        ),
        (
            "truncated bcrypt hash",
            format!("basic_auth_users:\n  bob: '{}'\n", &bcrypt[..40]),
            "basic_auth_users.bob",
            "malformed bcrypt hash",
        ),
        (
            "header that cannot be set",
            "http_server_config:\n  headers:\n    Access-Control-Allow-Origin: '*'\n".into(),
            "http_server_config.headers.Access-Control-Allow-Origin",
            "cannot be configured",
        ),
        (
            "http2 not a boolean",
            "http_server_config:\n  http2: sometimes\n".into(),
            "http_server_config.http2",
            "",
        ),
        (
            "rate limit without burst",
            "rate_limit:\n  interval: 1s\n".into(),
            "rate_limit.burst",
            "at least 1",
        ),
    ];
    for (what, yaml, field, words) in cases {
        let path = pki.web_config(&yaml);
        let e = error(&path);
        assert_eq!(e.path, field, "{what}: {e}");
        assert!(e.message.contains(words), "{what}: {e}");
        // What the operator reads on stderr names the field.
        assert!(e.to_string().contains(&format!("`{field}`")), "{what}: {e}");
    }
}

#[test]
fn unreadable_or_broken_file_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent.yml");
    let e = error(&missing);
    assert_eq!(e.path, missing.display().to_string());
    let broken = dir.path().join("broken.yml");
    std::fs::write(&broken, "tls_server_config: [unclosed\n").unwrap();
    let e = error(&broken);
    assert_eq!(e.path, broken.display().to_string());
}

#[test]
fn empty_file_serves_plain_http_without_auth() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("web.yml");
    std::fs::write(&path, "").unwrap();
    let web = load(&path);
    assert!(!web.is_tls() && !web.has_basic_auth());
    let server = TestServer::start(web);
    let r = curl(&server.url("http", "/metrics"), &[]);
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains("vigia_build_info{"));
}

#[test]
fn inline_pem_and_absolute_paths_work_like_files() {
    let pki = Pki::generate();
    let cert = std::fs::read_to_string(pki.path("server.crt")).unwrap();
    let indent = |pem: &str| {
        pem.lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    let path = pki.web_config(&format!(
        "tls_server_config:\n  cert: |\n{}  key_file: {}\n",
        indent(&cert),
        pki.path("server.key").display()
    ));
    let server = TestServer::start(load(&path));
    let r = curl(
        &server.url("https", "/metrics"),
        &["--cacert", &pki.path("ca.crt").display().to_string()],
    );
    assert_eq!(r.status, 200, "{r:?}");
}
