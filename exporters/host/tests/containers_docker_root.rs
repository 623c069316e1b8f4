//! A real container under a real Docker engine (Debian `docker.io`, run as root): its CPU
//! burn shows up in `/metrics` under its Docker name and image, named through the Engine
//! API socket. The engine is private to the test (own socket, data and cgroup parent, no
//! bridge: the container has no network). The base image is made with `debootstrap`
//! (Debian package `debootstrap`) and cached under the repository's `.cache/`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{require_tool, start_vigia_host, Scrape};

const IMAGE: &str = "vigia-host-test-base:bookworm";
const CONTAINER: &str = "vigia-host-burn";
const CGROUP_PARENT: &str = "vigia-host-test";

struct Dockerd {
    child: Child,
    socket: PathBuf,
    _exec_root: tempfile::TempDir,
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let _ = docker(&self.socket, &["rm", "-f", CONTAINER]);
        // SIGTERM first: dockerd stops its containerd and cleans its mounts.
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // dockerd bind-mounts its data root onto itself and leaves that mount behind.
        let data = cache_dir().join("data");
        if let Ok(c) = std::ffi::CString::new(data.display().to_string()) {
            // SAFETY: umount2 with a valid NUL-terminated path; failure (not a mount) is fine.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

fn docker(socket: &Path, args: &[&str]) -> std::process::Output {
    Command::new("/usr/bin/docker")
        .arg("-H")
        .arg(format!("unix://{}", socket.display()))
        .args(args)
        .output()
        .expect("run docker")
}

fn cache_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache/vigia-host-docker");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn start_dockerd() -> Dockerd {
    let bin = require_tool("dockerd", "docker.io");
    require_tool("docker", "docker.io");
    let exec_root = tempfile::Builder::new()
        .prefix("vhd")
        .tempdir_in("/tmp")
        .unwrap();
    let socket = exec_root.path().join("docker.sock");
    let log = std::fs::File::create(cache_dir().join("dockerd.log")).unwrap();
    // In a network namespace of its own: with no bridge (`--bridge=none`) dockerd deletes
    // any `docker0` it finds, which would be the running engine's of whoever runs the test.
    // unshare execs dockerd, so the child's pid is dockerd's.
    let child = Command::new(require_tool("unshare", "util-linux"))
        .args(["--net", "--"])
        .arg(bin)
        .args([
            "--storage-driver=vfs",
            "--iptables=false",
            "--bridge=none",
            "--userland-proxy=false",
        ])
        .arg(format!("--cgroup-parent={CGROUP_PARENT}"))
        .arg(format!(
            "--data-root={}",
            cache_dir().join("data").display()
        ))
        .arg(format!(
            "--exec-root={}",
            exec_root.path().join("exec").display()
        ))
        .arg(format!(
            "--pidfile={}",
            exec_root.path().join("dockerd.pid").display()
        ))
        .arg(format!("--host=unix://{}", socket.display()))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start dockerd");
    let mut d = Dockerd {
        child,
        socket,
        _exec_root: exec_root,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if docker(&d.socket, &["info"]).status.success() {
            return d;
        }
        if let Ok(Some(status)) = d.child.try_wait() {
            panic!("dockerd exited with {status}; see .cache/vigia-host-docker/dockerd.log");
        }
        assert!(Instant::now() < deadline, "dockerd not ready in 60 s");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The Debian mirror this machine's apt uses (read here, never written in the repo).
fn debian_mirror() -> String {
    for file in [
        "/etc/apt/sources.list.d/debian.sources",
        "/etc/apt/sources.list",
    ] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines() {
            let line = line.trim();
            if let Some(uris) = line.strip_prefix("URIs:") {
                if let Some(u) = uris.split_whitespace().find(|u| !u.contains("security")) {
                    return u.to_string();
                }
            }
            if let Some(rest) = line.strip_prefix("deb ") {
                if let Some(u) = rest
                    .split_whitespace()
                    .find(|u| u.contains("://") && !u.contains("security"))
                {
                    return u.to_string();
                }
            }
        }
    }
    panic!("no Debian mirror in the apt sources");
}

fn ensure_image(d: &Dockerd) {
    if docker(&d.socket, &["image", "inspect", IMAGE])
        .status
        .success()
    {
        return;
    }
    let root = cache_dir().join("rootfs");
    if !root.join("bin/sh").exists() {
        let debootstrap = require_tool("debootstrap", "debootstrap");
        let _ = std::fs::remove_dir_all(&root);
        let out = Command::new(debootstrap)
            .args(["--variant=minbase", "bookworm"])
            .arg(&root)
            .arg(debian_mirror())
            .output()
            .expect("run debootstrap");
        assert!(
            out.status.success(),
            "debootstrap failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let import = format!(
        "tar -C '{}' -c . | /usr/bin/docker -H 'unix://{}' import - {IMAGE}",
        root.display(),
        d.socket.display()
    );
    let out = Command::new("sh").arg("-c").arg(&import).output().unwrap();
    assert!(
        out.status.success(),
        "docker import failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn container_cpu_burn_shows_under_its_name_docker_root() {
    let d = start_dockerd();
    ensure_image(&d);
    let _ = docker(&d.socket, &["rm", "-f", CONTAINER]);
    // A busy loop, bounded by `timeout`, without any network.
    let out = docker(
        &d.socket,
        &[
            "run",
            "-d",
            "--name",
            CONTAINER,
            "--network",
            "none",
            IMAGE,
            "timeout",
            "60",
            "sh",
            "-c",
            "while :; do :; done",
        ],
    );
    assert!(
        out.status.success(),
        "docker run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(id.len(), 64, "container id {id:?}");

    let socket = d.socket.display().to_string();
    let vigia = start_vigia_host(&[
        ("VIGIA_HOST__CONTAINERS__DOCKER_SOCKET", socket.as_str()),
        ("VIGIA_HOST__COLLECTORS__ANOMALY", "false"),
    ]);
    let labels = [("name", CONTAINER), ("image", IMAGE), ("cpu", "total")];
    let find = |s: &Scrape| {
        s.family("container_cpu_usage_seconds_total")
            .into_iter()
            .find(|(l, _)| {
                labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
    };
    let first = Scrape::fetch(vigia.addr);
    let (l1, cpu1) = find(&first).unwrap_or_else(|| {
        panic!(
            "no series for {CONTAINER}: {:?}",
            first.family("container_cpu_usage_seconds_total")
        )
    });
    assert!(
        l1["id"].ends_with(&id),
        "id label {} is the cgroup path of {id}",
        l1["id"]
    );
    std::thread::sleep(Duration::from_secs(3));
    let second = Scrape::fetch(vigia.addr);
    let (_, cpu2) = find(&second).expect("series still there");
    // The loop gets a good share of a core even on a busy 2-core machine.
    assert!(
        cpu2 - cpu1 > 0.5,
        "container used only {}s of CPU in 3s",
        cpu2 - cpu1
    );
    // Memory: reported when the kernel's memory controller tracks the container (cgroup
    // v2, or a v1 memory hierarchy holding it), absent otherwise, never a made-up 0.
    let rel = l1["id"].trim_start_matches('/').to_string();
    let tracked = Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
        || Path::new("/sys/fs/cgroup/memory").join(&rel).is_dir();
    let mem = second
        .family("container_memory_working_set_bytes")
        .into_iter()
        .find(|(l, _)| l.get("name").map(String::as_str) == Some(CONTAINER))
        .map(|(_, v)| v);
    if tracked {
        assert!(mem.is_some_and(|m| m > 0.0), "working set {mem:?}");
    } else {
        assert_eq!(mem, None, "no memory cgroup for the container, yet a value");
    }
    assert!(
        second
            .value("vigia_errors_total", &[("source", "docker")])
            .unwrap_or(0.0)
            == 0.0
    );
}
