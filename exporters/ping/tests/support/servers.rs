//! Real servers for the tcp, http and dns probe tests, and a real Prometheus:
//! - [`Pki`]: a CA, intermediates and server certificates made with `openssl`, expiring
//!   when the test says ([`Pki::expiry`] reads a certificate's notAfter back from openssl);
//! - [`ProbeServers::start`]: `probe_servers.py` (Python's http.server, ssl) in a
//!   namespace: HTTP and HTTPS pages, TCP banners;
//! - [`Dnsmasq::start`]: Debian's `dnsmasq` (package `dnsmasq-base`) answering for
//!   `vigia.test` from a hosts file the test rewrites ([`Dnsmasq::set_hosts`]);
//! - [`Prometheus::start`]: Prometheus 2.53 from `.cache/stack/` (scripts/fetch-tools.sh
//!   puts it there), with the repository's own rule files.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, http_get, require_tool, run, url_encode, Netns};

/// Certificates made with openssl in a directory of the test.
pub struct Pki {
    pub dir: tempfile::TempDir,
}

/// A certificate and its key, as files.
#[derive(Clone)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    pub fn new() -> Self {
        require_tool("openssl");
        Pki {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A self-signed root CA valid for `days`.
    pub fn root(&self, name: &str, days: u32) -> Issued {
        let out = Issued {
            cert: self.path(&format!("{name}.pem")),
            key: self.path(&format!("{name}.key")),
        };
        let ext = self.path(&format!("{name}.ext"));
        std::fs::write(
            &ext,
            "[v3]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n",
        )
        .unwrap();
        run(
            "openssl",
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                out.key.to_str().unwrap(),
                "-out",
                out.cert.to_str().unwrap(),
                "-days",
                &days.to_string(),
                "-subj",
                &format!("/CN={name}"),
                "-config",
                ext.to_str().unwrap(),
                "-extensions",
                "v3",
            ],
        );
        out
    }

    /// A certificate signed by `issuer`, valid for `days`: an intermediate CA when
    /// `ca`, else a server certificate for `san` (`IP:198.18.0.2`).
    pub fn issue(&self, name: &str, issuer: &Issued, days: u32, ca: bool, san: &str) -> Issued {
        let out = Issued {
            cert: self.path(&format!("{name}.pem")),
            key: self.path(&format!("{name}.key")),
        };
        let csr = self.path(&format!("{name}.csr"));
        run(
            "openssl",
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                out.key.to_str().unwrap(),
                "-out",
                csr.to_str().unwrap(),
                "-subj",
                &format!("/CN={name}"),
            ],
        );
        let ext = self.path(&format!("{name}.ext"));
        let text = if ca {
            "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n".to_string()
        } else {
            format!("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName={san}\n")
        };
        std::fs::write(&ext, text).unwrap();
        run(
            "openssl",
            &[
                "x509",
                "-req",
                "-in",
                csr.to_str().unwrap(),
                "-CA",
                issuer.cert.to_str().unwrap(),
                "-CAkey",
                issuer.key.to_str().unwrap(),
                "-CAcreateserial",
                "-out",
                out.cert.to_str().unwrap(),
                "-days",
                &days.to_string(),
                "-extfile",
                ext.to_str().unwrap(),
            ],
        );
        out
    }

    /// The certificates concatenated, as a server sends them (leaf first).
    pub fn chain(&self, name: &str, parts: &[&Issued]) -> PathBuf {
        let path = self.path(&format!("{name}.chain.pem"));
        let mut all = String::new();
        for p in parts {
            all.push_str(&std::fs::read_to_string(&p.cert).unwrap());
        }
        std::fs::write(&path, all).unwrap();
        path
    }

    /// notAfter of a certificate file as Unix seconds, as openssl reads it.
    pub fn expiry(cert: &Path) -> i64 {
        let out = run(
            "openssl",
            &["x509", "-noout", "-enddate", "-in", cert.to_str().unwrap()],
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let date = text.trim().trim_start_matches("notAfter=").to_string();
        let out = run("date", &["-u", "-d", &date, "+%s"]);
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    }
}

/// probe_servers.py running in a namespace.
pub struct ProbeServers {
    child: Child,
}

impl ProbeServers {
    /// `args`: `--http ADDR:PORT`, `--https ADDR:PORT:CHAIN:KEY`, `--banner ADDR:PORT:TEXT`.
    pub fn start(ns: &Netns, args: &[String]) -> Self {
        require_tool("python3");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/probe_servers.py");
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns.name, "python3"])
            .arg(&script)
            .arg("300")
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start probe_servers.py");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
        let servers = ProbeServers { child };
        assert_eq!(line.trim(), "ready", "probe_servers.py did not start");
        servers
    }
}

impl Drop for ProbeServers {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// dnsmasq answering on `addr:53` inside a namespace, authoritative for `vigia.test`
/// (a name it does not have is NXDOMAIN), from a hosts file.
pub struct Dnsmasq {
    child: Child,
    hosts: PathBuf,
    _dir: tempfile::TempDir,
}

impl Dnsmasq {
    pub fn start(ns: &Netns, addr: std::net::Ipv4Addr, hosts: &str) -> Self {
        require_tool("dnsmasq");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hosts");
        std::fs::write(&file, hosts).unwrap();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns.name,
                "dnsmasq",
                "--no-daemon",
                "--conf-file=/dev/null",
            ])
            .args([
                "--no-resolv",
                "--no-hosts",
                "--local=/vigia.test/",
                "--bind-interfaces",
            ])
            .arg(format!("--listen-address={addr}"))
            .arg(format!("--addn-hosts={}", file.display()))
            .args(["--port=53", "--user=root", "--pid-file=", "--cache-size=0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dnsmasq");
        let server = Dnsmasq {
            child,
            hosts: file,
            _dir: dir,
        };
        // Ready once the port answers (dnsmasq binds at once; give it a moment).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = ns.exec(&["ss", "-Hlun", "sport = :53"]);
            if String::from_utf8_lossy(&out.stdout).contains(&addr.to_string()) {
                break;
            }
            assert!(Instant::now() < deadline, "dnsmasq did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// Rewrites the hosts file and makes dnsmasq read it again (SIGHUP).
    pub fn set_hosts(&self, hosts: &str) {
        std::fs::write(&self.hosts, hosts).unwrap();
        // SAFETY: kill(2) to our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGHUP) };
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The repository's root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Prometheus 2.53 (Debian trixie's, the stack's version) from `.cache/stack/`, fetched
/// there by scripts/fetch-tools.sh when it is missing.
pub fn prometheus_binary() -> PathBuf {
    let root = repo_root();
    let bin = root.join(".cache/stack/root/usr/bin/prometheus");
    if !bin.is_file() {
        let out = Command::new(root.join("scripts/fetch-tools.sh"))
            .output()
            .expect("run scripts/fetch-tools.sh");
        assert!(
            out.status.success(),
            "scripts/fetch-tools.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(bin.is_file(), "no {} after fetch-tools", bin.display());
    bin
}

/// A firing alert as (alertname, target, severity).
pub type FiringAlert = (String, String, String);

/// A private Prometheus scraping `scrape` every second, evaluating the repository's
/// rules every second; killed on drop.
pub struct Prometheus {
    child: Child,
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Prometheus {
    pub fn start(scrape: SocketAddr) -> Self {
        Self::start_rules(
            scrape,
            repo_root().join("prometheus/rules"),
            tempfile::tempdir().unwrap(),
        )
    }

    /// As `start`, with the repository's rules copied and every `for: 2m` (the down
    /// alerts' wait) made `for_`: the shipped expressions, a test's patience.
    pub fn start_with_down_for(scrape: SocketAddr, for_: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let rules = dir.path().join("rules");
        std::fs::create_dir(&rules).unwrap();
        for name in ["recording.yml", "alerts.yml"] {
            let text =
                std::fs::read_to_string(repo_root().join("prometheus/rules").join(name)).unwrap();
            assert!(
                name != "alerts.yml" || text.contains("for: 2m"),
                "alerts.yml has no `for: 2m` left"
            );
            std::fs::write(
                rules.join(name),
                text.replace("for: 2m", &format!("for: {for_}")),
            )
            .unwrap();
        }
        Self::start_rules(scrape, rules, dir)
    }

    fn start_rules(scrape: SocketAddr, rules: std::path::PathBuf, dir: tempfile::TempDir) -> Self {
        let bin = prometheus_binary();
        let config = format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             rule_files: [\"{rules}/recording.yml\", \"{rules}/alerts.yml\"]\n\
             scrape_configs:\n  - job_name: vigia-ping\n    honor_labels: true\n    static_configs: [{{targets: [\"{scrape}\"]}}]\n",
            rules = rules.display()
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let child = Command::new(bin)
            .arg(format!(
                "--config.file={}/prometheus.yml",
                dir.path().display()
            ))
            .arg(format!("--storage.tsdb.path={}/data", dir.path().display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap())
            .spawn()
            .expect("start prometheus");
        let p = Prometheus { child, addr, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while http_get(p.addr, "/-/ready").map_or(true, |(s, _)| s != 200) {
            assert!(
                Instant::now() < deadline,
                "prometheus did not start: {}",
                p.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        p
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// Firing alerts as (alertname, target, severity).
    pub fn firing(&self) -> Vec<(String, String, String)> {
        let Some((200, body)) = http_get(self.addr, "/api/v1/alerts") else {
            return Vec::new();
        };
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        json["data"]["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["state"] == "firing")
            .map(|a| {
                let l = &a["labels"];
                let s = |k: &str| l[k].as_str().unwrap_or_default().to_string();
                (s("alertname"), s("target"), s("severity"))
            })
            .collect()
    }

    /// Polls the firing alerts until `cond` holds, failing with `what` and Prometheus' log
    /// after `timeout`; returns the alerts that satisfied it.
    pub fn wait_firing(
        &self,
        what: &str,
        timeout: Duration,
        cond: &dyn Fn(&[FiringAlert]) -> bool,
    ) -> Vec<FiringAlert> {
        let deadline = Instant::now() + timeout;
        loop {
            let firing = self.firing();
            if cond(&firing) {
                return firing;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; firing: {firing:?}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The value of a PromQL expression's first sample, if any.
    pub fn query(&self, expr: &str) -> Option<f64> {
        let (_, body) = http_get(
            self.addr,
            &format!("/api/v1/query?query={}", url_encode(expr)),
        )?;
        let json: serde_json::Value = serde_json::from_str(&body).ok()?;
        json["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
