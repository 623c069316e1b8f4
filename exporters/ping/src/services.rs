//! Probes of services (tcp, http, dns): one probe per round, bounded by the target's
//! `timeout`, timed phase by phase, and judged into the same [`RoundResult`] an ICMP
//! round gives (one request; a reply when the probe succeeded, whose RTT is the probe's
//! duration), so the status machine, the board, the transition log and InfluxDB treat
//! every kind alike. What only a service probe knows (phases, status code, certificate,
//! rcode, why it failed) rides along in [`ProbeOutcome`].
//!
//! They run on a thread of their own, apart from the ICMP thread (a TLS handshake costs
//! CPU that must not delay an echo reply's timestamp) and from HTTP serving (no scrape
//! can stall a probe or its timings).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::net::TcpStream;

use crate::config::{Host, TargetSpec};
use crate::probe_config::ProbeSpec;
use crate::resolve::LookupFn;
use crate::status::RoundResult;
use crate::tls::TlsClient;

/// A step of a probe, timed on its own (the `phase` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Getting the address: a host name's lookup (0 while the last one is fresh, see
    /// `resolve_interval`), plus the lookups of redirect targets.
    Resolve,
    /// The TCP handshake.
    Connect,
    /// The TLS handshake.
    Tls,
    /// http: from sending the request to the response's first byte (its head).
    Processing,
    /// http: reading the body.
    Transfer,
    /// tcp: sending `send` and reading until `expect` matched.
    Expect,
    /// dns: from sending the query to its answer.
    Request,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Resolve => "resolve",
            Phase::Connect => "connect",
            Phase::Tls => "tls",
            Phase::Processing => "processing",
            Phase::Transfer => "transfer",
            Phase::Expect => "expect",
            Phase::Request => "request",
        }
    }
}

/// Why a probe failed: a bounded set (the `reason` label of
/// `vigia_probe_failures_total`); the words are in [`Failure::message`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    /// The host name did not resolve.
    Resolve,
    /// The TCP connection was refused, unreachable or reset.
    Connect,
    /// The TLS handshake failed (certificate not valid, expired, wrong name, ...).
    Tls,
    /// No answer within the target's timeout.
    Timeout,
    /// The connection broke while sending or receiving.
    Io,
    /// tcp: what the server sent did not match `expect`.
    Expect,
    /// http: the response was not HTTP, or the connection closed before one.
    Protocol,
    /// http: a status code not in `expect_status`.
    StatusCode,
    /// http: `expect_body` did not match, or `fail_if_body` did.
    Body,
    /// http: more redirects than `max_redirects`, or one to a non-HTTP URL.
    Redirects,
    /// dns: an rcode not in `expect_rcode`.
    Rcode,
    /// dns: `expect_answer` matched no answer, or `fail_if_answer` matched one.
    Answer,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Resolve => "resolve",
            Reason::Connect => "connect",
            Reason::Tls => "tls",
            Reason::Timeout => "timeout",
            Reason::Io => "io",
            Reason::Expect => "expect",
            Reason::Protocol => "protocol",
            Reason::StatusCode => "status_code",
            Reason::Body => "body",
            Reason::Redirects => "redirects",
            Reason::Rcode => "rcode",
            Reason::Answer => "answer",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub reason: Reason,
    /// For a person: `status 503 is not one of 200-299`, `connection refused`.
    pub message: String,
}

/// What a TLS handshake showed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TlsFacts {
    /// `TLS 1.2`, `TLS 1.3`; `None` when the handshake did not finish.
    pub version: Option<&'static str>,
    /// notAfter of the server's own certificate (Unix seconds).
    pub leaf_expiry: Option<i64>,
    /// The earliest notAfter among the certificates the server sent.
    pub earliest_expiry: Option<i64>,
    /// Certificates the server sent.
    pub chain_length: u32,
}

/// What an HTTP exchange showed (of the last response, after redirects).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HttpFacts {
    pub status: u16,
    /// 1.0 or 1.1.
    pub version: f64,
    pub redirects: u32,
    pub body_bytes: u64,
    /// Whether the last request went over TLS.
    pub tls: bool,
}

/// What a DNS answer showed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DnsFacts {
    pub rcode: u16,
    pub answer_rrs: u32,
    pub authority_rrs: u32,
    pub additional_rrs: u32,
    /// The answers' data as text (`198.18.0.5`), the first few, for the board and logs.
    pub answers: Vec<String>,
}

/// Everything one service probe found out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProbeOutcome {
    /// From the start of the round (address lookup included) to the verdict.
    pub duration: Duration,
    /// Time per phase, in the order first reached; a phase reached several times (a
    /// redirect's second connection) is summed, as blackbox_exporter does.
    pub phases: Vec<(Phase, Duration)>,
    pub failure: Option<Failure>,
    pub tls: Option<TlsFacts>,
    pub http: Option<HttpFacts>,
    pub dns: Option<DnsFacts>,
}

impl ProbeOutcome {
    /// One short line for the board: the failure, or what the service answered.
    pub fn summary(&self) -> String {
        if let Some(f) = &self.failure {
            return f.message.clone();
        }
        let cert = self
            .tls
            .as_ref()
            .and_then(|t| t.earliest_expiry)
            .map(|e| {
                let days = crate::tls::seconds_left(e) as f64 / 86_400.0;
                if days < 0.0 {
                    format!(", certificate expired {:.0} d ago", -days)
                } else {
                    format!(", certificate expires in {days:.0} d")
                }
            })
            .unwrap_or_default();
        if let Some(h) = &self.http {
            return format!("HTTP {}{cert}", h.status);
        }
        if let Some(d) = &self.dns {
            let rcode = crate::probe_config::rcode_name(d.rcode);
            return match d.answers.first() {
                Some(a) if d.answer_rrs > 1 => format!("{rcode} {a} (+{})", d.answer_rrs - 1),
                Some(a) => format!("{rcode} {a}"),
                None => rcode,
            };
        }
        if let Some(t) = &self.tls {
            return format!("connected, {}{cert}", t.version.unwrap_or("TLS"));
        }
        "connected".to_string()
    }
}

/// The phases and facts of a probe in progress. Kept outside the probe's future so that
/// what a probe that timed out got through is still reported.
#[derive(Debug, Default)]
pub struct Trace {
    pub phases: Vec<(Phase, Duration)>,
    /// The phase under way, named by a timeout.
    pub current: Option<Phase>,
    /// The server answered something (its TCP handshake, a refusal, a DNS reply or an
    /// ICMP port unreachable): it is reachable, even if the probe fails its checks. A
    /// child's silence behind a parent is judged by this, as an echo reply is.
    pub answered: bool,
    /// What a timeout now would mean, when it means more than "no answer" (tcp: the
    /// server answered, but not what `expect` wants).
    pub on_timeout: Option<Failure>,
    pub tls: Option<TlsFacts>,
    pub http: Option<HttpFacts>,
    pub dns: Option<DnsFacts>,
}

impl Trace {
    pub fn start(&mut self, phase: Phase) -> Instant {
        self.current = Some(phase);
        Instant::now()
    }

    pub fn end(&mut self, phase: Phase, started: Instant) {
        self.add(phase, started.elapsed());
        self.current = None;
    }

    pub fn add(&mut self, phase: Phase, took: Duration) {
        match self.phases.iter_mut().find(|(p, _)| *p == phase) {
            Some((_, d)) => *d += took,
            None => self.phases.push((phase, took)),
        }
    }
}

/// A TCP connection to `addr`, timed as the `connect` phase.
pub async fn connect(addr: SocketAddr, trace: &mut Trace) -> Result<TcpStream, Failure> {
    let started = trace.start(Phase::Connect);
    let stream = TcpStream::connect(addr).await;
    trace.end(Phase::Connect, started);
    // A refusal is the host's own answer (a reset); unreachable and timeouts are not.
    trace.answered |= match &stream {
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionRefused,
    };
    let stream = stream.map_err(|e| Failure {
        reason: Reason::Connect,
        message: format!("connect to {addr}: {}", io_words(&e)),
    })?;
    // Small requests go out at once.
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// An I/O error as the operator reads it: `connection refused`, not `os error 111`.
pub fn io_words(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(at) => text[..at].to_lowercase(),
        None => text,
    }
}

/// What http probes offer in ALPN: HTTP/2 is not probed.
pub const HTTP_ALPN: &[&[u8]] = &[b"http/1.1"];

/// What a service target needs between rounds: its TLS client (built once: the CA
/// bundle is not parsed every probe) and the resolver for redirects to other hosts.
pub struct ServiceProber {
    tls: Option<TlsClient>,
    lookup: LookupFn,
}

impl ServiceProber {
    /// `None` for icmp targets.
    pub fn new(spec: &TargetSpec, lookup: LookupFn) -> Option<Self> {
        let tls = match &spec.probe {
            ProbeSpec::Icmp => return None,
            ProbeSpec::Tcp(t) => t.tls.as_ref().map(|s| TlsClient::new(s, &[])),
            // An http:// target builds one only if a redirect leads to https: a TLS
            // client is about 3 KB a target.
            ProbeSpec::Http(h) if h.https => Some(TlsClient::new(&h.tls, HTTP_ALPN)),
            ProbeSpec::Http(_) => None,
            ProbeSpec::Dns(_) => None,
        };
        Some(Self { tls, lookup })
    }

    /// One probe of `spec` at `ip`; `resolve_took` is how long getting `ip` took.
    pub async fn round(
        &self,
        spec: &TargetSpec,
        ip: IpAddr,
        resolve_took: Duration,
        started: SystemTime,
    ) -> RoundResult {
        let begun = Instant::now();
        let mut trace = Trace::default();
        trace.add(Phase::Resolve, resolve_took);
        let probe = async {
            match &spec.probe {
                ProbeSpec::Icmp => Ok(()),
                ProbeSpec::Tcp(t) => {
                    crate::tcp::probe(t, &host_text(&spec.host), ip, self.tls.as_ref(), &mut trace)
                        .await
                }
                ProbeSpec::Http(h) => {
                    crate::http::probe(h, ip, self.tls.as_ref(), &self.lookup, &mut trace).await
                }
                ProbeSpec::Dns(d) => crate::dns::probe(d, ip, &mut trace).await,
            }
        };
        let failure = match tokio::time::timeout(spec.timeout, probe).await {
            Ok(Ok(())) => None,
            Ok(Err(f)) => Some(f),
            Err(_) if trace.on_timeout.is_some() => trace.on_timeout.take(),
            Err(_) => Some(Failure {
                reason: Reason::Timeout,
                message: match trace.current {
                    Some(p) => format!(
                        "no answer within {} (during {})",
                        humantime::format_duration(spec.timeout),
                        p.as_str()
                    ),
                    None => format!(
                        "no answer within {}",
                        humantime::format_duration(spec.timeout)
                    ),
                },
            }),
        };
        let duration = resolve_took + begun.elapsed();
        let outcome = ProbeOutcome {
            duration,
            phases: trace.phases,
            failure,
            tls: trace.tls,
            http: trace.http,
            dns: trace.dns,
        };
        // One request, sent when the probe began: a reply (an RTT) when every check
        // passed, an answer whenever the server sent anything back.
        let mut round = RoundResult::new(started, begun);
        round.ip = Some(ip);
        round.sent = 1;
        if outcome.failure.is_none() {
            round.rtts.push(duration);
        }
        if trace.answered || outcome.failure.is_none() {
            round.first_answered = Some(begun);
            round.last_answered = Some(begun);
        }
        round.outcome = Some(Arc::new(outcome));
        round
    }
}

/// The outcome of a round whose host name did not resolve (service kinds only: ICMP
/// rounds carry none).
pub fn resolve_failure(spec: &TargetSpec, why: &str) -> Option<Arc<ProbeOutcome>> {
    if matches!(spec.probe, ProbeSpec::Icmp) {
        return None;
    }
    Some(Arc::new(ProbeOutcome {
        failure: Some(Failure {
            reason: Reason::Resolve,
            message: why.to_string(),
        }),
        ..Default::default()
    }))
}

/// The host as written (`router.example`, `198.18.0.1`, `::1`): what TLS verifies.
pub fn host_text(host: &Host) -> String {
    match host {
        Host::Name(n) => n.clone(),
        Host::Ip(ip) => ip.to_string(),
    }
}
