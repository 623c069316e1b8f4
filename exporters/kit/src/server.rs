//! The HTTP side every exporter shares: `/metrics`, `/-/healthy`, `/-/ready`, a landing
//! page, optional TLS and basic auth from the exporter-toolkit web config, a cap on
//! connections with timeouts for idle ones ([`crate::connections`]), and graceful
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
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::connections::{ConnectionStats, ConnectionTable, TrackedBody, TrackedIo};
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
    /// One scrape encoded and compressed at a time: scrapers arriving together wait for
    /// each other instead of taking every core from the exporter's own work.
    scrape_slot: Arc<std::sync::Mutex<()>>,
    metrics: Arc<Metrics>,
    ready: Readiness,
    landing: Option<Arc<Landing>>,
}

/// What [`serve`] serves: the routes, and where it counts its connections.
pub struct App {
    router: Router,
    connections: Arc<ConnectionStats>,
}

/// Builds the router with the shared endpoints. `landing` is served at `/` unless it is
/// `None` (an exporter whose `extra` routes own `/`, like the ping status board).
pub fn router(
    metrics: Arc<Metrics>,
    ready: Readiness,
    landing: Option<Landing>,
    extra: Router,
) -> App {
    let connections = metrics.connection_stats();
    let has_landing = landing.is_some();
    let state = AppState {
        scrape_slot: Arc::new(std::sync::Mutex::new(())),
        metrics,
        ready,
        landing: landing.map(Arc::new),
    };
    let mut r = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/-/healthy", get(|| async { "Healthy\n" }))
        .route("/-/ready", get(ready_handler));
    if has_landing {
        r = r.route("/", get(landing_handler));
    }
    App {
        router: r.with_state(state).merge(extra),
        connections,
    }
}

/// Encodes a scrape, and gzips it when asked, on the blocking pool: never on the thread
/// that serves connections (or, in vigia-ping, probes). At 100,000 ping targets the body
/// is hundreds of megabytes; compressing it inline stalled every task on that thread
/// for seconds.
async fn metrics_handler(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let format = Format::negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let gzip = accepts_gzip(
        headers
            .get(header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok()),
    );
    let metrics = state.metrics.clone();
    let slot = state.scrape_slot.clone();
    let encoded = tokio::task::spawn_blocking(move || {
        let _one_at_a_time = slot.lock().unwrap_or_else(|e| e.into_inner());
        let body = metrics.encode(format);
        if gzip {
            gzip_fast(body.as_bytes())
        } else {
            body.into_bytes()
        }
    })
    .await;
    match encoded {
        Ok(body) => {
            let mut response = (
                [
                    (header::CONTENT_TYPE, format.content_type()),
                    (header::VARY, "accept-encoding"),
                ],
                body,
            )
                .into_response();
            if gzip {
                response.headers_mut().insert(
                    header::CONTENT_ENCODING,
                    axum::http::HeaderValue::from_static("gzip"),
                );
            }
            response
        }
        Err(e) => {
            tracing::error!(error = %e, "scrape task failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "scrape failed\n").into_response()
        }
    }
}

/// Whether `Accept-Encoding` allows gzip (by name or `*`) with a quality above 0.
fn accepts_gzip(accept_encoding: Option<&str>) -> bool {
    let Some(list) = accept_encoding else {
        return false;
    };
    let mut gzip = None;
    let mut any = None;
    for item in list.split(',') {
        let mut parts = item.split(';').map(str::trim);
        let coding = parts.next().unwrap_or("");
        let quality = parts
            .find_map(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
            })
            .unwrap_or(1.0);
        if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            gzip = Some(quality > 0.0);
        } else if coding == "*" {
            any = Some(quality > 0.0);
        }
    }
    gzip.or(any).unwrap_or(false)
}

/// gzip at the fastest level: a scrape body is mostly repeated metric and label names,
/// which level 1 already shrinks about tenfold, for a fraction of the default level's CPU.
fn gzip_fast(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 8),
        flate2::Compression::fast(),
    );
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(data);
    encoder.finish().unwrap_or_default()
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

/// Serves `app` on `listener` until `shutdown`, then lets in-flight requests finish
/// for at most `grace`. `web` adds TLS, basic auth, response headers, a rate limit and
/// the connection limits.
pub async fn serve(
    listener: TcpListener,
    app: App,
    web: WebConfig,
    shutdown: Shutdown,
    grace: Duration,
) {
    let router = web.apply(app.router);
    let limits = web.limits();
    raise_open_files_limit(limits.max_connections);
    let table = ConnectionTable::new(limits, app.connections);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper's own header read timeout starts only once HTTP/1 is detected (never for a
    // connection that sends nothing) and also runs between keep-alive requests, where it
    // would cut a scraper's connection after 10 s. The connection table times both out
    // instead: the first request head, and idle time after a response.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None);
    builder.http2().timer(TokioTimer::new());
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
            max_connections = limits.max_connections,
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
        let Some(admitted) = table.admit() else {
            tracing::debug!(%peer, "connection refused: every connection is busy");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let activity = admitted.activity.clone();
        let routes = router.clone();
        let service =
            hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let handler = activity.request_started();
                let routes = routes.clone();
                async move {
                    let response = match routes.oneshot(req).await {
                        Ok(r) => r,
                        Err(never) => match never {},
                    };
                    let (parts, body) = response.into_parts();
                    let body = TrackedBody::new(body, handler.response_started());
                    Ok::<_, Infallible>(hyper::Response::from_parts(parts, body))
                }
            });
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = web.tls_acceptor().cloned();
        tokio::spawn(async move {
            let io = TrackedIo::new(stream, admitted.activity.clone());
            let served = async {
                match tls {
                    None => {
                        let conn = builder.serve_connection(TokioIo::new(io), service);
                        if let Err(e) = watcher.watch(conn.into_owned()).await {
                            tracing::debug!(%peer, error = %e, "connection ended with error");
                        }
                    }
                    Some(acceptor) => {
                        let handshake =
                            tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, accept_tls(&acceptor, io));
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
            };
            tokio::select! {
                _ = served => {}
                reason = admitted.close_wanted() => {
                    // Dropping the connection closes its socket.
                    tracing::debug!(%peer, reason = reason.as_str(), "connection closed");
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

/// Go programs (node_exporter among them) raise their soft limit on open files to the
/// hard limit at startup; so does the server when the soft limit leaves too little room
/// for `max_connections` beside the exporter's own files.
fn raise_open_files_limit(max_connections: usize) {
    let want = max_connections as u64 + 128;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write to and read from a valid rlimit struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 || limit.rlim_cur >= want {
            return;
        }
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 || raised.rlim_cur < want {
            tracing::warn!(
                open_files = raised.rlim_cur.max(limit.rlim_cur),
                max_connections,
                "the open-files limit is lower than --web.max-connections needs; connections over it fail to be accepted"
            );
        }
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
    stream: TrackedIo<tokio::net::TcpStream>,
) -> std::io::Result<tokio_rustls::server::TlsStream<TrackedIo<tokio::net::TcpStream>>> {
    let mut first = [0u8; 1];
    if stream.get_ref().peek(&mut first).await? == 1 && first[0] != TLS_HANDSHAKE_RECORD {
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

#[cfg(test)]
mod tests {
    use super::accepts_gzip;

    #[test]
    fn gzip_negotiation() {
        assert!(accepts_gzip(Some("gzip")));
        assert!(accepts_gzip(Some("deflate, gzip;q=1.0, *;q=0.5")));
        assert!(accepts_gzip(Some("*")));
        assert!(accepts_gzip(Some("identity, X-GZIP")));
        assert!(!accepts_gzip(None));
        assert!(!accepts_gzip(Some("identity")));
        assert!(!accepts_gzip(Some("gzip;q=0")));
        assert!(!accepts_gzip(Some("*;q=0.5, gzip;q=0")));
        assert!(!accepts_gzip(Some("br")));
    }
}
