//! TLS for tcp and http probes: a rustls client per target whose verifier records the
//! certificates the server presented before it judges them, so the expiry of the leaf
//! and of the earliest certificate in the chain is known also when verification fails
//! (an expired certificate shows its expiry, in the past, not nothing). Every handshake
//! is a full one (no session resumption): a resumed TLS 1.3 session shows no certificate,
//! and a renewed certificate must be seen at the next probe.

use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::probe_config::TlsSpec;
use crate::services::{Failure, Phase, Reason, TlsFacts, Trace};

static PROVIDER: LazyLock<Arc<CryptoProvider>> =
    LazyLock::new(|| Arc::new(rustls::crypto::ring::default_provider()));

/// The system's CA bundle (`SSL_CERT_FILE` / `SSL_CERT_DIR` or the distribution's
/// default), read once and shared by every target without a `tls_ca_file`.
static SYSTEM_ROOTS: LazyLock<Arc<RootCertStore>> = LazyLock::new(|| {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::warn!(error = %e, "cannot read part of the system's CA certificates");
    }
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        tracing::warn!("no system CA certificates found: https targets without tls_ca_file will fail verification (install ca-certificates)");
    }
    tracing::debug!(added, ignored, "system CA certificates loaded");
    Arc::new(roots)
});

/// The verifier over the system's roots, shared (it holds nothing per connection).
static SYSTEM_VERIFIER: LazyLock<Result<Arc<WebPkiServerVerifier>, String>> =
    LazyLock::new(|| verifier_for(SYSTEM_ROOTS.clone()));

fn verifier_for(roots: Arc<RootCertStore>) -> Result<Arc<WebPkiServerVerifier>, String> {
    WebPkiServerVerifier::builder_with_provider(roots, PROVIDER.clone())
        .build()
        .map_err(|e| format!("no usable CA certificate ({e})"))
}

/// A TLS client for one target.
pub struct TlsClient {
    connector: TlsConnector,
    recorder: Arc<CertRecorder>,
    server_name: Option<ServerName<'static>>,
}

impl TlsClient {
    /// `alpn`: protocols offered (`http/1.1` for http probes, none for tcp).
    pub fn new(spec: &TlsSpec, alpn: &[&[u8]]) -> Self {
        let inner: Arc<dyn ServerCertVerifier> = if spec.insecure_skip_verify {
            Arc::new(AcceptAny)
        } else {
            let built = match &spec.ca {
                Some(certs) => {
                    let mut roots = RootCertStore::empty();
                    roots.add_parsable_certificates(certs.iter().cloned());
                    verifier_for(Arc::new(roots))
                }
                None => SYSTEM_VERIFIER.clone(),
            };
            match built {
                Ok(v) => v,
                Err(why) => Arc::new(RejectAll(why)),
            }
        };
        let recorder = Arc::new(CertRecorder {
            inner,
            seen: Mutex::new(None),
        });
        let builder = ClientConfig::builder_with_provider(PROVIDER.clone())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions");
        let mut config = builder
            .dangerous()
            .with_custom_certificate_verifier(recorder.clone())
            .with_no_client_auth();
        config.resumption = Resumption::disabled();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Self {
            connector: TlsConnector::from(Arc::new(config)),
            recorder,
            // Validated at load.
            server_name: spec
                .server_name
                .as_deref()
                .and_then(|n| ServerName::try_from(n.to_string()).ok()),
        }
    }

    /// The handshake over `tcp`, timed as the `tls` phase; what the server presented
    /// goes to `trace.tls` whether or not it was accepted. `host` is the name verified
    /// (and sent as SNI) unless `tls_server_name` says another.
    pub async fn handshake(
        &self,
        tcp: TcpStream,
        host: &str,
        trace: &mut Trace,
    ) -> Result<TlsStream<TcpStream>, Failure> {
        let name = match &self.server_name {
            Some(n) => n.clone(),
            None => {
                let bare = host.trim_start_matches('[').trim_end_matches(']');
                ServerName::try_from(bare.to_string()).map_err(|_| Failure {
                    reason: Reason::Tls,
                    message: format!("{host:?} cannot be verified as a TLS server name"),
                })?
            }
        };
        self.recorder.clear();
        let started = trace.start(Phase::Tls);
        let result = self.connector.connect(name, tcp).await;
        trace.end(Phase::Tls, started);
        let mut facts = self.recorder.take().unwrap_or_default();
        match result {
            Ok(stream) => {
                facts.version = stream.get_ref().1.protocol_version().map(version_name);
                trace.tls = Some(facts);
                Ok(stream)
            }
            Err(e) => {
                if facts.leaf_expiry.is_some() {
                    trace.tls = Some(facts);
                }
                Err(Failure {
                    reason: Reason::Tls,
                    message: format!("TLS handshake: {e}"),
                })
            }
        }
    }
}

fn version_name(v: rustls::ProtocolVersion) -> &'static str {
    match v {
        rustls::ProtocolVersion::TLSv1_0 => "TLS 1.0",
        rustls::ProtocolVersion::TLSv1_1 => "TLS 1.1",
        rustls::ProtocolVersion::TLSv1_2 => "TLS 1.2",
        rustls::ProtocolVersion::TLSv1_3 => "TLS 1.3",
        _ => "unknown",
    }
}

/// Notes the expiry of the certificates presented, then lets `inner` judge them.
#[derive(Debug)]
struct CertRecorder {
    inner: Arc<dyn ServerCertVerifier>,
    seen: Mutex<Option<TlsFacts>>,
}

impl CertRecorder {
    fn clear(&self) {
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn take(&self) -> Option<TlsFacts> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

impl ServerCertVerifier for CertRecorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let leaf = not_after(end_entity);
        let earliest = std::iter::once(leaf)
            .chain(intermediates.iter().map(|c| not_after(c)))
            .flatten()
            .min();
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(TlsFacts {
            version: None,
            leaf_expiry: leaf,
            earliest_expiry: earliest,
            chain_length: 1 + intermediates.len() as u32,
        });
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `tls_insecure_skip_verify`: any certificate is accepted, but the handshake's
/// signatures are still checked (the server holds the key of what it presented).
#[derive(Debug)]
struct AcceptAny;

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &PROVIDER.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &PROVIDER.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        PROVIDER
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// No CA certificate to verify with: every handshake fails, saying so.
#[derive(Debug)]
struct RejectAll(String);

impl ServerCertVerifier for RejectAll {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Err(rustls::Error::General(self.0.clone()))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        AcceptAny.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        AcceptAny.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        AcceptAny.supported_verify_schemes()
    }
}

/// The end of a certificate's validity (`notAfter`), as Unix seconds; `None` when the DER
/// is not the shape of an X.509 certificate. A small DER walk instead of an X.509 crate:
/// this is the only field read.
pub fn not_after(der: &[u8]) -> Option<i64> {
    // Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL,
    //   serialNumber INTEGER, signature SEQUENCE, issuer SEQUENCE,
    //   validity SEQUENCE { notBefore Time, notAfter Time }, ... } ... }
    let (cert, _) = der_item(der, 0x30)?;
    let (mut tbs, _) = der_item(cert, 0x30)?;
    if tbs.first() == Some(&0xa0) {
        tbs = der_item(tbs, 0xa0)?.1;
    }
    let (_, rest) = der_item(tbs, 0x02)?;
    let (_, rest) = der_item(rest, 0x30)?;
    let (_, rest) = der_item(rest, 0x30)?;
    let (validity, _) = der_item(rest, 0x30)?;
    let (_, rest) = der_any_time(validity)?;
    let (tag, value) = (rest.first().copied()?, der_any_time(rest)?.0);
    parse_time(tag, value)
}

/// The value of the DER item at the start of `data` if its tag is `tag`, and what follows.
fn der_item(data: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    if *data.first()? != tag {
        return None;
    }
    let first = *data.get(1)? as usize;
    let (len, header) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *data.get(2 + i)? as usize;
        }
        (len, 2 + n)
    };
    let end = header.checked_add(len)?;
    Some((data.get(header..end)?, data.get(end..)?))
}

fn der_any_time(data: &[u8]) -> Option<(&[u8], &[u8])> {
    match data.first()? {
        0x17 => der_item(data, 0x17),
        0x18 => der_item(data, 0x18),
        _ => None,
    }
}

/// UTCTime `YYMMDDHHMMSSZ` (years 1950..2049) or GeneralizedTime `YYYYMMDDHHMMSSZ`.
fn parse_time(tag: u8, value: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(value).ok()?;
    let digits = text.strip_suffix('Z')?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let num = |s: &str| s.parse::<i64>().ok();
    let (year, rest) = match (tag, digits.len()) {
        (0x17, 12) => {
            let yy = num(&digits[..2])?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &digits[2..])
        }
        (0x18, 14) => (num(&digits[..4])?, &digits[4..]),
        _ => return None,
    };
    let (month, day) = (num(&rest[..2])?, num(&rest[2..4])?);
    let (h, m, s) = (num(&rest[4..6])?, num(&rest[6..8])?, num(&rest[8..10])?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + s)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Seconds until `expiry` (negative once expired), for log lines and the board.
pub fn seconds_left(expiry: i64) -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs() as i64;
    expiry - now
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2038, 1, 19), 24_855);
    }

    #[test]
    fn times_of_both_encodings() {
        assert_eq!(parse_time(0x17, b"700101000000Z"), Some(0));
        assert_eq!(parse_time(0x17, b"491231235959Z"), Some(2_524_607_999));
        assert_eq!(parse_time(0x18, b"20380119031408Z"), Some(2_147_483_648));
        assert_eq!(parse_time(0x17, b"7001010000Z"), None);
        assert_eq!(parse_time(0x17, b"701301000000Z"), None);
        assert_eq!(parse_time(0x18, b"2038011903140+Z"), None);
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert_eq!(not_after(&[]), None);
        assert_eq!(not_after(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(not_after(&[0x30, 0x03, 0x30, 0x01, 0x02]), None);
        // Every prefix of a truncated structure is refused, never a panic.
        let mut v = vec![0x30, 0x20, 0x30, 0x1e, 0xa0, 0x03, 0x02, 0x01, 0x02];
        v.extend_from_slice(&[0x02, 0x01, 0x01, 0x30, 0x00, 0x30, 0x00]);
        for i in 0..v.len() {
            assert_eq!(not_after(&v[..i]), None);
        }
    }
}
