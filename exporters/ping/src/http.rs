//! http probes: a request on a connection of our own (connect, TLS and the exchange
//! each timed, which a pooled client like reqwest hides), through hyper's HTTP/1.1
//! client, redirects followed up to `max_redirects` on new connections, then the final
//! response judged: status code, body patterns. A new connection every probe, as
//! blackbox_exporter makes: a probe must see what a new visitor sees.

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinHandle;

use crate::probe_config::HttpSpec;
use crate::resolve::LookupFn;
use crate::services::{self, Failure, HttpFacts, Phase, Reason, Trace};
use crate::tls::TlsClient;

/// Bytes of the body kept for `expect_body` / `fail_if_body`; the rest is read (and
/// timed) but not matched.
const BODY_MATCH_LIMIT: usize = 1 << 20;

const USER_AGENT: &str = concat!("vigia-ping/", env!("CARGO_PKG_VERSION"));

/// Aborts the task that drives a connection when the probe ends or times out, so a
/// server that never closes cannot keep tasks alive.
struct ConnectionTask(JoinHandle<()>);

impl Drop for ConnectionTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub async fn probe(
    spec: &HttpSpec,
    first_ip: IpAddr,
    tls: Option<&TlsClient>,
    lookup: &LookupFn,
    trace: &mut Trace,
) -> Result<(), Failure> {
    let mut url = spec.url.clone();
    let mut method = spec.method.clone();
    let mut body = spec.body.clone();
    let mut redirects = 0u32;
    let mut ip = first_ip;
    loop {
        let https = url.scheme() == "https";
        let port = url.port_or_known_default().unwrap_or(80);
        let host = url.host_str().unwrap_or_default().to_string();
        let request = build_request(spec, &url, &method, body.as_deref())?;
        let stream = services::connect(SocketAddr::new(ip, port), trace).await?;
        let redirected_tls;
        let (response, _connection) = if https {
            let tls = match tls {
                Some(t) => t,
                None => {
                    // An http:// target redirected to https.
                    redirected_tls = TlsClient::new(&spec.tls, services::HTTP_ALPN);
                    &redirected_tls
                }
            };
            let stream = tls.handshake(stream, &host, trace).await?;
            exchange(stream, request, trace).await?
        } else {
            exchange(stream, request, trace).await?
        };
        let status = response.status();
        trace.http = Some(HttpFacts {
            status: status.as_u16(),
            version: match response.version() {
                http::Version::HTTP_10 => 1.0,
                _ => 1.1,
            },
            redirects,
            body_bytes: 0,
            tls: https,
        });
        let location = response
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let redirect = spec.follow_redirects
            && matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
            && location.is_some();
        if redirect {
            let location = location.unwrap_or_default();
            redirects += 1;
            if redirects > spec.max_redirects {
                return Err(Failure {
                    reason: Reason::Redirects,
                    message: format!(
                        "more than {} redirects (the last to {location})",
                        spec.max_redirects
                    ),
                });
            }
            let next = url.join(&location).map_err(|e| Failure {
                reason: Reason::Redirects,
                message: format!("redirect to {location:?}, which is not a URL ({e})"),
            })?;
            if !matches!(next.scheme(), "http" | "https") {
                return Err(Failure {
                    reason: Reason::Redirects,
                    message: format!("redirect to {next}, which is not http or https"),
                });
            }
            // Browsers' rule: 303, and 301/302 after a POST, continue with a GET.
            if status == StatusCode::SEE_OTHER
                || (matches!(status.as_u16(), 301 | 302) && method == Method::POST)
            {
                method = Method::GET;
                body = None;
            }
            if next.host_str() != url.host_str() {
                ip = resolve(&next, lookup, trace).await?;
            }
            url = next;
            continue;
        }
        let kept = read_body(response.into_body(), trace).await?;
        if !spec.expect_status.accepts(status.as_u16()) {
            return Err(Failure {
                reason: Reason::StatusCode,
                message: format!(
                    "status {} is not one of {}",
                    status.as_u16(),
                    spec.expect_status
                ),
            });
        }
        if let Some(p) = &spec.expect_body {
            if !p.is_match(&kept) {
                return Err(Failure {
                    reason: Reason::Body,
                    message: format!("the body does not match /{}/", p.as_str()),
                });
            }
        }
        if let Some(p) = &spec.fail_if_body {
            if p.is_match(&kept) {
                return Err(Failure {
                    reason: Reason::Body,
                    message: format!("the body matches /{}/ (fail_if_body)", p.as_str()),
                });
            }
        }
        return Ok(());
    }
}

fn build_request(
    spec: &HttpSpec,
    url: &url::Url,
    method: &Method,
    body: Option<&str>,
) -> Result<Request<Full<Bytes>>, Failure> {
    let mut target = url.path().to_string();
    if let Some(q) = url.query() {
        target.push('?');
        target.push_str(q);
    }
    let host = match url.port() {
        Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_string(),
    };
    let mut request = Request::builder()
        .method(method.clone())
        .uri(target)
        .body(Full::new(Bytes::from(body.unwrap_or_default().to_string())))
        .map_err(|e| Failure {
            reason: Reason::Protocol,
            message: format!("cannot build the request: {e}"),
        })?;
    let headers = request.headers_mut();
    let host = HeaderValue::from_str(&host).map_err(|_| Failure {
        reason: Reason::Protocol,
        message: format!("{host:?} cannot be a Host header"),
    })?;
    headers.insert(header::HOST, host);
    headers.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
    headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
    // One request per connection: the server may close right after the response.
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    for (name, value) in &spec.headers {
        headers.insert(name.clone(), value.clone());
    }
    Ok(request)
}

/// Sends `request` on `io` and waits for the response's head (`processing`).
async fn exchange<I>(
    io: I,
    request: Request<Full<Bytes>>,
    trace: &mut Trace,
) -> Result<(hyper::Response<Incoming>, ConnectionTask), Failure>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let started = trace.start(Phase::Processing);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| Failure {
            reason: Reason::Protocol,
            message: format!("HTTP: {e}"),
        })?;
    let task = ConnectionTask(tokio::spawn(async move {
        let _ = connection.await;
    }));
    let response = sender.send_request(request).await.map_err(|e| Failure {
        reason: if e.is_incomplete_message() || e.is_canceled() || e.is_parse() {
            Reason::Protocol
        } else {
            Reason::Io
        },
        message: format!("HTTP: {}", hyper_words(&e)),
    })?;
    trace.end(Phase::Processing, started);
    Ok((response, task))
}

/// Reads the body to its end (`transfer`), keeping the first [`BODY_MATCH_LIMIT`] bytes.
async fn read_body(mut body: Incoming, trace: &mut Trace) -> Result<Vec<u8>, Failure> {
    let started = trace.start(Phase::Transfer);
    let mut kept = Vec::new();
    let mut total = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Failure {
            reason: Reason::Io,
            message: format!("reading the body: {}", hyper_words(&e)),
        })?;
        if let Ok(data) = frame.into_data() {
            total += data.len() as u64;
            let room = BODY_MATCH_LIMIT.saturating_sub(kept.len());
            kept.extend_from_slice(&data[..data.len().min(room)]);
        }
    }
    trace.end(Phase::Transfer, started);
    if let Some(h) = &mut trace.http {
        h.body_bytes = total;
    }
    Ok(kept)
}

/// A redirect's host, looked up now (counted in the `resolve` phase).
async fn resolve(url: &url::Url, lookup: &LookupFn, trace: &mut Trace) -> Result<IpAddr, Failure> {
    let host = url.host_str().unwrap_or_default();
    let bare = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(ip);
    }
    let started = trace.start(Phase::Resolve);
    let lookup = lookup.clone();
    let name = bare.clone();
    let found = tokio::task::spawn_blocking(move || lookup(&name)).await;
    trace.end(Phase::Resolve, started);
    match found {
        Ok(Ok(ips)) if !ips.is_empty() => Ok(ips[0]),
        Ok(Ok(_)) => Err(Failure {
            reason: Reason::Resolve,
            message: format!("redirect host {bare} resolves to no address"),
        }),
        Ok(Err(e)) => Err(Failure {
            reason: Reason::Resolve,
            message: format!("redirect host {bare}: {}", services::io_words(&e)),
        }),
        Err(e) => Err(Failure {
            reason: Reason::Resolve,
            message: format!("redirect host {bare}: {e}"),
        }),
    }
}

/// hyper's error with its cause (`connection closed before message completed`).
fn hyper_words(e: &hyper::Error) -> String {
    use std::error::Error;
    match e.source() {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}
