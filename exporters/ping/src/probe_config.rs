//! Which kind of probe a target is (`probe: icmp | tcp | http | dns`) and the settings of
//! that kind, validated once at load into a [`ProbeSpec`] the probe loop runs without
//! checking anything again: addresses, ports, URLs, regular expressions, CA files, DNS
//! names and types. A setting of another kind on a target is an error naming it, so a
//! `query_name` on an http target cannot be silently ignored.
//!
//! The kind is called `probe`, not `kind`: `kind` is the label every example and the
//! shipped targets file give devices (`kind=dslam`), and making it a setting would have
//! turned each such line into an "unknown probe kind" error.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use vigia_kit::ConfigError;

use crate::config::{parse_host, Host, TargetConfig};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeKind {
    /// Echo requests (the default, and what vigia-ping always did).
    #[default]
    Icmp,
    /// A TCP connection, optionally TLS, optionally a line sent and an answer expected.
    Tcp,
    /// An HTTP(S) request: status code, body patterns, redirects, timings, certificate.
    Http,
    /// A DNS query to a server: rcode and answers.
    Dns,
}

impl ProbeKind {
    pub const ALL: [ProbeKind; 4] = [
        ProbeKind::Icmp,
        ProbeKind::Tcp,
        ProbeKind::Http,
        ProbeKind::Dns,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Icmp => "icmp",
            ProbeKind::Tcp => "tcp",
            ProbeKind::Http => "http",
            ProbeKind::Dns => "dns",
        }
    }

    /// The settings (YAML field names) only this kind takes, besides the common ones
    /// (`interval`, `timeout`, `warning_rtt`, `down_after`, `labels`).
    pub fn settings(self) -> &'static [&'static str] {
        match self {
            ProbeKind::Icmp => &["count", "warning_loss"],
            ProbeKind::Tcp => &[
                "tls",
                "tls_ca_file",
                "tls_server_name",
                "tls_insecure_skip_verify",
                "send",
                "expect",
            ],
            ProbeKind::Http => &[
                "method",
                "headers",
                "body",
                "expect_status",
                "expect_body",
                "fail_if_body",
                "follow_redirects",
                "max_redirects",
                "tls_ca_file",
                "tls_server_name",
                "tls_insecure_skip_verify",
            ],
            ProbeKind::Dns => &[
                "query_name",
                "query_type",
                "transport",
                "recursion_desired",
                "expect_rcode",
                "expect_answer",
                "fail_if_answer",
            ],
        }
    }

    /// Labels the per-kind series of this kind set themselves, so a target of the kind
    /// may not have them (`phase` on the phase durations, ...).
    pub fn reserved_labels(self) -> &'static [&'static str] {
        match self {
            ProbeKind::Icmp => &[],
            _ => &["phase", "reason", "tls_version"],
        }
    }
}

impl fmt::Display for ProbeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProbeKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        ProbeKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("{s:?} is not a probe kind; use one of icmp, tcp, http, dns"))
    }
}

/// A list written as `200,301,2xx` (YAML string or targets file), as one number, or as
/// a YAML sequence of numbers and strings. Items are checked by the kind that uses them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListSetting(pub Vec<String>);

impl ListSetting {
    pub fn parse(text: &str) -> Self {
        ListSetting(
            text.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
        )
    }
}

impl<'de> Deserialize<'de> for ListSetting {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ListVisitor;
        impl<'de> Visitor<'de> for ListVisitor {
            type Value = ListSetting;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list like [200, 301] or \"200,301\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ListSetting, E> {
                Ok(ListSetting::parse(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ListSetting, E> {
                Ok(ListSetting(vec![v.to_string()]))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ListSetting, E> {
                Ok(ListSetting(vec![v.to_string()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ListSetting, A::Error> {
                #[derive(Deserialize)]
                #[serde(untagged)]
                enum Item {
                    Number(u64),
                    Text(String),
                }
                let mut out = Vec::new();
                while let Some(item) = seq.next_element::<Item>()? {
                    out.push(match item {
                        Item::Number(n) => n.to_string(),
                        Item::Text(t) => t.trim().to_string(),
                    });
                }
                Ok(ListSetting(out))
            }
        }
        d.deserialize_any(ListVisitor)
    }
}

/// What a target probes, with every setting of its kind validated.
#[derive(Debug, Clone, PartialEq)]
pub enum ProbeSpec {
    Icmp,
    Tcp(TcpSpec),
    Http(HttpSpec),
    Dns(DnsSpec),
}

impl ProbeSpec {
    pub fn kind(&self) -> ProbeKind {
        match self {
            ProbeSpec::Icmp => ProbeKind::Icmp,
            ProbeSpec::Tcp(_) => ProbeKind::Tcp,
            ProbeSpec::Http(_) => ProbeKind::Http,
            ProbeSpec::Dns(_) => ProbeKind::Dns,
        }
    }
}

/// A compiled regular expression, compared by its source (a target whose pattern did
/// not change is not restarted when the targets file is re-read).
#[derive(Debug, Clone)]
pub struct Pattern(pub regex::bytes::Regex);

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl Pattern {
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn is_match(&self, haystack: &[u8]) -> bool {
        self.0.is_match(haystack)
    }
}

/// Compiled regexes are bounded: a pattern that would compile into more than this many
/// bytes is refused at load instead of costing the probe thread memory and time.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

fn pattern(field: String, source: &str) -> Result<Pattern, ConfigError> {
    regex::bytes::RegexBuilder::new(source)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map(Pattern)
        .map_err(|e| {
            ConfigError::new(
                field,
                format!("{source:?} is not a valid regular expression: {e}"),
            )
        })
}

/// TLS settings of a tcp or http probe.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TlsSpec {
    /// CA certificates that verify the server instead of the system's bundle
    /// (`tls_ca_file`), read at load: a missing or broken file is a config error.
    pub ca: Option<Arc<Vec<CertificateDer<'static>>>>,
    /// The name verified and sent as SNI instead of the address's host.
    pub server_name: Option<String>,
    /// Accept any certificate (expiry is still reported).
    pub insecure_skip_verify: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TcpSpec {
    pub port: u16,
    /// TLS after the connection, when `tls: true`.
    pub tls: Option<TlsSpec>,
    /// Bytes written once connected (escapes `\r \n \t \\ \xHH` decoded).
    pub send: Option<Vec<u8>>,
    /// What the server must send back (read until it matches, the peer closes, or the
    /// timeout).
    pub expect: Option<Pattern>,
}

/// Status codes accepted: inclusive ranges.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusCodes(pub Vec<(u16, u16)>);

impl StatusCodes {
    pub fn accepts(&self, code: u16) -> bool {
        self.0.iter().any(|(lo, hi)| (*lo..=*hi).contains(&code))
    }
}

impl fmt::Display for StatusCodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(lo, hi)| {
                if lo == hi {
                    lo.to_string()
                } else if lo % 100 == 0 && *hi == lo + 99 {
                    format!("{}xx", lo / 100)
                } else {
                    format!("{lo}-{hi}")
                }
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpSpec {
    pub url: url::Url,
    pub https: bool,
    pub port: u16,
    pub method: http::Method,
    /// Request headers in configuration order; a `Host` here replaces the URL's.
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    pub body: Option<String>,
    pub expect_status: StatusCodes,
    pub expect_body: Option<Pattern>,
    pub fail_if_body: Option<Pattern>,
    pub follow_redirects: bool,
    pub max_redirects: u32,
    pub tls: TlsSpec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsTransport {
    Udp,
    Tcp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DnsSpec {
    pub port: u16,
    pub query_name: hickory_proto::rr::Name,
    pub query_type: hickory_proto::rr::RecordType,
    pub transport: DnsTransport,
    pub recursion_desired: bool,
    /// Response codes accepted (numbers), NOERROR by default.
    pub expect_rcode: Vec<u16>,
    /// At least one answer's data (`198.18.0.5`, `10 mail.example.`) must match.
    pub expect_answer: Option<Pattern>,
    /// No answer's data may match.
    pub fail_if_answer: Option<Pattern>,
}

/// The settings of a target that belong to one kind only, by YAML field name, with
/// whether each is set.
fn set_kind_settings(t: &TargetConfig) -> Vec<&'static str> {
    let set: [(&'static str, bool); 23] = [
        ("count", t.count.is_some()),
        ("warning_loss", t.warning_loss.is_some()),
        ("tls", t.tls.is_some()),
        ("tls_ca_file", t.tls_ca_file.is_some()),
        ("tls_server_name", t.tls_server_name.is_some()),
        (
            "tls_insecure_skip_verify",
            t.tls_insecure_skip_verify.is_some(),
        ),
        ("send", t.send.is_some()),
        ("expect", t.expect.is_some()),
        ("method", t.method.is_some()),
        ("headers", t.headers.is_some()),
        ("body", t.body.is_some()),
        ("expect_status", t.expect_status.is_some()),
        ("expect_body", t.expect_body.is_some()),
        ("fail_if_body", t.fail_if_body.is_some()),
        ("follow_redirects", t.follow_redirects.is_some()),
        ("max_redirects", t.max_redirects.is_some()),
        ("query_name", t.query_name.is_some()),
        ("query_type", t.query_type.is_some()),
        ("transport", t.transport.is_some()),
        ("recursion_desired", t.recursion_desired.is_some()),
        ("expect_rcode", t.expect_rcode.is_some()),
        ("expect_answer", t.expect_answer.is_some()),
        ("fail_if_answer", t.fail_if_answer.is_some()),
    ];
    set.into_iter()
        .filter(|(_, on)| *on)
        .map(|(n, _)| n)
        .collect()
}

/// The kind a setting belongs to, for the error message.
fn owner_of(setting: &str) -> String {
    let kinds: Vec<&str> = ProbeKind::ALL
        .into_iter()
        .filter(|k| k.settings().contains(&setting))
        .map(|k| k.as_str())
        .collect();
    kinds.join(" and ")
}

/// Turns a target's address and kind settings into where it points and what it probes.
/// `field` names a setting the way errors must (`targets[2].url`, `targets_file t.txt
/// line 4: expect_status`).
pub fn compile(
    t: &TargetConfig,
    field: &dyn Fn(&str) -> String,
) -> Result<(Host, ProbeSpec), ConfigError> {
    let kind = t.probe.unwrap_or_default();
    for setting in set_kind_settings(t) {
        if !kind.settings().contains(&setting) {
            return Err(ConfigError::new(
                field(setting),
                format!(
                    "is a setting of {} probes; this target's probe is {kind}",
                    owner_of(setting)
                ),
            ));
        }
    }
    for label in kind.reserved_labels() {
        if t.labels.contains_key(*label) {
            return Err(ConfigError::new(
                field(&format!("labels.{label}")),
                format!("{label:?} clashes with a label the {kind} probe's series set themselves"),
            ));
        }
    }
    let address = |m: String| ConfigError::new(field("address"), m);
    match kind {
        ProbeKind::Icmp => {
            let host = parse_host(&t.address).map_err(|m| {
                if t.address.contains("://") {
                    address(format!(
                        "{:?} is a URL; an HTTP check needs `probe: http` (probe=http in the targets file)",
                        t.address
                    ))
                } else {
                    address(m)
                }
            })?;
            Ok((host, ProbeSpec::Icmp))
        }
        ProbeKind::Tcp => {
            let (host, port) = host_and_port(&t.address, None).map_err(address)?;
            let tls = if t.tls.unwrap_or(false) {
                Some(tls_spec(t, field)?)
            } else {
                for s in ["tls_ca_file", "tls_server_name", "tls_insecure_skip_verify"] {
                    if set_kind_settings(t).contains(&s) {
                        return Err(ConfigError::new(
                            field(s),
                            "has no effect without `tls: true` (tls=true in the targets file)",
                        ));
                    }
                }
                None
            };
            let send = match &t.send {
                Some(s) => Some(unescape(s).map_err(|m| ConfigError::new(field("send"), m))?),
                None => None,
            };
            let expect = match &t.expect {
                Some(p) => Some(pattern(field("expect"), p)?),
                None => None,
            };
            Ok((
                host,
                ProbeSpec::Tcp(TcpSpec {
                    port,
                    tls,
                    send,
                    expect,
                }),
            ))
        }
        ProbeKind::Http => http_spec(t, field),
        ProbeKind::Dns => dns_spec(t, field),
    }
}

/// `host:port`, `[v6]:port`, or (with a default port) `host`, `v4`, `[v6]`, `v6`.
fn host_and_port(address: &str, default_port: Option<u16>) -> Result<(Host, u16), String> {
    let address = address.trim();
    let (host, port) = if let Some(rest) = address.strip_prefix('[') {
        let Some((h, after)) = rest.split_once(']') else {
            return Err(format!("{address:?}: unclosed [ around an IPv6 address"));
        };
        match after.strip_prefix(':') {
            Some(p) => (h, Some(p)),
            None if after.is_empty() => (h, None),
            None => return Err(format!("{address:?} is not host:port")),
        }
    } else if address.parse::<IpAddr>().is_ok_and(|ip| ip.is_ipv6()) {
        (address, None)
    } else {
        match address.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (address, None),
        }
    };
    let port = match (port, default_port) {
        (Some(p), _) => parse_port(p)?,
        (None, Some(d)) => d,
        (None, None) => {
            return Err(format!(
                "{address:?} has no port; write host:port ([v6]:port for IPv6)"
            ))
        }
    };
    Ok((parse_host(host)?, port))
}

fn parse_port(text: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(0) => Err("port 0 is not a port a server listens on; use 1 to 65535".into()),
        Ok(p) => Ok(p),
        Err(_) => Err(format!("port {text:?} is not a number from 1 to 65535")),
    }
}

fn tls_spec(t: &TargetConfig, field: &dyn Fn(&str) -> String) -> Result<TlsSpec, ConfigError> {
    let ca = match &t.tls_ca_file {
        Some(path) => Some(Arc::new(
            read_ca_file(path).map_err(|m| ConfigError::new(field("tls_ca_file"), m))?,
        )),
        None => None,
    };
    if let Some(name) = &t.tls_server_name {
        ServerName::try_from(name.as_str()).map_err(|_| {
            ConfigError::new(
                field("tls_server_name"),
                format!("{name:?} is neither a DNS name nor an IP address"),
            )
        })?;
    }
    Ok(TlsSpec {
        ca,
        server_name: t.tls_server_name.clone(),
        insecure_skip_verify: t.tls_insecure_skip_verify.unwrap_or(false),
    })
}

fn read_ca_file(path: &PathBuf) -> Result<Vec<CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut certs = Vec::new();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        certs.push(cert.map_err(|e| format!("{}: bad PEM: {e}", path.display()))?);
    }
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate found", path.display()));
    }
    let mut roots = rustls::RootCertStore::empty();
    for c in &certs {
        roots
            .add(c.clone())
            .map_err(|e| format!("{}: unusable CA certificate: {e}", path.display()))?;
    }
    Ok(certs)
}

/// Redirects followed at most, whatever `max_redirects` says: a loop ends here.
const MAX_REDIRECTS: u32 = 30;

fn http_spec(
    t: &TargetConfig,
    field: &dyn Fn(&str) -> String,
) -> Result<(Host, ProbeSpec), ConfigError> {
    let address = |m: String| ConfigError::new(field("address"), m);
    let url = url::Url::parse(t.address.trim()).map_err(|e| {
        address(format!(
            "{:?} is not a URL like https://portal.example/path ({e})",
            t.address
        ))
    })?;
    let https = match url.scheme() {
        "http" => false,
        "https" => true,
        other => {
            return Err(address(format!(
                "scheme {other:?}: an http probe takes http:// or https:// URLs"
            )))
        }
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(address(
            "credentials in the URL would be shown in the address label and on the board; \
             send them with headers: {Authorization: ...} instead"
                .into(),
        ));
    }
    let host = match url.host() {
        Some(url::Host::Domain(d)) => parse_host(d).map_err(address)?,
        Some(url::Host::Ipv4(ip)) => parse_host(&ip.to_string()).map_err(address)?,
        Some(url::Host::Ipv6(ip)) => parse_host(&ip.to_string()).map_err(address)?,
        None => return Err(address(format!("{:?} has no host", t.address))),
    };
    let port = match url.port() {
        Some(0) => {
            return Err(address(
                "port 0 is not a port a server listens on; use 1 to 65535".into(),
            ))
        }
        Some(p) => p,
        None => {
            if https {
                443
            } else {
                80
            }
        }
    };
    let method =
        match &t.method {
            Some(m) => http::Method::from_bytes(m.trim().to_ascii_uppercase().as_bytes()).map_err(
                |_| ConfigError::new(field("method"), format!("{m:?} is not an HTTP method")),
            )?,
            None => http::Method::GET,
        };
    let mut headers = Vec::new();
    for (k, v) in t.headers.iter().flatten() {
        let at = || field(&format!("headers.{k}"));
        let name = http::HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| ConfigError::new(at(), format!("{k:?} is not an HTTP header name")))?;
        let value = http::HeaderValue::from_str(v).map_err(|_| {
            ConfigError::new(at(), "the value has characters a header cannot carry")
        })?;
        headers.push((name, value));
    }
    let expect_status = match &t.expect_status {
        Some(list) => {
            status_codes(list).map_err(|m| ConfigError::new(field("expect_status"), m))?
        }
        None => StatusCodes(vec![(200, 299)]),
    };
    let max_redirects = t.max_redirects.unwrap_or(10);
    if max_redirects > MAX_REDIRECTS {
        return Err(ConfigError::new(
            field("max_redirects"),
            format!("{max_redirects} is more than the {MAX_REDIRECTS} allowed"),
        ));
    }
    if t.follow_redirects == Some(false) && t.max_redirects.is_some() {
        return Err(ConfigError::new(
            field("max_redirects"),
            "has no effect with follow_redirects: false",
        ));
    }
    let expect_body = match &t.expect_body {
        Some(p) => Some(pattern(field("expect_body"), p)?),
        None => None,
    };
    let fail_if_body = match &t.fail_if_body {
        Some(p) => Some(pattern(field("fail_if_body"), p)?),
        None => None,
    };
    Ok((
        host,
        ProbeSpec::Http(HttpSpec {
            https,
            port,
            method,
            headers,
            body: t.body.clone(),
            expect_status,
            expect_body,
            fail_if_body,
            follow_redirects: t.follow_redirects.unwrap_or(true),
            max_redirects,
            tls: tls_spec(t, field)?,
            url,
        }),
    ))
}

/// `200`, `200-299`, `2xx`, comma-separated or as a list.
fn status_codes(list: &ListSetting) -> Result<StatusCodes, String> {
    if list.0.is_empty() {
        return Err("lists no status code".into());
    }
    let code = |s: &str| -> Result<u16, String> {
        match s.parse::<u16>() {
            Ok(c) if (100..=599).contains(&c) => Ok(c),
            _ => Err(format!("{s:?} is not an HTTP status code (100 to 599)")),
        }
    };
    let mut ranges = Vec::new();
    for item in &list.0 {
        let item = item.as_str();
        if let Some(class) = item.strip_suffix("xx").or_else(|| item.strip_suffix("XX")) {
            let lo = code(&format!("{class}00"))?;
            ranges.push((lo, lo + 99));
        } else if let Some((lo, hi)) = item.split_once('-') {
            let (lo, hi) = (code(lo.trim())?, code(hi.trim())?);
            if lo > hi {
                return Err(format!("{item:?}: the range runs backwards"));
            }
            ranges.push((lo, hi));
        } else {
            let c = code(item)?;
            ranges.push((c, c));
        }
    }
    Ok(StatusCodes(ranges))
}

/// Response codes by their usual names (dig's), and numbers.
const RCODES: [(&str, u16); 11] = [
    ("NOERROR", 0),
    ("FORMERR", 1),
    ("SERVFAIL", 2),
    ("NXDOMAIN", 3),
    ("NOTIMP", 4),
    ("REFUSED", 5),
    ("YXDOMAIN", 6),
    ("YXRRSET", 7),
    ("NXRRSET", 8),
    ("NOTAUTH", 9),
    ("NOTZONE", 10),
];

pub fn rcode_name(code: u16) -> String {
    RCODES
        .iter()
        .find(|(_, c)| *c == code)
        .map(|(n, _)| n.to_string())
        .unwrap_or_else(|| format!("RCODE{code}"))
}

fn dns_spec(
    t: &TargetConfig,
    field: &dyn Fn(&str) -> String,
) -> Result<(Host, ProbeSpec), ConfigError> {
    let (host, port) =
        host_and_port(&t.address, Some(53)).map_err(|m| ConfigError::new(field("address"), m))?;
    let Some(name) = &t.query_name else {
        return Err(ConfigError::new(
            field("query_name"),
            "a dns probe needs the name to ask for (query_name: www.example)",
        ));
    };
    let query_name = hickory_proto::rr::Name::from_ascii(name.trim())
        .ok()
        .filter(|_| !name.trim().is_empty() && name.len() <= 253 && !name.contains(' '))
        .ok_or_else(|| {
            ConfigError::new(field("query_name"), format!("{name:?} is not a DNS name"))
        })?;
    let query_type = match &t.query_type {
        Some(q) => {
            let upper = q.trim().to_ascii_uppercase();
            hickory_proto::rr::RecordType::from_str(&upper)
                .ok()
                .filter(|rt| !matches!(rt, hickory_proto::rr::RecordType::Unknown(_)))
                .ok_or_else(|| {
                    ConfigError::new(
                        field("query_type"),
                        format!("{q:?} is not a DNS record type (A, AAAA, MX, TXT, NS, SOA, ...)"),
                    )
                })?
        }
        None => hickory_proto::rr::RecordType::A,
    };
    let transport = match t.transport.as_deref().map(str::trim) {
        None | Some("udp") => DnsTransport::Udp,
        Some("tcp") => DnsTransport::Tcp,
        Some(other) => {
            return Err(ConfigError::new(
                field("transport"),
                format!("{other:?} is not udp or tcp"),
            ))
        }
    };
    let expect_rcode = match &t.expect_rcode {
        Some(list) if list.0.is_empty() => {
            return Err(ConfigError::new(field("expect_rcode"), "lists no rcode"))
        }
        Some(list) => list
            .0
            .iter()
            .map(|r| {
                let upper = r.to_ascii_uppercase();
                RCODES
                    .iter()
                    .find(|(n, _)| *n == upper)
                    .map(|(_, c)| *c)
                    .or_else(|| r.parse::<u16>().ok().filter(|c| *c < 4096))
                    .ok_or_else(|| {
                        ConfigError::new(
                            field("expect_rcode"),
                            format!("{r:?} is not a DNS rcode (NOERROR, NXDOMAIN, SERVFAIL, REFUSED, ...)"),
                        )
                    })
            })
            .collect::<Result<Vec<u16>, _>>()?,
        None => vec![0],
    };
    let expect_answer = match &t.expect_answer {
        Some(p) => Some(pattern(field("expect_answer"), p)?),
        None => None,
    };
    let fail_if_answer = match &t.fail_if_answer {
        Some(p) => Some(pattern(field("fail_if_answer"), p)?),
        None => None,
    };
    Ok((
        host,
        ProbeSpec::Dns(DnsSpec {
            port,
            query_name,
            query_type,
            transport,
            recursion_desired: t.recursion_desired.unwrap_or(true),
            expect_rcode,
            expect_answer,
            fail_if_answer,
        }),
    ))
}

/// Decodes `\r \n \t \0 \\ \xHH` in `send`, so a line protocol's terminator can be written
/// in the targets file (which has no escapes of its own) as in YAML.
pub fn unescape(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        match chars.next() {
            Some('r') => out.push(b'\r'),
            Some('n') => out.push(b'\n'),
            Some('t') => out.push(b'\t'),
            Some('0') => out.push(0),
            Some('\\') => out.push(b'\\'),
            Some('x') => {
                let hex: String = chars.by_ref().take(2).collect();
                let byte = u8::from_str_radix(&hex, 16)
                    .ok()
                    .filter(|_| hex.len() == 2)
                    .ok_or_else(|| format!("\\x{hex} is not two hex digits"))?;
                out.push(byte);
            }
            Some(other) => {
                return Err(format!(
                    "\\{other} is not an escape (\\r \\n \\t \\0 \\\\ \\xHH)"
                ))
            }
            None => return Err("ends with a lone backslash".into()),
        }
    }
    Ok(out)
}

/// Targets-file keys of the kinds (`probe=http expect_status=200,301 ...`). The file's
/// `header="Name: value"` may be repeated; it is `headers` in YAML.
pub const FILE_KEYS: [&str; 22] = [
    "probe",
    "tls",
    "tls_ca_file",
    "tls_server_name",
    "tls_insecure_skip_verify",
    "send",
    "expect",
    "method",
    "header",
    "body",
    "expect_status",
    "expect_body",
    "fail_if_body",
    "follow_redirects",
    "max_redirects",
    "query_name",
    "query_type",
    "transport",
    "recursion_desired",
    "expect_rcode",
    "expect_answer",
    "fail_if_answer",
];

/// Prefixes that only settings have: a key with one that is no setting is a typo
/// (`expect_stauts=200`), reported instead of becoming a label.
const SETTING_PREFIXES: [&str; 5] = ["expect_", "fail_if_", "tls_", "query_", "probe_"];

/// Whether the targets file treats `key` as a setting of a kind (an error when it is
/// none), rather than a label.
pub fn is_file_key(key: &str) -> bool {
    FILE_KEYS.contains(&key) || SETTING_PREFIXES.iter().any(|p| key.starts_with(p))
}

/// Whether a targets-file key may be given more than once on a line.
pub fn is_repeatable(key: &str) -> bool {
    key == "header"
}

/// Sets one of [`FILE_KEYS`] on `target` from its text in the targets file.
pub fn set_file_key(target: &mut TargetConfig, key: &str, value: &str) -> Result<(), String> {
    let flag = |v: &str| match v {
        "true" | "yes" | "1" => Ok(true),
        "false" | "no" | "0" => Ok(false),
        _ => Err(format!("{v:?} is not true or false")),
    };
    let text = || Some(value.to_string());
    match key {
        "probe" => target.probe = Some(value.parse()?),
        "tls" => target.tls = Some(flag(value)?),
        "tls_ca_file" => target.tls_ca_file = Some(PathBuf::from(value)),
        "tls_server_name" => target.tls_server_name = text(),
        "tls_insecure_skip_verify" => target.tls_insecure_skip_verify = Some(flag(value)?),
        "send" => target.send = text(),
        "expect" => target.expect = text(),
        "method" => target.method = text(),
        "header" => {
            let Some((name, v)) = value.split_once(':') else {
                return Err(format!("{value:?} is not \"Name: value\""));
            };
            target
                .headers
                .get_or_insert_with(Default::default)
                .insert(name.trim().to_string(), v.trim().to_string());
        }
        "body" => target.body = text(),
        "expect_status" => target.expect_status = Some(ListSetting::parse(value)),
        "expect_body" => target.expect_body = text(),
        "fail_if_body" => target.fail_if_body = text(),
        "follow_redirects" => target.follow_redirects = Some(flag(value)?),
        "max_redirects" => {
            target.max_redirects = Some(
                value
                    .parse()
                    .map_err(|_| format!("{value:?} is not a whole number"))?,
            )
        }
        "query_name" => target.query_name = text(),
        "query_type" => target.query_type = text(),
        "transport" => target.transport = text(),
        "recursion_desired" => target.recursion_desired = Some(flag(value)?),
        "expect_rcode" => target.expect_rcode = Some(ListSetting::parse(value)),
        "expect_answer" => target.expect_answer = text(),
        "fail_if_answer" => target.fail_if_answer = text(),
        other => {
            return Err(format!(
                "{other:?} is not a setting of any probe kind (keys starting with {} are reserved for settings)",
                SETTING_PREFIXES.join(", ")
            ))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port_forms() {
        let hp = |a: &str, d| host_and_port(a, d).map(|(h, p)| (format!("{h:?}"), p));
        assert_eq!(hp("198.18.0.1:80", None).unwrap().1, 80);
        assert_eq!(hp("[::1]:443", None).unwrap().1, 443);
        assert_eq!(hp("router.example:22", None).unwrap().1, 22);
        assert_eq!(hp("198.18.0.1", Some(53)).unwrap().1, 53);
        assert_eq!(hp("::1", Some(53)).unwrap().1, 53);
        assert_eq!(hp("[::1]", Some(53)).unwrap().1, 53);
        assert!(hp("198.18.0.1", None).unwrap_err().contains("no port"));
        assert!(hp("198.18.0.1:0", None).unwrap_err().contains("port 0"));
        assert!(hp("198.18.0.1:70000", None)
            .unwrap_err()
            .contains("1 to 65535"));
        assert!(hp("[::1:80", None).is_err());
    }

    #[test]
    fn status_code_lists() {
        let s = status_codes(&ListSetting::parse("200, 301,2xx,500-503")).unwrap();
        for (code, ok) in [
            (200, true),
            (204, true),
            (301, true),
            (302, false),
            (502, true),
            (504, false),
        ] {
            assert_eq!(s.accepts(code), ok, "{code}");
        }
        assert_eq!(s.to_string(), "200,301,2xx,500-503");
        assert!(status_codes(&ListSetting::parse("99")).is_err());
        assert!(status_codes(&ListSetting::parse("abc")).is_err());
        assert!(status_codes(&ListSetting::parse("300-200")).is_err());
        assert!(status_codes(&ListSetting::parse("")).is_err());
    }

    #[test]
    fn escapes_in_send() {
        assert_eq!(unescape(r"QUIT\r\n").unwrap(), b"QUIT\r\n");
        assert_eq!(unescape(r"\x00\x7fa\\").unwrap(), b"\x00\x7fa\\");
        assert!(unescape(r"\q").is_err());
        assert!(unescape(r"\x4").is_err());
        assert!(unescape("a\\").is_err());
        assert_eq!(unescape("ñ").unwrap(), "ñ".as_bytes());
    }

    #[test]
    fn kinds_parse_and_name_themselves() {
        for k in ProbeKind::ALL {
            assert_eq!(k.as_str().parse::<ProbeKind>().unwrap(), k);
        }
        let e = "htp".parse::<ProbeKind>().unwrap_err();
        assert!(e.contains("icmp, tcp, http, dns"), "{e}");
        // Every kind setting is a targets-file key (as `header` for `headers`).
        for k in ProbeKind::ALL {
            for s in k.settings() {
                let key = if *s == "headers" { "header" } else { s };
                assert!(
                    is_file_key(key) || ["count", "warning_loss"].contains(s),
                    "{s}"
                );
            }
        }
    }
}
