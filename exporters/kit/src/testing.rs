//! Test support shared by the exporters' integration tests (feature `testing`, for
//! dev-dependencies only): a private, real InfluxDB 1.x server.
//!
//! Tests run the real servers our users run (`influxd` from the Debian package
//! `influxdb`), each on free loopback ports with its data in a temporary directory, so
//! tests in parallel, and runs from other checkouts, never share one.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A private `influxd`, killed (and its data removed) when dropped.
pub struct Influxd {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Influxd {
    /// Starts `influxd` and waits until `/ping` answers. Panics (a test failure, not a
    /// skip) when `influxd` is missing: CI installs it.
    pub fn start() -> Influxd {
        let binary = influxd_binary();
        let defaults = Command::new(&binary)
            .arg("config")
            .stderr(Stdio::null())
            .output()
            .expect("run `influxd config`");
        assert!(defaults.status.success(), "`influxd config` failed");
        let dir = tempfile::tempdir().expect("temporary directory");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let config = private_config(
            &String::from_utf8_lossy(&defaults.stdout),
            dir.path(),
            addr,
            free_port(),
        );
        let config_path = dir.path().join("influxdb.conf");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("influxd.log")).unwrap();
        let child = Command::new(binary)
            .arg("run")
            .arg("-config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start influxd");
        let mut server = Influxd { child, addr, dir };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if matches!(http(addr, "GET", "/ping"), Ok((204, _))) {
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("influxd exited with {status}:\n{}", server.log());
            }
            assert!(
                Instant::now() < deadline,
                "influxd did not answer /ping within 60 s:\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The base URL for a writer's `url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("influxd.log")).unwrap_or_default()
    }

    pub fn create_database(&self, database: &str) {
        self.query(None, &format!("CREATE DATABASE \"{database}\""));
    }

    /// Runs InfluxQL (`POST /query`) and returns the JSON answer; panics on an HTTP error
    /// or an error in the answer.
    pub fn query(&self, database: Option<&str>, q: &str) -> serde_json::Value {
        let mut path = format!("/query?q={}", url_encode(q));
        if let Some(db) = database {
            path.push_str(&format!("&db={}", url_encode(db)));
        }
        let (status, body) = http(self.addr, "POST", &path).expect("query influxd");
        assert_eq!(status, 200, "{q}: {body}");
        let answer: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{q}: {e}: {body}"));
        let failed = answer["results"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|r| r["error"].as_str());
        assert!(failed.is_none(), "{q}: {body}");
        answer
    }

    /// The rows of every series a query returns, as maps from column to value, with the
    /// series' tags (`GROUP BY`) added to each row.
    pub fn rows(&self, database: &str, q: &str) -> Vec<serde_json::Map<String, serde_json::Value>> {
        let answer = self.query(Some(database), q);
        let mut rows = Vec::new();
        for series in answer["results"][0]["series"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let columns: Vec<&str> = series["columns"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c.as_str())
                .collect();
            for values in series["values"].as_array().into_iter().flatten() {
                let mut row = serde_json::Map::new();
                for (c, v) in columns.iter().zip(values.as_array().into_iter().flatten()) {
                    row.insert(c.to_string(), v.clone());
                }
                if let Some(tags) = series["tags"].as_object() {
                    for (k, v) in tags {
                        row.insert(k.clone(), v.clone());
                    }
                }
                rows.push(row);
            }
        }
        rows
    }
}

impl Drop for Influxd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn influxd_binary() -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("influxd"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "`influxd` not found in PATH: this test needs the real InfluxDB 1.x server; \
                 install the Debian package `influxdb` (CI does)"
            )
        })
}

/// The packaged defaults (`influxd config`) with storage under `dir`, HTTP on `http`,
/// the RPC service on loopback `rpc`, every other listener on a loopback port of the
/// system's choosing, and nothing reported or logged per request.
fn private_config(defaults: &str, dir: &Path, http: SocketAddr, rpc: u16) -> String {
    let mut section = String::new();
    let mut out = String::new();
    for line in defaults.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            section = trimmed.trim_matches(|c| c == '[' || c == ']').to_string();
        }
        let key = trimmed.split('=').next().unwrap_or("").trim();
        let path = |name: &str| format!("\"{}\"", dir.join(name).display());
        let value = match (section.as_str(), key) {
            ("", "reporting-enabled") => Some("false".to_string()),
            ("", "bind-address") => Some(format!("\"127.0.0.1:{rpc}\"")),
            ("meta", "dir") => Some(path("meta")),
            ("data", "dir") => Some(path("data")),
            ("data", "wal-dir") => Some(path("wal")),
            ("data", "query-log-enabled") => Some("false".to_string()),
            ("http", "bind-address") => Some(format!("\"{http}\"")),
            ("http", "log-enabled") => Some("false".to_string()),
            ("monitor", "store-enabled") => Some("false".to_string()),
            (_, "bind-address") => Some("\"127.0.0.1:0\"".to_string()),
            _ => None,
        };
        match value {
            Some(v) => out.push_str(&format!("{key} = {v}\n")),
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    assert!(
        out.contains(&http.to_string()),
        "the config rewrite missed the HTTP address: {defaults}"
    );
    out
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One HTTP/1.1 request with no body; the status and the body (not chunked: influxd
/// answers with a length).
fn http(addr: SocketAddr, method: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(raw.len(), |i| i + 4);
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = if head.contains("transfer-encoding: chunked") {
        dechunk(&raw[split..])
    } else {
        raw[split..].to_vec()
    };
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = String::from_utf8_lossy(&rest[..line]);
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        let after = &rest[line + 2..];
        if n == 0 || after.len() < n {
            break;
        }
        out.extend_from_slice(&after[..n]);
        rest = after[n..].strip_prefix(b"\r\n").unwrap_or(&after[n..]);
    }
    out
}
