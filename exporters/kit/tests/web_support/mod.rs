//! Shared by the `web_*` tests: real certificates from `openssl`, real bcrypt hashes from
//! `htpasswd -B`, the kit's server on a loopback port, and `curl` as the TLS client.
//! CI installs the tools (packages `openssl`, `apache2-utils`, `curl`); a missing one
//! fails the test with the package to install, never skips it.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use vigia_kit::server::{bind, router, serve, Landing, Readiness};
use vigia_kit::shutdown::{Shutdown, ShutdownTrigger};
use vigia_kit::web_config::WebConfig;
use vigia_kit::Metrics;

/// Panics with the Debian package to install when `tool` is not on PATH.
pub fn require_tool(tool: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "`{tool}` is not installed: this test needs it (apt-get install {package})"
    );
}

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `htpasswd -nbB user password`, the hash part only (`$2y$05$...`).
pub fn htpasswd_bcrypt(user: &str, password: &str) -> String {
    htpasswd(&["-nbB"], user, password)
}

/// `htpasswd -nbm`: Apache's MD5 scheme (`$apr1$`), which is not bcrypt.
pub fn htpasswd_md5(user: &str, password: &str) -> String {
    htpasswd(&["-nbm"], user, password)
}

fn htpasswd(flags: &[&str], user: &str, password: &str) -> String {
    require_tool("htpasswd", "apache2-utils");
    let out = run(Command::new("htpasswd").args(flags).arg(user).arg(password));
    let line = String::from_utf8(out.stdout).expect("htpasswd prints ASCII");
    let (name, hash) = line
        .trim()
        .split_once(':')
        .expect("htpasswd prints user:hash");
    assert_eq!(name, user);
    hash.to_string()
}

/// A throwaway PKI: a CA, a server certificate for 127.0.0.1 and localhost, two client
/// certificates from that CA (different SANs) and one client certificate from another CA.
pub struct Pki {
    pub dir: tempfile::TempDir,
    serial: std::cell::Cell<u32>,
}

/// SANs of the client certificate `client` (signed by the test CA).
pub const CLIENT_DNS: &str = "scraper.vigia.test";
pub const CLIENT_URI: &str = "spiffe://vigia.test/scraper";
/// SAN of `client_other`, also signed by the test CA.
pub const OTHER_CLIENT_DNS: &str = "intruder.vigia.test";

const REQ_CNF: &str = "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\n\
[v3_ca]\nbasicConstraints = critical, CA:true\nkeyUsage = critical, keyCertSign, cRLSign\n\
subjectKeyIdentifier = hash\n";

impl Pki {
    pub fn generate() -> Self {
        require_tool("openssl", "openssl");
        let pki = Self {
            dir: tempfile::tempdir().expect("temp dir"),
            serial: std::cell::Cell::new(1000),
        };
        std::fs::write(pki.path("req.cnf"), REQ_CNF).unwrap();
        pki.ca("ca", "vigia test CA");
        pki.ca("foreign-ca", "some other CA");
        pki.leaf(
            "server",
            "ca",
            "localhost",
            "rsa",
            "serverAuth",
            "IP:127.0.0.1, DNS:localhost",
        );
        pki.leaf(
            "client",
            "ca",
            "scraper",
            "ec",
            "clientAuth",
            &format!("DNS:{CLIENT_DNS}, URI:{CLIENT_URI}"),
        );
        pki.leaf(
            "client-other",
            "ca",
            "intruder",
            "ec",
            "clientAuth",
            &format!("DNS:{OTHER_CLIENT_DNS}"),
        );
        pki.leaf(
            "client-foreign",
            "foreign-ca",
            "scraper",
            "ec",
            "clientAuth",
            &format!("DNS:{CLIENT_DNS}"),
        );
        pki
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `<name>.crt` and `<name>.key` as absolute paths.
    pub fn pair(&self, name: &str) -> (PathBuf, PathBuf) {
        (
            self.path(&format!("{name}.crt")),
            self.path(&format!("{name}.key")),
        )
    }

    fn ca(&self, name: &str, cn: &str) {
        run(Command::new("openssl")
            .current_dir(self.dir.path())
            .args(["req", "-x509", "-new", "-newkey", "ec"])
            .args(["-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
            .args(["-keyout", &format!("{name}.key")])
            .args(["-out", &format!("{name}.crt")])
            .args(["-days", "3", "-subj", &format!("/CN={cn}")])
            .args(["-config", "req.cnf", "-extensions", "v3_ca"]));
    }

    /// A leaf certificate signed by `ca`, with its key of type `key_type` (rsa or ec).
    pub fn leaf(&self, name: &str, ca: &str, cn: &str, key_type: &str, eku: &str, san: &str) {
        let key_args: &[&str] = match key_type {
            "rsa" => &["-newkey", "rsa:2048"],
            _ => &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"],
        };
        run(Command::new("openssl")
            .current_dir(self.dir.path())
            .args(["req", "-new", "-nodes"])
            .args(key_args)
            .args(["-keyout", &format!("{name}.key")])
            .args(["-out", &format!("{name}.csr")])
            .args(["-subj", &format!("/CN={cn}"), "-config", "req.cnf"]));
        let ext = format!(
            "basicConstraints = critical, CA:false\n\
             keyUsage = critical, digitalSignature, keyEncipherment\n\
             extendedKeyUsage = {eku}\nsubjectAltName = {san}\n\
             authorityKeyIdentifier = keyid\n"
        );
        std::fs::write(self.path(&format!("{name}.ext")), ext).unwrap();
        let serial = self.serial.get() + 1;
        self.serial.set(serial);
        run(Command::new("openssl")
            .current_dir(self.dir.path())
            .args(["x509", "-req", "-in", &format!("{name}.csr")])
            .args(["-CA", &format!("{ca}.crt"), "-CAkey", &format!("{ca}.key")])
            .args(["-set_serial", &serial.to_string(), "-days", "3"])
            .args(["-out", &format!("{name}.crt")])
            .args(["-extfile", &format!("{name}.ext")]));
    }

    /// Writes `web.yml` into the PKI directory (relative names resolve there).
    pub fn web_config(&self, yaml: &str) -> PathBuf {
        let path = self.path("web.yml");
        std::fs::write(&path, yaml).unwrap();
        path
    }
}

/// The kit's real server on 127.0.0.1, on its own runtime, serving a registry that
/// holds the kit's self-metrics (so `vigia_build_info` shows a real scrape body).
pub struct TestServer {
    pub addr: SocketAddr,
    trigger: ShutdownTrigger,
    done: Option<tokio::task::JoinHandle<()>>,
    runtime: tokio::runtime::Runtime,
}

impl TestServer {
    pub fn start(web: WebConfig) -> Self {
        Self::start_with(web, Metrics::new("vigia-test"))
    }

    pub fn start_with(web: WebConfig, metrics: Metrics) -> Self {
        Self::launch(web, metrics, axum::Router::new())
    }

    /// As [`TestServer::start`], with extra routes beside the kit's own.
    pub fn start_with_routes(web: WebConfig, extra: axum::Router) -> Self {
        Self::launch(web, Metrics::new("vigia-test"), extra)
    }

    fn launch(web: WebConfig, metrics: Metrics, extra: axum::Router) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = runtime
            .block_on(bind("127.0.0.1:0".parse().unwrap()))
            .expect("bind");
        let addr = listener.local_addr().unwrap();
        let (trigger, shutdown) = Shutdown::manual();
        let app = router(
            Arc::new(metrics),
            Readiness::new(true),
            Some(Landing {
                title: "vigia test".into(),
                description: "web config test".into(),
                links: vec![],
            }),
            extra,
        );
        let done = runtime.spawn(serve(listener, app, web, shutdown, Duration::from_secs(10)));
        Self {
            addr,
            trigger,
            done: Some(done),
            runtime,
        }
    }

    pub fn url(&self, scheme: &str, path: &str) -> String {
        format!("{scheme}://127.0.0.1:{}{path}", self.addr.port())
    }

    /// Triggers shutdown; true when `serve` returned within `within`.
    pub fn shutdown(&mut self, within: Duration) -> bool {
        self.trigger.trigger();
        let done = self.done.take().expect("shut down once");
        self.runtime
            .block_on(async move { tokio::time::timeout(within, done).await })
            .is_ok()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.trigger.trigger();
    }
}

/// What `curl` saw.
#[derive(Debug)]
pub struct Curl {
    /// curl's exit status (0: a response arrived, whatever its status).
    pub exit: i32,
    /// HTTP status, 0 when there was no response.
    pub status: u16,
    /// "1.1", "2", ...
    pub http_version: String,
    /// Response headers, lower-cased names.
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub stderr: String,
}

impl Curl {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == &name.to_ascii_lowercase())
            .map(|(_, v)| v.as_str())
    }
}

const STATUS_MARK: &str = "\n@@vigia-curl@@";

/// Runs curl against `url` with extra `args`; never through a proxy, bounded in time.
pub fn curl(url: &str, args: &[&str]) -> Curl {
    require_tool("curl", "curl");
    let out = Command::new("curl")
        .args(["-sS", "-i", "--noproxy", "*", "--max-time", "10"])
        .args([
            "-w",
            &format!("{STATUS_MARK} %{{http_code}} %{{http_version}}"),
        ])
        .args(args)
        .arg(url)
        .output()
        .expect("run curl");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let (response, trailer) = stdout
        .rsplit_once(STATUS_MARK)
        .unwrap_or((stdout.as_str(), " 000 0"));
    let mut fields = trailer.split_whitespace();
    let status = fields.next().unwrap_or("0").parse().unwrap_or(0);
    let http_version = fields.next().unwrap_or("0").to_string();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((response, ""));
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Curl {
        exit: out.status.code().unwrap_or(-1),
        status,
        http_version,
        headers,
        body: body.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

/// `--cacert` plus a client certificate pair, as curl arguments.
pub fn client_cert_args(pki: &Pki, name: &str) -> Vec<String> {
    let (crt, key) = pki.pair(name);
    vec![
        "--cacert".into(),
        pki.path("ca.crt").display().to_string(),
        "--cert".into(),
        crt.display().to_string(),
        "--key".into(),
        key.display().to_string(),
    ]
}

pub fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

pub fn load(path: &Path) -> WebConfig {
    WebConfig::load(path).unwrap_or_else(|e| panic!("web config {}: {e}", path.display()))
}
