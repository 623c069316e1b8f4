//! A real container under a real Docker engine (Debian `docker.io`, run as root): its CPU
//! burn shows up in `/metrics` under its Docker name and image, named through the Engine
//! API socket; its limits (`--cpus`, `--memory`), the throttling the CPU limit causes, its
//! user/system split and its disk use (checked against `du` of the same directories, and,
//! for a vigia-host that cannot read the engine's data root, against the engine's own
//! `SizeRw`) are cAdvisor's families. The engine is private to the test (own socket, data and cgroup parent, no
//! bridge: the container has no network). The base image is made with `debootstrap`
//! (Debian package `debootstrap`) and cached under the repository's `.cache/`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{require_tool, start_vigia_host, Launch, Scrape};

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
            "--cpus",
            "0.5",
            "--memory",
            "64m",
            IMAGE,
            "timeout",
            "60",
            "sh",
            "-c",
            // 8 MiB in the writable layer, then a busy loop the quota throttles.
            "dd if=/dev/zero of=/blob bs=1M count=8 2>/dev/null; while :; do :; done",
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
        ("VIGIA_HOST__CONTAINERS__FS_USAGE_INTERVAL", "1s"),
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
    // The loop gets its half core even on a busy 2-core machine, and no more.
    assert!(
        cpu2 - cpu1 > 0.5 && cpu2 - cpu1 < 3.0 * 0.5 + 0.3,
        "container used {}s of CPU in 3s with --cpus 0.5",
        cpu2 - cpu1
    );
    let of = |s: &Scrape, family: &str| {
        s.family(family)
            .into_iter()
            .find(|(l, _)| l.get("name").map(String::as_str) == Some(CONTAINER))
            .map(|(_, v)| v)
    };
    // --cpus 0.5 is a CFS quota of 50 ms per 100 ms period; the loop hits it.
    assert_eq!(of(&second, "container_spec_cpu_quota"), Some(50_000.0));
    assert_eq!(of(&second, "container_spec_cpu_period"), Some(100_000.0));
    let periods = |s: &Scrape| of(s, "container_cpu_cfs_periods_total").unwrap_or(0.0);
    let throttled = |s: &Scrape| of(s, "container_cpu_cfs_throttled_periods_total").unwrap_or(0.0);
    assert!(
        periods(&second) - periods(&first) >= 20.0,
        "CFS periods {} then {}",
        periods(&first),
        periods(&second)
    );
    assert!(
        throttled(&second) > throttled(&first),
        "a busy loop over its quota is throttled: {} then {}",
        throttled(&first),
        throttled(&second)
    );
    assert!(of(&second, "container_cpu_cfs_throttled_seconds_total").unwrap_or(0.0) > 0.0);
    // A shell loop is user time; user + system is the usage, to the kernel's tick.
    let user = of(&second, "container_cpu_user_seconds_total").expect("user seconds");
    let system = of(&second, "container_cpu_system_seconds_total").expect("system seconds");
    assert!(user > system, "user {user} system {system}");
    assert!(
        (user + system - cpu2).abs() < 0.1 * cpu2 + 0.05,
        "user {user} + system {system} vs usage {cpu2}"
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
        assert_eq!(
            of(&second, "container_spec_memory_limit_bytes"),
            Some(64.0 * 1048576.0)
        );
        assert!(of(&second, "container_memory_cache").is_some());
    } else {
        assert_eq!(mem, None, "no memory cgroup for the container, yet a value");
    }
    check_disk_use(&d, &vigia, &id);
    check_disk_use_without_root(&d, &id);
    assert!(
        second
            .value("vigia_errors_total", &[("source", "docker")])
            .unwrap_or(0.0)
            == 0.0
    );
}

/// du of a directory as cAdvisor counts it (512-byte blocks, hard links once), by GNU du.
fn du(path: &Path) -> f64 {
    let out = Command::new("du")
        .args(["-s", "-B1", "-x"])
        .arg(path)
        .output()
        .expect("run du");
    assert!(out.status.success(), "du {}: {out:?}", path.display());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .expect("du's number")
}

/// Scrapes until the container's `container_fs_usage_bytes` appears (measured in the
/// background, every second here).
fn disk_series(addr: std::net::SocketAddr) -> (common::LabelSet, Scrape) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = Scrape::fetch(addr);
        if let Some((l, _)) = s
            .family("container_fs_usage_bytes")
            .into_iter()
            .find(|(l, _)| l.get("name").map(String::as_str) == Some(CONTAINER))
        {
            return (l, s);
        }
        assert!(
            Instant::now() < deadline,
            "no container_fs_usage_bytes for {CONTAINER} in 15 s"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// As root: du of the writable layer (vfs here: the container's whole copy) plus its
/// directory under containers/, the layer's inodes, the filesystem's size as the limit.
fn check_disk_use(d: &Dockerd, vigia: &common::Running, id: &str) {
    let data = cache_dir().join("data");
    let mount_id = std::fs::read_to_string(
        data.join("image/vfs/layerdb/mounts")
            .join(id)
            .join("mount-id"),
    )
    .expect("the container's mount-id");
    let layer = data.join("vfs/dir").join(mount_id.trim());
    let expected = du(&layer) + du(&data.join("containers").join(id));
    let (labels, s) = disk_series(vigia.addr);
    let usage = s.family("container_fs_usage_bytes")[&labels];
    // The container writes nothing more after its 8 MiB: only the log may move.
    assert!(
        (usage - expected).abs() <= 64.0 * 1024.0,
        "container_fs_usage_bytes {usage} vs du {expected}"
    );
    assert!(usage > 8.0 * 1048576.0, "the 8 MiB blob is in {usage}");
    let inodes = s.family("container_fs_inodes_total")[&labels];
    let files = Command::new("sh")
        .arg("-c")
        .arg(format!("find '{}' -xdev | wc -l", layer.display()))
        .output()
        .unwrap();
    let files: f64 = String::from_utf8_lossy(&files.stdout)
        .trim()
        .parse()
        .unwrap();
    // find lists hard links once per name; vigia-host counts each inode once.
    assert!(
        inodes > 100.0 && inodes <= files,
        "inodes {inodes} vs {files} names"
    );
    assert_eq!(s.family("container_fs_inodes_free")[&labels], 0.0);
    assert!(s.family("container_fs_limit_bytes")[&labels] > usage);
    assert!(!labels["device"].is_empty(), "device label {labels:?}");
    let _ = d;
}

/// As nobody (the stack runs vigia-host as non-root): the data root is unreadable, so
/// usage is the engine's SizeRw for the container, and no inodes are claimed.
fn check_disk_use_without_root(d: &Dockerd, id: &str) {
    let nobody = common::AsNobody::new();
    use std::os::unix::fs::PermissionsExt;
    // The private engine's socket, opened to the unprivileged user for this test only.
    std::fs::set_permissions(&d.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    std::fs::set_permissions(
        d.socket.parent().unwrap(),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let socket = d.socket.display().to_string();
    let wrapper = nobody.wrapper();
    let run = Launch {
        wrapper: &wrapper,
        binary: Some(&nobody.binary),
        env: &[
            ("VIGIA_HOST__CONTAINERS__DOCKER_SOCKET", socket.as_str()),
            ("VIGIA_HOST__CONTAINERS__FS_USAGE_INTERVAL", "1s"),
            ("VIGIA_HOST__COLLECTORS__ANOMALY", "false"),
            ("VIGIA_HOST__COLLECTORS__INVENTORY", "false"),
        ],
        ..Launch::default()
    }
    .start();
    let (labels, s) = disk_series(run.addr);
    let out = docker(&d.socket, &["inspect", "--size", "-f", "{{.SizeRw}}", id]);
    let size_rw: f64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("SizeRw");
    assert_eq!(s.family("container_fs_usage_bytes")[&labels], size_rw);
    assert!(size_rw >= 8.0 * 1048576.0, "SizeRw {size_rw}");
    assert!(s.family("container_fs_inodes_total").is_empty());
    assert!(!labels["device"].is_empty(), "device label {labels:?}");
}
