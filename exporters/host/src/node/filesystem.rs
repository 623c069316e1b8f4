//! Mounted filesystems as node_exporter 1.9's `filesystem` collector: mounts from the
//! host's mount table (`<procfs>/1/mountinfo`, else `<procfs>/self/mountinfo`), measured
//! with statfs under `rootfs`, reported with the host's mount point. Pseudo filesystems
//! are left out by the same defaults. A mount whose statfs fails (or hangs, below) is
//! still reported: `node_filesystem_device_error 1` with the error in the `device_error`
//! label, and its read-only flag.

use std::collections::HashSet;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use prometheus_client::encoding::DescriptorEncoder;
use vigia_kit::{Source, SourceError};

use super::util::NameFilter;
use crate::config::HostConfig;
use crate::metrics::{gauge, Labels, Sample};

/// `device_error` of a mount whose statfs did not return within `mount_timeout`.
const TIMEOUT_ERROR: &str = "mountpoint timeout";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Mount {
    pub device: String,
    pub mountpoint: String,
    pub fstype: String,
    /// The per-mount options (field 6): `ro` there makes `node_filesystem_readonly` 1.
    pub options: String,
    pub major: String,
    pub minor: String,
}

impl Mount {
    pub fn read_only(&self) -> bool {
        self.options.split(',').any(|o| o == "ro")
    }
}

/// Parses `/proc/<pid>/mountinfo` as node_exporter does: the mount point (field 5) with
/// `\040` and `\011` unescaped, then after the `-` separator the filesystem type and the
/// source (the `device` label). A line with fewer than 10 fields fails the whole table.
pub fn parse_mountinfo(text: &str, rootfs: &Path) -> anyhow::Result<Vec<Mount>> {
    let prefix = rootfs.to_string_lossy();
    let prefix = prefix.trim_end_matches('/');
    let mut out = Vec::new();
    for line in text.lines() {
        let parts: Vec<&str> = line.split_ascii_whitespace().collect();
        if parts.len() < 10 {
            anyhow::bail!("malformed mount point information: {line:?}");
        }
        let (major, minor) = parts[2]
            .split_once(':')
            .and_then(|(a, b)| Some((a.parse::<i64>().ok()?, b.parse::<i64>().ok()?)))
            .with_context(|| format!("malformed mount point information: {line:?}"))?;
        let mut m = 5;
        while parts.get(m + 1).is_some_and(|p| *p != "-") {
            m += 1;
        }
        let (Some(fstype), Some(device)) = (parts.get(m + 2), parts.get(m + 3)) else {
            anyhow::bail!("malformed mount point information: {line:?}");
        };
        let mut mountpoint = parts[4].replace("\\040", " ").replace("\\011", "\t");
        if !prefix.is_empty() {
            if let Some(rest) = mountpoint.strip_prefix(prefix) {
                if rest.is_empty() || rest.starts_with('/') {
                    mountpoint = if rest.is_empty() {
                        "/".to_string()
                    } else {
                        rest.to_string()
                    };
                }
            }
        }
        out.push(Mount {
            device: device.to_string(),
            mountpoint,
            fstype: fstype.to_string(),
            options: parts[5].to_string(),
            major: major.to_string(),
            minor: minor.to_string(),
        });
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FsStats {
    pub size: f64,
    pub free: f64,
    pub avail: f64,
    pub files: f64,
    pub files_free: f64,
}

/// An errno as Go's `syscall.Errno.Error()` writes it (what node_exporter puts in
/// `device_error`): the C library's message with a lower-case first letter.
fn errno_text(e: &std::io::Error) -> String {
    let Some(code) = e.raw_os_error() else {
        return e.to_string();
    };
    // SAFETY: strerror returns a pointer to a NUL-terminated static or thread-local
    // message for any errno value.
    let msg = unsafe { std::ffi::CStr::from_ptr(libc::strerror(code)) }
        .to_string_lossy()
        .into_owned();
    let mut chars = msg.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => msg,
    }
}

pub fn statfs(path: &Path) -> Result<FsStats, String> {
    let c =
        CString::new(path.as_os_str().as_bytes()).map_err(|_| "invalid argument".to_string())?;
    // SAFETY: `c` is a valid NUL-terminated string and `buf` is a plain C struct the call
    // fills in; it is only read after a zero return.
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut buf) };
    if rc != 0 {
        return Err(errno_text(&std::io::Error::last_os_error()));
    }
    let bsize = buf.f_bsize as f64;
    Ok(FsStats {
        size: buf.f_blocks as f64 * bsize,
        free: buf.f_bfree as f64 * bsize,
        avail: buf.f_bavail as f64 * bsize,
        files: buf.f_files as f64,
        files_free: buf.f_ffree as f64,
    })
}

pub struct Filesystem {
    procfs_root: PathBuf,
    rootfs: PathBuf,
    mount_points: NameFilter,
    fs_types: NameFilter,
    mount_timeout: Duration,
    /// Mount points whose statfs is still running from an earlier scrape.
    stuck: Arc<Mutex<HashSet<String>>>,
}

impl Filesystem {
    pub fn new(config: &HostConfig) -> Self {
        Self {
            procfs_root: config.procfs_root.clone(),
            rootfs: config.rootfs.clone(),
            mount_points: config.filesystem.mount_points(),
            fs_types: config.filesystem.fs_types(),
            mount_timeout: config.filesystem.mount_timeout,
            stuck: Arc::default(),
        }
    }

    fn mounts(&self) -> anyhow::Result<Vec<Mount>> {
        // pid 1's table is the host's even when we run in our own mount namespace; it is
        // hidden under hidepid, then our own is the next best.
        let host = self.procfs_root.join("1/mountinfo");
        let text = match std::fs::read_to_string(&host) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let own = self.procfs_root.join("self/mountinfo");
                std::fs::read_to_string(&own)
                    .with_context(|| format!("reading {}", own.display()))?
            }
            r => r.with_context(|| format!("reading {}", host.display()))?,
        };
        parse_mountinfo(&text, &self.rootfs)
    }

    /// The mounts node_exporter would measure, after its filters.
    pub fn selected_mounts(&self) -> anyhow::Result<Vec<Mount>> {
        let mut mounts = self.mounts()?;
        mounts.retain(|m| {
            !self.mount_points.ignored(&m.mountpoint) && !self.fs_types.ignored(&m.fstype)
        });
        Ok(mounts)
    }

    fn path_under_rootfs(&self, mountpoint: &str) -> PathBuf {
        self.rootfs.join(mountpoint.trim_start_matches('/'))
    }

    /// statfs of every mount, each in its own thread, bounded by `mount_timeout` overall.
    /// A mount that does not answer in time is marked stuck; its thread unmarks it when
    /// the call finally returns, and until then later scrapes do not call it again.
    fn measure(&self, mounts: &[Mount]) -> Vec<Result<FsStats, String>> {
        let (tx, rx) = mpsc::channel();
        let mut results: Vec<Option<Result<FsStats, String>>> = Vec::with_capacity(mounts.len());
        let mut pending = 0usize;
        for (i, m) in mounts.iter().enumerate() {
            let already_stuck = self
                .stuck
                .lock()
                .map(|s| s.contains(&m.mountpoint))
                .unwrap_or(false);
            if already_stuck {
                results.push(Some(Err(TIMEOUT_ERROR.to_string())));
                continue;
            }
            results.push(None);
            let path = self.path_under_rootfs(&m.mountpoint);
            let tx = tx.clone();
            let spawned = std::thread::Builder::new()
                .name("statfs".to_string())
                .spawn(move || {
                    let _ = tx.send((i, statfs(&path)));
                });
            match spawned {
                Ok(_) => pending += 1,
                Err(e) => results[i] = Some(Err(errno_text(&e))),
            }
        }
        drop(tx);
        let deadline = Instant::now() + self.mount_timeout;
        while pending > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok((i, r)) => {
                    results[i] = Some(r);
                    pending -= 1;
                }
                Err(_) => break,
            }
        }
        results
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                r.unwrap_or_else(|| {
                    let mp = mounts[i].mountpoint.clone();
                    tracing::warn!(mountpoint = %mp, timeout = ?self.mount_timeout, "statfs did not return in time: mount marked stuck");
                    if let Ok(mut s) = self.stuck.lock() {
                        s.insert(mp.clone());
                    }
                    let stuck = self.stuck.clone();
                    let path = self.path_under_rootfs(&mp);
                    // Waits for the hung call in the background, then frees the mount.
                    let _ = std::thread::Builder::new().name("statfs-stuck".to_string()).spawn(move || {
                        let _ = statfs(&path);
                        if let Ok(mut s) = stuck.lock() {
                            s.remove(&mp);
                        }
                    });
                    Err(TIMEOUT_ERROR.to_string())
                })
            })
            .collect()
    }
}

fn labels<'a>(m: &'a Mount, error: &'a str) -> Labels<'a> {
    vec![
        ("device", m.device.as_str()),
        ("device_error", error),
        ("fstype", m.fstype.as_str()),
        ("mountpoint", m.mountpoint.as_str()),
    ]
}

impl Source for Filesystem {
    fn name(&self) -> &'static str {
        "filesystem"
    }

    fn collect(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
        let mounts = self.selected_mounts()?;
        let stats = self.measure(&mounts);
        // One series per label set, the first mount's, as node_exporter.
        let mut seen = HashSet::new();
        let mut rows: Vec<(&Mount, &Result<FsStats, String>)> = Vec::new();
        for (m, s) in mounts.iter().zip(&stats) {
            let error = s.as_ref().err().map(String::as_str).unwrap_or("");
            if seen.insert((&m.device, &m.mountpoint, &m.fstype, error)) {
                rows.push((m, s));
            }
        }
        let error_of = |s: &'_ Result<FsStats, String>| -> String {
            s.as_ref().err().cloned().unwrap_or_default()
        };
        let errors: Vec<String> = rows.iter().map(|(_, s)| error_of(s)).collect();
        let all = |f: &dyn Fn(&Mount, &Result<FsStats, String>) -> f64| -> Vec<Sample<'_>> {
            rows.iter()
                .zip(&errors)
                .map(|((m, s), e)| Sample::new(labels(m, e), f(m, s)))
                .collect()
        };
        let ok = |f: fn(&FsStats) -> f64| -> Vec<Sample<'_>> {
            rows.iter()
                .zip(&errors)
                .filter_map(|((m, s), e)| Some(Sample::new(labels(m, e), f(s.as_ref().ok()?))))
                .collect()
        };
        gauge(
            enc,
            "node_filesystem_avail_bytes",
            "Filesystem space available to non-root users in bytes.",
            &ok(|s| s.avail),
        )?;
        gauge(
            enc,
            "node_filesystem_device_error",
            "Whether an error occurred while getting statistics for the given device.",
            &all(&|_, s| f64::from(u8::from(s.is_err()))),
        )?;
        gauge(
            enc,
            "node_filesystem_files",
            "Filesystem total file nodes.",
            &ok(|s| s.files),
        )?;
        gauge(
            enc,
            "node_filesystem_files_free",
            "Filesystem total free file nodes.",
            &ok(|s| s.files_free),
        )?;
        gauge(
            enc,
            "node_filesystem_free_bytes",
            "Filesystem free space in bytes.",
            &ok(|s| s.free),
        )?;
        let mut info_seen = HashSet::new();
        let info: Vec<Sample<'_>> = rows
            .iter()
            .filter(|(_, s)| s.is_ok())
            .filter(|(m, _)| info_seen.insert((&m.device, &m.major, &m.minor, &m.mountpoint)))
            .map(|(m, _)| {
                Sample::new(
                    vec![
                        ("device", m.device.as_str()),
                        ("major", m.major.as_str()),
                        ("minor", m.minor.as_str()),
                        ("mountpoint", m.mountpoint.as_str()),
                    ],
                    1.0,
                )
            })
            .collect();
        gauge(
            enc,
            "node_filesystem_mount_info",
            "Filesystem mount information.",
            &info,
        )?;
        gauge(
            enc,
            "node_filesystem_readonly",
            "Filesystem read-only status.",
            &all(&|m, _| f64::from(u8::from(m.read_only()))),
        )?;
        gauge(
            enc,
            "node_filesystem_size_bytes",
            "Filesystem size in bytes.",
            &ok(|s| s.size),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DEFAULT_FS_TYPES_EXCLUDE, DEFAULT_MOUNT_POINTS_EXCLUDE};

    const MOUNTINFO: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
28 27 0:25 / /mnt/my\\040disk ro,nosuid - tmpfs scratch ro,size=4k
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
41 31 0:38 / /srv rw,relatime - cgroup2 cgroup2 rw
50 27 0:40 / /var/lib/docker/overlay2/abc/merged rw - overlay overlay rw
51 27 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
";

    fn collector(dir: &Path, stuck: Arc<Mutex<HashSet<String>>>) -> Filesystem {
        Filesystem {
            procfs_root: dir.to_path_buf(),
            rootfs: PathBuf::from("/"),
            mount_points: NameFilter::excluding(DEFAULT_MOUNT_POINTS_EXCLUDE),
            fs_types: NameFilter::excluding(DEFAULT_FS_TYPES_EXCLUDE),
            mount_timeout: Duration::from_secs(5),
            stuck,
        }
    }

    #[test]
    fn excludes_as_node_exporter_and_unescapes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("1")).unwrap();
        std::fs::write(dir.path().join("1/mountinfo"), MOUNTINFO).unwrap();
        let got = collector(dir.path(), Arc::default())
            .selected_mounts()
            .unwrap();
        let points: Vec<&str> = got.iter().map(|m| m.mountpoint.as_str()).collect();
        assert_eq!(points, vec!["/", "/mnt/my disk", "/"]);
        assert_eq!(got[0].device, "/dev/vda");
        assert_eq!((got[0].major.as_str(), got[0].minor.as_str()), ("254", "0"));
        assert!(got[1].read_only() && !got[0].read_only());
        assert!(parse_mountinfo("1 2 3\n", Path::new("/")).is_err());
        let inside = parse_mountinfo(
            "27 1 254:0 / /host/root/home rw - ext4 /dev/vda rw\n27 1 254:0 / /host/root rw - ext4 /dev/vda rw\n",
            Path::new("/host/root"),
        )
        .unwrap();
        assert_eq!(inside[0].mountpoint, "/home");
        assert_eq!(inside[1].mountpoint, "/");
    }

    #[test]
    fn a_stuck_mount_is_an_error_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("1")).unwrap();
        std::fs::write(dir.path().join("1/mountinfo"), MOUNTINFO).unwrap();
        let stuck: Arc<Mutex<HashSet<String>>> = Arc::default();
        stuck.lock().unwrap().insert("/".to_string());
        let mut m = vigia_kit::Metrics::new("vigia-test");
        m.register_source(collector(dir.path(), stuck));
        let text = m.encode(vigia_kit::exposition::Format::Classic);
        let root = "{device=\"/dev/vda\",device_error=\"mountpoint timeout\",fstype=\"ext4\",mountpoint=\"/\"}";
        assert!(
            text.contains(&format!("node_filesystem_device_error{root} 1.0\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("node_filesystem_readonly{root} 0.0\n")),
            "{text}"
        );
        assert!(
            !text.contains("node_filesystem_size_bytes{device=\"/dev/vda\""),
            "{text}"
        );
    }

    #[test]
    fn missing_table_is_an_error_and_errors_read_as_go_writes_them() {
        let c = collector(Path::new("/nonexistent-vigia-root"), Arc::default());
        assert!(c.selected_mounts().is_err());
        assert_eq!(
            statfs(Path::new("/nonexistent-vigia-root/x")).unwrap_err(),
            "no such file or directory"
        );
    }
}
