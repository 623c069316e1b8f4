//! What the integration tests share: starting exporters as real processes on free
//! loopback ports, scraping them over HTTP and parsing the text exposition format.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A process killed when the test ends, however it ends.
pub struct Running {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap()
}

/// Fails the test, with the package to install, when a tool CI must provide is missing.
pub fn require_tool(binary: &str, package: &str) -> String {
    for dir in ["/usr/bin", "/usr/sbin", "/bin", "/sbin", "/usr/local/bin"] {
        let p = Path::new(dir).join(binary);
        if p.exists() {
            return p.display().to_string();
        }
    }
    panic!("{binary} is not installed: apt-get install {package} (CI installs it)");
}

/// `GET path` over HTTP/1.0; returns (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_string()))
}

/// Polls `/metrics` until it answers 200, for at most `limit`.
pub fn wait_until_serving(run: &mut Running, limit: Duration) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(Some(status)) = run.child.try_wait() {
            panic!("exporter at {} exited early: {status}", run.addr);
        }
        if let Ok((200, _)) = http_get(run.addr, "/metrics") {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "exporter at {} did not serve /metrics within {limit:?}",
        run.addr
    );
}

/// Starts vigia-host with the given environment (config through `VIGIA_HOST__...`).
pub fn start_vigia_host(env: &[(&str, &str)]) -> Running {
    start_vigia_host_with_args(env, &[])
}

pub fn start_vigia_host_with_args(env: &[(&str, &str)], args: &[&str]) -> Running {
    Launch {
        env,
        args,
        ..Launch::default()
    }
    .start()
}

/// How to start vigia-host when its environment and arguments are not enough.
#[derive(Default)]
pub struct Launch<'a> {
    /// A program and its arguments that runs what follows them (`setpriv --reuid=...`).
    pub wrapper: &'a [&'a str],
    /// The binary to run; Cargo's build of vigia-host when `None`.
    pub binary: Option<&'a Path>,
    pub env: &'a [(&'a str, &'a str)],
    pub args: &'a [&'a str],
    /// A file for its stderr (the logs); inherited when `None`.
    pub log: Option<&'a Path>,
}

impl Launch<'_> {
    pub fn start(&self) -> Running {
        let addr = free_port();
        let binary = self
            .binary
            .unwrap_or(Path::new(env!("CARGO_BIN_EXE_vigia-host")));
        let mut cmd = match self.wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(binary);
                c
            }
            None => Command::new(binary),
        };
        cmd.arg(format!("--web.listen-address={addr}"))
            .args(self.args)
            .env_remove("VIGIA_CONFIG_FILE")
            .envs(self.env.iter().copied())
            .stdout(Stdio::null());
        match self.log {
            Some(path) => cmd.stderr(std::fs::File::create(path).expect("log file")),
            None => cmd.stderr(Stdio::inherit()),
        };
        let child = cmd.spawn().expect("start vigia-host");
        let mut run = Running { child, addr };
        wait_until_serving(&mut run, Duration::from_secs(15));
        run
    }
}

/// The `fields` of every JSON log line (`--log.format=json`) whose message is `message`.
pub fn logged(log: &Path, message: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == message)
        .map(|v| v["fields"].clone())
        .collect()
}

pub type LabelSet = BTreeMap<String, String>;

/// A family's `# TYPE` and `# HELP` lines (HELP as written, escapes and all).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FamilyMeta {
    pub kind: Option<String>,
    pub help: Option<String>,
}

/// One scrape: (metric name, labels) → value, and each family's TYPE and HELP.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    pub series: HashMap<(String, LabelSet), f64>,
    pub meta: BTreeMap<String, FamilyMeta>,
}

impl Scrape {
    pub fn parse(text: &str) -> Scrape {
        let mut series = HashMap::new();
        let mut meta: BTreeMap<String, FamilyMeta> = BTreeMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                if let Some((name, kind)) = rest.split_once(' ') {
                    meta.entry(name.to_string()).or_default().kind = Some(kind.to_string());
                }
                continue;
            }
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
                meta.entry(name.to_string()).or_default().help = Some(help.to_string());
                continue;
            }
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (name_labels, value) = match line.rfind('}') {
                Some(end) => (&line[..=end], line[end + 1..].trim()),
                None => line.split_once(' ').expect("sample line has a value"),
            };
            let value = value.split_whitespace().next().unwrap_or("");
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v
                    .parse()
                    .unwrap_or_else(|_| panic!("bad value in {line:?}")),
            };
            let (name, labels) = match name_labels.split_once('{') {
                Some((n, rest)) => (n.to_string(), parse_labels(rest.trim_end_matches('}'))),
                None => (name_labels.trim().to_string(), LabelSet::new()),
            };
            series.insert((name, labels), value);
        }
        Scrape { series, meta }
    }

    pub fn fetch(addr: SocketAddr) -> Scrape {
        let (status, body) = http_get(addr, "/metrics").expect("scrape");
        assert_eq!(status, 200, "scrape of {addr} answered {status}: {body}");
        Scrape::parse(&body)
    }

    /// All label sets of one family.
    pub fn family(&self, name: &str) -> BTreeMap<LabelSet, f64> {
        self.series
            .iter()
            .filter(|((n, _), _)| n == name)
            .map(|((_, l), v)| (l.clone(), *v))
            .collect()
    }

    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let set: LabelSet = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.series.get(&(name.to_string(), set)).copied()
    }
}

fn parse_labels(s: &str) -> LabelSet {
    let mut out = LabelSet::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek() == Some(&',') || chars.peek() == Some(&' ') {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        assert_eq!(
            chars.next(),
            Some('"'),
            "label {key} is not quoted in {s:?}"
        );
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(o) => value.push(o),
                    None => break,
                },
                '"' => break,
                c => value.push(c),
            }
        }
        out.insert(key, value);
    }
    out
}

/// `POST path` with a form body over HTTP/1.0; returns (status, body).
pub fn http_post_form(addr: SocketAddr, path: &str, form: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    write!(
        s,
        "POST {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_string()))
}

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

/// A private InfluxDB 1.x: the kit's, shared by every exporter's tests.
// Not every test that includes this module uses it.
#[allow(unused_imports)]
pub use vigia_kit::testing::Influxd;

/// Unpacks a fixture tree written as one text file (`tests/fixtures/node-tree.txt`) into
/// `dst`: `%% file PATH` and the file's lines up to the next `%% ` line (trailing blank
/// lines dropped, every line ending with a newline), `%% link PATH -> TARGET`,
/// `%% dir PATH`, `%% # comment`.
pub fn unpack_tree(spec: &Path, dst: &Path) {
    fn write(dst: &Path, path: &str, lines: &mut Vec<&str>) {
        while lines.last() == Some(&"") {
            lines.pop();
        }
        let p = dst.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(&p, text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        lines.clear();
    }
    let text = std::fs::read_to_string(spec).unwrap_or_else(|e| panic!("{}: {e}", spec.display()));
    let mut current: Option<&str> = None;
    let mut lines: Vec<&str> = Vec::new();
    for line in text.split('\n') {
        let Some(directive) = line.strip_prefix("%% ").or((line == "%%").then_some("")) else {
            if current.is_some() {
                lines.push(line);
            }
            continue;
        };
        if let Some(path) = current.take() {
            write(dst, path, &mut lines);
        }
        if let Some(path) = directive.strip_prefix("file ") {
            current = Some(path);
        } else if let Some(link) = directive.strip_prefix("link ") {
            let (path, target) = link.split_once(" -> ").expect("link PATH -> TARGET");
            let p = dst.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(target, &p)
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        } else if let Some(path) = directive.strip_prefix("dir ") {
            std::fs::create_dir_all(dst.join(path)).unwrap();
        } else {
            assert!(
                directive.is_empty() || directive.starts_with('#'),
                "unknown fixture directive {line:?}"
            );
        }
    }
    if let Some(path) = current {
        write(dst, path, &mut lines);
    }
}

/// How to run vigia-host as `nobody` (`setpriv`, util-linux): a copy of the binary that
/// others may run (the build directory may be closed to them) and the wrapper for
/// `Launch`. Needs root.
pub struct AsNobody {
    _dir: tempfile::TempDir,
    pub binary: std::path::PathBuf,
    setpriv: String,
}

impl AsNobody {
    pub fn new() -> AsNobody {
        use std::os::unix::fs::PermissionsExt;
        let setpriv = require_tool("setpriv", "util-linux");
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let binary = dir.path().join("vigia-host");
        std::fs::copy(env!("CARGO_BIN_EXE_vigia-host"), &binary).unwrap();
        std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
        AsNobody {
            _dir: dir,
            binary,
            setpriv,
        }
    }

    pub fn wrapper(&self) -> [&str; 5] {
        [
            self.setpriv.as_str(),
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
        ]
    }
}
