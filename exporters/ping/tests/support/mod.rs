//! Test hosts and a running vigia-ping, shared by the ping tests (and the board's).
//!
//! API (use with `mod support;` from a file in `tests/`):
//! - [`require_tool`]`("ip")`: panics with the Debian package to install when a tool is
//!   missing (CI installs them; a test must not skip silently).
//! - [`NetnsHost::new`]`()`: a network namespace joined to this one by a veth pair, with
//!   addresses in 198.18.0.0/15 ([`NetnsHost::addr`] is the host's, [`NetnsHost::peer`]
//!   ours). [`NetnsHost::set_echo_ignore`] turns kernel echo replies off/on,
//!   [`NetnsHost::set_link`] takes the link down/up. Everything is deleted on drop, also
//!   when the test fails.
//! - [`Netns::isolated`]`()`: a namespace with only `lo` up, whose `/etc/hosts` and
//!   `/etc/resolv.conf` are files of the test ([`Netns::write_etc`]), so name resolution
//!   never leaves the machine.
//! - [`SlowResponder::start`]`(&host, delay)`: a user-space echo responder inside the host's
//!   namespace that answers after `delay` (call `set_echo_ignore(true)` first).
//! - [`Exporter::start`]`(yaml)` / [`Exporter::start_in`]`(&netns, yaml)`: runs the
//!   vigia-ping binary on a free loopback port; [`Exporter::get`] fetches a path (from
//!   inside the namespace when there is one); killed on drop.
//! - [`metric`]`(body, name, labels)`: a sample's value from a /metrics body.
//! - [`servers`]: certificates (openssl), HTTP(S) and TCP servers (Python), dnsmasq and
//!   a real Prometheus for the tcp, http and dns probe tests.
//! - [`Influxd::start`]`()`: a private InfluxDB 1.x (`influxd` from the Debian package
//!   `influxdb`) on free loopback ports with its data in a temporary directory;
//!   [`Influxd::query`] runs InfluxQL and returns the JSON answer.
#![allow(dead_code)]

pub mod servers;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Panics, naming the package, when `tool` is not installed.
pub fn require_tool(tool: &str) {
    let package = match tool {
        "ip" => "iproute2",
        "sysctl" => "procps",
        "python3" => "python3",
        "setpriv" => "util-linux",
        "influxd" => "influxdb",
        "dnsmasq" => "dnsmasq-base",
        other => other,
    };
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "`{tool}` is missing: install the Debian package `{package}` (CI installs it)"
    );
}

/// Runs a command, panicking with its output when it fails.
pub fn run(cmd: &str, args: &[&str]) -> Output {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn unique_id() -> (u32, u32) {
    (std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst))
}

/// A network namespace, deleted on drop with everything running in it.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// A namespace with only `lo`, up.
    pub fn isolated() -> Self {
        require_tool("ip");
        let (pid, n) = unique_id();
        let ns = Netns {
            name: format!("vigia-{pid}-{n}"),
        };
        run("ip", &["netns", "add", &ns.name]);
        ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Runs a command inside the namespace and waits for it.
    pub fn exec(&self, args: &[&str]) -> Output {
        let mut full = vec!["netns", "exec", &self.name];
        full.extend_from_slice(args);
        Command::new("ip")
            .args(&full)
            .output()
            .expect("ip netns exec")
    }

    pub fn exec_ok(&self, args: &[&str]) -> Output {
        let out = self.exec(args);
        assert!(
            out.status.success(),
            "in {}: {args:?} failed: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    pub fn sysctl(&self, key_value: &str) {
        require_tool("sysctl");
        self.exec_ok(&["sysctl", "-q", "-w", key_value]);
    }

    /// Writes `/etc/netns/<name>/<file>`, which `ip netns exec` mounts over `/etc/<file>`
    /// for programs started in the namespace (hosts, resolv.conf).
    pub fn write_etc(&self, file: &str, content: &str) {
        let dir = PathBuf::from("/etc/netns").join(&self.name);
        std::fs::create_dir_all(&dir).unwrap();
        // Rewritten in place, not replaced: a bind-mounted file keeps its inode.
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(dir.join(file))
            .unwrap();
        f.write_all(content.as_bytes()).unwrap();
    }

    /// Runs `f` on a thread that entered this namespace (sockets it opens live there).
    pub fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        in_netns(&self.name, f)
    }
}

/// Runs `f` on a thread that entered the namespace `name`.
pub fn in_netns<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{name}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("open netns");
        // SAFETY: setns on a namespace file descriptor affects only this thread.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("thread in netns")
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse::<i32>() {
                    // SAFETY: plain kill(2) of a process that runs in our test namespace.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        let _ = std::fs::remove_dir_all(PathBuf::from("/etc/netns").join(&self.name));
    }
}

/// A remote host: a namespace behind a veth pair, addressed in 198.18.0.0/15.
pub struct NetnsHost {
    pub ns: Netns,
    /// The host's address (inside the namespace).
    pub addr: Ipv4Addr,
    /// Our side of the link.
    pub peer: Ipv4Addr,
    veth: String,
    veth_inside: String,
}

impl NetnsHost {
    pub fn new() -> Self {
        require_tool("ip");
        let ns = Netns::isolated();
        let (pid, n) = unique_id();
        let veth = format!("vg{}h{n}", pid % 10_000_000);
        let veth_inside = format!("vg{}p{n}", pid % 10_000_000);
        // One /30 out of the benchmarking range per host, skipping blocks in use.
        let mut block = (pid.wrapping_mul(97).wrapping_add(n * 4099)) % 32768;
        let in_use = String::from_utf8_lossy(&run("ip", &["-4", "-o", "addr"]).stdout).to_string();
        let (peer, addr) = loop {
            let base = u32::from(Ipv4Addr::new(198, 18, 0, 0)) + block * 4;
            let peer = Ipv4Addr::from(base + 1);
            if !in_use.contains(&format!(" {peer}/")) {
                break (peer, Ipv4Addr::from(base + 2));
            }
            block = (block + 1) % 32768;
        };
        let host = NetnsHost {
            ns,
            addr,
            peer,
            veth: veth.clone(),
            veth_inside: veth_inside.clone(),
        };
        run(
            "ip",
            &[
                "link",
                "add",
                &veth,
                "type",
                "veth",
                "peer",
                "name",
                &veth_inside,
            ],
        );
        run("ip", &["link", "set", &veth_inside, "netns", &host.ns.name]);
        run("ip", &["addr", "add", &format!("{peer}/30"), "dev", &veth]);
        run("ip", &["link", "set", &veth, "up"]);
        host.ns.exec_ok(&[
            "ip",
            "addr",
            "add",
            &format!("{addr}/30"),
            "dev",
            &veth_inside,
        ]);
        host.ns.exec_ok(&["ip", "link", "set", &veth_inside, "up"]);
        host
    }

    /// Kernel echo replies off (`true`) or on, inside the host.
    pub fn set_echo_ignore(&self, ignore: bool) {
        self.ns.sysctl(&format!(
            "net.ipv4.icmp_echo_ignore_all={}",
            u8::from(ignore)
        ));
    }

    /// The host's side of the link down (`false`) or up.
    pub fn set_link(&self, up: bool) {
        self.ns.exec_ok(&[
            "ip",
            "link",
            "set",
            &self.veth_inside,
            if up { "up" } else { "down" },
        ]);
    }
}

impl Drop for NetnsHost {
    fn drop(&mut self) {
        // Deleting one end of a veth pair deletes both.
        let _ = Command::new("ip")
            .args(["link", "del", &self.veth])
            .stderr(Stdio::null())
            .status();
    }
}

/// An ICMP echo responder in user space that answers after a delay.
pub struct SlowResponder {
    child: Child,
}

impl SlowResponder {
    pub fn start(host: &NetnsHost, delay: Duration) -> Self {
        require_tool("python3");
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/slow_icmp_responder.py");
        let mut child = Command::new("ip")
            .args(["netns", "exec", &host.ns.name, "python3"])
            .arg(&script)
            .arg(format!("{}", delay.as_secs_f64()))
            // Stops by itself after this many seconds even if the test dies.
            .arg("300")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the responder");
        // Wait (bounded) for its "ready" line: on a busy machine Python takes a while.
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
        // Built before the check, so a failed start still kills the child.
        let responder = SlowResponder { child };
        assert_eq!(line.trim(), "ready", "the slow responder did not start");
        responder
    }
}

impl Drop for SlowResponder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free TCP port on 127.0.0.1 (free when asked; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running vigia-ping.
pub struct Exporter {
    child: Child,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    netns: Option<String>,
}

/// The vigia-ping under test: this build, or `VIGIA_PING_TEST_BINARY` (to check that a
/// test fails on an older build).
pub fn binary() -> String {
    std::env::var("VIGIA_PING_TEST_BINARY")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_vigia-ping").to_string())
}

impl Exporter {
    /// Starts vigia-ping with `yaml` as its config file; `{dir}` in the YAML is replaced by
    /// the exporter's own temporary directory. Waits until /-/healthy answers.
    pub fn start(yaml: &str) -> Self {
        Self::launch(None, yaml, &[])
    }

    /// As [`Exporter::start`], with extra environment variables.
    pub fn start_with_env(yaml: &str, env: &[(&str, &str)]) -> Self {
        Self::launch(None, yaml, env)
    }

    /// As [`Exporter::start`], with files written into its directory first (a targets
    /// file named in the YAML as `{dir}/targets.txt`).
    pub fn start_with_files(yaml: &str, files: &[(&str, &str)]) -> Self {
        Self::launch_full(None, yaml, &[], None, files)
    }

    /// As [`Exporter::start`], inside `ns`.
    pub fn start_in(ns: &Netns, yaml: &str) -> Self {
        Self::launch(Some(ns), yaml, &[])
    }

    /// As [`Exporter::start`], with at most `files` open files (`ulimit -n`, soft and hard).
    pub fn start_with_open_files(yaml: &str, files: u64) -> Self {
        Self::launch_limited(None, yaml, &[], Some(files))
    }

    fn launch(ns: Option<&Netns>, yaml: &str, env: &[(&str, &str)]) -> Self {
        Self::launch_limited(ns, yaml, env, None)
    }

    fn launch_limited(
        ns: Option<&Netns>,
        yaml: &str,
        env: &[(&str, &str)],
        open_files: Option<u64>,
    ) -> Self {
        Self::launch_full(ns, yaml, env, open_files, &[])
    }

    fn launch_full(
        ns: Option<&Netns>,
        yaml: &str,
        env: &[(&str, &str)],
        open_files: Option<u64>,
        files: &[(&str, &str)],
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        for (name, content) in files {
            std::fs::write(dir.path().join(name), content).unwrap();
        }
        let config = dir.path().join("vigia-ping.yaml");
        std::fs::write(&config, yaml.replace("{dir}", dir.path().to_str().unwrap())).unwrap();
        let port = match ns {
            // A fresh namespace has every port free.
            Some(_) => 9471,
            None => free_port(),
        };
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut cmd = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &ns.name, &binary()]);
                c
            }
            None => Command::new(binary()),
        };
        cmd.arg("--config.file")
            .arg(&config)
            .arg("--web.listen-address")
            .arg(addr.to_string())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        if let Some(files) = open_files {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe and touches only the child.
            unsafe {
                cmd.pre_exec(move || {
                    let limit = libc::rlimit {
                        rlim_cur: files,
                        rlim_max: files,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = cmd.spawn().expect("start vigia-ping");
        let mut e = Exporter {
            child,
            addr,
            dir,
            netns: ns.map(|n| n.name.clone()),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = e.child.try_wait().unwrap() {
                panic!("vigia-ping exited with {status}: {}", e.stderr());
            }
            if e.try_get("/-/healthy").is_some_and(|(s, _)| s == 200) {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "vigia-ping did not start: {}",
                e.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// GET `path`; `None` when the connection fails.
    pub fn try_get(&self, path: &str) -> Option<(u16, String)> {
        let addr = self.addr;
        let path = path.to_string();
        match &self.netns {
            None => http_get(addr, &path),
            Some(ns) => in_netns(ns, move || http_get(addr, &path)),
        }
    }

    /// GET `path`, panicking when the exporter does not answer.
    pub fn get(&self, path: &str) -> (u16, String) {
        self.try_get(path)
            .unwrap_or_else(|| panic!("no answer for {path}: {}", self.stderr()))
    }

    pub fn metrics(&self) -> String {
        let (status, body) = self.get("/metrics");
        assert_eq!(status, 200);
        body
    }

    /// Polls /metrics until `cond` holds, or panics after `within` with the last body.
    pub fn wait_metrics(
        &self,
        within: Duration,
        what: &str,
        cond: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + within;
        loop {
            let body = self.metrics();
            if cond(&body) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; last /metrics:\n{body}\nlog:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.0 GET; `None` when the connection fails.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    http_request(addr, "GET", path)
}

/// A minimal HTTP/1.0 request without body; `None` when the connection fails.
pub fn http_request(addr: SocketAddr, method: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// The value of the sample `name{labels...}` whose labels include all of `labels`.
pub fn metric(body: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            let Some(rest) = l.strip_prefix(name) else {
                return false;
            };
            if !(rest.starts_with('{') || rest.starts_with(' ')) {
                return false;
            }
            labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Percent-encodes a query-string value.
pub fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A private InfluxDB 1.x server, killed on drop.
pub struct Influxd {
    child: Child,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Influxd {
    pub fn start() -> Self {
        require_tool("influxd");
        let defaults = run("influxd", &["config"]);
        let defaults = String::from_utf8_lossy(&defaults.stdout).to_string();
        let dir = tempfile::tempdir().unwrap();
        let (http, rpc) = {
            let a = TcpListener::bind("127.0.0.1:0").unwrap();
            let b = TcpListener::bind("127.0.0.1:0").unwrap();
            (
                a.local_addr().unwrap().port(),
                b.local_addr().unwrap().port(),
            )
        };
        // Everything stored under `dir`, everything listening on loopback.
        let mut config = String::new();
        let mut section = String::new();
        for line in defaults.lines() {
            let t = line.trim();
            if t.starts_with('[') {
                section = t.trim_matches(|c| c == '[' || c == ']').to_string();
            }
            let key = t.split('=').next().unwrap_or("").trim();
            let value = match (section.as_str(), key) {
                ("", "reporting-enabled") => Some("false".to_string()),
                ("", "bind-address") => Some(format!("\"127.0.0.1:{rpc}\"")),
                ("meta", "dir") => Some(format!("\"{}/meta\"", dir.path().display())),
                ("data", "dir") => Some(format!("\"{}/data\"", dir.path().display())),
                ("data", "wal-dir") => Some(format!("\"{}/wal\"", dir.path().display())),
                ("http", "bind-address") => Some(format!("\"127.0.0.1:{http}\"")),
                ("http", "log-enabled") => Some("false".to_string()),
                ("monitor", "store-enabled") => Some("false".to_string()),
                (_, "bind-address") => Some("\"127.0.0.1:0\"".to_string()),
                _ => None,
            };
            match value {
                Some(v) => config.push_str(&format!("{key} = {v}\n")),
                None => {
                    config.push_str(line);
                    config.push('\n');
                }
            }
        }
        let path = dir.path().join("influxdb.conf");
        std::fs::write(&path, config).unwrap();
        let child = Command::new("influxd")
            .arg("run")
            .arg("-config")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("influxd.log")).unwrap())
            .spawn()
            .expect("start influxd");
        let server = Influxd {
            child,
            addr: format!("127.0.0.1:{http}").parse().unwrap(),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while http_get(server.addr, "/ping").map_or(true, |(s, _)| s != 204) {
            assert!(Instant::now() < deadline, "influxd did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    pub fn create_database(&self, name: &str) {
        let q = url_encode(&format!("CREATE DATABASE \"{name}\""));
        let (status, body) = http_request(self.addr, "POST", &format!("/query?q={q}")).unwrap();
        assert_eq!(status, 200, "{body}");
    }

    pub fn query(&self, db: &str, influxql: &str) -> serde_json::Value {
        let path = format!("/query?db={db}&q={}", url_encode(influxql));
        let (status, body) = http_get(self.addr, &path).expect("influxd answers");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }
}

impl Drop for Influxd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
