//! dns probes: one query to the target's server over UDP (or TCP), the answer judged by
//! its rcode and its records. The message is encoded and decoded by hickory-proto; the
//! socket is ours, so the time of the exchange is the `request` phase and nothing else.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hickory_proto::op::{Message, Query};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;

use crate::probe_config::{rcode_name, DnsSpec, DnsTransport};
use crate::services::{self, io_words, DnsFacts, Failure, Phase, Reason, Trace};

/// Answers kept as text for the board and the failure message.
const ANSWERS_SHOWN: usize = 8;

/// Largest UDP answer read (EDNS is not offered, so servers keep to 512 bytes; this
/// leaves room for those that do not).
const UDP_BUFFER: usize = 4096;

pub async fn probe(spec: &DnsSpec, ip: IpAddr, trace: &mut Trace) -> Result<(), Failure> {
    let server = SocketAddr::new(ip, spec.port);
    // A random id (hickory's): an answer is matched by it and by the socket.
    let mut query = Message::query();
    let id = query.metadata.id;
    query.metadata.recursion_desired = spec.recursion_desired;
    query.add_query(Query::query(spec.query_name.clone(), spec.query_type));
    let wire = query.to_vec().map_err(|e| Failure {
        reason: Reason::Io,
        message: format!("cannot encode the query: {e}"),
    })?;
    let answer = match spec.transport {
        DnsTransport::Udp => udp_exchange(server, id, &wire, trace).await?,
        DnsTransport::Tcp => tcp_exchange(server, &wire, trace).await?,
    };
    let message = Message::from_vec(&answer).map_err(|e| Failure {
        reason: Reason::Protocol,
        message: format!("the answer is not a DNS message: {e}"),
    })?;
    let rcode = u16::from(message.metadata.response_code);
    let answers: Vec<String> = message.answers.iter().map(|r| r.data.to_string()).collect();
    trace.dns = Some(DnsFacts {
        rcode,
        answer_rrs: message.answers.len() as u32,
        authority_rrs: message.authorities.len() as u32,
        additional_rrs: message.additionals.len() as u32,
        answers: answers.iter().take(ANSWERS_SHOWN).cloned().collect(),
    });
    if !spec.expect_rcode.contains(&rcode) {
        let wanted: Vec<String> = spec.expect_rcode.iter().map(|c| rcode_name(*c)).collect();
        return Err(Failure {
            reason: Reason::Rcode,
            message: format!(
                "rcode {} is not one of {}",
                rcode_name(rcode),
                wanted.join(",")
            ),
        });
    }
    if let Some(p) = &spec.expect_answer {
        if !answers.iter().any(|a| p.is_match(a.as_bytes())) {
            return Err(Failure {
                reason: Reason::Answer,
                message: format!("no answer matches /{}/{}", p.as_str(), listed(&answers)),
            });
        }
    }
    if let Some(p) = &spec.fail_if_answer {
        if let Some(a) = answers.iter().find(|a| p.is_match(a.as_bytes())) {
            return Err(Failure {
                reason: Reason::Answer,
                message: format!("answer {a} matches /{}/ (fail_if_answer)", p.as_str()),
            });
        }
    }
    Ok(())
}

fn listed(answers: &[String]) -> String {
    if answers.is_empty() {
        return ": no answer records".into();
    }
    let shown: Vec<&str> = answers
        .iter()
        .take(ANSWERS_SHOWN)
        .map(String::as_str)
        .collect();
    format!(": got {}", shown.join(", "))
}

async fn udp_exchange(
    server: SocketAddr,
    id: u16,
    wire: &[u8],
    trace: &mut Trace,
) -> Result<Vec<u8>, Failure> {
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let io = |what: &str, e: std::io::Error| Failure {
        // ICMP port unreachable: nothing listens there, as a refused TCP connection.
        reason: if e.kind() == std::io::ErrorKind::ConnectionRefused {
            Reason::Connect
        } else {
            Reason::Io
        },
        message: format!("{what} {server}: {}", io_words(&e)),
    };
    let socket = UdpSocket::bind(local)
        .await
        .map_err(|e| io("bind for", e))?;
    // A connected socket: only the server's datagrams arrive, and a port with nothing
    // behind it answers with ICMP unreachable, read here as "connection refused".
    socket
        .connect(server)
        .await
        .map_err(|e| io("connect to", e))?;
    let started = trace.start(Phase::Request);
    socket.send(wire).await.map_err(|e| io("send to", e))?;
    let mut buf = vec![0u8; UDP_BUFFER];
    loop {
        let n = match socket.recv(&mut buf).await {
            Ok(n) => n,
            Err(e) => {
                // The host's ICMP port unreachable is its answer: nothing listens there.
                trace.answered |= e.kind() == std::io::ErrorKind::ConnectionRefused;
                return Err(io("answer from", e));
            }
        };
        // Another query's late answer (the id differs) is not ours: keep waiting.
        if n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == id {
            trace.answered = true;
            trace.end(Phase::Request, started);
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

async fn tcp_exchange(
    server: SocketAddr,
    wire: &[u8],
    trace: &mut Trace,
) -> Result<Vec<u8>, Failure> {
    let mut stream = services::connect(server, trace).await?;
    let io = |e: std::io::Error| Failure {
        reason: Reason::Io,
        message: format!("DNS over TCP with {server}: {}", io_words(&e)),
    };
    let started = trace.start(Phase::Request);
    // RFC 1035 4.2.2: each message is preceded by its length in two bytes.
    let mut framed = Vec::with_capacity(wire.len() + 2);
    framed.extend_from_slice(&(wire.len() as u16).to_be_bytes());
    framed.extend_from_slice(wire);
    stream.write_all(&framed).await.map_err(io)?;
    let len = stream.read_u16().await.map_err(io)? as usize;
    let mut answer = vec![0u8; len];
    stream.read_exact(&mut answer).await.map_err(io)?;
    trace.end(Phase::Request, started);
    Ok(answer)
}
