//! Disk use of Docker containers, as cAdvisor's `container_fs_usage_bytes`,
//! `container_fs_inodes_total`, `container_fs_inodes_free` and `container_fs_limit_bytes`
//! report it, measured in the background (`containers.fs_usage_interval`, cAdvisor's one
//! minute by default, and at once for a container a scrape sees for the first time)
//! because it means walking directories, never during a scrape.
//!
//! As cAdvisor: usage is du's (512-byte blocks, hard links counted once, one
//! filesystem) of the container's writable layer plus its directory under
//! `<data root>/containers/` (log, config); inodes are the writable layer's (cAdvisor puts
//! them in `container_fs_inodes_total` and never fills `container_fs_inodes_free`: 0);
//! the device is the filesystem's holding the layer, its capacity the limit (Docker sets
//! none). The layer is found as cAdvisor finds it: `image/<driver>/layerdb/mounts/<id>/
//! mount-id` under the engine's data root, then `overlay2/<mount-id>/diff` (`overlay/…/
//! upper`, `aufs/diff/…`, and for vfs, which has no layers, the container's whole copy
//! `vfs/dir/<mount-id>`).
//!
//! The data root is root's alone. When it cannot be read (vigia-host is not root, as in
//! the stack), usage comes from the engine instead (`SizeRw`: the writable layer's size
//! as the engine measures it, without the log) and inodes are not reported; said once.

use std::collections::{HashMap, HashSet};
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vigia_kit::shutdown::Shutdown;

use crate::docker::{ContainerNames, Engine};
use crate::node::filesystem::{parse_mountinfo, statfs};

/// One container's disk use.
#[derive(Debug, Clone, PartialEq)]
pub struct FsUsage {
    pub device: String,
    pub usage: f64,
    /// Inodes of the writable layer; `None` when usage came from the engine.
    pub inodes: Option<f64>,
    pub limit: f64,
}

#[derive(Default)]
struct Shared {
    /// Docker containers seen by the last scrape: what the next round measures.
    wanted: Vec<String>,
    /// Those the last round tried, measured or not.
    tried: HashSet<String>,
    measured: HashMap<String, FsUsage>,
}

/// What the scrape reads and the background rounds fill in.
#[derive(Clone, Default)]
pub struct ContainerFs {
    shared: Arc<Mutex<Shared>>,
    /// A container no round has tried yet: measure it now rather than at the next tick,
    /// as cAdvisor measures a container when it finds it.
    new_container: Arc<tokio::sync::Notify>,
}

impl ContainerFs {
    /// The last measurement of each of `ids` (Docker containers in this scrape), and
    /// `ids` become what the next round measures.
    pub fn get(&self, ids: &[String]) -> HashMap<String, FsUsage> {
        let mut s = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        s.wanted = ids.to_vec();
        if ids.iter().any(|id| !s.tried.contains(id)) {
            self.new_container.notify_one();
        }
        ids.iter()
            .filter_map(|id| Some((id.clone(), s.measured.get(id)?.clone())))
            .collect()
    }

    fn wanted(&self) -> Vec<String> {
        self.shared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .wanted
            .clone()
    }

    /// A round's results; a container it could not measure this time keeps its last
    /// figure (as cAdvisor's), one no longer seen is dropped.
    fn store(&self, tried: Vec<String>, mut measured: HashMap<String, FsUsage>) {
        let mut s = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        for id in &tried {
            if let (false, Some(old)) = (measured.contains_key(id), s.measured.remove(id)) {
                measured.insert(id.clone(), old);
            }
        }
        s.tried = tried.into_iter().collect();
        s.measured = measured;
    }
}

/// du of one directory tree: (bytes, inodes), cAdvisor's `GetDirUsage`: entries that
/// vanish mid-walk are skipped, any other error fails the walk, and it stops at
/// `max_entries` (an error, not a partial figure).
pub fn dir_usage(dir: &Path, max_entries: usize) -> std::io::Result<(u64, u64)> {
    let root = std::fs::metadata(dir)?;
    let dev = root.dev();
    let mut linked: HashSet<u64> = HashSet::new();
    let (mut bytes, mut inodes, mut entries) = (0u64, 0u64, 0usize);
    let mut count = |md: &std::fs::Metadata| {
        if md.nlink() <= 1 || linked.insert(md.ino()) {
            bytes += md.blocks() * 512;
            inodes += 1;
        }
    };
    count(&root);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let listing = match std::fs::read_dir(&d) {
            Ok(l) => l,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in listing {
            let entry = entry?;
            // lstat: a symlink is counted, never followed.
            let md = match entry.metadata() {
                Ok(m) => m,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            entries += 1;
            if entries > max_entries {
                return Err(std::io::Error::other(format!(
                    "more than {max_entries} entries under {}",
                    dir.display()
                )));
            }
            // Another filesystem mounted inside is not the container's.
            if md.dev() != dev {
                continue;
            }
            count(&md);
            if md.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    Ok((bytes, inodes))
}

fn host_mounts(procfs_root: &Path) -> Vec<crate::node::filesystem::Mount> {
    std::fs::read_to_string(procfs_root.join("1/mountinfo"))
        .ok()
        .and_then(|t| parse_mountinfo(&t, Path::new("/")).ok())
        .unwrap_or_default()
}

/// The mount source of the filesystem `dev` (a `st_dev`) is on, from the host's mount
/// table, preferring a block device's name as cAdvisor does.
fn device_name(procfs_root: &Path, dev: u64) -> Option<String> {
    let mounts = host_mounts(procfs_root);
    let (major, minor) = (libc::major(dev).to_string(), libc::minor(dev).to_string());
    let same: Vec<_> = mounts
        .iter()
        .filter(|m| m.major == major && m.minor == minor)
        .collect();
    same.iter()
        .find(|m| m.device.starts_with("/dev/"))
        .or(same.first())
        .map(|m| m.device.clone())
}

/// The host mount holding the host path `path` (the longest mount point above it), for a
/// path this process may not even stat: (source, mount point).
fn mount_holding(procfs_root: &Path, path: &str) -> Option<(String, String)> {
    host_mounts(procfs_root)
        .into_iter()
        .filter(|m| {
            let mp = m.mountpoint.trim_end_matches('/');
            path == mp || path.starts_with(&format!("{mp}/"))
        })
        .max_by_key(|m| m.mountpoint.len())
        .map(|m| (m.device, m.mountpoint))
}

/// Why a container could not be measured from its files.
enum Missed {
    /// The data root is not readable by this process.
    Denied,
    /// A storage driver whose layers are not plain directories (btrfs, zfs, devicemapper,
    /// the containerd snapshotter).
    Unsupported,
    Failed(String),
}

pub struct Walker {
    pub rootfs: PathBuf,
    pub procfs_root: PathBuf,
    pub max_entries: usize,
}

impl Walker {
    /// A host path as seen from here (under `rootfs`).
    fn host(&self, path: &str) -> PathBuf {
        self.rootfs.join(path.trim_start_matches('/'))
    }

    fn layer_dir(&self, engine: &Engine, id: &str) -> Result<PathBuf, Missed> {
        let root = self.host(&engine.root_dir);
        let mount_id = root
            .join("image")
            .join(&engine.driver)
            .join("layerdb/mounts")
            .join(id)
            .join("mount-id");
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|e| match e.kind() {
                ErrorKind::PermissionDenied => Missed::Denied,
                _ => Missed::Failed(format!("{}: {e}", p.display())),
            })
        };
        let layer = match engine.driver.as_str() {
            "overlay2" => root
                .join("overlay2")
                .join(read(&mount_id)?.trim())
                .join("diff"),
            "overlay" => root
                .join("overlay")
                .join(read(&mount_id)?.trim())
                .join("upper"),
            "aufs" => root.join("aufs/diff").join(read(&mount_id)?.trim()),
            "vfs" => root.join("vfs/dir").join(read(&mount_id)?.trim()),
            _ => return Err(Missed::Unsupported),
        };
        Ok(layer)
    }

    fn measure(&self, engine: &Engine, id: &str) -> Result<FsUsage, Missed> {
        let layer = self.layer_dir(engine, id)?;
        let fail = |e: std::io::Error| match e.kind() {
            ErrorKind::PermissionDenied => Missed::Denied,
            _ => Missed::Failed(format!("{}: {e}", layer.display())),
        };
        let dev = std::fs::metadata(&layer).map_err(fail)?.dev();
        let (bytes, inodes) = dir_usage(&layer, self.max_entries).map_err(fail)?;
        // The log and config: counted in the total, not in the inodes (as cAdvisor).
        let extra = self.host(&engine.root_dir).join("containers").join(id);
        let extra_bytes = match dir_usage(&extra, self.max_entries) {
            Ok((b, _)) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => 0,
            Err(e) => return Err(fail(e)),
        };
        Ok(FsUsage {
            device: device_name(&self.procfs_root, dev).unwrap_or_default(),
            usage: (bytes + extra_bytes) as f64,
            inodes: Some(inodes as f64),
            limit: statfs(&layer).map(|s| s.size).unwrap_or(0.0),
        })
    }

    /// From the engine, for a data root this process cannot read: the writable layer's
    /// size, and the device and size of the filesystem holding the data root (found by
    /// path in the host's mount table when even the data root cannot be looked at).
    fn measured_by_engine(
        &self,
        engine: &Engine,
        sizes: &HashMap<String, f64>,
        id: &str,
    ) -> Option<FsUsage> {
        let usage = *sizes.get(id)?;
        let root = self.host(&engine.root_dir);
        let by_stat = std::fs::metadata(&root)
            .ok()
            .and_then(|m| device_name(&self.procfs_root, m.dev()))
            .map(|d| (d, root.clone()));
        let (device, on) = by_stat
            .or_else(|| {
                let (d, mp) = mount_holding(&self.procfs_root, &engine.root_dir)?;
                Some((d, self.host(&mp)))
            })
            .unwrap_or_default();
        Some(FsUsage {
            device,
            usage,
            inodes: None,
            limit: statfs(&on).map(|s| s.size).unwrap_or(0.0),
        })
    }

    /// One round over `ids`; `said` remembers what was logged, so each condition is
    /// said once.
    fn round(
        &self,
        names: &ContainerNames,
        ids: &[String],
        said: &mut HashSet<String>,
    ) -> HashMap<String, FsUsage> {
        let mut out = HashMap::new();
        if ids.is_empty() {
            return out;
        }
        let engine = match names.engine() {
            Ok(e) => e,
            Err(e) => {
                if said.insert("engine".into()) {
                    tracing::warn!(error = %format!("{e:#}"), "container_fs: the engine's data root is unknown: no container_fs_* until it answers");
                }
                return out;
            }
        };
        let mut sizes: Option<HashMap<String, f64>> = None;
        for id in ids {
            match self.measure(&engine, id) {
                Ok(u) => {
                    out.insert(id.clone(), u);
                }
                Err(Missed::Denied) => {
                    if said.insert("denied".into()) {
                        tracing::info!(root = %engine.root_dir, "container_fs: Docker's data root is not readable (root's only): container_fs_usage_bytes is the engine's size of the writable layer, without the log, and no container_fs_inodes_*");
                    }
                    if sizes.is_none() {
                        sizes = Some(names.layer_sizes().unwrap_or_else(|e| {
                            tracing::debug!(error = %format!("{e:#}"), "container_fs: the engine did not size the layers");
                            HashMap::new()
                        }));
                    }
                    if let Some(u) = self.measured_by_engine(&engine, sizes.as_ref().unwrap(), id) {
                        out.insert(id.clone(), u);
                    }
                }
                Err(Missed::Unsupported) => {
                    if said.insert(format!("driver {}", engine.driver)) {
                        tracing::info!(driver = %engine.driver, "container_fs: storage driver whose layers are not directories: no container_fs_*");
                    }
                }
                Err(Missed::Failed(e)) => {
                    tracing::debug!(container = %id, error = %e, "container_fs: not measured this round");
                }
            }
        }
        out
    }
}

/// Measures the containers the scrapes saw, every `interval`, until shutdown.
pub async fn run(
    walker: Walker,
    names: Arc<ContainerNames>,
    fs: ContainerFs,
    interval: Duration,
    shutdown: Shutdown,
) {
    let walker = Arc::new(walker);
    let mut said: HashSet<String> = HashSet::new();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = fs.new_container.notified() => {}
            _ = shutdown.wait() => return,
        }
        let ids = fs.wanted();
        let (w, n, mut s) = (walker.clone(), names.clone(), std::mem::take(&mut said));
        match tokio::task::spawn_blocking(move || {
            let measured = w.round(&n, &ids, &mut s);
            (ids, measured, s)
        })
        .await
        {
            Ok((ids, measured, s)) => {
                said = s;
                fs.store(ids, measured);
            }
            Err(e) => tracing::error!(error = %e, "container_fs: round failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn du_counts_blocks_once_per_inode_and_stays_on_one_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), vec![7u8; 10_000]).unwrap();
        std::fs::hard_link(dir.path().join("a"), dir.path().join("b")).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/c"), b"x").unwrap();
        std::os::unix::fs::symlink("/nonexistent-vigia", dir.path().join("link")).unwrap();
        let (bytes, inodes) = dir_usage(dir.path(), 100).unwrap();
        let blocks = |p: &str| {
            std::fs::symlink_metadata(dir.path().join(p))
                .unwrap()
                .blocks()
                * 512
        };
        let expected = blocks("") + blocks("a") + blocks("sub") + blocks("sub/c") + blocks("link");
        assert_eq!(bytes, expected);
        // root, a (= b), sub, sub/c, link
        assert_eq!(inodes, 5);
        assert!(
            dir_usage(dir.path(), 2).is_err(),
            "the entry bound is an error"
        );
        assert!(dir_usage(&dir.path().join("missing"), 100).is_err());
    }

    #[test]
    fn the_mount_holding_a_path_is_the_longest_prefix() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("1")).unwrap();
        std::fs::write(
            dir.path().join("1/mountinfo"),
            "27 1 8:2 / / rw - ext4 /dev/sda2 rw\n\
             30 27 8:17 / /var/lib rw - xfs /dev/sdb1 rw\n\
             31 27 0:40 / /var/library rw - tmpfs tmpfs rw\n",
        )
        .unwrap();
        let holding = |p: &str| mount_holding(dir.path(), p).map(|(d, _)| d);
        assert_eq!(holding("/var/lib/docker").as_deref(), Some("/dev/sdb1"));
        assert_eq!(holding("/var/lib").as_deref(), Some("/dev/sdb1"));
        assert_eq!(holding("/var/libx").as_deref(), Some("/dev/sda2"));
        assert_eq!(
            device_name(dir.path(), libc::makedev(8, 17)).as_deref(),
            Some("/dev/sdb1")
        );
    }
}
