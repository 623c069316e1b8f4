//! tcp probes: a connection to `host:port`, optionally TLS on it, optionally `send`
//! written and `expect` awaited (an SSH banner, an SMTP greeting, a RADIUS-over-TCP or
//! any line protocol's answer).

use std::net::{IpAddr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::probe_config::TcpSpec;
use crate::services::{self, io_words, Failure, Phase, Reason, Trace};
use crate::tls::TlsClient;

/// Most bytes read while waiting for `expect` to match: a banner or a greeting, not a
/// download.
const EXPECT_READ_LIMIT: usize = 64 * 1024;

pub async fn probe(
    spec: &TcpSpec,
    host: &str,
    ip: IpAddr,
    tls: Option<&TlsClient>,
    trace: &mut Trace,
) -> Result<(), Failure> {
    let stream = services::connect(SocketAddr::new(ip, spec.port), trace).await?;
    match tls {
        Some(client) => {
            let stream = client.handshake(stream, host, trace).await?;
            converse(stream, spec, trace).await
        }
        None => converse(stream, spec, trace).await,
    }
}

async fn converse<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    spec: &TcpSpec,
    trace: &mut Trace,
) -> Result<(), Failure> {
    if spec.send.is_none() && spec.expect.is_none() {
        return Ok(());
    }
    let started = trace.start(Phase::Expect);
    if let Some(data) = &spec.send {
        let sent = async {
            stream.write_all(data).await?;
            stream.flush().await
        };
        sent.await.map_err(|e| Failure {
            reason: Reason::Io,
            message: format!("send: {}", io_words(&e)),
        })?;
    }
    if let Some(pattern) = &spec.expect {
        let mut got = Vec::with_capacity(512);
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream.read(&mut chunk).await.map_err(|e| Failure {
                reason: Reason::Io,
                message: format!("read: {}", io_words(&e)),
            })?;
            if n == 0 {
                return Err(Failure {
                    reason: Reason::Expect,
                    message: format!(
                        "the server closed the connection after {} bytes without matching /{}/{}",
                        got.len(),
                        pattern.as_str(),
                        shown(&got)
                    ),
                });
            }
            got.extend_from_slice(&chunk[..n]);
            if pattern.is_match(&got) {
                trace.on_timeout = None;
                break;
            }
            trace.on_timeout = Some(Failure {
                reason: Reason::Expect,
                message: format!(
                    "no match for /{}/ before the timeout{}",
                    pattern.as_str(),
                    shown(&got)
                ),
            });
            if got.len() >= EXPECT_READ_LIMIT {
                return Err(Failure {
                    reason: Reason::Expect,
                    message: format!(
                        "{} bytes read without matching /{}/{}",
                        got.len(),
                        pattern.as_str(),
                        shown(&got)
                    ),
                });
            }
        }
    }
    trace.end(Phase::Expect, started);
    Ok(())
}

/// The start of what the server sent, printable, for the failure message.
fn shown(data: &[u8]) -> String {
    if data.is_empty() {
        return String::new();
    }
    let text: String = String::from_utf8_lossy(&data[..data.len().min(80)])
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    format!(": got {:?}", text.trim_end())
}
