//! Reads the kernel's TCP socket table through netlink `NETLINK_SOCK_DIAG`, as `ss` does:
//! a dump request, the multipart reply read into one reused buffer, and from each
//! `inet_diag_msg` only the state and the two ports.
//!
//! The request is the older `TCPDIAG_GETSOCK` form, which dumps IPv4 and IPv6 sockets in
//! one walk of the kernel's hash tables; the `SOCK_DIAG_BY_FAMILY` form needs one dump
//! per family, and each walks the whole table (262,144 buckets on a small machine) only to
//! skip the other family's sockets: a third more kernel time per scrape. Should a kernel
//! refuse the older form, the reader switches to one `SOCK_DIAG_BY_FAMILY` dump per family.
//!
//! Hand-rolled on `libc` because the netlink crates build an owned message (with its
//! attribute list) per socket, and a busy host has 100,000 sockets per scrape.

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use anyhow::{bail, Context};

use crate::counts::ConnectionCounts;

// Kernel ABI constants (linux/netlink.h, linux/sock_diag.h, linux/inet_diag.h).
const NLMSG_HDRLEN: usize = 16;
const NLMSG_NOOP: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const TCPDIAG_GETSOCK: u16 = 18;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `struct inet_diag_req` (the `TCPDIAG_GETSOCK` form): family, src_len, dst_len, ext, a
/// 48-byte sockid, states, dbs.
const INET_DIAG_REQ_LEN: usize = 60;
/// `struct inet_diag_req_v2`: family, protocol, ext, pad, states, then a 48-byte sockid.
const INET_DIAG_REQ_V2_LEN: usize = 56;
/// `struct inet_diag_msg`: family, state, timer, retrans, 48-byte sockid, then five u32.
const INET_DIAG_MSG_LEN: usize = 72;
/// States 1 (ESTABLISHED) through 12 (NEW_SYN_RECV), the set `ss -a` asks for. Bit 13
/// (BOUND_INACTIVE, bound but never listening or connected) is left out, as `ss` and
/// `/proc/net/tcp` leave such sockets out.
const ALL_STATES: u32 = 0x1ffe;
/// The kernel fills at most about 32 KiB per dump message batch; twice that leaves room.
const RECV_BUFFER_LEN: usize = 64 * 1024;
/// A scrape must not hang on a kernel that stops answering.
const RECV_TIMEOUT_SECS: libc::time_t = 5;

/// Which form of dump request a reader sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestForm {
    /// One `TCPDIAG_GETSOCK` dump for both families.
    BothFamilies,
    /// One `SOCK_DIAG_BY_FAMILY` dump per family.
    PerFamily,
}

/// An error the kernel answered with (as opposed to a reply we could not parse).
#[derive(Debug)]
pub struct KernelError(pub io::Error);

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the kernel answered with an error: {}", self.0)
    }
}

impl std::error::Error for KernelError {}

/// A sock_diag reader. Holds only the receive buffer and the request form that works: a
/// new netlink socket is opened per read, so a read that failed half-way can leave
/// nothing behind for the next one.
#[derive(Debug)]
pub struct SockDiag {
    buf: Vec<u8>,
    form: RequestForm,
}

impl Default for SockDiag {
    fn default() -> Self {
        Self::new()
    }
}

impl SockDiag {
    pub fn new() -> Self {
        Self::with_form(RequestForm::BothFamilies)
    }

    pub fn with_form(form: RequestForm) -> Self {
        Self {
            buf: vec![0; RECV_BUFFER_LEN],
            form,
        }
    }

    #[cfg(test)]
    fn form(&self) -> RequestForm {
        self.form
    }

    /// Counts every IPv4 and IPv6 TCP socket of the network namespace into `counts`.
    pub fn read(&mut self, counts: &mut ConnectionCounts) -> anyhow::Result<()> {
        if self.form == RequestForm::BothFamilies {
            let req = request(TCPDIAG_GETSOCK, 1, &both_families_body());
            match self.dump(&req, 1, "TCP", counts) {
                Ok(()) => return Ok(()),
                Err(e) if e.downcast_ref::<KernelError>().is_some() => {
                    tracing::info!(error = %format!("{e:#}"),
                        "TCPDIAG_GETSOCK refused; using one SOCK_DIAG_BY_FAMILY dump per family");
                    self.form = RequestForm::PerFamily;
                    counts.clear();
                }
                Err(e) => return Err(e),
            }
        }
        for (seq, family, name) in [(2, libc::AF_INET, "IPv4"), (3, libc::AF_INET6, "IPv6")] {
            let req = request(SOCK_DIAG_BY_FAMILY, seq, &per_family_body(family as u8));
            self.dump(&req, seq, name, counts)?;
        }
        Ok(())
    }

    /// Sends one dump request on a fresh socket and counts its whole reply.
    fn dump(
        &mut self,
        req: &[u8],
        seq: u32,
        name: &str,
        counts: &mut ConnectionCounts,
    ) -> anyhow::Result<()> {
        let socket = open_socket().context("cannot open a NETLINK_SOCK_DIAG socket")?;
        send(&socket, req).with_context(|| format!("sock_diag {name} dump request failed"))?;
        loop {
            let len = receive(&socket, &mut self.buf)
                .with_context(|| format!("sock_diag {name} dump: receive failed"))?;
            match parse_batch(&self.buf[..len], seq, counts)
                .with_context(|| format!("sock_diag {name} dump"))?
            {
                Batch::More => {}
                Batch::Done => return Ok(()),
            }
        }
    }
}

fn open_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; the returned descriptor is checked and owned below.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let timeout = libc::timeval {
        tv_sec: RECV_TIMEOUT_SECS,
        tv_usec: 0,
    };
    // SAFETY: the option value points at a live timeval of the size given.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(socket)
}

/// An `nlmsghdr` for a dump request of `kind`, followed by `body`.
fn request(kind: u16, seq: u32, body: &[u8]) -> Vec<u8> {
    let mut req = vec![0u8; NLMSG_HDRLEN + body.len()];
    let len = req.len() as u32;
    req[0..4].copy_from_slice(&len.to_ne_bytes());
    req[4..6].copy_from_slice(&kind.to_ne_bytes());
    req[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req[8..12].copy_from_slice(&seq.to_ne_bytes());
    // nlmsg_pid 0: the kernel fills in our port id.
    req[NLMSG_HDRLEN..].copy_from_slice(body);
    req
}

/// `inet_diag_req` for `TCPDIAG_GETSOCK`: every state, no extensions, no socket filter.
/// The kernel ignores the family of this form and dumps both.
fn both_families_body() -> [u8; INET_DIAG_REQ_LEN] {
    let mut body = [0u8; INET_DIAG_REQ_LEN];
    body[0] = libc::AF_INET as u8;
    body[52..56].copy_from_slice(&ALL_STATES.to_ne_bytes());
    body
}

/// `inet_diag_req_v2` for TCP in `family`: every state, no extensions (we read nothing
/// past the fixed message), no socket filter.
fn per_family_body(family: u8) -> [u8; INET_DIAG_REQ_V2_LEN] {
    let mut body = [0u8; INET_DIAG_REQ_V2_LEN];
    body[0] = family;
    body[1] = libc::IPPROTO_TCP as u8;
    body[4..8].copy_from_slice(&ALL_STATES.to_ne_bytes());
    body
}

fn send(socket: &OwnedFd, req: &[u8]) -> io::Result<()> {
    // SAFETY: an all-zero sockaddr_nl is valid; the family is set below.
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    loop {
        // SAFETY: buffer and address point at live values of the lengths given.
        let sent = unsafe {
            libc::sendto(
                socket.as_raw_fd(),
                req.as_ptr().cast(),
                req.len(),
                0,
                (&kernel as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if sent >= 0 {
            if sent as usize != req.len() {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "short write of the dump request",
                ));
            }
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Receives one datagram. `MSG_TRUNC` makes the kernel report the datagram's real size,
/// so a batch larger than the buffer is an error instead of silently lost sockets.
fn receive(socket: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is a live, writable buffer of the length given.
        let n = unsafe {
            libc::recv(
                socket.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_TRUNC,
            )
        };
        if n >= 0 {
            let n = n as usize;
            if n > buf.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "netlink datagram of {n} bytes exceeds the {}-byte buffer",
                        buf.len()
                    ),
                ));
            }
            return Ok(n);
        }
        let err = io::Error::last_os_error();
        match err.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no answer from the kernel within {RECV_TIMEOUT_SECS} s"),
                ))
            }
            _ => return Err(err),
        }
    }
}

/// Whether the dump continues after this datagram.
#[derive(Debug, PartialEq, Eq)]
pub enum Batch {
    More,
    Done,
}

fn u16_ne(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

fn u32_ne(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn i32_ne(b: &[u8], at: usize) -> i32 {
    i32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Counts the sockets in one datagram of a dump reply. Every length is checked before it
/// is used: a malformed datagram is an error, never a panic or an out-of-bounds read.
pub fn parse_batch(data: &[u8], seq: u32, counts: &mut ConnectionCounts) -> anyhow::Result<Batch> {
    let mut offset = 0;
    while offset < data.len() {
        let rest = &data[offset..];
        if rest.len() < NLMSG_HDRLEN {
            bail!(
                "truncated netlink header at byte {offset}: {} bytes left",
                rest.len()
            );
        }
        let len = u32_ne(rest, 0) as usize;
        let kind = u16_ne(rest, 4);
        let msg_seq = u32_ne(rest, 8);
        if len < NLMSG_HDRLEN || len > rest.len() {
            bail!(
                "netlink message at byte {offset} claims {len} bytes, {} available",
                rest.len()
            );
        }
        let payload = &rest[NLMSG_HDRLEN..len];
        // Messages of another request are not part of this dump.
        if msg_seq == seq {
            match kind {
                NLMSG_DONE => {
                    // The payload, when present, is the dump's final status.
                    if payload.len() >= 4 && i32_ne(payload, 0) < 0 {
                        return Err(errno_error(i32_ne(payload, 0)));
                    }
                    return Ok(Batch::Done);
                }
                NLMSG_ERROR => {
                    if payload.len() < 4 {
                        bail!("truncated NLMSG_ERROR message");
                    }
                    let code = i32_ne(payload, 0);
                    if code != 0 {
                        return Err(errno_error(code));
                    }
                }
                SOCK_DIAG_BY_FAMILY | TCPDIAG_GETSOCK => {
                    if payload.len() < INET_DIAG_MSG_LEN {
                        bail!(
                            "truncated inet_diag_msg at byte {offset}: {} of {INET_DIAG_MSG_LEN} bytes",
                            payload.len()
                        );
                    }
                    let state = payload[1];
                    // idiag_sport and idiag_dport are in network byte order.
                    let local = u16::from_be_bytes([payload[4], payload[5]]);
                    let remote = u16::from_be_bytes([payload[6], payload[7]]);
                    counts.add(state, local, remote);
                }
                NLMSG_NOOP => {}
                other => bail!("unexpected netlink message type {other}"),
            }
        }
        // Messages are padded to 4-byte alignment; the last one may end without padding.
        offset += (len + 3) & !3;
    }
    Ok(Batch::More)
}

fn errno_error(code: i32) -> anyhow::Error {
    KernelError(io::Error::from_raw_os_error(code.saturating_neg())).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counts::{PortSlots, Side, TcpState};

    fn message(kind: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let len = (NLMSG_HDRLEN + payload.len()) as u32;
        let mut m = Vec::new();
        m.extend_from_slice(&len.to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&0x2u16.to_ne_bytes()); // NLM_F_MULTI
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&4242u32.to_ne_bytes());
        m.extend_from_slice(payload);
        while m.len() % 4 != 0 {
            m.push(0);
        }
        m
    }

    fn socket(state: u8, local: u16, remote: u16) -> Vec<u8> {
        let mut p = vec![0u8; INET_DIAG_MSG_LEN];
        p[0] = libc::AF_INET as u8;
        p[1] = state;
        p[4..6].copy_from_slice(&local.to_be_bytes());
        p[6..8].copy_from_slice(&remote.to_be_bytes());
        // Bytes past the ports (addresses, inode, ...) are deliberately noise.
        for b in &mut p[8..] {
            *b = 0xa5;
        }
        message(SOCK_DIAG_BY_FAMILY, 1, &p)
    }

    fn counts() -> ConnectionCounts {
        ConnectionCounts::new(PortSlots::new(&[22, 443]))
    }

    #[test]
    fn requests_ask_for_tcp_in_all_states() {
        let r = request(
            SOCK_DIAG_BY_FAMILY,
            7,
            &per_family_body(libc::AF_INET6 as u8),
        );
        assert_eq!(r.len(), 72);
        assert_eq!(u32_ne(&r, 0) as usize, r.len());
        assert_eq!(u16_ne(&r, 4), SOCK_DIAG_BY_FAMILY);
        assert_eq!(u16_ne(&r, 6), NLM_F_REQUEST | NLM_F_DUMP);
        assert_eq!(u32_ne(&r, 8), 7);
        assert_eq!(r[16], libc::AF_INET6 as u8);
        assert_eq!(r[17], libc::IPPROTO_TCP as u8);
        assert_eq!(r[18], 0, "no extensions requested");
        assert_eq!(u32_ne(&r, 20), 0x1ffe);

        let r = request(TCPDIAG_GETSOCK, 1, &both_families_body());
        assert_eq!(r.len(), 76);
        assert_eq!(u16_ne(&r, 4), TCPDIAG_GETSOCK);
        assert_eq!(r[19], 0, "no extensions requested");
        assert_eq!(u32_ne(&r, 16 + 52), 0x1ffe, "idiag_states after the sockid");
        assert_eq!(u32_ne(&r, 16 + 56), 0, "idiag_dbs");
    }

    #[test]
    fn counts_sockets_until_done() {
        let mut c = counts();
        let mut batch = Vec::new();
        batch.extend(socket(10, 22, 0));
        batch.extend(socket(1, 22, 51000));
        batch.extend(socket(1, 51000, 443));
        batch.extend(socket(12, 22, 51001));
        assert_eq!(parse_batch(&batch, 1, &mut c).unwrap(), Batch::More);
        let done = message(NLMSG_DONE, 1, &0i32.to_ne_bytes());
        let mut last = socket(6, 51002, 443);
        last.extend(done);
        assert_eq!(parse_batch(&last, 1, &mut c).unwrap(), Batch::Done);
        assert_eq!(c.port(0, Side::Local, TcpState::Listen), 1);
        assert_eq!(c.port(0, Side::Local, TcpState::Established), 1);
        assert_eq!(c.port(0, Side::Local, TcpState::SynRecv), 1);
        assert_eq!(c.port(1, Side::Remote, TcpState::Established), 1);
        assert_eq!(c.port(1, Side::Remote, TcpState::TimeWait), 1);
        assert_eq!(c.host(TcpState::Established), 2);
    }

    #[test]
    fn empty_datagram_and_other_sequences_are_not_counted() {
        let mut c = counts();
        assert_eq!(parse_batch(&[], 1, &mut c).unwrap(), Batch::More);
        let mut stale = socket(1, 22, 1);
        stale[8..12].copy_from_slice(&9u32.to_ne_bytes());
        assert_eq!(parse_batch(&stale, 1, &mut c).unwrap(), Batch::More);
        assert_eq!(c.host(TcpState::Established), 0);
    }

    #[test]
    fn kernel_errors_are_reported() {
        let mut c = counts();
        let mut payload = (-libc::EPERM).to_ne_bytes().to_vec();
        payload.extend_from_slice(&[0; 16]); // the echoed request header
        let e = parse_batch(&message(NLMSG_ERROR, 1, &payload), 1, &mut c).unwrap_err();
        assert!(e.to_string().contains("not permitted"), "{e}");
        assert!(e.downcast_ref::<KernelError>().is_some());
        let e = parse_batch(
            &message(NLMSG_DONE, 1, &(-libc::EINTR).to_ne_bytes()),
            1,
            &mut c,
        )
        .unwrap_err();
        assert!(e.to_string().contains("Interrupted"), "{e}");
        let e = parse_batch(&message(NLMSG_ERROR, 1, &[1, 2]), 1, &mut c).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
    }

    #[test]
    fn truncated_input_is_an_error_at_every_cut() {
        let mut batch = socket(1, 22, 51000);
        batch.extend(socket(1, 51000, 443));
        batch.extend(message(NLMSG_DONE, 1, &0i32.to_ne_bytes()));
        let first_len = socket(1, 22, 51000).len();
        for cut in 1..batch.len() {
            let mut c = counts();
            let result = parse_batch(&batch[..cut], 1, &mut c);
            if cut == first_len || cut == 2 * first_len {
                // Cut exactly between messages: a valid datagram, the dump goes on.
                assert_eq!(result.unwrap(), Batch::More, "cut at {cut}");
            } else {
                assert!(result.is_err(), "cut at {cut} was accepted");
            }
        }
    }

    #[test]
    fn bogus_lengths_do_not_panic() {
        let mut c = counts();
        let mut m = socket(1, 22, 1);
        m[0..4].copy_from_slice(&3u32.to_ne_bytes());
        assert!(parse_batch(&m, 1, &mut c).is_err());
        m[0..4].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert!(parse_batch(&m, 1, &mut c).is_err());
        let short = message(SOCK_DIAG_BY_FAMILY, 1, &[0, 1, 0, 0, 0, 22]);
        assert!(parse_batch(&short, 1, &mut c).is_err());
        assert!(parse_batch(&message(77, 1, &[]), 1, &mut c).is_err());
    }

    #[test]
    fn both_request_forms_read_this_hosts_socket_table_alike() {
        // A port below the ephemeral range: an ephemeral one may also be the local port of
        // other processes' outgoing connections (to other destinations), which would count.
        let seed =
            std::process::id() as u64 ^ std::time::UNIX_EPOCH.elapsed().unwrap().as_nanos() as u64;
        let (_v4, v6, port) = (0..1000u64)
            .find_map(|i| {
                let port = 20000 + ((seed.wrapping_add(i * 7919)) % 12000) as u16;
                let v4 = std::net::TcpListener::bind(("127.0.0.1", port)).ok()?;
                let v6 = std::net::TcpListener::bind(("::1", port)).ok()?;
                Some((v4, v6, port))
            })
            .expect("a free port below the ephemeral range");
        let _client = std::net::TcpStream::connect(v6.local_addr().unwrap()).unwrap();
        let (_server, _) = v6.accept().unwrap();
        for form in [RequestForm::BothFamilies, RequestForm::PerFamily] {
            let mut c = ConnectionCounts::new(PortSlots::new(&[port]));
            let mut reader = SockDiag::with_form(form);
            reader.read(&mut c).unwrap();
            assert_eq!(reader.form(), form, "this kernel accepts both forms");
            assert_eq!(c.port(0, Side::Local, TcpState::Listen), 2, "{form:?}");
            assert_eq!(c.port(0, Side::Local, TcpState::Established), 1, "{form:?}");
            assert_eq!(
                c.port(0, Side::Remote, TcpState::Established),
                1,
                "{form:?}"
            );
            assert!(c.host(TcpState::Listen) >= 2);
        }
    }
}
