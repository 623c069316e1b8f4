//! The NOC status board: the page at `/` (seed 001's Flask page, done properly) and the
//! JSON it refreshes from, `/api/status`.
//!
//! The page is one self-contained document: its CSS and JS are compiled into the binary
//! and inlined, and its Content-Security-Policy forbids loading anything from anywhere
//! but its own origin, because NOC networks are often offline. Everything it shows comes
//! from `/api/status`, inserted as text (target names are operator input); the policy
//! also allows only the page's own script and style, by hash, so even markup that got in
//! by mistake could not run.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

/// One target as the board shows it.
#[derive(Serialize, Clone, Debug)]
pub struct TargetView {
    /// The configured `name`, unique among targets.
    pub name: String,
    /// The address probed (as configured: an IP or a host name).
    pub address: String,
    /// The target's own labels (kind, site, ...).
    pub labels: BTreeMap<String, String>,
    /// The group the tile is shown under (usually the `site` label); `None` puts the tile
    /// under the heading of targets without a site.
    pub site: Option<String>,
    /// One of [`STATUSES`]: "ok", "warning", "down", "unreachable" (silent while its parent
    /// is down) or "unknown" (no round finished yet).
    pub status: &'static str,
    /// The kind of probe: "icmp", "tcp", "http" or "dns".
    pub probe: &'static str,
    /// tcp, http and dns: the last probe in a few words (`HTTP 200`, `NOERROR
    /// 198.18.0.5`, or why it failed: `connect to 198.18.0.9:443: connection refused`);
    /// `null` for icmp and before the first probe.
    pub detail: Option<String>,
    /// The target this one is reached through, as configured.
    pub parent: Option<String>,
    /// While unreachable: the down target it is behind (the parent, or the top of the
    /// chain when the parent is itself unreachable).
    pub behind: Option<String>,
    /// The maintenance window the target is in now, if any.
    pub maintenance: Option<MaintenanceView>,
    /// RTT of the last reply received, if any reply has ever been received.
    pub last_rtt_seconds: Option<f64>,
    /// Share of the last round's requests that got no reply (0.0 ..= 1.0), `None` before
    /// the first round.
    pub loss_ratio: Option<f64>,
    /// When the target entered its current status, as Unix time in seconds (for a target
    /// that has never changed status: when probing started). The down stopwatch counts
    /// from here.
    pub status_since_seconds: f64,
    /// When the last round finished, as Unix time in seconds; `None` before the first.
    pub last_round_seconds: Option<f64>,
}

/// The maintenance window a target is in, as `/api/status` shows it.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct MaintenanceView {
    /// When the window ends (Unix seconds).
    pub until_seconds: f64,
    pub reason: String,
    /// `site` or `target`: what the window was declared for.
    pub scope: &'static str,
}

/// Every status a [`TargetView`] can have, in the order the board sorts tiles.
pub const STATUSES: [&str; 5] = ["down", "warning", "unreachable", "unknown", "ok"];

/// The current state of every target, read on each `/api/status` request.
pub trait StatusSnapshot: Send + Sync + 'static {
    fn snapshot(&self) -> Vec<TargetView>;
}

/// The body of `/api/status`.
#[derive(Serialize, Debug)]
struct StatusResponse {
    /// The server's clock when the snapshot was taken (Unix seconds): the page measures the
    /// stopwatch against this, not against the browser's clock, which may be wrong.
    generated_at: f64,
    targets: Vec<TargetView>,
}

/// Routes of the board: `GET /` (the page) and `GET /api/status` (JSON). Merge them into
/// the kit's router with no landing page, so that the board owns `/`.
pub fn routes(source: Arc<dyn StatusSnapshot>) -> Router {
    Router::new().route("/", get(page)).route(
        "/api/status",
        get(move || {
            let source = source.clone();
            async move { status(source.as_ref()) }
        }),
    )
}

const BOARD_CSS: &str = include_str!("../assets/board.css");
const BOARD_JS: &str = include_str!("../assets/board.js");

/// The page with its style sheet and script inlined; assembled once, on first use.
static PAGE: LazyLock<String> = LazyLock::new(|| {
    include_str!("../assets/board.html")
        .replace("/*BOARD_CSS*/", BOARD_CSS)
        .replace("/*BOARD_JS*/", BOARD_JS)
});

/// Only what the page itself needs: its own inline style and script (by hash), `fetch`
/// to its own origin. Nothing external can load even if a future edit adds a link.
static PAGE_CSP: LazyLock<String> = LazyLock::new(|| {
    format!(
        "default-src 'none'; style-src '{}'; script-src '{}'; connect-src 'self'; \
         img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        csp_hash(BOARD_CSS),
        csp_hash(BOARD_JS)
    )
});

/// A CSP source expression for an inline element's exact text: `sha256-<base64>`.
fn csp_hash(text: &str) -> String {
    use sha2::{Digest, Sha256};
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let digest = Sha256::digest(text.as_bytes());
    let mut out = String::from("sha256-");
    for chunk in digest.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, PAGE_CSP.as_str()),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        PAGE.as_str(),
    )
        .into_response()
}

fn status(source: &dyn StatusSnapshot) -> Response {
    let generated_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let body = StatusResponse {
        generated_at,
        targets: source.snapshot(),
    };
    // A stale answer from a cache would show a dead host as alive.
    ([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::{to_bytes, Body};
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    struct Fixed(Vec<TargetView>);

    impl StatusSnapshot for Fixed {
        fn snapshot(&self) -> Vec<TargetView> {
            self.0.clone()
        }
    }

    fn view(name: &str, status: &'static str) -> TargetView {
        TargetView {
            name: name.to_string(),
            address: "127.0.0.9".to_string(),
            labels: BTreeMap::from([("kind".to_string(), "dslam".to_string())]),
            site: Some("north".to_string()),
            status,
            probe: "icmp",
            detail: None,
            parent: None,
            behind: None,
            maintenance: None,
            last_rtt_seconds: Some(0.0123),
            loss_ratio: Some(0.2),
            status_since_seconds: 1_700_000_000.5,
            last_round_seconds: Some(1_700_000_100.0),
        }
    }

    async fn get(router: Router, uri: &str) -> (StatusCode, axum::http::HeaderMap, String) {
        let response = router
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = to_bytes(response.into_body(), 4 << 20).await.unwrap();
        (status, headers, String::from_utf8(body.to_vec()).unwrap())
    }

    fn header<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> &'a str {
        headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
    }

    #[tokio::test]
    async fn api_status_returns_every_target_with_the_server_time() {
        let mut never_probed = view("olt-2", "unknown");
        never_probed.site = None;
        never_probed.labels.clear();
        never_probed.last_rtt_seconds = None;
        never_probed.loss_ratio = None;
        never_probed.last_round_seconds = None;
        let mut behind = view("dslam-7", "unreachable");
        // A service behind its router: the kind and its last failure with the parent.
        behind.probe = "http";
        behind.detail = Some("no answer within 1s (during connect)".into());
        behind.parent = Some("router-north".into());
        behind.behind = Some("router-north".into());
        behind.loss_ratio = Some(1.0);
        behind.maintenance = Some(MaintenanceView {
            until_seconds: 1_700_003_600.0,
            reason: "fibre works".into(),
            scope: "site",
        });
        let source = Arc::new(Fixed(vec![
            view("dslam-1", "warning"),
            never_probed,
            behind,
        ]));

        let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let (status, headers, body) = get(routes(source), "/api/status").await;
        let after = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();

        assert_eq!(status, StatusCode::OK);
        assert_eq!(header(&headers, "content-type"), "application/json");
        assert_eq!(header(&headers, "cache-control"), "no-store");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        let generated_at = json["generated_at"].as_f64().unwrap();
        assert!(
            generated_at >= before.as_secs_f64() && generated_at <= after.as_secs_f64(),
            "generated_at {generated_at} is not the server's time"
        );
        assert_eq!(
            json["targets"],
            serde_json::json!([
                {
                    "name": "dslam-1",
                    "address": "127.0.0.9",
                    "labels": {"kind": "dslam"},
                    "site": "north",
                    "status": "warning",
                    "probe": "icmp",
                    "detail": null,
                    "parent": null,
                    "behind": null,
                    "maintenance": null,
                    "last_rtt_seconds": 0.0123,
                    "loss_ratio": 0.2,
                    "status_since_seconds": 1_700_000_000.5,
                    "last_round_seconds": 1_700_000_100.0
                },
                {
                    "name": "olt-2",
                    "address": "127.0.0.9",
                    "labels": {},
                    "site": null,
                    "status": "unknown",
                    "probe": "icmp",
                    "detail": null,
                    "parent": null,
                    "behind": null,
                    "maintenance": null,
                    "last_rtt_seconds": null,
                    "loss_ratio": null,
                    "status_since_seconds": 1_700_000_000.5,
                    "last_round_seconds": null
                },
                {
                    "name": "dslam-7",
                    "address": "127.0.0.9",
                    "labels": {"kind": "dslam"},
                    "site": "north",
                    "status": "unreachable",
                    "probe": "http",
                    "detail": "no answer within 1s (during connect)",
                    "parent": "router-north",
                    "behind": "router-north",
                    "maintenance": {"until_seconds": 1_700_003_600.0, "reason": "fibre works", "scope": "site"},
                    "last_rtt_seconds": 0.0123,
                    "loss_ratio": 1.0,
                    "status_since_seconds": 1_700_000_000.5,
                    "last_round_seconds": 1_700_000_100.0
                }
            ])
        );
    }

    #[tokio::test]
    async fn api_status_with_no_targets_is_an_empty_list() {
        let (status, _, body) = get(routes(Arc::new(Fixed(vec![]))), "/api/status").await;
        assert_eq!(status, StatusCode::OK);
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["targets"], serde_json::json!([]));
    }

    #[tokio::test]
    async fn page_is_one_self_contained_html_document() {
        let (status, headers, body) = get(routes(Arc::new(Fixed(vec![]))), "/").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(header(&headers, "content-type"), "text/html; charset=utf-8");
        let csp = header(&headers, "content-security-policy");
        assert!(csp.starts_with("default-src 'none';"), "{csp}");
        assert!(csp.contains("connect-src 'self'"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert!(csp.contains(&format!("script-src '{}'", csp_hash(BOARD_JS))));
        assert!(body.starts_with("<!doctype html>"));
        // The style sheet and script are inlined, not left as placeholders.
        assert!(!body.contains("/*BOARD_CSS*/") && !body.contains("/*BOARD_JS*/"));
        assert!(body.contains(".status-down {"), "style sheet not inlined");
        assert!(body.contains("fetch(\"api/status\""), "script not inlined");
    }

    /// Every `src=`, `href=`, `url(`, `@import` and `action=` value of the page.
    fn references(page: &str) -> Vec<String> {
        let mut found = Vec::new();
        for marker in ["src=", "href=", "action=", "url(", "@import"] {
            for (at, _) in page.match_indices(marker) {
                let rest = page[at + marker.len()..].trim_start();
                let rest = rest.trim_start_matches(['"', '\'']);
                let end = rest
                    .find(|c: char| c == '"' || c == '\'' || c == ')' || c.is_whitespace())
                    .unwrap_or(rest.len());
                found.push(rest[..end].to_string());
            }
        }
        found
    }

    #[tokio::test]
    async fn page_loads_nothing_from_outside_its_origin() {
        let (_, _, body) = get(routes(Arc::new(Fixed(vec![]))), "/").await;
        assert!(!body.contains("http://"), "page names an http:// URL");
        assert!(!body.contains("https://"), "page names an https:// URL");
        let refs = references(&body);
        // The only reference is the link to the JSON for browsers without JavaScript.
        assert_eq!(refs, vec!["api/status".to_string()]);
        for r in refs {
            assert!(
                !r.starts_with("//") && !r.contains(':'),
                "external reference {r}"
            );
        }
    }

    #[test]
    fn csp_hash_is_base64_of_sha256() {
        // Known digests: SHA-256 of "" and of "abc".
        assert_eq!(
            csp_hash(""),
            "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
        assert_eq!(
            csp_hash("abc"),
            "sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
        );
    }

    #[test]
    fn the_reference_scanner_sees_external_urls() {
        // Guards the test above against a scanner that finds nothing.
        let refs = references("<img src=\"//cdn.example/x.png\"><link href='a.css'>");
        assert_eq!(refs, vec!["//cdn.example/x.png", "a.css"]);
        assert_eq!(references("body{background:url(x.png)}"), vec!["x.png"]);
    }

    #[tokio::test]
    async fn page_script_never_parses_data_as_html() {
        let (_, _, body) = get(routes(Arc::new(Fixed(vec![]))), "/").await;
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!body.contains(sink), "page uses {sink}");
        }
    }

    #[tokio::test]
    async fn other_paths_are_not_found() {
        let (status, _, _) = get(routes(Arc::new(Fixed(vec![]))), "/api/nothing").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}
