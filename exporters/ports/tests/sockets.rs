//! Real sockets on loopback, driven into known TCP states on ports chosen at random per
//! run; the real exporter is scraped over HTTP with each source and must report exactly
//! those counts, and exactly what `ss -tan` (iproute2) shows at the same moment.

mod common;

use std::collections::HashMap;
use std::io::Read;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use common::{full_matrix, port_series, sample, ss_counts, unused_ports, Exporter};

type Matrix = HashMap<(u16, String, String), u64>;

/// Sockets held open in known states, and the counts they must produce.
struct Scene {
    ports: Vec<u16>,
    expected: Matrix,
    _held: Vec<TcpStream>,
    _listeners: Vec<TcpListener>,
    _connecting: OwnedFd,
}

/// Starts a non-blocking connect to 127.0.0.1:`port` and returns the socket, left in
/// SYN_SENT while the listener drops its SYNs.
fn start_connect(port: u16) -> OwnedFd {
    // SAFETY: plain syscall; the descriptor is checked and owned below.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: an all-zero sockaddr_in is valid; the fields are set below.
    let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    addr.sin_family = libc::AF_INET as libc::sa_family_t;
    addr.sin_port = port.to_be();
    addr.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
    // SAFETY: the address points at a live sockaddr_in of the size given.
    let rc = unsafe {
        libc::connect(
            socket.as_raw_fd(),
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    let err = std::io::Error::last_os_error();
    assert!(
        rc < 0 && err.raw_os_error() == Some(libc::EINPROGRESS),
        "non-blocking connect: rc {rc}, {err}"
    );
    socket
}

fn connect(listener: &TcpListener) -> (TcpStream, TcpStream) {
    let client =
        TcpStream::connect_timeout(&listener.local_addr().unwrap(), Duration::from_secs(2))
            .expect("loopback connect");
    let (server, _) = listener.accept().expect("accept");
    (client, server)
}

/// Blocks until the peer's FIN arrives (read returns 0), bounded by a timeout.
fn wait_eof(stream: &mut TcpStream) {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut byte = [0u8; 1];
    assert_eq!(stream.read(&mut byte).expect("read until FIN"), 0);
}

/// Port `a`: listeners on 127.0.0.1 and [::1]; established connections over both
/// families; one connection the client half-closed (server side in CLOSE_WAIT, client in
/// FIN_WAIT2); two the client closed first (client sockets in TIME_WAIT).
/// Port `b`: a listener on [::1] only; one connection the server closed first and the
/// client then closed (server socket in TIME_WAIT); one the server closed while the
/// client holds on (client in CLOSE_WAIT, server in FIN_WAIT2).
/// Also on `b`: a listener on 127.0.0.1 with an accept queue of one, never accepted:
/// the first connection waits in the queue (ESTABLISHED at both ends), the kernel drops
/// the SYNs of the second, which stays in SYN_SENT.
/// Port `c`: configured, unused: every series must be 0.
fn build_scene() -> Scene {
    let ports = unused_ports(3);
    let (a, b) = (ports[0], ports[1]);
    let a4 = TcpListener::bind(("127.0.0.1", a)).unwrap();
    let a6 = TcpListener::bind(("::1", a)).unwrap();
    let b6 = TcpListener::bind(("::1", b)).unwrap();
    let mut held = Vec::new();
    let mut expected: Matrix = HashMap::new();
    let mut expect = |port: u16, side: &str, state: &str, n: u64| {
        *expected
            .entry((port, side.to_string(), state.to_string()))
            .or_insert(0) += n;
    };

    expect(a, "local", "listen", 2);
    for listener in [&a4, &a4, &a6] {
        let (client, server) = connect(listener);
        held.extend([client, server]);
    }
    expect(a, "local", "established", 3);
    expect(a, "remote", "established", 3);

    let (client, mut server) = connect(&a4);
    client.shutdown(Shutdown::Write).unwrap();
    wait_eof(&mut server);
    held.extend([client, server]);
    expect(a, "local", "close_wait", 1);
    expect(a, "remote", "fin_wait2", 1);

    for listener in [&a4, &a6] {
        let (client, mut server) = connect(listener);
        drop(client);
        wait_eof(&mut server);
        drop(server);
    }
    expect(a, "remote", "time_wait", 2);

    expect(b, "local", "listen", 1);
    let (mut client, server) = connect(&b6);
    drop(server);
    wait_eof(&mut client);
    drop(client);
    expect(b, "local", "time_wait", 1);

    let (mut client, server) = connect(&b6);
    server.shutdown(Shutdown::Write).unwrap();
    wait_eof(&mut client);
    held.extend([client, server]);
    expect(b, "local", "fin_wait2", 1);
    expect(b, "remote", "close_wait", 1);

    let b4 = TcpListener::bind(("127.0.0.1", b)).unwrap();
    // Listening again only changes the backlog: 0 lets one connection into the queue.
    // SAFETY: plain syscall on a listening socket we own.
    assert_eq!(unsafe { libc::listen(b4.as_raw_fd(), 0) }, 0);
    expect(b, "local", "listen", 1);
    held.push(TcpStream::connect(b4.local_addr().unwrap()).unwrap());
    expect(b, "local", "established", 1);
    expect(b, "remote", "established", 1);
    let connecting = start_connect(b);
    expect(b, "remote", "syn_sent", 1);

    let expected = full_matrix(&ports, &expected);
    Scene {
        ports,
        expected,
        _held: held,
        _listeners: vec![a4, a6, b6, b4],
        _connecting: connecting,
    }
}

fn config(ports: &[u16], source: &str) -> String {
    format!("ports: {ports:?}\nsource: {source}\n")
}

/// Scrapes until the counts equal `expected` (the kernel finishes the last transitions,
/// like LAST_ACK to closed, a moment after our calls return), at most 10 s, and returns
/// the last scrape.
fn scrape_settled(exporter: &Exporter, expected: &Matrix) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let body = exporter.scrape();
        if &port_series(&body) == expected || Instant::now() > deadline {
            return body;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn assert_matrix(what: &str, got: &Matrix, expected: &Matrix) {
    let mut diffs: Vec<String> = expected
        .iter()
        .filter(|(k, v)| got.get(*k) != Some(*v))
        .map(|(k, v)| format!("{k:?}: expected {v}, got {:?}", got.get(k)))
        .collect();
    diffs.extend(
        got.keys()
            .filter(|k| !expected.contains_key(*k))
            .map(|k| format!("{k:?}: unexpected series")),
    );
    diffs.sort();
    assert!(diffs.is_empty(), "{what}:\n{}", diffs.join("\n"));
}

/// `ss` lists only sockets that exist: compare it with our non-zero counts.
fn nonzero(m: &Matrix) -> Matrix {
    m.iter()
        .filter(|(_, v)| **v > 0)
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

#[test]
fn loopback_sockets_counted_exactly_by_both_sources_and_as_ss_shows() {
    let scene = build_scene();
    let netlink = Exporter::start(&config(&scene.ports, "netlink"));
    let procfs = Exporter::start(&config(&scene.ports, "procfs"));

    for (name, exporter) in [("netlink", &netlink), ("procfs", &procfs)] {
        let body = scrape_settled(exporter, &scene.expected);
        let ss = ss_counts(&scene.ports);
        assert_matrix(
            &format!("{name} source vs expected"),
            &port_series(&body),
            &scene.expected,
        );
        assert_matrix(
            &format!("{name} source vs ss -tan"),
            &nonzero(&port_series(&body)),
            &ss,
        );
        assert_eq!(
            sample(
                &body,
                &format!("vigia_ports_source_info{{source=\"{name}\"}}")
            ),
            Some(1.0),
            "{body}"
        );
        assert_eq!(
            sample(
                &body,
                "vigia_scrape_collector_success{collector=\"sockets\"}"
            ),
            Some(1.0)
        );
        // Host-wide counts include at least this test's own sockets.
        let listen = sample(&body, "vigia_tcp_connections{state=\"listen\"}").unwrap();
        let established = sample(&body, "vigia_tcp_connections{state=\"established\"}").unwrap();
        assert!(listen >= 3.0, "host-wide listen {listen}");
        assert!(established >= 8.0, "host-wide established {established}");
    }
}

#[test]
fn auto_source_uses_netlink_and_counts_a_listener() {
    let ports = unused_ports(1);
    let _v4 = TcpListener::bind(("127.0.0.1", ports[0])).unwrap();
    let exporter = Exporter::start(&format!("ports: [{}]\n", ports[0]));
    let body = exporter.scrape();
    assert_eq!(
        sample(&body, "vigia_ports_source_info{source=\"netlink\"}"),
        Some(1.0),
        "{body}"
    );
    let series = port_series(&body);
    assert_eq!(series.len(), 22, "every side and state of the one port");
    assert_eq!(
        series[&(ports[0], "local".to_string(), "listen".to_string())],
        1
    );
}
