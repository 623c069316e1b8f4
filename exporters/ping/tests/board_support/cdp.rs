//! A minimal DevTools-protocol client for headless Chromium over `--remote-debugging-pipe`
//! (commands on the browser's fd 3, replies on its fd 4, NUL-terminated JSON), so that a
//! test can read the live DOM twice in one page load and take screenshots without a
//! WebDriver or WebSocket dependency.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const CHROMIUM: &str = "chromium";

pub struct Browser {
    child: Child,
    commands: UnixStream,
    replies: BufReader<UnixStream>,
    next_id: u64,
    _profile: tempfile::TempDir,
}

/// One tab, addressed by its DevTools session.
pub struct Page {
    session: String,
}

impl Browser {
    /// Starts headless Chromium with a fresh profile and nothing that phones home.
    /// Panics with the package to install when Chromium is missing: CI installs it, so a
    /// missing browser is a broken machine, not a reason to skip.
    pub fn launch() -> Browser {
        let profile = tempfile::tempdir().expect("temp profile dir");
        let (commands, browser_commands) = UnixStream::pair().expect("socketpair");
        let (replies, browser_replies) = UnixStream::pair().expect("socketpair");
        let read_fd = browser_commands.as_raw_fd();
        let write_fd = browser_replies.as_raw_fd();
        let mut cmd = Command::new(CHROMIUM);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--disable-extensions",
            "--remote-debugging-pipe",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        // SAFETY: only async-signal-safe calls (fcntl, dup2) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                // Move both ends above 4 first, so that placing one cannot clobber the other.
                let r = libc::fcntl(read_fd, libc::F_DUPFD, 10);
                let w = libc::fcntl(write_fd, libc::F_DUPFD, 10);
                if r < 0 || w < 0 || libc::dup2(r, 3) < 0 || libc::dup2(w, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                panic!("`{CHROMIUM}` not found: this test needs the Debian package `chromium`")
            }
            Err(e) => panic!("cannot start {CHROMIUM}: {e}"),
        };
        drop(browser_commands);
        drop(browser_replies);
        replies
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("read timeout");
        Browser {
            child,
            commands,
            replies: BufReader::new(replies),
            next_id: 1,
            _profile: profile,
        }
    }

    /// Sends one command and waits for its reply, skipping events. Panics on a protocol
    /// error, with the method named.
    pub fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        self.commands
            .write_all(&bytes)
            .unwrap_or_else(|e| panic!("{method}: browser gone: {e}"));
        loop {
            let mut buf = Vec::new();
            let n = self
                .replies
                .read_until(0, &mut buf)
                .unwrap_or_else(|e| panic!("{method}: no reply from browser: {e}"));
            assert!(n > 0, "{method}: browser closed the pipe");
            buf.pop();
            let reply: Value = serde_json::from_slice(&buf).expect("DevTools JSON");
            if reply["id"].as_u64() != Some(id) {
                continue;
            }
            if let Some(err) = reply.get("error") {
                panic!("{method} failed: {err}");
            }
            return reply["result"].clone();
        }
    }

    /// Opens a tab of `width`x`height` CSS pixels, runs `init_script` (if any) before any
    /// of the page's own scripts, and loads `url`.
    pub fn open(&mut self, url: &str, width: u32, height: u32, init_script: Option<&str>) -> Page {
        let target = self.call(None, "Target.createTarget", json!({"url": "about:blank"}));
        let target_id = target["targetId"].as_str().expect("targetId").to_string();
        let attached = self.call(
            None,
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
        );
        let page = Page {
            session: attached["sessionId"]
                .as_str()
                .expect("sessionId")
                .to_string(),
        };
        self.call(Some(&page.session), "Page.enable", json!({}));
        self.resize(&page, width, height, width < 600);
        if let Some(source) = init_script {
            self.call(
                Some(&page.session),
                "Page.addScriptToEvaluateOnNewDocument",
                json!({"source": source}),
            );
        }
        self.call(Some(&page.session), "Page.navigate", json!({"url": url}));
        page
    }

    pub fn resize(&mut self, page: &Page, width: u32, height: u32, mobile: bool) {
        self.call(
            Some(&page.session),
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        );
    }

    /// Evaluates `expression` in the page and returns its value (promises awaited).
    pub fn eval(&mut self, page: &Page, expression: &str) -> Value {
        let result = self.call(
            Some(&page.session),
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(ex) = result.get("exceptionDetails") {
            panic!("script `{expression}` threw: {ex}");
        }
        result["result"]["value"].clone()
    }

    /// Polls `expression` until it is truthy; panics with `what` and the last value after
    /// `timeout`.
    pub fn wait_for(
        &mut self,
        page: &Page,
        expression: &str,
        timeout: Duration,
        what: &str,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let v = match self.call(
                Some(&page.session),
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true}),
            ) {
                r if r.get("exceptionDetails").is_some() => Value::Null,
                r => r["result"]["value"].clone(),
            };
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; last value {v}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Saves a PNG of the whole page (beyond the viewport) to `path`.
    pub fn screenshot(&mut self, page: &Page, path: &Path) {
        let metrics = self.call(Some(&page.session), "Page.getLayoutMetrics", json!({}));
        let size = &metrics["cssContentSize"];
        let shot = self.call(
            Some(&page.session),
            "Page.captureScreenshot",
            json!({
                "format": "png",
                "captureBeyondViewport": true,
                "clip": {
                    "x": 0, "y": 0,
                    "width": size["width"].as_f64().unwrap_or(800.0),
                    "height": size["height"].as_f64().unwrap_or(600.0),
                    "scale": 1
                }
            }),
        );
        let png = base64_decode(shot["data"].as_str().expect("screenshot data"));
        assert!(png.starts_with(b"\x89PNG"), "screenshot is not a PNG");
        std::fs::write(path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// The colour on screen at (`x`, `y`), in CSS pixels of the viewport: a 1x1
    /// screenshot of that spot, decoded by the page itself (a canvas reads the PNG back),
    /// so it is what was drawn after every style, opacity and overlay, not what a style
    /// sheet asked for.
    pub fn pixel(&mut self, page: &Page, x: f64, y: f64) -> [u8; 3] {
        let shot = self.call(
            Some(&page.session),
            "Page.captureScreenshot",
            json!({
                "format": "png",
                "clip": {"x": x.floor(), "y": y.floor(), "width": 1, "height": 1, "scale": 1}
            }),
        );
        let data = shot["data"].as_str().expect("screenshot data");
        let rgb = self.eval(
            page,
            &format!(
                r#"new Promise((resolve, reject) => {{
                     const img = new Image();
                     img.onload = () => {{
                       const c = document.createElement("canvas");
                       c.width = img.width; c.height = img.height;
                       const g = c.getContext("2d");
                       g.drawImage(img, 0, 0);
                       resolve(Array.from(g.getImageData(0, 0, 1, 1).data.slice(0, 3)));
                     }};
                     img.onerror = () => reject(new Error("screenshot does not decode"));
                     img.src = "data:image/png;base64,{data}";
                   }})"#
            ),
        );
        let channels: Vec<u8> = rgb
            .as_array()
            .unwrap_or_else(|| panic!("pixel at ({x}, {y}): {rgb}"))
            .iter()
            .map(|v| {
                v.as_u64()
                    .and_then(|v| u8::try_from(v).ok())
                    .expect("channel")
            })
            .collect();
        [channels[0], channels[1], channels[2]]
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a') as u32 + 26,
            b'0'..=b'9' => (c - b'0') as u32 + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let bytes: Vec<u8> = text.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= value(c) << (18 - 6 * i);
        }
        let n = chunk.len() * 6 / 8;
        out.extend_from_slice(&acc.to_be_bytes()[1..1 + n]);
    }
    out
}

#[test]
fn base64_decodes_padded_and_unpadded_text() {
    assert_eq!(base64_decode("aGVsbG8="), b"hello");
    assert_eq!(base64_decode("aGk="), b"hi");
    assert_eq!(base64_decode("YWJj"), b"abc");
}
