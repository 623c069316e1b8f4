//! Helpers shared by the integration tests: write pcap files of packets built with
//! etherparse, run the real `vigia-capture` binary, scrape it over HTTP.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use etherparse::PacketBuilder;

pub const BIN: &str = env!("CARGO_BIN_EXE_vigia-capture");

pub const LINKTYPE_ETHERNET: u32 = 1;
pub const LINKTYPE_RAW: u32 = 101;
pub const LINKTYPE_LINUX_SLL: u32 = 113;
pub const LINKTYPE_LINUX_SLL2: u32 = 276;

/// A command for the binary with none of the variables it reads inherited.
pub fn command() -> Command {
    let mut cmd = Command::new(BIN);
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k.starts_with("VIGIA_") {
            cmd.env_remove(&key);
        }
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// One record of a pcap file: time in microseconds, captured bytes, wire length.
pub struct Record {
    pub ts_us: u64,
    pub data: Vec<u8>,
    pub wire_len: u32,
}

impl Record {
    pub fn new(ts_us: u64, data: Vec<u8>) -> Self {
        let wire_len = data.len() as u32;
        Self {
            ts_us,
            data,
            wire_len,
        }
    }

    /// The same frame cut to `caplen` bytes, as a snaplen would.
    pub fn cut(mut self, caplen: usize) -> Self {
        self.data.truncate(caplen);
        self
    }
}

/// The pcap file format (microsecond variant), written by hand: a 24-byte global header
/// and a 16-byte header per record.
pub fn pcap_bytes(linktype: u32, records: &[Record]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&65_535u32.to_le_bytes());
    out.extend_from_slice(&linktype.to_le_bytes());
    for r in records {
        out.extend_from_slice(&((r.ts_us / 1_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&((r.ts_us % 1_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&(r.data.len() as u32).to_le_bytes());
        out.extend_from_slice(&r.wire_len.to_le_bytes());
        out.extend_from_slice(&r.data);
    }
    out
}

pub fn write_pcap(dir: &Path, name: &str, linktype: u32, records: &[Record]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, pcap_bytes(linktype, records)).unwrap();
    path
}

const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 2];

pub fn build(b: etherparse::PacketBuilderStep<etherparse::TcpHeader>, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

pub fn tcp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, flags: &str) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(src, dst, 64)
        .tcp(sport, dport, 1000, 64_240);
    for f in flags.chars() {
        b = match f {
            'S' => b.syn(),
            'A' => b.ack(1),
            'R' => b.rst(),
            'F' => b.fin(),
            'P' => b.psh(),
            _ => panic!("flag {f}"),
        };
    }
    build(b, &[])
}

pub fn udp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(src, dst, 64)
        .udp(sport, dport)
        .write(&mut out, payload)
        .unwrap();
    out
}

pub fn icmp_echo(src: [u8; 4], dst: [u8; 4], seq: u16) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(src, dst, 64)
        .icmpv4_echo_request(7, seq)
        .write(&mut out, &[0u8; 16])
        .unwrap();
    out
}

pub fn icmpv6_echo(src: [u8; 16], dst: [u8; 16], seq: u16) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv6(src, dst, 64)
        .icmpv6_echo_request(7, seq)
        .write(&mut out, &[0u8; 16])
        .unwrap();
    out
}

/// An ARP request: not IP.
pub fn arp() -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&MAC_A);
    f.extend_from_slice(&0x0806u16.to_be_bytes());
    f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&MAC_A);
    f.extend_from_slice(&[198, 18, 0, 1]);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&[198, 18, 0, 2]);
    f
}

/// An IPv4 packet of protocol 47 (GRE) with a small payload: "other IP".
pub fn gre(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let mut out = Vec::new();
    let ip = etherparse::Ipv4Header::new(4, 64, etherparse::IpNumber(47), src, dst).unwrap();
    etherparse::Ethernet2Header {
        source: MAC_A,
        destination: MAC_B,
        ether_type: etherparse::EtherType::IPV4,
    }
    .write(&mut out)
    .unwrap();
    ip.write(&mut out).unwrap();
    out.extend_from_slice(&[0, 0, 8, 0]);
    out
}

/// Strips the 14-byte Ethernet header: the IP packet alone.
pub fn ip_only(frame: Vec<u8>) -> Vec<u8> {
    frame[14..].to_vec()
}

/// A Linux cooked v1 frame around an IP packet (as `lo`/`any` captures write).
pub fn sll1(ip: &[u8], ethertype: u16) -> Vec<u8> {
    let mut f = vec![0, 0, 0, 1, 0, 6];
    f.extend_from_slice(&MAC_A);
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(ip);
    f
}

/// A Linux cooked v2 frame around an IP packet.
pub fn sll2(ip: &[u8], ethertype: u16) -> Vec<u8> {
    let mut f = ethertype.to_be_bytes().to_vec();
    f.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 1, 0, 6]);
    f.extend_from_slice(&MAC_A);
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(ip);
    f
}

/// Runs the binary to completion with a time bound (output is read while it runs, so a
/// long report cannot fill the pipe).
pub fn run(args: &[&str]) -> Output {
    let child = command()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start vigia-capture");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
            panic!("vigia-capture did not finish within 120 s");
        }
    }
}

/// `--exit-at-eof` output: the window lines and the summary.
pub struct Replay {
    pub windows: Vec<serde_json::Value>,
    pub summary: serde_json::Value,
    pub stderr: String,
    pub status: std::process::ExitStatus,
}

pub fn replay(file: &Path, config: Option<&Path>) -> Replay {
    let mut args = vec![
        "--capture.file".to_string(),
        file.display().to_string(),
        "--exit-at-eof".to_string(),
    ];
    if let Some(c) = config {
        args.push("--config.file".into());
        args.push(c.display().to_string());
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&refs);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let mut windows = Vec::new();
    let mut summary = serde_json::Value::Null;
    for line in stdout.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON: {line:?}: {e}"));
        if let Some(s) = v.get("summary") {
            summary = s.clone();
        } else {
            windows.push(v);
        }
    }
    Replay {
        windows,
        summary,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        status: out.status,
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running exporter, killed when dropped.
pub struct Exporter {
    child: Child,
    pub addr: SocketAddr,
    stderr_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Exporter {
    /// Starts the binary with `config` (YAML) and `args`, listening on a free loopback
    /// port, and waits until `/-/ready` answers.
    pub fn start(config: &str, args: &[&str]) -> Exporter {
        Self::start_with(command(), config, args)
    }

    pub fn start_with(mut cmd: Command, config: &str, args: &[&str]) -> Exporter {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("capture.yaml");
        std::fs::write(&config_path, config).unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let stderr_path = dir.path().join("stderr.log");
        let child = cmd
            .arg("--config.file")
            .arg(&config_path)
            .arg("--web.listen-address")
            .arg(addr.to_string())
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .expect("start vigia-capture");
        let mut e = Exporter {
            child,
            addr,
            stderr_path,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = e.child.try_wait() {
                panic!("vigia-capture exited early with {status}: {}", e.stderr());
            }
            if matches!(http_get(e.addr, "/-/ready"), Ok((200, _))) {
                return e;
            }
            assert!(Instant::now() < deadline, "not ready: {}", e.stderr());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn metrics(&self) -> String {
        let (status, body) = http_get(self.addr, "/metrics").expect("scrape");
        assert_eq!(status, 200, "{body}");
        body
    }

    /// The value of the series `name{labels}` exactly as written in the exposition
    /// (`labels` like `protocol="udp"`, or empty).
    pub fn value(&self, series: &str) -> Option<f64> {
        value_of(&self.metrics(), series)
    }

    /// Waits up to `within` for `series` to equal `want`; returns the last value seen.
    pub fn wait_for(&self, series: &str, want: f64, within: Duration) -> Option<f64> {
        let deadline = Instant::now() + within;
        loop {
            let v = self.value(series);
            if v == Some(want) || Instant::now() > deadline {
                return v;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM, then the exit status within 30 s.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "no exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn value_of(body: &str, series: &str) -> Option<f64> {
    body.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok())?
    })
}

pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, dechunk(&body, &text)))
}

fn dechunk(body: &str, raw: &str) -> String {
    if !raw
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return body.to_string();
    }
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = &after[n..];
        rest = rest.strip_prefix("\r\n").unwrap_or(rest);
    }
    out
}

/// Fails (does not skip) when a tool CI installs is missing.
pub fn require_tool(tool: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "`{tool}` is missing: install the Debian package `{package}` (CI does)"
    );
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc_geteuid() == 0 }
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}
