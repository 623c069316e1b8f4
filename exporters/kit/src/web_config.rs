//! The Prometheus exporter-toolkit web config file (`--web.config.file`): TLS, client
//! certificates, bcrypt basic auth, extra response headers and a request rate limit.
//!
//! The format is exporter-toolkit's own (`docs/web-configuration.md` upstream), so an
//! operator can reuse the file they already have for node_exporter. Where rustls cannot do
//! what Go's crypto/tls does (TLS 1.0/1.1, CBC cipher suites, the P-521 curve, e-mail SANs)
//! the file is rejected with an error naming the field, never silently weakened.
//!
//! Everything is checked at load, before anything listens: unknown fields, unreadable or
//! malformed certificate, key and CA files, a key that does not match its certificate,
//! hashes that are not bcrypt. An empty file means no TLS and no auth.
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt          # relative to this file's directory
//!   key_file: server.key
//!   client_auth_type: RequireAndVerifyClientCert
//!   client_ca_file: scrapers-ca.crt
//!   min_version: TLS13
//! http_server_config:
//!   headers:
//!     X-Content-Type-Options: nosniff
//! basic_auth_users:                # htpasswd -nBC 10 "" | tr -d ':\n'
//!   prometheus: $2y$10$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG
//! ```
//!
//! Deliberate differences from exporter-toolkit: `cipher_suites` also restricts TLS 1.3
//! suites when it names any (Go ignores them), and the verifying client auth types need
//! `client_ca_file`/`client_ca` (Go would fall back to the system roots, which is never
//! what a scrape endpoint wants). As upstream, certificate and key files are re-read when
//! they change on disk, so a renewed certificate needs no restart.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{Request, State};
use axum::http::header::{HeaderName, HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
    SupportedCipherSuite,
};
use serde::{Deserialize, Deserializer};
use sha2::{Digest, Sha256};

use crate::config::{from_value, parse_yaml, ConfigError};

/// A loaded web config: what the server applies to every connection and request.
#[derive(Clone)]
pub struct WebConfig {
    tls: Option<tokio_rustls::TlsAcceptor>,
    http2: bool,
    policy: Option<Arc<RequestPolicy>>,
    /// From the `--web.*` flags, not the file (exporter-toolkit's format has no such
    /// fields, and a vigia file must stay usable by node_exporter).
    limits: crate::connections::ConnectionLimits,
}

impl Default for WebConfig {
    fn default() -> Self {
        Self::none()
    }
}

impl fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebConfig")
            .field("tls", &self.is_tls())
            .field("http2", &self.http2)
            .field("basic_auth", &self.has_basic_auth())
            .finish_non_exhaustive()
    }
}

impl WebConfig {
    /// No TLS, no auth: what serving without `--web.config.file` means.
    pub fn none() -> Self {
        Self {
            tls: None,
            http2: true,
            policy: None,
            limits: Default::default(),
        }
    }

    /// The same config with these connection limits.
    pub fn with_limits(mut self, limits: crate::connections::ConnectionLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Connection cap and idle timeouts the server applies.
    pub fn limits(&self) -> crate::connections::ConnectionLimits {
        self.limits
    }

    /// Reads and validates a web config file. Relative file names inside it are resolved
    /// against the file's own directory, as exporter-toolkit does.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(&origin, format!("cannot read web config file: {e}")))?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        let file: WebConfigFile = from_value(parse_yaml(&text, &origin)?)?;
        file.build(base, Some(path.to_path_buf()))
    }

    /// As [`WebConfig::load`], from text; `base_dir` resolves relative file names.
    pub fn from_yaml(text: &str, origin: &str, base_dir: &Path) -> Result<Self, ConfigError> {
        let file: WebConfigFile = from_value(parse_yaml(text, origin)?)?;
        file.build(base_dir, None)
    }

    /// Whether connections are served over TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Whether requests need basic auth credentials.
    pub fn has_basic_auth(&self) -> bool {
        self.policy
            .as_ref()
            .is_some_and(|p| p.current().auth.is_some())
    }

    /// Whether HTTP/2 is offered (`http_server_config.http2`, default true).
    pub fn http2(&self) -> bool {
        self.http2
    }

    pub(crate) fn tls_acceptor(&self) -> Option<&tokio_rustls::TlsAcceptor> {
        self.tls.as_ref()
    }

    /// Wraps `router` with the per-request policy (rate limit, auth, headers) if any.
    pub(crate) fn apply(&self, router: axum::Router) -> axum::Router {
        match &self.policy {
            Some(policy) => router.layer(axum::middleware::from_fn_with_state(
                policy.clone(),
                enforce_policy,
            )),
            None => router,
        }
    }
}

// ---------------------------------------------------------------------------------------
// The file format, field for field as exporter-toolkit reads it.

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebConfigFile {
    #[serde(default)]
    tls_server_config: Option<TlsServerConfig>,
    #[serde(default)]
    http_server_config: Option<HttpServerConfig>,
    #[serde(default)]
    basic_auth_users: Option<BTreeMap<String, String>>,
    #[serde(default)]
    rate_limit: Option<RateLimitConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsServerConfig {
    #[serde(default)]
    cert: Option<String>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    client_ca: Option<String>,
    #[serde(default)]
    cert_file: Option<String>,
    #[serde(default)]
    key_file: Option<String>,
    #[serde(default)]
    client_auth_type: Option<ClientAuthType>,
    #[serde(default)]
    client_ca_file: Option<String>,
    #[serde(default)]
    client_allowed_sans: Option<Vec<String>>,
    #[serde(default)]
    min_version: Option<TlsVersion>,
    #[serde(default)]
    max_version: Option<TlsVersion>,
    #[serde(default)]
    cipher_suites: Option<Vec<CipherSuiteName>>,
    #[serde(default)]
    prefer_server_cipher_suites: Option<bool>,
    #[serde(default)]
    curve_preferences: Option<Vec<CurveName>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpServerConfig {
    #[serde(default)]
    http2: Option<bool>,
    #[serde(default)]
    headers: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RateLimitConfig {
    #[serde(default, with = "humantime_serde")]
    interval: Option<Duration>,
    #[serde(default)]
    burst: Option<u32>,
}

/// exporter-toolkit's `client_auth_type` values, named after Go's `tls.ClientAuthType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum ClientAuthType {
    #[default]
    NoClientCert,
    RequestClientCert,
    RequireAnyClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

impl ClientAuthType {
    fn requires_cert(self) -> bool {
        matches!(
            self,
            Self::RequireAnyClientCert | Self::RequireAndVerifyClientCert
        )
    }
    fn verifies_chain(self) -> bool {
        matches!(
            self,
            Self::VerifyClientCertIfGiven | Self::RequireAndVerifyClientCert
        )
    }
}

impl<'de> Deserialize<'de> for ClientAuthType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(match s.as_str() {
            "" | "NoClientCert" => Self::NoClientCert,
            "RequestClientCert" => Self::RequestClientCert,
            // "RequireClientCert" is the old name exporter-toolkit still accepts.
            "RequireAnyClientCert" | "RequireClientCert" => Self::RequireAnyClientCert,
            "VerifyClientCertIfGiven" => Self::VerifyClientCertIfGiven,
            "RequireAndVerifyClientCert" => Self::RequireAndVerifyClientCert,
            other => {
                return Err(serde::de::Error::custom(format!(
                    "unknown client_auth_type `{other}`, expected one of NoClientCert, \
                     RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven, \
                     RequireAndVerifyClientCert"
                )))
            }
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TlsVersion {
    Tls12,
    Tls13,
}

impl<'de> Deserialize<'de> for TlsVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "TLS12" => Ok(Self::Tls12),
            "TLS13" => Ok(Self::Tls13),
            "TLS10" | "TLS11" => Err(serde::de::Error::custom(format!(
                "{s} is not supported: rustls implements only TLS12 and TLS13 \
                 (TLS 1.0 and 1.1 are deprecated by RFC 8996)"
            ))),
            other => Err(serde::de::Error::custom(format!(
                "unknown TLS version `{other}`, expected TLS12 or TLS13"
            ))),
        }
    }
}

/// A cipher suite by its Go name (`tls.CipherSuites()`), resolved to rustls's.
#[derive(Debug, Clone, Copy)]
struct CipherSuiteName(SupportedCipherSuite);

impl<'de> Deserialize<'de> for CipherSuiteName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use rustls::crypto::ring::cipher_suite as cs;
        let s = String::deserialize(d)?;
        let suite = match s.as_str() {
            "TLS_AES_128_GCM_SHA256" => cs::TLS13_AES_128_GCM_SHA256,
            "TLS_AES_256_GCM_SHA384" => cs::TLS13_AES_256_GCM_SHA384,
            "TLS_CHACHA20_POLY1305_SHA256" => cs::TLS13_CHACHA20_POLY1305_SHA256,
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => {
                cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
            }
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => {
                cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
            }
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256" => {
                cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
            }
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" => {
                cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
            }
            "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA"
            | "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA"
            | "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"
            | "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA"
            | "TLS_RSA_WITH_AES_128_CBC_SHA"
            | "TLS_RSA_WITH_AES_256_CBC_SHA"
            | "TLS_RSA_WITH_AES_128_GCM_SHA256"
            | "TLS_RSA_WITH_AES_256_GCM_SHA384" => {
                return Err(serde::de::Error::custom(format!(
                    "cipher suite {s} is not supported: rustls implements only AEAD suites \
                     with ECDHE key exchange (the *_GCM_* and *_CHACHA20_POLY1305_* suites)"
                )))
            }
            other => {
                return Err(serde::de::Error::custom(format!(
                    "unknown cipher suite `{other}` (use Go's names, such as \
                     TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)"
                )))
            }
        };
        Ok(Self(suite))
    }
}

/// A key exchange group by its Go name (`tls.CurveID`), resolved to rustls's.
#[derive(Debug, Clone, Copy)]
struct CurveName(&'static dyn rustls::crypto::SupportedKxGroup);

impl<'de> Deserialize<'de> for CurveName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use rustls::crypto::ring::kx_group;
        let s = String::deserialize(d)?;
        match s.as_str() {
            "X25519" => Ok(Self(kx_group::X25519)),
            "CurveP256" => Ok(Self(kx_group::SECP256R1)),
            "CurveP384" => Ok(Self(kx_group::SECP384R1)),
            "CurveP521" => Err(serde::de::Error::custom(
                "CurveP521 is not supported by rustls's ring provider; \
                 use X25519, CurveP256 or CurveP384",
            )),
            other => Err(serde::de::Error::custom(format!(
                "unknown curve `{other}`, expected X25519, CurveP256 or CurveP384"
            ))),
        }
    }
}

/// Headers exporter-toolkit lets an operator set, with the values it allows (none listed
/// means any value).
const ALLOWED_HEADERS: &[(&str, &[&str])] = &[
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
    ("Content-Security-Policy", &[]),
];

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

impl WebConfigFile {
    fn build(
        self,
        base_dir: &Path,
        reload_from: Option<PathBuf>,
    ) -> Result<WebConfig, ConfigError> {
        let http2 = self
            .http_server_config
            .as_ref()
            .and_then(|h| h.http2)
            .unwrap_or(true);
        let tls = match self.tls_server_config {
            Some(tls) => tls.build(base_dir, http2)?,
            None => None,
        };
        let rules = PolicyRules::build(
            self.http_server_config.and_then(|h| h.headers),
            self.basic_auth_users,
            self.rate_limit,
            None,
        )?;
        // A file that can change gets a policy even when it sets nothing yet, so that
        // adding basic_auth_users later takes effect without a restart.
        let policy = (reload_from.is_some() || !rules.is_empty()).then(|| {
            let stamp = reload_from.as_deref().and_then(file_stamp);
            Arc::new(RequestPolicy {
                reload: reload_from.map(|path| Mutex::new(ReloadState { path, stamp })),
                rules: std::sync::RwLock::new(Arc::new(rules)),
            })
        });
        Ok(WebConfig {
            tls: tls.map(|c| tokio_rustls::TlsAcceptor::from(Arc::new(c))),
            http2,
            policy,
            limits: Default::default(),
        })
    }
}

fn build_headers(
    headers: BTreeMap<String, String>,
) -> Result<Vec<(HeaderName, HeaderValue)>, ConfigError> {
    let mut out = Vec::new();
    for (name, value) in headers {
        let path = format!("http_server_config.headers.{name}");
        let Some((_, allowed)) = ALLOWED_HEADERS.iter().find(|(n, _)| *n == name) else {
            let names: Vec<&str> = ALLOWED_HEADERS.iter().map(|(n, _)| *n).collect();
            return Err(ConfigError::new(
                path,
                format!(
                    "header `{name}` cannot be configured; allowed: {}",
                    names.join(", ")
                ),
            ));
        };
        // Blank means unset, as upstream.
        if value.is_empty() {
            continue;
        }
        if !allowed.is_empty() && !allowed.contains(&value.as_str()) {
            return Err(ConfigError::new(
                path,
                format!(
                    "`{value}` is not allowed, expected one of: {}",
                    allowed.join(", ")
                ),
            ));
        }
        let header_value = HeaderValue::from_str(&value)
            .map_err(|_| ConfigError::new(&path, "not a valid HTTP header value"))?;
        let header_name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| ConfigError::new(&path, "not a valid HTTP header name"))?;
        out.push((header_name, header_value));
    }
    Ok(out)
}

fn build_rate_limiter(cfg: RateLimitConfig) -> Result<Option<RateLimiter>, ConfigError> {
    // (interval, burst) is checked for a reload to keep a limiter whose settings stayed.
    let interval = match cfg.interval {
        None => return Ok(None),
        Some(i) if i.is_zero() => return Ok(None),
        Some(i) => i,
    };
    let burst = cfg.burst.unwrap_or(0);
    if burst == 0 {
        return Err(ConfigError::new(
            "rate_limit.burst",
            "must be at least 1 when rate_limit.interval is set, or no request would ever pass",
        ));
    }
    Ok(Some(RateLimiter::new(interval, burst)))
}

impl TlsServerConfig {
    /// exporter-toolkit serves plain HTTP unless one of these is set.
    fn is_enabled(&self) -> bool {
        non_empty(&self.cert).is_some()
            || non_empty(&self.key).is_some()
            || non_empty(&self.cert_file).is_some()
            || non_empty(&self.key_file).is_some()
            || non_empty(&self.client_ca).is_some()
            || non_empty(&self.client_ca_file).is_some()
            || self.client_auth_type.is_some()
    }

    fn build(self, base_dir: &Path, http2: bool) -> Result<Option<ServerConfig>, ConfigError> {
        if !self.is_enabled() {
            return Ok(None);
        }
        // reqwest and others use the process default; install ring if nobody did.
        let _ = rustls::crypto::ring::default_provider().install_default();

        let resolve = |p: &str| -> PathBuf {
            let p = Path::new(p);
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base_dir.join(p)
            }
        };
        let cert_source = CertSource {
            cert: pem_source(
                non_empty(&self.cert),
                non_empty(&self.cert_file),
                "cert",
                "certificate",
                &resolve,
            )?,
            key: pem_source(
                non_empty(&self.key),
                non_empty(&self.key_file),
                "key",
                "private key",
                &resolve,
            )?,
        };

        let min = self.min_version.unwrap_or(TlsVersion::Tls12);
        let max = self.max_version.unwrap_or(TlsVersion::Tls13);
        if min > max {
            return Err(ConfigError::new(
                "tls_server_config.min_version",
                "is higher than max_version",
            ));
        }
        let mut versions: Vec<&'static rustls::SupportedProtocolVersion> = Vec::new();
        if min <= TlsVersion::Tls12 {
            versions.push(&rustls::version::TLS12);
        }
        if max >= TlsVersion::Tls13 {
            versions.push(&rustls::version::TLS13);
        }

        let mut provider = rustls::crypto::ring::default_provider();
        if let Some(suites) = &self.cipher_suites {
            provider.cipher_suites = restrict_cipher_suites(&provider.cipher_suites, suites);
        }
        if let Some(curves) = self.curve_preferences.as_ref().filter(|c| !c.is_empty()) {
            let mut groups: Vec<&'static dyn rustls::crypto::SupportedKxGroup> = Vec::new();
            for CurveName(g) in curves {
                if !groups.iter().any(|have| have.name() == g.name()) {
                    groups.push(*g);
                }
            }
            provider.kx_groups = groups;
        }
        let provider = Arc::new(provider);

        let client_auth = self.client_auth_type.unwrap_or_default();
        let roots = match (non_empty(&self.client_ca), non_empty(&self.client_ca_file)) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "tls_server_config.client_ca",
                    "set either client_ca or client_ca_file, not both",
                ))
            }
            (Some(pem), None) => Some(load_roots(
                pem.as_bytes(),
                "tls_server_config.client_ca",
                "client_ca",
            )?),
            (None, Some(file)) => {
                let file = resolve(file);
                let pem = std::fs::read(&file).map_err(|e| {
                    ConfigError::new(
                        "tls_server_config.client_ca_file",
                        format!("cannot read {}: {e}", file.display()),
                    )
                })?;
                Some(load_roots(
                    &pem,
                    "tls_server_config.client_ca_file",
                    &file.display().to_string(),
                )?)
            }
            (None, None) => None,
        };
        if roots.is_some() && client_auth == ClientAuthType::NoClientCert {
            return Err(ConfigError::new(
                "tls_server_config.client_auth_type",
                "a client CA is configured but client_auth_type is NoClientCert; \
                 set RequireAndVerifyClientCert to check client certificates",
            ));
        }
        if client_auth.verifies_chain() && roots.is_none() {
            return Err(ConfigError::new(
                "tls_server_config.client_ca_file",
                "client_auth_type verifies client certificates, which needs the CA that \
                 signs them: set client_ca_file (or client_ca)",
            ));
        }
        let allowed_sans = self.client_allowed_sans.unwrap_or_default();
        if !allowed_sans.is_empty() && !client_auth.requires_cert() {
            return Err(ConfigError::new(
                "tls_server_config.client_allowed_sans",
                "needs client_auth_type RequireAnyClientCert or RequireAndVerifyClientCert, \
                 otherwise a client can connect without a certificate to match",
            ));
        }
        let allowed_sans = allowed_sans
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                AllowedSan::parse(&s).map_err(|m| {
                    ConfigError::new(format!("tls_server_config.client_allowed_sans[{i}]"), m)
                })
            })
            .collect::<Result<Vec<_>, _>>()?;

        let verifier: Arc<dyn ClientCertVerifier> = match client_auth {
            ClientAuthType::NoClientCert => WebPkiClientVerifier::no_client_auth(),
            mode => {
                let hints = roots.as_ref().map(|r| r.subjects()).unwrap_or_default();
                let chain = match &roots {
                    Some(roots) if mode.verifies_chain() => {
                        let mut builder = WebPkiClientVerifier::builder_with_provider(
                            Arc::new(roots.clone()),
                            provider.clone(),
                        );
                        if !mode.requires_cert() {
                            builder = builder.allow_unauthenticated();
                        }
                        Some(builder.build().map_err(|e| {
                            ConfigError::new("tls_server_config.client_ca_file", e.to_string())
                        })?)
                    }
                    _ => None,
                };
                Arc::new(ClientCertPolicy {
                    mandatory: mode.requires_cert(),
                    chain,
                    allowed_sans,
                    hints,
                    algorithms: provider.signature_verification_algorithms,
                })
            }
        };

        let resolver = ReloadingCert::new(cert_source, provider.clone())?;
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&versions)
            .map_err(|e| ConfigError::new("tls_server_config", e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(Arc::new(resolver));
        config.ignore_client_order = self.prefer_server_cipher_suites.unwrap_or(true);
        config.alpn_protocols = if http2 {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        Ok(Some(config))
    }
}

/// Where a PEM comes from: inline text (`cert`) or a file (`cert_file`), exactly one.
fn pem_source(
    inline: Option<&str>,
    file: Option<&str>,
    name: &str,
    what: &str,
    resolve: &dyn Fn(&str) -> PathBuf,
) -> Result<PemSource, ConfigError> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(ConfigError::new(
            format!("tls_server_config.{name}"),
            format!("set either {name} or {name}_file, not both"),
        )),
        (Some(pem), None) => Ok(PemSource::Inline(pem.to_string())),
        (None, Some(file)) => Ok(PemSource::File(resolve(file))),
        (None, None) => Err(ConfigError::new(
            format!("tls_server_config.{name}_file"),
            format!("TLS is configured but no {what} is: set {name}_file (or {name})"),
        )),
    }
}

/// Keeps the provider's suites that `wanted` names, in `wanted`'s order, separately per
/// TLS version: naming only TLS 1.2 suites leaves TLS 1.3's defaults alone (as Go does).
fn restrict_cipher_suites(
    defaults: &[SupportedCipherSuite],
    wanted: &[CipherSuiteName],
) -> Vec<SupportedCipherSuite> {
    let is13 = |s: &SupportedCipherSuite| matches!(s, SupportedCipherSuite::Tls13(_));
    let mut out = Vec::new();
    for tls13 in [true, false] {
        let named: Vec<SupportedCipherSuite> = wanted
            .iter()
            .map(|w| w.0)
            .filter(|s| is13(s) == tls13)
            .collect();
        let pool = if named.is_empty() {
            defaults
                .iter()
                .copied()
                .filter(|s| is13(s) == tls13)
                .collect()
        } else {
            named
        };
        for s in pool {
            if !out
                .iter()
                .any(|have: &SupportedCipherSuite| have.suite() == s.suite())
            {
                out.push(s);
            }
        }
    }
    out
}

fn load_roots(pem: &[u8], field: &str, what: &str) -> Result<RootCertStore, ConfigError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| ConfigError::new(field, format!("{what}: bad PEM: {e}")))?;
        roots.add(cert).map_err(|e| {
            ConfigError::new(field, format!("{what}: unusable CA certificate: {e}"))
        })?;
    }
    if roots.is_empty() {
        return Err(ConfigError::new(
            field,
            format!("{what}: no PEM certificate found"),
        ));
    }
    Ok(roots)
}

// ---------------------------------------------------------------------------------------
// The server certificate, re-read when its files change.

#[derive(Debug, Clone)]
enum PemSource {
    File(PathBuf),
    Inline(String),
}

impl PemSource {
    fn read(&self, field: &str) -> Result<Vec<u8>, ConfigError> {
        match self {
            PemSource::Inline(pem) => Ok(pem.as_bytes().to_vec()),
            PemSource::File(path) => std::fs::read(path).map_err(|e| {
                ConfigError::new(field, format!("cannot read {}: {e}", path.display()))
            }),
        }
    }

    fn stamp(&self) -> Option<(SystemTime, u64)> {
        match self {
            PemSource::Inline(_) => None,
            PemSource::File(path) => std::fs::metadata(path)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len()))),
        }
    }

    fn describe(&self) -> String {
        match self {
            PemSource::File(path) => path.display().to_string(),
            PemSource::Inline(_) => "inline PEM".to_string(),
        }
    }
}

#[derive(Debug, Clone)]
struct CertSource {
    cert: PemSource,
    key: PemSource,
}

type Stamp = (Option<(SystemTime, u64)>, Option<(SystemTime, u64)>);

impl CertSource {
    fn fields(&self) -> (&'static str, &'static str) {
        (
            match self.cert {
                PemSource::File(_) => "tls_server_config.cert_file",
                PemSource::Inline(_) => "tls_server_config.cert",
            },
            match self.key {
                PemSource::File(_) => "tls_server_config.key_file",
                PemSource::Inline(_) => "tls_server_config.key",
            },
        )
    }

    fn stamp(&self) -> Stamp {
        (self.cert.stamp(), self.key.stamp())
    }

    fn load(&self, provider: &CryptoProvider) -> Result<Arc<CertifiedKey>, ConfigError> {
        let (cert_field, key_field) = self.fields();
        let cert_pem = self.cert.read(cert_field)?;
        let key_pem = self.key.read(key_field)?;
        let chain = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                ConfigError::new(
                    cert_field,
                    format!("{}: bad PEM: {e}", self.cert.describe()),
                )
            })?;
        if chain.is_empty() {
            return Err(ConfigError::new(
                cert_field,
                format!("{}: no PEM certificate found", self.cert.describe()),
            ));
        }
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
            ConfigError::new(
                key_field,
                format!(
                    "{}: no usable PEM private key (PKCS#8, PKCS#1 or SEC1): {e}",
                    self.key.describe()
                ),
            )
        })?;
        let signing_key = provider.key_provider.load_private_key(key).map_err(|e| {
            ConfigError::new(
                key_field,
                format!("{}: unusable private key: {e}", self.key.describe()),
            )
        })?;
        if let Err(e) = webpki::EndEntityCert::try_from(&chain[0]) {
            return Err(ConfigError::new(
                cert_field,
                format!(
                    "{}: not a valid X.509 certificate: {e}",
                    self.cert.describe()
                ),
            ));
        }
        let certified = CertifiedKey::new(chain, signing_key);
        match certified.keys_match() {
            // ring cannot always derive the public key; rustls treats that as a match.
            Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
            Err(e) => {
                return Err(ConfigError::new(
                    cert_field,
                    format!(
                        "{} does not go with {}: {e}",
                        self.cert.describe(),
                        self.key.describe()
                    ),
                ))
            }
        }
        Ok(Arc::new(certified))
    }
}

#[derive(Debug)]
struct LoadedCert {
    stamp: Stamp,
    key: Arc<CertifiedKey>,
}

/// Serves the configured certificate and picks up a renewed one on the next handshake
/// after its files change. A broken renewal keeps the previous certificate (and is
/// logged), so a half-written file never takes the endpoint down.
#[derive(Debug)]
struct ReloadingCert {
    source: CertSource,
    provider: Arc<CryptoProvider>,
    current: Mutex<LoadedCert>,
}

impl ReloadingCert {
    fn new(source: CertSource, provider: Arc<CryptoProvider>) -> Result<Self, ConfigError> {
        let stamp = source.stamp();
        let key = source.load(&provider)?;
        Ok(Self {
            source,
            provider,
            current: Mutex::new(LoadedCert { stamp, key }),
        })
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let stamp = self.source.stamp();
        if stamp != current.stamp {
            // Remember the stamp either way: a broken file is reported once, not per
            // handshake, and retried when it changes again.
            current.stamp = stamp;
            match self.source.load(&self.provider) {
                Ok(key) => {
                    tracing::info!(cert = %self.source.cert.describe(), "TLS certificate reloaded");
                    current.key = key;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "TLS certificate changed but cannot be loaded; keeping the previous one");
                }
            }
        }
        Some(current.key.clone())
    }
}

// ---------------------------------------------------------------------------------------
// Client certificates.

/// One `client_allowed_sans` entry. Go compares the string against every DNS, IP, e-mail
/// and URI SAN; rustls-webpki exposes DNS, IP and URI SANs, so e-mail entries are refused.
#[derive(Debug, Clone)]
enum AllowedSan {
    Ip(IpAddr),
    Name(String),
}

impl AllowedSan {
    fn parse(s: &str) -> Result<Self, String> {
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Self::Ip(ip));
        }
        if s.is_empty() {
            return Err("an allowed SAN cannot be empty".into());
        }
        if s.contains('@') && !s.contains(':') {
            return Err(format!(
                "`{s}` looks like an e-mail SAN, which rustls-webpki cannot read from a \
                 certificate; allow a DNS, IP or URI SAN of the client instead"
            ));
        }
        Ok(Self::Name(s.to_string()))
    }
}

fn cert_has_allowed_san(cert: &CertificateDer<'_>, allowed: &[AllowedSan]) -> bool {
    let Ok(ee) = webpki::EndEntityCert::try_from(cert) else {
        return false;
    };
    allowed.iter().any(|san| match san {
        AllowedSan::Ip(ip) => ee
            .verify_is_valid_for_subject_name(&ServerName::IpAddress((*ip).into()))
            .is_ok(),
        AllowedSan::Name(name) => {
            ee.valid_dns_names().any(|n| n == name) || ee.valid_uri_names().any(|u| u == name)
        }
    })
}

/// Client certificate policy for every `client_auth_type` except NoClientCert: asks for a
/// certificate, requires it or not, verifies its chain or not, then matches its SANs.
struct ClientCertPolicy {
    mandatory: bool,
    /// The CA check, for the Verify* types; `None` accepts any well-formed certificate
    /// (RequestClientCert, RequireAnyClientCert), as Go does.
    chain: Option<Arc<dyn ClientCertVerifier>>,
    allowed_sans: Vec<AllowedSan>,
    hints: Vec<DistinguishedName>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl fmt::Debug for ClientCertPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertPolicy")
            .field("mandatory", &self.mandatory)
            .field("verifies_chain", &self.chain.is_some())
            .field("allowed_sans", &self.allowed_sans)
            .finish_non_exhaustive()
    }
}

impl ClientCertVerifier for ClientCertPolicy {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match &self.chain {
            Some(chain) => {
                chain.verify_client_cert(end_entity, intermediates, now)?;
            }
            None => {
                webpki::EndEntityCert::try_from(end_entity).map_err(|_| {
                    rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
                })?;
            }
        }
        if !self.allowed_sans.is_empty() && !cert_has_allowed_san(end_entity, &self.allowed_sans) {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ));
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

// ---------------------------------------------------------------------------------------
// Per-request policy: rate limit, basic auth, extra headers.

struct RequestPolicy {
    /// The web config file, re-read when it changes (`None`: a config made from text).
    reload: Option<Mutex<ReloadState>>,
    rules: std::sync::RwLock<Arc<PolicyRules>>,
}

struct ReloadState {
    path: PathBuf,
    stamp: Option<FileStamp>,
}

/// What identifies a version of a file without reading it: an editor that writes a new
/// file and renames it over the old one changes the inode, one that rewrites in place
/// changes the modification time or the size.
type FileStamp = (u64, u64, SystemTime, u64);

fn file_stamp(path: &Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.dev(), m.ino(), m.modified().ok()?, m.len()))
}

/// The parts of the web config applied per request, all re-read from the file on change.
struct PolicyRules {
    auth: Option<Arc<BasicAuth>>,
    headers: Vec<(HeaderName, HeaderValue)>,
    limiter: Option<Arc<RateLimiter>>,
}

impl PolicyRules {
    /// `previous` keeps the rate limiter's bucket when its settings did not change.
    fn build(
        headers: Option<BTreeMap<String, String>>,
        users: Option<BTreeMap<String, String>>,
        rate_limit: Option<RateLimitConfig>,
        previous: Option<&PolicyRules>,
    ) -> Result<Self, ConfigError> {
        let headers = build_headers(headers.unwrap_or_default())?;
        let auth = match users {
            Some(users) if !users.is_empty() => Some(Arc::new(BasicAuth::new(users)?)),
            _ => None,
        };
        let limiter = build_rate_limiter(rate_limit.unwrap_or_default())?;
        let limiter = match (limiter, previous.and_then(|p| p.limiter.clone())) {
            (Some(new), Some(old)) if (new.interval, new.burst) == (old.interval, old.burst) => {
                Some(old)
            }
            (new, _) => new.map(Arc::new),
        };
        Ok(Self {
            auth,
            headers,
            limiter,
        })
    }

    fn is_empty(&self) -> bool {
        self.auth.is_none() && self.headers.is_empty() && self.limiter.is_none()
    }
}

impl RequestPolicy {
    fn current(&self) -> Arc<PolicyRules> {
        self.rules.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The rules for this request: re-read from the file first when it changed on disk
    /// (one `stat` per request; exporter-toolkit reads the file for every request). A
    /// file that no longer parses keeps the previous rules and is logged once per change,
    /// so a half-written edit never opens or closes the door by accident. TLS settings
    /// other than the certificate and key files are read at startup only.
    fn rules_for_request(&self) -> Arc<PolicyRules> {
        let Some(reload) = &self.reload else {
            return self.current();
        };
        let mut state = reload.lock().unwrap_or_else(|e| e.into_inner());
        let stamp = file_stamp(&state.path);
        if stamp == state.stamp {
            drop(state);
            return self.current();
        }
        state.stamp = stamp;
        let origin = state.path.display().to_string();
        let parsed = std::fs::read_to_string(&state.path)
            .map_err(|e| ConfigError::new(&origin, format!("cannot read web config file: {e}")))
            .and_then(|text| parse_yaml(&text, &origin))
            .and_then(from_value::<WebConfigFile>)
            .and_then(|file| {
                PolicyRules::build(
                    file.http_server_config.and_then(|h| h.headers),
                    file.basic_auth_users,
                    file.rate_limit,
                    Some(&self.current()),
                )
            });
        match parsed {
            Ok(rules) => {
                tracing::info!(
                    path = %origin,
                    basic_auth = rules.auth.is_some(),
                    "web config file changed; basic auth users, headers and rate limit reloaded"
                );
                let rules = Arc::new(rules);
                *self.rules.write().unwrap_or_else(|e| e.into_inner()) = rules.clone();
                rules
            }
            Err(e) => {
                tracing::warn!(error = %e, "web config file changed but is not valid; keeping the previous basic auth users, headers and rate limit");
                drop(state);
                self.current()
            }
        }
    }
}

async fn enforce_policy(
    State(policy): State<Arc<RequestPolicy>>,
    req: Request,
    next: Next,
) -> Response {
    let rules = policy.rules_for_request();
    let mut response = if rules.limiter.as_ref().is_some_and(|l| !l.allow()) {
        (StatusCode::TOO_MANY_REQUESTS, "Too Many Requests\n").into_response()
    } else {
        match &rules.auth {
            Some(auth) if !auth.check(req.headers().get(AUTHORIZATION)).await => unauthorized(),
            _ => next.run(req).await,
        }
    };
    for (name, value) in &rules.headers {
        add_configured_header(response.headers_mut(), name, value);
    }
    response
}

/// Adds a configured header to a response. A page that sets its own
/// Content-Security-Policy (the ping status board allows its inline script by hash)
/// keeps it: the configured policy only adds the directives the page's policy does not
/// name, so an operator's `frame-ancestors` or `report-uri` still applies, but a
/// `default-src 'self'` cannot block the page's own script. Other headers replace the
/// response's.
fn add_configured_header(
    headers: &mut axum::http::HeaderMap,
    name: &HeaderName,
    value: &HeaderValue,
) {
    if name == axum::http::header::CONTENT_SECURITY_POLICY {
        if let Some(own) = headers.get(name).and_then(|v| v.to_str().ok()) {
            let merged = merge_csp(own, value.to_str().unwrap_or(""));
            if let Ok(merged) = HeaderValue::from_str(&merged) {
                headers.insert(name.clone(), merged);
            }
            return;
        }
    }
    headers.insert(name.clone(), value.clone());
}

/// `own` with every directive of `extra` whose name `own` does not have appended.
/// Directive names are case-insensitive (CSP level 3, section 2.2).
fn merge_csp(own: &str, extra: &str) -> String {
    let name_of = |d: &str| {
        d.split_ascii_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_lowercase()
    };
    let own_names: HashSet<String> = own.split(';').map(name_of).collect();
    let mut out = own.trim().trim_end_matches(';').to_string();
    for directive in extra.split(';').map(str::trim) {
        let name = name_of(directive);
        if name.is_empty() || own_names.contains(&name) {
            continue;
        }
        out.push_str("; ");
        out.push_str(directive);
    }
    out
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(WWW_AUTHENTICATE, HeaderValue::from_static("Basic"))],
        "Unauthorized\n",
    )
        .into_response()
}

/// Successful checks remembered; a few Prometheus servers scraping with one or two
/// credentials need far fewer, and clearing when full keeps memory bounded.
const MAX_CACHED_CHECKS: usize = 1024;

/// Users and their bcrypt hashes, checked off the async threads.
pub struct BasicAuth {
    users: HashMap<String, String>,
    /// Checked for unknown users, so that a wrong user name costs as much as a wrong
    /// password and response times do not reveal which users exist. Made at the first
    /// unknown user, off the async threads, so startup and `--check-config` pay nothing.
    dummy_hash: std::sync::OnceLock<String>,
    /// The cost of the dearest user's hash, which the dummy hash matches.
    max_cost: u32,
    /// SHA-256 of (user, password, hash) of successful checks: a scrape every few
    /// seconds must not cost a bcrypt each time, and the password itself is never kept.
    verified: Mutex<HashSet<[u8; 32]>>,
    /// One bcrypt at a time, as exporter-toolkit: a flood of bad credentials can queue
    /// up but never take every core from the exporter's own work.
    bcrypt_slot: tokio::sync::Semaphore,
}

impl fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut users: Vec<&String> = self.users.keys().collect();
        users.sort();
        f.debug_struct("BasicAuth")
            .field("users", &users)
            .finish_non_exhaustive()
    }
}

impl BasicAuth {
    /// Checks every hash is bcrypt (`$2a$`, `$2b$`, `$2y$`, as `htpasswd -B` writes).
    pub fn new(users: BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let mut max_cost = 4;
        for (user, hash) in &users {
            let field = format!("basic_auth_users.{user}");
            let cost = bcrypt_cost(hash).map_err(|m| ConfigError::new(field, m))?;
            max_cost = max_cost.max(cost);
        }
        Ok(Self {
            users: users.into_iter().collect(),
            dummy_hash: std::sync::OnceLock::new(),
            max_cost,
            verified: Mutex::new(HashSet::new()),
            bcrypt_slot: tokio::sync::Semaphore::new(1),
        })
    }

    /// Whether an `Authorization` header carries valid credentials. Never panics: a
    /// missing, malformed or non-Basic header is simply not valid.
    pub async fn check(&self, authorization: Option<&HeaderValue>) -> bool {
        let Some((user, password)) = authorization.and_then(parse_basic_credentials) else {
            return false;
        };
        let known = std::str::from_utf8(&user)
            .ok()
            .and_then(|u| self.users.get(u));
        let hash = known.cloned();
        let key = cache_key(&user, &password, hash.as_deref().unwrap_or(""));
        if known.is_some()
            && self
                .verified
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&key)
        {
            return true;
        }
        let Ok(_slot) = self.bcrypt_slot.acquire().await else {
            return false;
        };
        let matches = match hash {
            Some(hash) => tokio::task::spawn_blocking(move || {
                bcrypt::verify(&password, &hash).unwrap_or(false)
            })
            .await
            .unwrap_or(false),
            None => {
                let max_cost = self.max_cost;
                let dummy = self.dummy_hash.get().cloned();
                let made = tokio::task::spawn_blocking(move || {
                    // Same cost as the most expensive real hash, so unknown users are not
                    // faster. The password behind it does not matter: a match for an
                    // unknown user is refused anyway.
                    let dummy =
                        dummy.or_else(|| bcrypt::hash("vigia: no such user", max_cost).ok())?;
                    let _ = bcrypt::verify(&password, &dummy);
                    Some(dummy)
                })
                .await
                .ok()
                .flatten();
                if let Some(dummy) = made {
                    let _ = self.dummy_hash.set(dummy);
                }
                false
            }
        };
        if !(matches && known.is_some()) {
            return false;
        }
        let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if verified.len() >= MAX_CACHED_CHECKS {
            verified.clear();
        }
        verified.insert(key);
        true
    }
}

/// bcrypt's own floor (Go's `bcrypt.MinCost`).
const MIN_BCRYPT_COST: u32 = 4;
/// The dearest hash accepted. exporter-toolkit takes anything up to Go's `bcrypt.MaxCost`
/// (31), but each step doubles a check's CPU time: on a 2-core server, cost 10 takes
/// 0.1 s, 14 takes 1.2 s, 17 about 10 s (a Prometheus scrape timeout's worth) and 31
/// would take days. htpasswd, which makes these hashes, stops at 17 as well.
const MAX_BCRYPT_COST: u32 = 17;

/// The cost of a bcrypt hash, or why it is not one.
fn bcrypt_cost(hash: &str) -> Result<u32, String> {
    let prefix_ok = ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p));
    if !prefix_ok {
        // Name the scheme when it is a known one, but never echo the value: it may be a
        // plain password pasted by mistake, and this message goes to the logs.
        let known = [
            ("$apr1$", "this is an Apache MD5 hash, from htpasswd -m"),
            ("{SHA}", "this is a SHA-1 hash, from htpasswd -s"),
            ("$1$", "this is an MD5-crypt hash"),
            ("$5$", "this is a SHA-256-crypt hash"),
            ("$6$", "this is a SHA-512-crypt hash"),
            ("$argon2", "this is an Argon2 hash"),
        ];
        let what = known
            .iter()
            .find(|(prefix, _)| hash.starts_with(prefix))
            .map_or("value not shown: it may be a plain password", |(_, w)| w);
        return Err(format!(
            "not a bcrypt hash ({what}); create one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`"
        ));
    }
    let parts: bcrypt::HashParts = hash
        .parse()
        .map_err(|e| format!("malformed bcrypt hash: {e}"))?;
    let cost = parts.get_cost();
    if cost < MIN_BCRYPT_COST {
        return Err(format!(
            "bcrypt cost {cost} is below {MIN_BCRYPT_COST}, the least bcrypt defines"
        ));
    }
    if cost > MAX_BCRYPT_COST {
        return Err(format!(
            "bcrypt cost {cost} is above {MAX_BCRYPT_COST}: every step doubles the CPU time of \
             one check, cost {MAX_BCRYPT_COST} already takes seconds and cost 31 would take days \
             per login (htpasswd -B accepts 4 to 17 too); make the hash again with \
             `htpasswd -nBC 10 \"\" | tr -d ':\\n'`"
        ));
    }
    Ok(cost)
}

/// Splits `Basic base64(user:password)` into raw bytes; `None` for anything else.
fn parse_basic_credentials(header: &HeaderValue) -> Option<(Vec<u8>, Vec<u8>)> {
    let raw = header.as_bytes();
    let space = raw.iter().position(|b| *b == b' ')?;
    let (scheme, rest) = raw.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return None;
    }
    let encoded = rest.trim_ascii();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let colon = decoded.iter().position(|b| *b == b':')?;
    let password = decoded[colon + 1..].to_vec();
    let mut user = decoded;
    user.truncate(colon);
    Some((user, password))
}

fn cache_key(user: &[u8], password: &[u8], hash: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    // Length prefixes keep ("ab", "c") and ("a", "bc") apart.
    for part in [user, password, hash.as_bytes()] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.finalize().into()
}

/// A token bucket: `burst` requests at once, then one per `interval` (exporter-toolkit's
/// `rate_limit`, answered with 429).
struct RateLimiter {
    interval: Duration,
    burst: u32,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    fn new(interval: Duration, burst: u32) -> Self {
        Self {
            interval,
            burst,
            state: Mutex::new((f64::from(burst), Instant::now())),
        }
    }

    fn allow(&self) -> bool {
        self.allow_at(Instant::now())
    }

    fn allow_at(&self, now: Instant) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let elapsed = now.saturating_duration_since(state.1);
        let refill = elapsed.as_secs_f64() / self.interval.as_secs_f64();
        state.0 = (state.0 + refill).min(f64::from(self.burst));
        state.1 = state.1.max(now);
        if state.0 >= 1.0 {
            state.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(yaml: &str) -> Result<WebConfig, ConfigError> {
        WebConfig::from_yaml(yaml, "web.yml", Path::new("."))
    }

    fn basic(user: &str, password: &str) -> HeaderValue {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        HeaderValue::from_str(&format!("Basic {token}")).unwrap()
    }

    fn users(pairs: &[(&str, &str)]) -> BasicAuth {
        BasicAuth::new(
            pairs
                .iter()
                .map(|(u, p)| (u.to_string(), bcrypt::hash(p, 4).unwrap()))
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn empty_file_means_no_tls_no_auth() {
        for text in [
            "",
            "\n",
            "# nothing\n",
            "tls_server_config:\nbasic_auth_users:\n",
        ] {
            let c = cfg(text).unwrap();
            assert!(!c.is_tls() && !c.has_basic_auth() && c.http2(), "{text:?}");
        }
    }

    #[test]
    fn errors_name_the_field() {
        let e = cfg("tls_server_config:\n  cert_flie: x\n").unwrap_err();
        assert_eq!(e.path, "tls_server_config.cert_flie");
        assert!(e.message.contains("cert_flie"), "{e}");
        let e = cfg("tls_server_config:\n  min_version: TLS10\n").unwrap_err();
        assert_eq!(e.path, "tls_server_config.min_version");
        assert!(e.message.contains("rustls"), "{e}");
        let e = cfg("tls_server_config:\n  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA]\n")
            .unwrap_err();
        assert_eq!(e.path, "tls_server_config.cipher_suites[0]");
        let e = cfg("tls_server_config:\n  curve_preferences: [X25519, CurveP521]\n").unwrap_err();
        assert_eq!(e.path, "tls_server_config.curve_preferences[1]");
        let e = cfg("tls_server_config:\n  client_auth_type: Sometimes\n").unwrap_err();
        assert_eq!(e.path, "tls_server_config.client_auth_type");
        let e = cfg("tls_server_config:\n  key_file: k.pem\n").unwrap_err();
        assert_eq!(e.path, "tls_server_config.cert_file");
        let e =
            cfg("basic_auth_users:\n  alice: '{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g='\n").unwrap_err();
        assert_eq!(e.path, "basic_auth_users.alice");
        assert!(e.message.contains("not a bcrypt hash"), "{e}");
        assert!(e.message.contains("SHA-1"), "{e}");
        let e = cfg("basic_auth_users:\n  alice: hunter2\n").unwrap_err();
        assert_eq!(e.path, "basic_auth_users.alice");
        assert!(!e.to_string().contains("hunt"), "the password leaked: {e}");
        let e = cfg("http_server_config:\n  headers:\n    Server: vigia\n").unwrap_err();
        assert_eq!(e.path, "http_server_config.headers.Server");
        let e = cfg("http_server_config:\n  headers:\n    X-Frame-Options: allow\n").unwrap_err();
        assert_eq!(e.path, "http_server_config.headers.X-Frame-Options");
        let e = cfg("rate_limit:\n  interval: 1s\n").unwrap_err();
        assert_eq!(e.path, "rate_limit.burst");
        let e = cfg("bogus: 1\n").unwrap_err();
        assert!(e.message.contains("bogus"), "{e}");
    }

    #[test]
    fn cipher_suites_restrict_per_version() {
        let named = |names: &[&str]| -> Vec<CipherSuiteName> {
            names
                .iter()
                .map(|n| from_value(serde_json::Value::String(n.to_string())).unwrap())
                .collect()
        };
        let defaults = rustls::crypto::ring::default_provider().cipher_suites;
        let only12 = restrict_cipher_suites(
            &defaults,
            &named(&["TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"]),
        );
        let tls13 = defaults
            .iter()
            .filter(|s| matches!(s, SupportedCipherSuite::Tls13(_)))
            .count();
        assert_eq!(only12.len(), tls13 + 1);
        assert!(only12
            .iter()
            .any(|s| s.suite() == rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384));
        let only13 = restrict_cipher_suites(&defaults, &named(&["TLS_AES_256_GCM_SHA384"]));
        assert_eq!(
            only13
                .iter()
                .filter(|s| matches!(s, SupportedCipherSuite::Tls13(_)))
                .count(),
            1
        );
    }

    #[tokio::test]
    async fn basic_auth_accepts_only_the_right_password() {
        let auth = users(&[("alice", "s3cret:with colon"), ("bob", "hunter2")]);
        assert!(auth.check(Some(&basic("alice", "s3cret:with colon"))).await);
        // The second time comes from the cache, and still only for the right password.
        assert!(auth.check(Some(&basic("alice", "s3cret:with colon"))).await);
        assert!(!auth.check(Some(&basic("alice", "s3cret"))).await);
        assert!(!auth.check(Some(&basic("bob", "s3cret:with colon"))).await);
        assert!(!auth.check(Some(&basic("mallory", "hunter2"))).await);
        assert!(!auth.check(None).await);
        assert!(auth.check(Some(&basic("bob", "hunter2"))).await);
        let lower = HeaderValue::from_str(
            &basic("bob", "hunter2")
                .to_str()
                .unwrap()
                .replace("Basic", "basic"),
        )
        .unwrap();
        assert!(auth.check(Some(&lower)).await);
    }

    #[tokio::test]
    async fn only_successes_are_cached_and_never_as_the_password() {
        let auth = users(&[("alice", "pw")]);
        let cached = || auth.verified.lock().unwrap().clone();
        assert!(!auth.check(Some(&basic("alice", "wrong"))).await);
        assert!(!auth.check(Some(&basic("mallory", "pw"))).await);
        assert!(cached().is_empty());
        assert!(auth.check(Some(&basic("alice", "pw"))).await);
        let alice_hash = auth.users["alice"].clone();
        assert_eq!(
            cached(),
            HashSet::from([cache_key(b"alice", b"pw", &alice_hash)])
        );
    }

    #[tokio::test]
    async fn dummy_hash_costs_as_much_as_the_dearest_user() {
        let auth = BasicAuth::new(BTreeMap::from([
            ("cheap".to_string(), bcrypt::hash("a", 4).unwrap()),
            ("dear".to_string(), bcrypt::hash("b", 6).unwrap()),
        ]))
        .unwrap();
        // Made at the first unknown user, not before.
        assert!(auth.dummy_hash.get().is_none());
        assert!(!auth.check(Some(&basic("nobody", "a"))).await);
        assert_eq!(bcrypt_cost(auth.dummy_hash.get().unwrap()), Ok(6));
    }

    #[test]
    fn bcrypt_cost_is_capped_and_the_error_says_why() {
        // A cost-31 hash: the salt and digest need not be real to be parsed, and it is
        // never checked (that would take days).
        let dear = "$2y$31$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG";
        let e = cfg(&format!("basic_auth_users:\n  alice: '{dear}'\n")).unwrap_err();
        assert_eq!(e.path, "basic_auth_users.alice");
        assert!(e.message.contains("cost 31 is above 17"), "{e}");
        assert!(e.message.contains("doubles"), "{e}");
        let at_cap = dear.replace("$31$", "$17$");
        assert!(cfg(&format!("basic_auth_users:\n  alice: '{at_cap}'\n")).is_ok());
        let cheap = dear.replace("$31$", "$03$");
        let e = cfg(&format!("basic_auth_users:\n  alice: '{cheap}'\n")).unwrap_err();
        assert!(e.message.contains("below 4"), "{e}");
    }

    #[test]
    fn csp_merge_keeps_the_pages_own_directives() {
        let own = "default-src 'none'; script-src 'sha256-x'; frame-ancestors 'none'";
        assert_eq!(
            merge_csp(
                own,
                "default-src 'self'; Frame-Ancestors 'self'; report-uri /r;"
            ),
            "default-src 'none'; script-src 'sha256-x'; frame-ancestors 'none'; report-uri /r"
        );
        assert_eq!(merge_csp(own, ""), own);
    }

    #[tokio::test]
    async fn unknown_user_cannot_match_the_dummy_hash() {
        // Whatever password, the dummy hash is never a way in.
        let auth = users(&[("alice", "pw")]);
        assert!(!auth.check(Some(&basic("", ""))).await);
        assert!(!auth.check(Some(&basic("nobody", "pw"))).await);
    }

    #[tokio::test]
    async fn garbage_authorization_headers_are_refused_without_panic() {
        let auth = users(&[("alice", "pw")]);
        let fixed: &[&[u8]] = &[
            b"",
            b"Basic",
            b"Basic ",
            b"Basic !!!!",
            b"Basic YWxpY2U=",
            b"Basic Og==",
            b"Basic YWxpY2U6cHc",
            b"Bearer YWxpY2U6cHc=",
            b"BasicYWxpY2U6cHc=",
            b"Basic \xff\xfe",
            b"Basic //79/w==",
            b"Digest username=\"alice\"",
        ];
        for raw in fixed {
            let value = HeaderValue::from_bytes(raw).unwrap();
            assert!(!auth.check(Some(&value)).await, "{raw:?}");
        }
        // Pseudo-random bytes and base64 of pseudo-random bytes, deterministic per run.
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut tried = 0;
        for _ in 0..400 {
            let len = (next() % 48) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let candidates = [
                bytes.clone(),
                [b"Basic ".as_slice(), &bytes].concat(),
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(&bytes)
                )
                .into_bytes(),
            ];
            for raw in candidates {
                if let Ok(value) = HeaderValue::from_bytes(&raw) {
                    tried += 1;
                    assert!(!auth.check(Some(&value)).await, "{raw:?}");
                }
            }
        }
        assert!(tried > 400, "only {tried} headers were valid header values");
        assert!(auth.check(Some(&basic("alice", "pw"))).await);
    }

    #[test]
    fn cache_keys_separate_fields() {
        assert_ne!(cache_key(b"ab", b"c", "h"), cache_key(b"a", b"bc", "h"));
        assert_ne!(cache_key(b"a", b"b", "h1"), cache_key(b"a", b"b", "h2"));
    }

    #[test]
    fn rate_limiter_allows_a_burst_then_refills() {
        let limiter = RateLimiter::new(Duration::from_millis(200), 2);
        let t0 = limiter.state.lock().unwrap().1;
        assert!(limiter.allow_at(t0));
        assert!(limiter.allow_at(t0));
        assert!(!limiter.allow_at(t0 + Duration::from_millis(100)));
        assert!(limiter.allow_at(t0 + Duration::from_millis(250)));
        assert!(!limiter.allow_at(t0 + Duration::from_millis(260)));
        // Idle for long: back to a full burst, never more.
        let later = t0 + Duration::from_secs(60);
        assert!(limiter.allow_at(later));
        assert!(limiter.allow_at(later));
        assert!(!limiter.allow_at(later));
    }

    #[test]
    fn allowed_sans_refuse_email() {
        assert!(matches!(
            AllowedSan::parse("127.0.0.1"),
            Ok(AllowedSan::Ip(_))
        ));
        assert!(matches!(
            AllowedSan::parse("spiffe://vigia/scraper"),
            Ok(AllowedSan::Name(_))
        ));
        assert!(AllowedSan::parse("noc@vigia.test")
            .unwrap_err()
            .contains("e-mail"));
    }
}
