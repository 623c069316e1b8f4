//! The connections the server holds: a cap on how many, and timeouts for those that do
//! nothing. exporter-toolkit has neither, and hyper has none before the first byte: a
//! client that opens a connection and sends nothing (or only the HTTP/2 preface) held it
//! forever, so with `ulimit -n 1024` 1,100 idle connections made `/metrics` time out
//! for everyone.
//!
//! A connection is *busy* while a handler works on one of its requests; a slow scrape
//! (seconds at 100,000 ping targets) is never cut. Otherwise it must make progress:
//! - one that has not sent a whole request head within `read_header_timeout` of
//!   connecting is closed (zero bytes, slowloris, an HTTP/2 preface and nothing after);
//! - one with no request in a handler and no response byte written for `idle_timeout`
//!   is closed (a keep-alive connection between scrapes, an idle HTTP/2 connection, a
//!   reader that stopped reading a response).
//!
//! At `max_connections`, a new connection closes the oldest connection that is not busy
//! to take its place, so a flood of idle connections can never lock a scraper out; only
//! when every connection is busy is the new one refused, at once. Every close for these
//! reasons is counted in `vigia_http_connections_closed_total{reason}`.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// How many connections, and how long one may do nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Most connections held at once (Prometheus' own `--web.max-connections` default).
    pub max_connections: usize,
    /// A connection without a request in a handler and without a response byte written
    /// for this long is closed. Above the common 60 s scrape interval, so a scraper's
    /// keep-alive connection survives between scrapes; as Go's HTTP client keeps idle
    /// connections (`IdleConnTimeout`, 90 s).
    pub idle_timeout: Duration,
    /// A new connection must have sent a whole request head within this long.
    pub read_header_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 512,
            idle_timeout: Duration::from_secs(90),
            read_header_timeout: Duration::from_secs(10),
        }
    }
}

/// Why the server closed a connection on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// No whole request head within `read_header_timeout` of connecting.
    HeaderTimeout,
    /// Nothing to do for `idle_timeout`.
    IdleTimeout,
    /// Closed to make room for a new connection at `max_connections`.
    Shed,
    /// A new connection refused at `max_connections`, every connection being busy.
    Refused,
}

impl CloseReason {
    const ALL: [CloseReason; 4] = [
        CloseReason::HeaderTimeout,
        CloseReason::IdleTimeout,
        CloseReason::Shed,
        CloseReason::Refused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::HeaderTimeout => "header_timeout",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::Shed => "shed",
            CloseReason::Refused => "refused",
        }
    }
}

/// Counters behind the `vigia_http_connections*` self-metrics.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    open: AtomicUsize,
    max: AtomicUsize,
    closed: [AtomicU64; 4],
}

impl ConnectionStats {
    fn count(&self, reason: CloseReason) {
        let i = CloseReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        self.closed[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Connections closed for `reason` so far.
    pub fn closed(&self, reason: CloseReason) -> u64 {
        let i = CloseReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        self.closed[i].load(Ordering::Relaxed)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// Encodes [`ConnectionStats`]; registered by [`crate::Metrics::new`].
#[derive(Debug)]
pub(crate) struct ConnectionCollector(pub(crate) Arc<ConnectionStats>);

impl Collector for ConnectionCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        ConstGauge::new(s.open.load(Ordering::Relaxed) as i64).encode(
            encoder.encode_descriptor(
                "vigia_http_connections",
                "HTTP connections open now",
                None,
                MetricType::Gauge,
            )?,
        )?;
        ConstGauge::new(s.max.load(Ordering::Relaxed) as i64).encode(
            encoder.encode_descriptor(
                "vigia_http_connections_max",
                "Most HTTP connections held at once (--web.max-connections)",
                None,
                MetricType::Gauge,
            )?,
        )?;
        let mut family = encoder.encode_descriptor(
            "vigia_http_connections_closed",
            "HTTP connections the server closed on its own: header_timeout, idle_timeout, shed (to make room for a new one), refused (new, while every connection was busy)",
            None,
            MetricType::Counter,
        )?;
        for reason in CloseReason::ALL {
            ConstCounter::new(s.closed(reason)).encode(family.encode_family(&ReasonLabel {
                reason: reason.as_str(),
            })?)?;
        }
        Ok(())
    }
}

/// What one connection is doing, shared by its task, its requests and the table.
#[derive(Debug)]
pub(crate) struct Activity {
    epoch: Instant,
    /// Requests whose handler has not returned yet.
    in_handler: AtomicUsize,
    /// Responses whose body is still being sent.
    streaming: AtomicUsize,
    /// Milliseconds after `epoch` of the last request start, response byte or response end.
    last_progress_ms: AtomicU64,
    started_request: AtomicBool,
    shed: Notify,
    shedding: AtomicBool,
}

impl Activity {
    fn new() -> Self {
        Self {
            epoch: Instant::now(),
            in_handler: AtomicUsize::new(0),
            streaming: AtomicUsize::new(0),
            last_progress_ms: AtomicU64::new(0),
            started_request: AtomicBool::new(false),
            shed: Notify::new(),
            shedding: AtomicBool::new(false),
        }
    }

    fn touch(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.last_progress_ms.fetch_max(ms, Ordering::Relaxed);
    }

    fn last_progress(&self) -> Instant {
        self.epoch + Duration::from_millis(self.last_progress_ms.load(Ordering::Relaxed))
    }

    fn is_busy(&self) -> bool {
        self.in_handler.load(Ordering::Acquire) > 0 || self.streaming.load(Ordering::Acquire) > 0
    }

    /// A request head arrived and its handler starts.
    pub(crate) fn request_started(self: &Arc<Self>) -> HandlerGuard {
        self.started_request.store(true, Ordering::Release);
        self.in_handler.fetch_add(1, Ordering::AcqRel);
        self.touch();
        HandlerGuard(self.clone())
    }

    /// Closes the connection once nothing happens on it for its timeout; returns why.
    async fn watch(&self, limits: ConnectionLimits) -> CloseReason {
        loop {
            let started = self.started_request.load(Ordering::Acquire);
            let (timeout, reason) = if started {
                (limits.idle_timeout, CloseReason::IdleTimeout)
            } else {
                (limits.read_header_timeout, CloseReason::HeaderTimeout)
            };
            let now = Instant::now();
            // A handler at work is never cut: look again a timeout later (it touches the
            // connection when it returns, which starts the idle time).
            let deadline = if self.in_handler.load(Ordering::Acquire) > 0 {
                now + timeout
            } else {
                self.last_progress() + timeout
            };
            if deadline <= now {
                return reason;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {}
                _ = self.shed.notified() => return CloseReason::Shed,
            }
        }
    }
}

/// Held while a handler runs; turns into a [`StreamGuard`] when the response is built.
pub(crate) struct HandlerGuard(Arc<Activity>);

impl HandlerGuard {
    pub(crate) fn response_started(self) -> StreamGuard {
        // Streaming goes up before the handler count goes down: never idle in between.
        self.0.streaming.fetch_add(1, Ordering::AcqRel);
        StreamGuard(self.0.clone())
    }
}

impl Drop for HandlerGuard {
    fn drop(&mut self) {
        self.0.in_handler.fetch_sub(1, Ordering::AcqRel);
        self.0.touch();
    }
}

/// Held by a response body until hyper has sent it (or the connection died).
pub(crate) struct StreamGuard(Arc<Activity>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.touch();
        self.0.streaming.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Every open connection, for the cap.
#[derive(Debug)]
pub(crate) struct ConnectionTable {
    limits: ConnectionLimits,
    stats: Arc<ConnectionStats>,
    open: Mutex<HashMap<u64, Arc<Activity>>>,
    next_id: AtomicU64,
}

/// A connection's place in the table; leaving it frees the place.
pub(crate) struct Admitted {
    table: Arc<ConnectionTable>,
    id: u64,
    pub(crate) activity: Arc<Activity>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().unwrap_or_else(|e| e.into_inner());
        open.remove(&self.id);
        self.table.stats.open.store(open.len(), Ordering::Relaxed);
    }
}

impl Admitted {
    /// Resolves when the connection should be closed: idle, or shed for a newer one.
    pub(crate) async fn close_wanted(&self) -> CloseReason {
        let reason = self.activity.watch(self.table.limits).await;
        self.table.stats.count(reason);
        reason
    }
}

impl ConnectionTable {
    pub(crate) fn new(limits: ConnectionLimits, stats: Arc<ConnectionStats>) -> Arc<Self> {
        stats.max.store(limits.max_connections, Ordering::Relaxed);
        Arc::new(Self {
            limits,
            stats,
            open: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        })
    }

    /// A place for a new connection, or `None` (counted as refused) when every one of
    /// `max_connections` is busy. At the cap, the connection that has done nothing for
    /// longest is told to close and the new one takes its place.
    pub(crate) fn admit(self: &Arc<Self>) -> Option<Admitted> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let held = open
            .values()
            .filter(|a| !a.shedding.load(Ordering::Relaxed))
            .count();
        if held >= self.limits.max_connections {
            let oldest_idle = open
                .values()
                .filter(|a| !a.is_busy() && !a.shedding.load(Ordering::Relaxed))
                .min_by_key(|a| a.last_progress());
            match oldest_idle {
                Some(victim) => {
                    victim.shedding.store(true, Ordering::Relaxed);
                    victim.shed.notify_one();
                }
                None => {
                    drop(open);
                    self.stats.count(CloseReason::Refused);
                    return None;
                }
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let activity = Arc::new(Activity::new());
        open.insert(id, activity.clone());
        self.stats.open.store(open.len(), Ordering::Relaxed);
        Some(Admitted {
            table: self.clone(),
            id,
            activity,
        })
    }
}

/// The socket of one connection: response bytes written while a body is being sent are
/// progress (a large `/metrics` to a slow reader is not idle, a reader that stopped
/// reading is). Reads are not: bytes trickled in by a client never keep it alive.
pub(crate) struct TrackedIo<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T> TrackedIo<T> {
    pub(crate) fn new(inner: T, activity: Arc<Activity>) -> Self {
        Self { inner, activity }
    }

    pub(crate) fn get_ref(&self) -> &T {
        &self.inner
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for TrackedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TrackedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0)
            && self.activity.streaming.load(Ordering::Acquire) > 0
        {
            self.activity.touch();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0)
            && self.activity.streaming.load(Ordering::Acquire) > 0
        {
            self.activity.touch();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A response body that tells its connection when it has been sent.
pub(crate) struct TrackedBody {
    inner: axum::body::Body,
    _guard: StreamGuard,
}

impl TrackedBody {
    pub(crate) fn new(inner: axum::body::Body, guard: StreamGuard) -> Self {
        Self {
            inner,
            _guard: guard,
        }
    }
}

impl hyper::body::Body for TrackedBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(max: usize) -> Arc<ConnectionTable> {
        ConnectionTable::new(
            ConnectionLimits {
                max_connections: max,
                ..Default::default()
            },
            Arc::new(ConnectionStats::default()),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn at_the_cap_the_oldest_idle_connection_makes_room() {
        let t = table(2);
        let first = t.admit().unwrap();
        tokio::time::advance(Duration::from_millis(10)).await;
        let second = t.admit().unwrap();
        let _busy = second.activity.request_started();
        // Full: the idle first one is shed, the new one admitted.
        let third = t.admit().unwrap();
        assert!(first.activity.shedding.load(Ordering::Relaxed));
        assert_eq!(first.close_wanted().await, CloseReason::Shed);
        drop(first);
        // Full again with second busy and third idle: third goes next.
        let _fourth = t.admit().unwrap();
        assert!(third.activity.shedding.load(Ordering::Relaxed));
        drop(third);
        let _busy_fourth = _fourth.activity.request_started();
        // Everything busy: refused.
        assert!(t.admit().is_none());
        assert_eq!(t.stats.closed(CloseReason::Refused), 1);
        assert_eq!(t.stats.closed(CloseReason::Shed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn timeouts_spare_a_busy_handler() {
        let t = table(8);
        let silent = t.admit().unwrap();
        assert_eq!(silent.close_wanted().await, CloseReason::HeaderTimeout);
        let working = t.admit().unwrap();
        let handler = working.activity.request_started();
        let watch = working.close_wanted();
        tokio::pin!(watch);
        // A handler working for five idle timeouts is not cut.
        let waited = tokio::time::timeout(Duration::from_secs(450), &mut watch).await;
        assert!(waited.is_err());
        let body = handler.response_started();
        drop(body);
        let started = Instant::now();
        assert_eq!(watch.await, CloseReason::IdleTimeout);
        assert!(started.elapsed() >= Duration::from_secs(90));
    }
}
