//! ICMP echo through surge-ping: one socket per address family shared by every target,
//! and the rounds of echo requests each target sends.
//!
//! Replies are matched to requests by (address, identifier, sequence). The sequence
//! number comes from one counter per socket, so no two requests in flight share one,
//! even when two targets point at the same address, for up to 65,535 requests in flight
//! (1,000 targets at one request per second keep about 1,000 in flight).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, SystemTime};

use surge_ping::{Client, IcmpPacket, PingIdentifier, PingSequence, SurgeError, ICMP};
use tokio::time::Instant;

use crate::config::{SocketMode, TargetSpec};
use crate::status::RoundResult;

/// Socket receive buffer asked for, so a burst of replies from many targets is not
/// dropped by the kernel before the receive task reads it.
const RECEIVE_BUFFER_BYTES: libc::c_int = 4 * 1024 * 1024;

/// What kind of socket a family got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketKind {
    Raw,
    Datagram,
}

impl SocketKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SocketKind::Raw => "raw",
            SocketKind::Datagram => "datagram",
        }
    }
}

struct FamilySocket {
    client: Client,
    kind: SocketKind,
    next_seq: AtomicU16,
}

/// The ICMP sockets of the process.
pub struct Prober {
    v4: FamilySocket,
    /// `None` when the kernel has no IPv6; IPv6 targets then count send errors.
    v6: Option<FamilySocket>,
    /// The identifier of raw-socket requests; datagram sockets get theirs from the
    /// kernel, which also keeps other processes' replies away from them.
    ident: PingIdentifier,
}

/// The outcome of one echo request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Echo {
    Reply(Duration),
    Lost,
    SendError,
}

impl Prober {
    /// Opens the sockets. Must run inside the Tokio runtime (surge-ping spawns its
    /// receive task). The error says what is missing: CAP_NET_RAW, ping_group_range.
    pub fn open(mode: SocketMode) -> Result<Self, String> {
        let v4 = open_family(ICMP::V4, mode)?;
        let v6 = match open_family(ICMP::V6, mode) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "no IPv6 ICMP socket; IPv6 targets cannot be probed");
                None
            }
        };
        let seed = std::process::id()
            ^ SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
        Ok(Self {
            v4,
            v6,
            ident: PingIdentifier((seed ^ (seed >> 16)) as u16),
        })
    }

    pub fn kinds(&self) -> Vec<(&'static str, SocketKind)> {
        let mut v = vec![("ipv4", self.v4.kind)];
        if let Some(s) = &self.v6 {
            v.push(("ipv6", s.kind));
        }
        v
    }

    /// Sends one echo request and waits up to `timeout` for its reply.
    pub async fn echo(&self, ip: IpAddr, timeout: Duration, payload: &[u8]) -> Echo {
        let family = match ip {
            IpAddr::V4(_) => &self.v4,
            IpAddr::V6(_) => match &self.v6 {
                Some(s) => s,
                None => return Echo::SendError,
            },
        };
        let seq = PingSequence(family.next_seq.fetch_add(1, Ordering::Relaxed));
        let mut pinger = family.client.pinger(ip, self.ident).await;
        pinger.timeout(timeout);
        match pinger.ping(seq, payload).await {
            Ok((packet, rtt)) if is_echo_reply(&packet) => Echo::Reply(rtt),
            // An ICMP error about our request (unreachable, time exceeded): no reply.
            Ok(_) => Echo::Lost,
            Err(SurgeError::Timeout { .. }) => Echo::Lost,
            Err(SurgeError::IOError(e)) => {
                tracing::debug!(address = %ip, error = %e, "echo request not sent");
                Echo::SendError
            }
            Err(e) => {
                tracing::debug!(address = %ip, error = %e, "echo request failed");
                Echo::Lost
            }
        }
    }

    /// One round: `count` requests spaced `interval / count` apart from `start`. The
    /// timeout is at most the spacing (config validation), so requests never overlap and
    /// the round ends before the next one starts.
    pub async fn round(
        &self,
        spec: &TargetSpec,
        ip: IpAddr,
        start: Instant,
        started: SystemTime,
        payload: &[u8],
    ) -> RoundResult {
        let spacing = spec.spacing();
        let mut result = RoundResult::new(started, start.into_std());
        result.ip = Some(ip);
        result.rtts.reserve(spec.count as usize);
        for i in 0..spec.count {
            tokio::time::sleep_until(start + spacing * i).await;
            result.sent += 1;
            let sent_at = std::time::Instant::now();
            match self.echo(ip, spec.timeout, payload).await {
                Echo::Reply(rtt) => {
                    result.rtts.push(rtt);
                    result.first_answered.get_or_insert(sent_at);
                    result.last_answered = Some(sent_at);
                }
                Echo::Lost => {}
                Echo::SendError => result.send_errors += 1,
            }
        }
        result
    }
}

fn is_echo_reply(packet: &IcmpPacket) -> bool {
    match packet {
        IcmpPacket::V4(p) => p.get_icmp_type() == pnet_packet::icmp::IcmpTypes::EchoReply,
        IcmpPacket::V6(p) => p.get_icmpv6_type() == pnet_packet::icmpv6::Icmpv6Types::EchoReply,
    }
}

fn open_family(kind: ICMP, mode: SocketMode) -> Result<FamilySocket, String> {
    let family = match kind {
        ICMP::V4 => "IPv4",
        ICMP::V6 => "IPv6",
    };
    let attempt = |want: SocketKind| -> Result<Client, String> {
        let hint = match want {
            SocketKind::Raw => socket2::Type::RAW,
            SocketKind::Datagram => socket2::Type::DGRAM,
        };
        let config = surge_ping::Config::builder()
            .kind(kind)
            .sock_type_hint(hint)
            .build();
        let client = Client::new(&config).map_err(|e| e.to_string())?;
        // surge-ping falls back to the other socket type by itself; a forced mode (and
        // the error message) must know which one really opened.
        if client.get_socket().get_type() != hint {
            return Err(format!("the kernel refused a {} socket", want.as_str()));
        }
        set_receive_buffer(&client);
        Ok(client)
    };
    let raw_missing =
        || "a raw ICMP socket needs CAP_NET_RAW, which this process does not have".to_string();
    let dgram_missing = || {
        // SAFETY: getegid has no preconditions and cannot fail.
        let gid = unsafe { libc::getegid() };
        format!(
            "a datagram ICMP socket needs the process's group (gid {}) inside net.ipv4.ping_group_range, which is \"{}\"",
            gid,
            ping_group_range()
        )
    };
    let (client, got) = match mode {
        SocketMode::Raw => attempt(SocketKind::Raw)
            .map(|c| (c, SocketKind::Raw))
            .map_err(|e| format!("socket: raw: {} ({e})", raw_missing()))?,
        SocketMode::Datagram => attempt(SocketKind::Datagram)
            .map(|c| (c, SocketKind::Datagram))
            .map_err(|e| format!("socket: datagram: {} ({e})", dgram_missing()))?,
        SocketMode::Auto => match attempt(SocketKind::Raw) {
            Ok(c) => (c, SocketKind::Raw),
            Err(_) => match attempt(SocketKind::Datagram) {
                Ok(c) => (c, SocketKind::Datagram),
                Err(_) => {
                    return Err(format!(
                        "cannot open an {family} ICMP socket: {}, and {}; grant CAP_NET_RAW or widen ping_group_range",
                        raw_missing(),
                        dgram_missing()
                    ))
                }
            },
        },
    };
    tracing::info!(family, socket = got.as_str(), "ICMP socket open");
    Ok(FamilySocket {
        client,
        kind: got,
        next_seq: AtomicU16::new(0),
    })
}

fn set_receive_buffer(client: &Client) {
    let fd = client.get_socket().get_native_sock();
    let size = RECEIVE_BUFFER_BYTES;
    // SAFETY: fd is a live socket owned by the client; the option value is a c_int.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &size as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "cannot enlarge the ICMP receive buffer");
    }
}

fn ping_group_range() -> String {
    std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range")
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unreadable".to_string())
}
