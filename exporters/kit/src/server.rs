//! The HTTP side every exporter shares: `/metrics`, `/-/healthy`, `/-/ready`, a landing
//! page, optional TLS and basic auth from the exporter-toolkit web config, and graceful
//! shutdown (in-flight requests finish, new connections are refused).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use crate::exposition::Format;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::web_config::WebConfig;

/// Whether the exporter is ready to serve meaningful data (`/-/ready`).
#[derive(Clone, Debug, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn new(ready: bool) -> Self {
        Self(Arc::new(AtomicBool::new(ready)))
    }
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// What the landing page says about the exporter.
#[derive(Clone, Debug)]
pub struct Landing {
    pub title: String,
    pub description: String,
    /// Extra links (href, text) besides /metrics and the health endpoints.
    pub links: Vec<(String, String)>,
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    ready: Readiness,
    landing: Option<Arc<Landing>>,
}

/// Builds the router with the shared endpoints. `landing` is served at `/` unless it is
/// `None` (an exporter whose `extra` routes own `/`, like the ping status board).
pub fn router(
    metrics: Arc<Metrics>,
    ready: Readiness,
    landing: Option<Landing>,
    extra: Router,
) -> Router {
    let has_landing = landing.is_some();
    let state = AppState {
        metrics,
        ready,
        landing: landing.map(Arc::new),
    };
    let mut r = Router::new()
        .route(
            "/metrics",
            get(metrics_handler).layer(tower_http::compression::CompressionLayer::new()),
        )
        .route("/-/healthy", get(|| async { "Healthy\n" }))
        .route("/-/ready", get(ready_handler));
    if has_landing {
        r = r.route("/", get(landing_handler));
    }
    r.with_state(state).merge(extra)
}

async fn metrics_handler(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let format = Format::negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let metrics = state.metrics.clone();
    match tokio::task::spawn_blocking(move || metrics.encode(format)).await {
        Ok(body) => ([(header::CONTENT_TYPE, format.content_type())], body).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "scrape task failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "scrape failed\n").into_response()
        }
    }
}

async fn ready_handler(State(state): State<AppState>) -> Response {
    if state.ready.is_ready() {
        (StatusCode::OK, "Ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "Not ready\n").into_response()
    }
}

async fn landing_handler(State(state): State<AppState>) -> Response {
    let Some(landing) = state.landing.as_ref() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let mut links = String::new();
    let standard = [
        ("metrics", "Metrics"),
        ("-/healthy", "Health"),
        ("-/ready", "Readiness"),
    ];
    for (href, text) in standard
        .iter()
        .map(|(h, t)| (h.to_string(), t.to_string()))
        .chain(landing.links.iter().cloned())
    {
        links.push_str(&format!(
            "<li><a href=\"{}\">{}</a></li>",
            escape_html(&href),
            escape_html(&text)
        ));
    }
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>{title}</title></head><body style=\"font-family:sans-serif;max-width:40em;margin:2em auto\"><h1>{title}</h1><p>{desc}</p><p>version {version}</p><ul>{links}</ul></body></html>",
        title = escape_html(&landing.title),
        desc = escape_html(&landing.description),
        version = crate::VERSION,
    ))
    .into_response()
}

/// Escapes text for HTML element content and attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Binds the listen address; the error names the address (port in use, no permission).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))
}

/// Serves `router` on `listener` until `shutdown`, then lets in-flight requests finish
/// for at most `grace`. `web` adds TLS, basic auth, response headers and a rate limit.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    web: WebConfig,
    shutdown: Shutdown,
    grace: Duration,
) {
    let router = web.apply(router);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // A timer enables hyper's header read timeout, so a client that opens a connection
    // and never finishes its request headers cannot hold it forever.
    builder.http1().timer(TokioTimer::new());
    if !web.http2() {
        builder = builder.http1_only();
    }
    let builder = Arc::new(builder);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(
            address = %addr,
            tls = web.is_tls(),
            basic_auth = web.has_basic_auth(),
            http2 = web.http2(),
            "listening"
        );
    }
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.wait() => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = web.tls_acceptor().cloned();
        tokio::spawn(async move {
            match tls {
                None => {
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    if let Err(e) = watcher.watch(conn.into_owned()).await {
                        tracing::debug!(%peer, error = %e, "connection ended with error");
                    }
                }
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, accept_tls(&acceptor, stream));
                    let stream = match handshake.await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    if let Err(e) = watcher.watch(conn.into_owned()).await {
                        tracing::debug!(%peer, error = %e, "connection ended with error");
                    }
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests did not finish within {grace:?}");
    }
}

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The first byte of every TLS connection: a handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Completes the TLS handshake. A client speaking plain HTTP to the TLS port gets a 400
/// saying so (as Go's servers answer), instead of a connection reset that leaves an
/// operator guessing.
async fn accept_tls(
    acceptor: &tokio_rustls::TlsAcceptor,
    stream: tokio::net::TcpStream,
) -> std::io::Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
    let mut first = [0u8; 1];
    if stream.peek(&mut first).await? == 1 && first[0] != TLS_HANDSHAKE_RECORD {
        use tokio::io::AsyncWriteExt;
        let mut stream = stream;
        let _ = stream
            .write_all(
                b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n\
                  Client sent an HTTP request to an HTTPS server.\n",
            )
            .await;
        let _ = stream.shutdown().await;
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "plain HTTP on the TLS port",
        ));
    }
    acceptor.accept(stream).await
}

#[allow(dead_code)]
fn _assert_infallible(_: Infallible) {}
