//! Client certificates per `client_auth_type`, checked with curl presenting no
//! certificate, one from the configured CA, and one from another CA.

mod web_support;

use web_support::*;

/// Who connects: (name, curl arguments).
fn clients(pki: &Pki) -> Vec<(&'static str, Vec<String>)> {
    let ca = pki.path("ca.crt").display().to_string();
    vec![
        ("no certificate", vec!["--cacert".into(), ca]),
        ("certificate from the CA", client_cert_args(pki, "client")),
        (
            "certificate from another CA",
            client_cert_args(pki, "client-foreign"),
        ),
        (
            "other certificate from the CA",
            client_cert_args(pki, "client-other"),
        ),
    ]
}

/// Starts a server with `tls_extra` under tls_server_config and returns, per client in
/// [`clients`] order, whether it got its metrics.
fn admitted(tls_extra: &str) -> Vec<(&'static str, bool)> {
    let pki = Pki::generate();
    let path = pki.web_config(&format!(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n{tls_extra}"
    ));
    let server = TestServer::start(load(&path));
    let url = server.url("https", "/metrics");
    clients(&pki)
        .into_iter()
        .map(|(who, args)| {
            let r = curl(&url, &strs(&args));
            let ok = r.status == 200 && r.body.contains("vigia_build_info{");
            assert!(
                ok || (r.status == 0 && r.exit != 0),
                "{who}: neither served nor refused in the handshake: {r:?}"
            );
            (who, ok)
        })
        .collect()
}

#[test]
fn require_and_verify_accepts_only_certificates_from_the_ca() {
    let got =
        admitted("  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n");
    assert_eq!(
        got,
        vec![
            ("no certificate", false),
            ("certificate from the CA", true),
            ("certificate from another CA", false),
            ("other certificate from the CA", true),
        ]
    );
}

#[test]
fn verify_if_given_lets_clients_without_certificate_in() {
    let got = admitted("  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.crt\n");
    assert_eq!(
        got,
        vec![
            ("no certificate", true),
            ("certificate from the CA", true),
            ("certificate from another CA", false),
            ("other certificate from the CA", true),
        ]
    );
}

#[test]
fn require_any_needs_a_certificate_but_not_from_the_ca() {
    let got = admitted("  client_auth_type: RequireAnyClientCert\n");
    assert_eq!(
        got,
        vec![
            ("no certificate", false),
            ("certificate from the CA", true),
            ("certificate from another CA", true),
            ("other certificate from the CA", true),
        ]
    );
}

#[test]
fn request_client_cert_asks_but_accepts_anyone() {
    let got = admitted("  client_auth_type: RequestClientCert\n");
    assert!(got.iter().all(|(_, ok)| *ok), "{got:?}");
}

#[test]
fn client_allowed_sans_narrow_the_ca_down_to_named_clients() {
    let by_dns = admitted(&format!(
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n\
         \x20 client_allowed_sans: [nobody.vigia.test, {CLIENT_DNS}]\n"
    ));
    assert_eq!(
        by_dns,
        vec![
            ("no certificate", false),
            ("certificate from the CA", true),
            ("certificate from another CA", false),
            ("other certificate from the CA", false),
        ]
    );
    let by_uri = admitted(&format!(
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n\
         \x20 client_allowed_sans: ['{CLIENT_URI}']\n"
    ));
    assert_eq!(by_uri, by_dns);
    // Without chain verification the SAN still has to match (another CA's certificate
    // with the allowed name gets in, as with Go's RequireAnyClientCert).
    let any = admitted(&format!(
        "  client_auth_type: RequireAnyClientCert\n  client_allowed_sans: [{OTHER_CLIENT_DNS}]\n"
    ));
    assert_eq!(
        any,
        vec![
            ("no certificate", false),
            ("certificate from the CA", false),
            ("certificate from another CA", false),
            ("other certificate from the CA", true),
        ]
    );
}
