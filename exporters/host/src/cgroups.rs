//! Containers found in the host's cgroup tree, exposed under cAdvisor's names so that
//! dashboards and rules written for cAdvisor keep working.
//!
//! cgroup v2 (one unified tree) and v1 (per-controller trees; `cpuacct` finds containers,
//! `memory` is read at the same relative path) are both read. A container cgroup is one
//! whose last path segment carries a 64-hex container id: `docker-<id>.scope` (systemd
//! driver), `docker/<id>` (cgroupfs driver), `cri-containerd-`, `crio-`, `libpod-`; a
//! `pod<uid>` segment above it (Kubernetes) becomes the `pod_uid` label.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::DescriptorEncoder;
use vigia_kit::{Source, SourceError};

use crate::collectors::Setup;
use crate::docker::ContainerNames;
use crate::metrics::{counter, gauge, Labels, Sample};
use crate::node::netdev;

/// How deep the walk goes and how many directories it visits at most, so a pathological
/// tree cannot make a scrape unbounded.
const MAX_DEPTH: usize = 12;
const MAX_DIRS: usize = 50_000;

/// Interfaces cAdvisor leaves out of container network stats.
const IGNORED_INTERFACE_PREFIXES: [&str; 4] = ["lo", "veth", "docker", "nerdctl"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    V2 {
        root: PathBuf,
    },
    V1 {
        cpuacct: PathBuf,
        memory: Option<PathBuf>,
    },
}

impl Layout {
    /// Finds the cgroup layout under `<sysfs_root>/fs/cgroup`. On a hybrid host (v1
    /// controllers plus an empty unified tree) containers live in v1, so v1 wins there.
    pub fn detect(sysfs_root: &Path) -> Option<Layout> {
        let base = sysfs_root.join("fs/cgroup");
        if base.join("cgroup.controllers").is_file() {
            return Some(Layout::V2 { root: base });
        }
        let cpuacct = ["cpuacct", "cpu,cpuacct", "cpuacct,cpu"]
            .iter()
            .map(|n| base.join(n))
            .find(|p| p.join("cpuacct.usage").is_file());
        if let Some(cpuacct) = cpuacct {
            let memory = Some(base.join("memory")).filter(|p| p.is_dir());
            return Some(Layout::V1 { cpuacct, memory });
        }
        let unified = base.join("unified");
        if unified.join("cgroup.controllers").is_file() {
            return Some(Layout::V2 { root: unified });
        }
        None
    }

    fn walk_root(&self) -> &Path {
        match self {
            Layout::V2 { root } => root,
            Layout::V1 { cpuacct, .. } => cpuacct,
        }
    }
}

/// A container cgroup: its path as cAdvisor's `id` label, the container id and pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerCgroup {
    pub id: String,
    pub container_id: String,
    pub pod_uid: Option<String>,
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The container id in one cgroup directory name, if it names a container.
pub fn container_id_of(name: &str) -> Option<&str> {
    if is_container_id(name) {
        return Some(name);
    }
    let stem = name.strip_suffix(".scope")?;
    [
        "docker-",
        "cri-containerd-",
        "crio-",
        "libpod-",
        "containerd-",
    ]
    .iter()
    .find_map(|p| stem.strip_prefix(p))
    .filter(|id| is_container_id(id))
}

/// The pod uid from a Kubernetes cgroup path segment: `pod<uid>` (cgroupfs driver) or
/// `kubepods-<qos>-pod<uid with _>.slice` (systemd driver).
pub fn pod_uid_of(segment: &str) -> Option<String> {
    let stem = segment.strip_suffix(".slice").unwrap_or(segment);
    let at = if stem.starts_with("pod") {
        0
    } else {
        stem.rfind("-pod")? + 1
    };
    let uid = &stem[at + 3..];
    let ok = uid.len() >= 32
        && uid
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b'-' || b == b'_');
    ok.then(|| uid.replace('_', "-"))
}

/// Walks the tree and returns every container cgroup, in a stable order.
pub fn find_containers(layout: &Layout) -> std::io::Result<Vec<ContainerCgroup>> {
    let root = layout.walk_root();
    // Fail the scrape when the root itself is unreadable; vanishing subdirectories (a
    // container stopping mid-walk) are skipped.
    std::fs::read_dir(root)?;
    let mut found = Vec::new();
    let mut stack = vec![(root.to_path_buf(), String::new(), None::<String>, 0usize)];
    let mut visited = 0usize;
    while let Some((dir, rel, pod, depth)) = stack.pop() {
        visited += 1;
        if visited > MAX_DIRS {
            tracing::warn!(
                limit = MAX_DIRS,
                "cgroup walk stopped at its directory limit"
            );
            break;
        }
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut children: Vec<(String, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
            .collect();
        children.sort();
        for (name, path) in children {
            let child_rel = format!("{rel}/{name}");
            let child_pod = pod_uid_of(&name).or_else(|| pod.clone());
            if let Some(cid) = container_id_of(&name) {
                found.push(ContainerCgroup {
                    id: child_rel,
                    container_id: cid.to_string(),
                    pod_uid: child_pod,
                });
            } else if depth + 1 < MAX_DEPTH {
                stack.push((path, child_rel, child_pod, depth + 1));
            }
        }
    }
    found.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(found)
}

/// What one container used, read from its cgroup files.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerUsage {
    pub cpu_seconds: f64,
    /// (usage, working set); `None` when the memory controller does not track the
    /// container (v1 without a memory hierarchy for it): unknown, not zero.
    pub memory: Option<(f64, f64)>,
    /// (interface, rx bytes, tx bytes) from the container's network namespace.
    pub interfaces: Vec<(String, f64, f64)>,
}

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

fn read_number(path: &Path) -> Option<f64> {
    read_trimmed(path)?.parse().ok()
}

/// A `key value` line's value from a flat-keyed file (`cpu.stat`, `memory.stat`).
fn keyed(text: &str, key: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

fn network(procfs_root: &Path, cgroup_dir: &Path) -> Vec<(String, f64, f64)> {
    let Some(pid) = read_trimmed(&cgroup_dir.join("cgroup.procs"))
        .and_then(|t| t.lines().next().map(str::to_string))
        .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    else {
        return Vec::new();
    };
    let Ok(ifaces) = netdev::read_net_dev(&procfs_root.join(pid).join("net/dev")) else {
        return Vec::new();
    };
    ifaces
        .into_iter()
        .filter(|i| {
            !IGNORED_INTERFACE_PREFIXES
                .iter()
                .any(|p| i.device.starts_with(p))
        })
        .map(|i| (i.device, i.counters[0], i.counters[8]))
        .collect()
}

/// Reads one container's usage; `None` when it vanished or its files are unreadable.
pub fn read_usage(
    layout: &Layout,
    procfs_root: &Path,
    c: &ContainerCgroup,
) -> Option<ContainerUsage> {
    let rel = c.id.trim_start_matches('/');
    match layout {
        Layout::V2 { root } => {
            let dir = root.join(rel);
            let cpu_stat = std::fs::read_to_string(dir.join("cpu.stat")).ok()?;
            let cpu_seconds = keyed(&cpu_stat, "usage_usec")? / 1e6;
            let memory = read_number(&dir.join("memory.current")).map(|usage| {
                let inactive = std::fs::read_to_string(dir.join("memory.stat"))
                    .ok()
                    .and_then(|t| keyed(&t, "inactive_file"))
                    .unwrap_or(0.0);
                (usage, (usage - inactive).max(0.0))
            });
            Some(ContainerUsage {
                cpu_seconds,
                memory,
                interfaces: network(procfs_root, &dir),
            })
        }
        Layout::V1 { cpuacct, memory } => {
            let dir = cpuacct.join(rel);
            let cpu_seconds = read_number(&dir.join("cpuacct.usage"))? / 1e9;
            let memory = memory.as_ref().and_then(|m| {
                let mdir = m.join(rel);
                let usage = read_number(&mdir.join("memory.usage_in_bytes"))?;
                let inactive = std::fs::read_to_string(mdir.join("memory.stat"))
                    .ok()
                    .and_then(|t| keyed(&t, "total_inactive_file"))
                    .unwrap_or(0.0);
                Some((usage, (usage - inactive).max(0.0)))
            });
            Some(ContainerUsage {
                cpu_seconds,
                memory,
                interfaces: network(procfs_root, &dir),
            })
        }
    }
}

/// The collector table's constructor: the cgroup tree found under `sysfs_root`, names
/// from the Docker socket when there is one.
pub fn register(s: &mut Setup<'_>) {
    let config = s.config;
    match Layout::detect(&config.sysfs_root) {
        Some(layout) => {
            tracing::info!(?layout, "containers: cgroup tree found");
            let names = ContainerNames::connect(
                &config.containers.docker_socket,
                config.containers.name_cache_size,
                tokio::runtime::Handle::current(),
                s.metrics.errors(),
            );
            s.metrics.register_source(CgroupsCollector {
                layout,
                procfs_root: config.procfs_root.clone(),
                names,
            });
        }
        None => tracing::warn!(
            sysfs_root = %config.sysfs_root.display(),
            "no cgroup tree under sysfs_root/fs/cgroup: containers collector disabled"
        ),
    }
}

pub struct CgroupsCollector {
    pub layout: Layout,
    pub procfs_root: PathBuf,
    pub names: Option<ContainerNames>,
}

struct Row {
    cgroup: ContainerCgroup,
    name: String,
    image: String,
    usage: ContainerUsage,
}

fn labels(r: &Row) -> Labels<'_> {
    let mut l = vec![("id", r.cgroup.id.as_str())];
    if !r.name.is_empty() {
        l.push(("name", r.name.as_str()));
    }
    if !r.image.is_empty() {
        l.push(("image", r.image.as_str()));
    }
    if let Some(pod) = &r.cgroup.pod_uid {
        l.push(("pod_uid", pod.as_str()));
    }
    l
}

impl Source for CgroupsCollector {
    fn name(&self) -> &'static str {
        "cgroups"
    }

    fn collect(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
        let found = find_containers(&self.layout)?;
        let ids: Vec<&str> = found.iter().map(|c| c.container_id.as_str()).collect();
        let names = self
            .names
            .as_ref()
            .map(|n| n.lookup(&ids))
            .unwrap_or_default();
        let rows: Vec<Row> = found
            .iter()
            .filter_map(|c| {
                let usage = read_usage(&self.layout, &self.procfs_root, c)?;
                let (name, image) = names.get(&c.container_id).cloned().unwrap_or_default();
                Some(Row {
                    cgroup: c.clone(),
                    name,
                    image,
                    usage,
                })
            })
            .collect();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as f64)
            .unwrap_or(0.0);
        let cpu: Vec<Sample<'_>> = rows
            .iter()
            .map(|r| {
                let mut l = labels(r);
                l.push(("cpu", "total"));
                Sample::new(l, r.usage.cpu_seconds)
            })
            .collect();
        counter(
            enc,
            "container_cpu_usage_seconds_total",
            "Cumulative cpu time consumed in seconds.",
            &cpu,
        )?;
        let memory = |f: fn((f64, f64)) -> f64| -> Vec<Sample<'_>> {
            rows.iter()
                .filter_map(|r| Some(Sample::new(labels(r), f(r.usage.memory?))))
                .collect()
        };
        gauge(
            enc,
            "container_memory_usage_bytes",
            "Current memory usage in bytes, including all memory regardless of when it was accessed",
            &memory(|(usage, _)| usage),
        )?;
        gauge(
            enc,
            "container_memory_working_set_bytes",
            "Current working set in bytes.",
            &memory(|(_, ws)| ws),
        )?;
        let mut rx = Vec::new();
        let mut tx = Vec::new();
        for r in &rows {
            for (iface, rxb, txb) in &r.usage.interfaces {
                let mut l = labels(r);
                l.push(("interface", iface.as_str()));
                rx.push(Sample::new(l.clone(), *rxb));
                tx.push(Sample::new(l, *txb));
            }
        }
        counter(
            enc,
            "container_network_receive_bytes_total",
            "Cumulative count of bytes received",
            &rx,
        )?;
        counter(
            enc,
            "container_network_transmit_bytes_total",
            "Cumulative count of bytes transmitted",
            &tx,
        )?;
        gauge(
            enc,
            "container_last_seen",
            "Last time a container was seen by the exporter",
            &rows
                .iter()
                .map(|r| Sample::new(labels(r), now))
                .collect::<Vec<_>>(),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f3c2b1a09f8e7d6c5b4a3928170f6e5d4c3b2a190f8e7d6c5b4a3928170f6e5";

    #[test]
    fn recognises_container_cgroups() {
        assert_eq!(container_id_of(&format!("docker-{ID}.scope")), Some(ID));
        assert_eq!(container_id_of(ID), Some(ID));
        assert_eq!(
            container_id_of(&format!("cri-containerd-{ID}.scope")),
            Some(ID)
        );
        assert_eq!(container_id_of(&format!("crio-conmon-{ID}.scope")), None);
        assert_eq!(container_id_of("docker.service"), None);
        assert_eq!(container_id_of("docker-short.scope"), None);
        assert_eq!(
            pod_uid_of("kubepods-burstable-pod0f1e2d3c_4b5a_6978_8796_a5b4c3d2e1f0.slice"),
            Some("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0".to_string())
        );
        assert_eq!(
            pod_uid_of("pod0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"),
            Some("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0".to_string())
        );
        assert_eq!(pod_uid_of("kubepods-burstable.slice"), None);
        assert_eq!(pod_uid_of("pod"), None);
    }

    #[test]
    fn missing_tree_is_no_layout() {
        assert_eq!(Layout::detect(Path::new("/nonexistent-vigia-root")), None);
    }
}
