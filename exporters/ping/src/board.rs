//! The NOC status board: the page at `/` (seed 001's Flask page, done properly) and the
//! JSON it refreshes from, `/api/status`.
//!
//! The page is one self-contained document: its CSS and JS are compiled into the binary
//! and inlined, and its Content-Security-Policy forbids loading anything from anywhere
//! but its own origin, because NOC networks are often offline. Everything it shows comes
//! from `/api/status`, inserted as text (target names are operator input).

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
    /// One of [`STATUSES`]: "ok", "warning", "down" or "unknown" (no round finished yet).
    pub status: &'static str,
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

/// Every status a [`TargetView`] can have, in the order the board sorts tiles.
pub const STATUSES: [&str; 4] = ["down", "warning", "unknown", "ok"];

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

/// Only what the page itself needs: inline style and script, `fetch` to its own origin.
/// Nothing external can load even if a future edit adds a link by mistake.
const PAGE_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; \
    script-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// The page with its style sheet and script inlined; assembled once, on first use.
static PAGE: LazyLock<String> = LazyLock::new(|| {
    include_str!("../assets/board.html")
        .replace("/*BOARD_CSS*/", include_str!("../assets/board.css"))
        .replace("/*BOARD_JS*/", include_str!("../assets/board.js"))
});

async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, PAGE_CSP),
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
