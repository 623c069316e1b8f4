//! Helpers shared by the integration tests: start the real `vigia-ports` binary, scrape it
//! over HTTP, and read `ss`.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const BIN: &str = env!("CARGO_BIN_EXE_vigia-ports");

/// Environment variables the exporter reads; removed from every child so the tests do
/// not depend on the environment they run in.
const READ_VARS: [&str; 6] = [
    "PUERTOS_A_MONITOREAR",
    "PROMETHEUS_PORT",
    "VIGIA_CONFIG_FILE",
    "VIGIA_WEB_LISTEN_ADDRESS",
    "VIGIA_WEB_CONFIG_FILE",
    "VIGIA_LOG_FORMAT",
];

/// A command for the exporter binary with a clean environment for what it reads.
pub fn command() -> Command {
    clean_env(Command::new(BIN))
}

/// The exporter binary run under `strace` with `strace_args` (fault injection).
pub fn command_under_strace(strace_args: &[&str]) -> Command {
    let present = Command::new("strace")
        .arg("-V")
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        present,
        "`strace` (Debian package strace) is required by this test"
    );
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-qq", "-o", "/dev/null"])
        .args(strace_args)
        .arg(BIN);
    clean_env(cmd)
}

fn clean_env(mut cmd: Command) -> Command {
    for var in READ_VARS {
        cmd.env_remove(var);
    }
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("VIGIA_PORTS__") {
            cmd.env_remove(key);
        }
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// A port nobody uses right now on any address, chosen at random below the ephemeral
/// range (so no outgoing connection of another test grabs it before the exporter binds).
pub fn free_port() -> u16 {
    let mut seed = run_seed();
    for _ in 0..1000 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let port = 20000 + (seed >> 33) as u16 % 12000;
        if TcpListener::bind(("0.0.0.0", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port found");
}

/// Writes `text` to `name` in `dir` and returns the path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A running exporter, killed when dropped.
pub struct Exporter {
    child: Child,
    pub addr: SocketAddr,
    stderr_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Exporter {
    /// Starts the exporter with `config` (YAML) on a free loopback port and waits until it
    /// answers `/-/ready`.
    pub fn start(config: &str) -> Exporter {
        let mut cmd = command();
        Self::start_with(&mut cmd, Some(config), None)
    }

    /// Starts `cmd` (from [`command`]); `config` is written to a file and passed with
    /// `--config.file`; without `reach`, `--web.listen-address` is set to a free port.
    pub fn start_with(
        cmd: &mut Command,
        config: Option<&str>,
        reach: Option<SocketAddr>,
    ) -> Exporter {
        let dir = tempfile::tempdir().unwrap();
        if let Some(config) = config {
            let path = write_file(dir.path(), "ports.yaml", config);
            cmd.arg("--config.file").arg(path);
        }
        let addr = match reach {
            Some(addr) => addr,
            None => {
                let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
                cmd.arg("--web.listen-address").arg(addr.to_string());
                addr
            }
        };
        let stderr_path = dir.path().join("stderr.log");
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let child = cmd
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start vigia-ports");
        let mut exporter = Exporter {
            child,
            addr,
            stderr_path,
            _dir: dir,
        };
        exporter.wait_ready();
        exporter
    }

    fn wait_ready(&mut self) {
        // Generous: CI machines run many test binaries at once on two cores.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("vigia-ports exited early with {status}: {}", self.stderr());
            }
            if let Ok((200, _)) = http_get(self.addr, "/-/ready") {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "vigia-ports did not become ready on {}: {}",
                    self.addr,
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The exporter's pid: the child itself, or the child's child when a wrapper (strace)
    /// started it. Signals go to the exporter: strace, started with `-o FILE`, blocks
    /// fatal signals, and a SIGKILLed strace leaves its tracee running, detached.
    fn exporter_pid(&self) -> libc::pid_t {
        let id = self.child.id();
        let children =
            std::fs::read_to_string(format!("/proc/{id}/task/{id}/children")).unwrap_or_default();
        match children
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
        {
            Some(grandchild) => grandchild,
            None => id as libc::pid_t,
        }
    }

    /// Sends SIGTERM and waits (at most 30 s) for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        // SAFETY: plain syscall on the pid of a process we started.
        let rc = unsafe { libc::kill(self.exporter_pid(), libc::SIGTERM) };
        assert_eq!(rc, 0, "kill(SIGTERM) failed");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "vigia-ports did not exit within 30 s of SIGTERM: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Scrapes `/metrics`; panics unless the answer is 200.
    pub fn scrape(&self) -> String {
        match http_get(self.addr, "/metrics") {
            Ok((200, body)) => body,
            other => panic!("scrape of {} failed: {other:?}", self.addr),
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // SIGTERM to the exporter itself (see `exporter_pid`); the wrapper, if any, exits
        // with it.
        // SAFETY: plain syscall on the pid of a process we started.
        unsafe { libc::kill(self.exporter_pid(), libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.0 GET (no chunked encoding to undo): status code and body.
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    http_request(addr, "GET", path)
}

/// A plain HTTP/1.0 request without a body: status code and body.
pub fn http_request(addr: SocketAddr, method: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no HTTP header end in {text:?}")))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status in {head:?}")))?;
    Ok((status, body.to_string()))
}

/// Runs the exporter to completion (at most 30 s) and returns its status and stderr.
pub fn run_to_exit(cmd: &mut Command) -> (ExitStatus, String) {
    let dir = tempfile::tempdir().unwrap();
    let stderr_path = dir.path().join("stderr.log");
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("start vigia-ports");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "vigia-ports did not exit within 30 s: {}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status, std::fs::read_to_string(&stderr_path).unwrap())
}

/// `vigia_port_connections` samples of a scrape: (port, side, state) → value.
pub fn port_series(body: &str) -> HashMap<(u16, String, String), u64> {
    let mut out = HashMap::new();
    for line in body.lines() {
        let Some(rest) = line.strip_prefix("vigia_port_connections{") else {
            continue;
        };
        let (labels, value) = rest.split_once("} ").expect("sample line");
        let mut port = None;
        let mut side = None;
        let mut state = None;
        for pair in labels.split(',') {
            let (k, v) = pair.split_once('=').expect("label pair");
            let v = v.trim_matches('"').to_string();
            match k {
                "port" => port = Some(v.parse::<u16>().expect("numeric port label")),
                "side" => side = Some(v),
                "state" => state = Some(v),
                other => panic!("unexpected label {other} in {line}"),
            }
        }
        let key = (port.unwrap(), side.unwrap(), state.unwrap());
        let value: u64 = value.trim().parse().expect("integer value");
        assert!(out.insert(key, value).is_none(), "duplicate series {line}");
    }
    out
}

/// The value of one sample line given as `name{labels}`.
pub fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

pub const STATES: [&str; 11] = [
    "established",
    "syn_sent",
    "syn_recv",
    "fin_wait1",
    "fin_wait2",
    "time_wait",
    "close",
    "close_wait",
    "last_ack",
    "listen",
    "closing",
];

/// `ss` state names to our label values.
fn ss_state(name: &str) -> Option<&'static str> {
    Some(match name {
        "ESTAB" => "established",
        "SYN-SENT" => "syn_sent",
        "SYN-RECV" => "syn_recv",
        "FIN-WAIT-1" => "fin_wait1",
        "FIN-WAIT-2" => "fin_wait2",
        "TIME-WAIT" => "time_wait",
        "UNCONN" | "CLOSE" => "close",
        "CLOSE-WAIT" => "close_wait",
        "LAST-ACK" => "last_ack",
        "LISTEN" => "listen",
        "CLOSING" => "closing",
        _ => return None,
    })
}

fn endpoint_port(endpoint: &str) -> u16 {
    let (_, port) = endpoint
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("no port in ss endpoint {endpoint:?}"));
    if port == "*" {
        0
    } else {
        port.parse()
            .unwrap_or_else(|_| panic!("bad port in ss endpoint {endpoint:?}"))
    }
}

/// Runs `ss -tan` (iproute2): (state label, local port, remote port) of every socket.
fn ss_sockets() -> Vec<(&'static str, u16, u16)> {
    let output = Command::new("ss")
        .args(["-tan"])
        .output()
        .expect("`ss` (Debian package iproute2) is required by this test");
    assert!(output.status.success(), "ss -tan failed: {output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 5 {
            continue;
        }
        let state = ss_state(fields[0]).unwrap_or_else(|| panic!("unknown ss state in {line}"));
        out.push((state, endpoint_port(fields[3]), endpoint_port(fields[4])));
    }
    out
}

/// Counts what `ss -tan` shows per (port, side, state) for `ports`.
pub fn ss_counts(ports: &[u16]) -> HashMap<(u16, String, String), u64> {
    let mut out = HashMap::new();
    for (state, local, remote) in ss_sockets() {
        for (port, side) in [(local, "local"), (remote, "remote")] {
            if ports.contains(&port) {
                *out.entry((port, side.to_string(), state.to_string()))
                    .or_insert(0) += 1;
            }
        }
    }
    out
}

/// Every (port, side, state) for `ports`, with the value `expected` gives or 0.
pub fn full_matrix(
    ports: &[u16],
    expected: &HashMap<(u16, String, String), u64>,
) -> HashMap<(u16, String, String), u64> {
    let mut out = HashMap::new();
    for &port in ports {
        for side in ["local", "remote"] {
            for state in STATES {
                let key = (port, side.to_string(), state.to_string());
                let value = expected.get(&key).copied().unwrap_or(0);
                out.insert(key, value);
            }
        }
    }
    out
}

/// A pseudo-random number that differs between runs (no RNG dependency needed).
pub fn run_seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut x = nanos ^ (u64::from(std::process::id()) << 32);
    // splitmix64 finaliser, so that close seeds give far-apart ports.
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d049bb133111eb);
    x ^ (x >> 31)
}

/// `count` distinct ports below the ephemeral range, chosen at random per run, that no
/// socket (listening, connected or in TIME_WAIT) uses right now on either side.
pub fn unused_ports(count: usize) -> Vec<u16> {
    let mut seed = run_seed();
    // One snapshot: `ss` takes a second or more on a host with 100,000 sockets.
    let in_use: std::collections::HashSet<u16> = ss_sockets()
        .into_iter()
        .flat_map(|(_, local, remote)| [local, remote])
        .collect();
    let mut ports = Vec::new();
    for _ in 0..1000 {
        if ports.len() == count {
            break;
        }
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let port = 20000 + (seed >> 33) as u16 % 12000;
        if ports.contains(&port) {
            continue;
        }
        if !in_use.contains(&port)
            && TcpListener::bind(("127.0.0.1", port)).is_ok()
            && TcpListener::bind(("::1", port)).is_ok()
        {
            ports.push(port);
        }
    }
    assert_eq!(ports.len(), count, "no unused ports found");
    ports
}

/// Percent-encodes a URL query value.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
