//! The web config file is read again when it changes, as node_exporter does:
//! `basic_auth_users` edits take effect on the next request (certificates already did, see
//! `web_tls_auth`), a broken edit keeps the previous users, and a configured
//! Content-Security-Policy adds to a page's own policy instead of replacing it. Hashes from
//! `htpasswd` (`apache2-utils`), `curl` as the client.

mod web_support;

use std::time::Duration;

use axum::routing::get;
use web_support::{curl, htpasswd_bcrypt, load, Pki, TestServer};

/// Writes the file anew (a new inode, as editors that save by rename do) or in place.
fn write(path: &std::path::Path, text: &str, by_rename: bool) {
    // mtime resolution can be coarse: make sure the stamp changes.
    std::thread::sleep(Duration::from_millis(20));
    if by_rename {
        let tmp = path.with_extension("new");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    } else {
        std::fs::write(path, text).unwrap();
    }
}

#[test]
fn basic_auth_users_are_reloaded_without_restart() {
    let pki = Pki::generate();
    let old = htpasswd_bcrypt("alice", "old-pw");
    let path = pki.web_config(&format!("basic_auth_users:\n  alice: '{old}'\n"));
    let server = TestServer::start(load(&path));
    let url = server.url("http", "/metrics");
    let status = |user: &str| curl(&url, &["-u", user]).status;

    assert_eq!(status("alice:old-pw"), 200);
    assert_eq!(curl(&url, &[]).status, 401);

    // The password changes and bob is added: the old password stops working at once,
    // although it was cached as a success.
    let new = htpasswd_bcrypt("alice", "new-pw");
    let bob = htpasswd_bcrypt("bob", "bob-pw");
    write(
        &path,
        &format!("basic_auth_users:\n  alice: '{new}'\n  bob: '{bob}'\n"),
        true,
    );
    assert_eq!(status("alice:old-pw"), 401);
    assert_eq!(status("alice:new-pw"), 200);
    assert_eq!(status("bob:bob-pw"), 200);

    // A broken edit (a plain password instead of a hash) keeps the previous users.
    write(&path, "basic_auth_users:\n  alice: new-pw\n", false);
    assert_eq!(status("alice:new-pw"), 200);
    assert_eq!(status("bob:bob-pw"), 200);
    assert_eq!(curl(&url, &[]).status, 401);

    // bob removed, in place.
    write(
        &path,
        &format!("basic_auth_users:\n  alice: '{new}'\n"),
        false,
    );
    assert_eq!(status("bob:bob-pw"), 401);
    assert_eq!(status("alice:new-pw"), 200);
}

#[test]
fn basic_auth_added_to_a_file_without_users_takes_effect() {
    let pki = Pki::generate();
    let path = pki.web_config("http_server_config:\n  http2: true\n");
    let server = TestServer::start(load(&path));
    let url = server.url("http", "/-/healthy");
    assert_eq!(curl(&url, &[]).status, 200);
    let hash = htpasswd_bcrypt("prometheus", "pw");
    write(
        &path,
        &format!("basic_auth_users:\n  prometheus: '{hash}'\n"),
        true,
    );
    assert_eq!(curl(&url, &[]).status, 401);
    assert_eq!(curl(&url, &["-u", "prometheus:pw"]).status, 200);
}

#[test]
fn configured_csp_adds_to_a_pages_own_policy() {
    let pki = Pki::generate();
    let path = pki.web_config(
        "http_server_config:\n  headers:\n    Content-Security-Policy: \"default-src 'self'; report-uri /csp\"\n",
    );
    // A route with a policy of its own, like the ping status board.
    let own = "default-src 'none'; script-src 'sha256-abc'";
    let extra = axum::Router::new().route(
        "/board",
        get(move || async move {
            (
                [(axum::http::header::CONTENT_SECURITY_POLICY, own)],
                "board",
            )
        }),
    );
    let server = TestServer::start_with_routes(load(&path), extra);
    let board = curl(&server.url("http", "/board"), &[]);
    assert_eq!(board.status, 200);
    assert_eq!(
        board.header("content-security-policy"),
        Some("default-src 'none'; script-src 'sha256-abc'; report-uri /csp"),
        "{board:?}"
    );
    // Pages without a policy of their own get the configured one as it is.
    let landing = curl(&server.url("http", "/"), &[]);
    assert_eq!(
        landing.header("content-security-policy"),
        Some("default-src 'self'; report-uri /csp")
    );
}
