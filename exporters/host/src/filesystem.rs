//! Mounted filesystems as node_exporter's `filesystem` collector: mounts from the host's
//! mount table (`<procfs>/1/mountinfo`), measured with statvfs under `rootfs`, reported
//! with the host's mount point. Pseudo filesystems are left out by the same defaults.

use std::collections::HashSet;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use prometheus_client::encoding::DescriptorEncoder;
use regex::Regex;
use vigia_kit::{Source, SourceError};

use crate::metrics::{gauge, Labels, Sample};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Mount {
    pub device: String,
    pub mountpoint: String,
    pub fstype: String,
    pub read_only: bool,
}

/// Undoes the kernel's octal escapes in mountinfo (`\040` is a space).
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if let Some(oct) = bytes.get(i + 1..i + 4) {
                if oct.iter().all(|b| (b'0'..=b'7').contains(b)) {
                    let v = oct
                        .iter()
                        .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
                    if let Ok(v) = u8::try_from(v) {
                        out.push(v);
                        i += 4;
                        continue;
                    }
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `/proc/<pid>/mountinfo`: mount point is field 5, then after the `-` separator
/// come the filesystem type and the source (the `device` label).
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    let mut out = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        if fields.len() < 6 || sep + 2 >= fields.len() {
            continue;
        }
        let options = fields[5];
        let super_options = fields.get(sep + 3).copied().unwrap_or("");
        let read_only =
            options.split(',').any(|o| o == "ro") || super_options.split(',').any(|o| o == "ro");
        out.push(Mount {
            mountpoint: unescape(fields[4]),
            fstype: unescape(fields[sep + 1]),
            device: unescape(fields[sep + 2]),
            read_only,
        });
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FsStats {
    pub size: f64,
    pub free: f64,
    pub avail: f64,
    pub files: f64,
    pub files_free: f64,
}

fn statvfs(path: &Path) -> std::io::Result<FsStats> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in path"))?;
    // SAFETY: `c` is a valid NUL-terminated string and `buf` is a plain C struct the call
    // fills in; it is only read after a zero return.
    let mut buf: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut buf) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let frsize = if buf.f_frsize > 0 {
        buf.f_frsize
    } else {
        buf.f_bsize
    } as f64;
    Ok(FsStats {
        size: buf.f_blocks as f64 * frsize,
        free: buf.f_bfree as f64 * frsize,
        avail: buf.f_bavail as f64 * frsize,
        files: buf.f_files as f64,
        files_free: buf.f_ffree as f64,
    })
}

fn labels(m: &Mount) -> Labels<'_> {
    vec![
        ("device", m.device.as_str()),
        ("fstype", m.fstype.as_str()),
        ("mountpoint", m.mountpoint.as_str()),
    ]
}

pub struct FilesystemCollector {
    pub procfs_root: PathBuf,
    pub rootfs: PathBuf,
    pub mount_points_exclude: Option<Regex>,
    pub fs_types_exclude: Option<Regex>,
    pub mount_timeout: Duration,
    /// Mount points whose statvfs is still running from an earlier scrape.
    pub stuck: Arc<Mutex<HashSet<String>>>,
}

impl FilesystemCollector {
    fn mounts(&self) -> anyhow::Result<Vec<Mount>> {
        // pid 1's table is the host's even when we run in our own mount namespace.
        let host = self.procfs_root.join("1/mountinfo");
        let own = self.procfs_root.join("self/mountinfo");
        let text = std::fs::read_to_string(&host)
            .or_else(|_| std::fs::read_to_string(&own))
            .with_context(|| format!("reading {} and {}", host.display(), own.display()))?;
        Ok(parse_mountinfo(&text))
    }

    /// The mounts node_exporter would report, after exclusions and de-duplication.
    pub fn selected_mounts(&self) -> anyhow::Result<Vec<Mount>> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for m in self.mounts()? {
            if self
                .mount_points_exclude
                .as_ref()
                .is_some_and(|r| r.is_match(&m.mountpoint))
                || self
                    .fs_types_exclude
                    .as_ref()
                    .is_some_and(|r| r.is_match(&m.fstype))
            {
                continue;
            }
            if seen.insert((m.device.clone(), m.mountpoint.clone(), m.fstype.clone())) {
                out.push(m);
            }
        }
        Ok(out)
    }

    fn path_under_rootfs(&self, mountpoint: &str) -> PathBuf {
        self.rootfs.join(mountpoint.trim_start_matches('/'))
    }

    /// statvfs of every mount, each in its own thread, bounded by `mount_timeout` overall.
    /// A mount that does not answer in time is marked stuck; its thread unmarks it when
    /// the call finally returns, and until then later scrapes do not call it again.
    fn measure(&self, mounts: &[Mount]) -> Vec<std::io::Result<FsStats>> {
        let (tx, rx) = mpsc::channel();
        let mut results: Vec<Option<std::io::Result<FsStats>>> = Vec::with_capacity(mounts.len());
        let mut pending = 0usize;
        for (i, m) in mounts.iter().enumerate() {
            let already_stuck = self
                .stuck
                .lock()
                .map(|s| s.contains(&m.mountpoint))
                .unwrap_or(false);
            if already_stuck {
                results.push(Some(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "statvfs still running from an earlier scrape",
                ))));
                continue;
            }
            results.push(None);
            let path = self.path_under_rootfs(&m.mountpoint);
            let tx = tx.clone();
            let spawned = std::thread::Builder::new()
                .name("statvfs".to_string())
                .spawn(move || {
                    let _ = tx.send((i, statvfs(&path)));
                });
            match spawned {
                Ok(_) => pending += 1,
                Err(e) => results[i] = Some(Err(e)),
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
                    tracing::warn!(mountpoint = %mp, timeout = ?self.mount_timeout, "statvfs did not return in time: mount marked stuck");
                    if let Ok(mut s) = self.stuck.lock() {
                        s.insert(mp.clone());
                    }
                    let stuck = self.stuck.clone();
                    let path = self.path_under_rootfs(&mp);
                    // Waits for the hung call in the background, then frees the mount.
                    let _ = std::thread::Builder::new().name("statvfs-stuck".to_string()).spawn(move || {
                        let _ = statvfs(&path);
                        if let Ok(mut s) = stuck.lock() {
                            s.remove(&mp);
                        }
                    });
                    Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "statvfs timed out"))
                })
            })
            .collect()
    }
}

impl Source for FilesystemCollector {
    fn name(&self) -> &'static str {
        "filesystem"
    }

    fn collect(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
        let mounts = self.selected_mounts()?;
        let stats = self.measure(&mounts);
        let measured: Vec<(Mount, std::io::Result<FsStats>)> =
            mounts.into_iter().zip(stats).collect();
        let ok: Vec<(&Mount, FsStats)> = measured
            .iter()
            .filter_map(|(m, s)| s.as_ref().ok().map(|s| (m, *s)))
            .collect();
        let family = |f: fn(&FsStats) -> f64| -> Vec<Sample<'_>> {
            ok.iter()
                .map(|(m, s)| Sample::new(labels(m), f(s)))
                .collect()
        };
        gauge(
            enc,
            "node_filesystem_size_bytes",
            "Filesystem size in bytes",
            &family(|s| s.size),
        )?;
        gauge(
            enc,
            "node_filesystem_free_bytes",
            "Filesystem free space in bytes",
            &family(|s| s.free),
        )?;
        gauge(
            enc,
            "node_filesystem_avail_bytes",
            "Filesystem space available to non-root users in bytes",
            &family(|s| s.avail),
        )?;
        gauge(
            enc,
            "node_filesystem_files",
            "Filesystem total file nodes",
            &family(|s| s.files),
        )?;
        gauge(
            enc,
            "node_filesystem_files_free",
            "Filesystem total free file nodes",
            &family(|s| s.files_free),
        )?;
        let ro: Vec<Sample<'_>> = ok
            .iter()
            .map(|(m, _)| Sample::new(labels(m), f64::from(u8::from(m.read_only))))
            .collect();
        gauge(
            enc,
            "node_filesystem_readonly",
            "Filesystem read-only status",
            &ro,
        )?;
        let errors: Vec<Sample<'_>> = measured
            .iter()
            .map(|(m, s)| Sample::new(labels(m), f64::from(u8::from(s.is_err()))))
            .collect();
        gauge(
            enc,
            "node_filesystem_device_error",
            "Whether an error occurred while getting statistics for the given device",
            &errors,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{compile, DEFAULT_FS_TYPES_EXCLUDE, DEFAULT_MOUNT_POINTS_EXCLUDE};

    const MOUNTINFO: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
28 27 0:25 / /mnt/my\\040disk ro,nosuid - tmpfs scratch ro,size=4k
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
41 31 0:38 / /srv rw,relatime - cgroup2 cgroup2 rw
50 27 0:40 / /var/lib/docker/overlay2/abc/merged rw - overlay overlay rw
51 27 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
garbage line without separator
";

    #[test]
    fn excludes_as_node_exporter_and_unescapes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("1")).unwrap();
        std::fs::write(dir.path().join("1/mountinfo"), MOUNTINFO).unwrap();
        let c = FilesystemCollector {
            procfs_root: dir.path().to_path_buf(),
            rootfs: PathBuf::from("/"),
            mount_points_exclude: compile(DEFAULT_MOUNT_POINTS_EXCLUDE, "x").unwrap(),
            fs_types_exclude: compile(DEFAULT_FS_TYPES_EXCLUDE, "x").unwrap(),
            mount_timeout: Duration::from_secs(5),
            stuck: Arc::default(),
        };
        let got = c.selected_mounts().unwrap();
        let points: Vec<&str> = got.iter().map(|m| m.mountpoint.as_str()).collect();
        assert_eq!(points, vec!["/", "/mnt/my disk"]);
        assert_eq!(got[0].device, "/dev/vda");
        assert!(got[1].read_only && !got[0].read_only);
    }

    #[test]
    fn a_stuck_mount_is_an_error_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("1")).unwrap();
        std::fs::write(dir.path().join("1/mountinfo"), MOUNTINFO).unwrap();
        let stuck: Arc<Mutex<HashSet<String>>> = Arc::default();
        stuck.lock().unwrap().insert("/".to_string());
        let mut m = vigia_kit::Metrics::new("vigia-test");
        m.register_source(FilesystemCollector {
            procfs_root: dir.path().to_path_buf(),
            rootfs: PathBuf::from("/"),
            mount_points_exclude: compile(DEFAULT_MOUNT_POINTS_EXCLUDE, "x").unwrap(),
            fs_types_exclude: compile(DEFAULT_FS_TYPES_EXCLUDE, "x").unwrap(),
            mount_timeout: Duration::from_secs(5),
            stuck,
        });
        let text = m.encode(vigia_kit::exposition::Format::Classic);
        let root = "{device=\"/dev/vda\",fstype=\"ext4\",mountpoint=\"/\"}";
        assert!(
            text.contains(&format!("node_filesystem_device_error{root} 1.0\n")),
            "{text}"
        );
        assert!(
            !text.contains(&format!("node_filesystem_size_bytes{root}")),
            "{text}"
        );
    }

    #[test]
    fn missing_table_is_an_error() {
        let c = FilesystemCollector {
            procfs_root: PathBuf::from("/nonexistent-vigia-root"),
            rootfs: PathBuf::from("/"),
            mount_points_exclude: None,
            fs_types_exclude: None,
            mount_timeout: Duration::from_secs(5),
            stuck: Arc::default(),
        };
        assert!(c.selected_mounts().is_err());
    }
}
