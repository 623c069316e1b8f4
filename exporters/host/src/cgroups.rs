//! Containers found in the host's cgroup tree, exposed under cAdvisor's names so that
//! dashboards and rules written for cAdvisor keep working.
//!
//! cgroup v2 (one unified tree) and v1 (per-controller trees; `cpuacct` finds containers,
//! `memory` is read at the same relative path) are both read. A container cgroup is one
//! whose last path segment carries a 64-hex container id: `docker-<id>.scope` (systemd
//! driver), `docker/<id>` (cgroupfs driver), `cri-containerd-`, `crio-`, `libpod-`; a
//! `pod<uid>` segment above it (Kubernetes) becomes the `pod_uid` label.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::DescriptorEncoder;
use vigia_kit::{Source, SourceError};

use crate::collectors::Setup;
use crate::container_fs::{self, ContainerFs, FsUsage, Walker};
use crate::docker::ContainerNames;
use crate::metrics::{counter, gauge, Labels, Sample};
use crate::node::{meminfo, netdev};

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
        /// The cpu controller (CFS quota, period, shares, throttling), often joined
        /// with cpuacct.
        cpu: Option<PathBuf>,
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
            let cpu = ["cpu", "cpu,cpuacct", "cpuacct,cpu"]
                .iter()
                .map(|n| base.join(n))
                .find(|p| p.join("cpu.shares").is_file());
            let memory = Some(base.join("memory")).filter(|p| p.is_dir());
            return Some(Layout::V1 {
                cpuacct,
                cpu,
                memory,
            });
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

/// CPU time of one container, in seconds, and its CFS throttling.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CpuUsage {
    pub total: f64,
    /// User and system time (`cpu.stat` on v2; `cpuacct.stat`, in USER_HZ ticks, on v1).
    pub user_system: Option<(f64, f64)>,
    /// (periods, throttled periods, throttled seconds) from `cpu.stat`.
    pub cfs: Option<(f64, f64, f64)>,
}

/// Memory of one container, in bytes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemoryUsage {
    pub usage: f64,
    /// usage − inactive file pages, as cAdvisor.
    pub working_set: f64,
    /// Page cache and anonymous memory (v2 `file` and `anon`; v1 `total_cache` and
    /// `total_rss`, or `cache` and `rss` without `memory.use_hierarchy`); 0 when absent,
    /// as in cAdvisor.
    pub cache: f64,
    pub rss: f64,
}

/// CPU settings, as cAdvisor's `container_spec_cpu_*`: period and quota in
/// microseconds (no quota: `None`), shares (v2: `cpu.weight` converted as cAdvisor).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CpuSpec {
    pub period: f64,
    pub quota: Option<f64>,
    pub shares: f64,
}

/// What one container used and what it may use, read from its cgroup files.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerUsage {
    pub cpu: CpuUsage,
    /// `None` when the memory controller does not track the container (v1 without a
    /// memory hierarchy for it): unknown, not zero.
    pub memory: Option<MemoryUsage>,
    /// `None` without a cpu controller for the container.
    pub cpu_spec: Option<CpuSpec>,
    /// The memory limit, 0 for none (cAdvisor's value for a limit above 2^62).
    pub memory_limit: Option<f64>,
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

/// cAdvisor's reading of a limit: `max` is unlimited, reported (like any limit above
/// 2^62, v1's "no limit") as 0.
fn limit_value(text: &str) -> Option<f64> {
    const MAX_MEMORY: f64 = (1u64 << 62) as f64;
    let v = if text == "max" {
        f64::INFINITY
    } else {
        text.parse::<u64>().ok()? as f64
    };
    Some(if v > MAX_MEMORY { 0.0 } else { v })
}

/// cgroup v2 `cpu.weight` (1..10000) as v1 shares (2..262144), cAdvisor's conversion.
fn weight_to_shares(weight: u64) -> Option<f64> {
    (1..=10_000)
        .contains(&weight)
        .then(|| (2 + ((weight - 1) * 262_142) / 9_999) as f64)
}

/// USER_HZ: `cpuacct.stat` counts in these ticks (100 on every Linux ABI).
const CLOCK_TICKS: f64 = 100.0;

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

fn read_v2(dir: &Path, procfs_root: &Path) -> Option<ContainerUsage> {
    let cpu_stat = std::fs::read_to_string(dir.join("cpu.stat")).ok()?;
    let usec = |k: &str| keyed(&cpu_stat, k).map(|v| v / 1e6);
    let cpu = CpuUsage {
        total: usec("usage_usec")?,
        user_system: usec("user_usec").zip(usec("system_usec")),
        cfs: keyed(&cpu_stat, "nr_periods")
            .zip(keyed(&cpu_stat, "nr_throttled"))
            .zip(usec("throttled_usec"))
            .map(|((p, t), s)| (p, t, s)),
    };
    let memory = read_number(&dir.join("memory.current")).map(|usage| {
        let stat = std::fs::read_to_string(dir.join("memory.stat")).unwrap_or_default();
        let get = |k: &str| keyed(&stat, k).unwrap_or(0.0);
        MemoryUsage {
            usage,
            working_set: (usage - get("inactive_file")).max(0.0),
            cache: get("file"),
            rss: get("anon"),
        }
    });
    // `cpu.max` is "$QUOTA $PERIOD", QUOTA "max" for none.
    let cpu_spec = read_trimmed(&dir.join("cpu.max")).and_then(|max| {
        let (quota, period) = max.split_once(' ')?;
        Some(CpuSpec {
            period: period.trim().parse().ok()?,
            quota: (quota != "max").then(|| quota.parse().ok()).flatten(),
            shares: read_trimmed(&dir.join("cpu.weight"))
                .and_then(|w| weight_to_shares(w.parse().ok()?))
                .unwrap_or(0.0),
        })
    });
    let memory_limit = read_trimmed(&dir.join("memory.max")).and_then(|m| limit_value(&m));
    Some(ContainerUsage {
        cpu,
        memory,
        cpu_spec,
        memory_limit,
        interfaces: network(procfs_root, dir),
    })
}

fn read_v1(
    cpuacct: &Path,
    cpu_root: Option<&Path>,
    memory_root: Option<&Path>,
    rel: &str,
    procfs_root: &Path,
) -> Option<ContainerUsage> {
    let dir = cpuacct.join(rel);
    let total = read_number(&dir.join("cpuacct.usage"))? / 1e9;
    let user_system = std::fs::read_to_string(dir.join("cpuacct.stat"))
        .ok()
        .and_then(|t| Some((keyed(&t, "user")?, keyed(&t, "system")?)))
        .map(|(u, s)| (u / CLOCK_TICKS, s / CLOCK_TICKS));
    let cpu_dir = cpu_root.map(|c| c.join(rel)).filter(|d| d.is_dir());
    let cfs = cpu_dir.as_ref().and_then(|d| {
        let t = std::fs::read_to_string(d.join("cpu.stat")).ok()?;
        Some((
            keyed(&t, "nr_periods")?,
            keyed(&t, "nr_throttled")?,
            keyed(&t, "throttled_time")? / 1e9,
        ))
    });
    let cpu_spec = cpu_dir.as_ref().map(|d| CpuSpec {
        period: read_number(&d.join("cpu.cfs_period_us")).unwrap_or(0.0),
        quota: read_trimmed(&d.join("cpu.cfs_quota_us"))
            .filter(|q| q != "-1")
            .and_then(|q| q.parse().ok()),
        shares: read_number(&d.join("cpu.shares")).unwrap_or(0.0),
    });
    let memory_dir = memory_root.map(|m| m.join(rel)).filter(|d| d.is_dir());
    let memory = memory_dir.as_ref().and_then(|m| {
        let usage = read_number(&m.join("memory.usage_in_bytes"))?;
        let stat = std::fs::read_to_string(m.join("memory.stat")).unwrap_or_default();
        let get = |k: &str| keyed(&stat, k).unwrap_or(0.0);
        let hierarchy = read_trimmed(&m.join("memory.use_hierarchy")).as_deref() == Some("1");
        let (cache, rss) = if hierarchy {
            (get("total_cache"), get("total_rss"))
        } else {
            (get("cache"), get("rss"))
        };
        Some(MemoryUsage {
            usage,
            working_set: (usage - get("total_inactive_file")).max(0.0),
            cache,
            rss,
        })
    });
    let memory_limit = memory_dir
        .as_ref()
        .and_then(|m| read_trimmed(&m.join("memory.limit_in_bytes")))
        .and_then(|l| limit_value(&l));
    Some(ContainerUsage {
        cpu: CpuUsage {
            total,
            user_system,
            cfs,
        },
        memory,
        cpu_spec,
        memory_limit,
        interfaces: network(procfs_root, &dir),
    })
}

/// Reads one container's usage; `None` when it vanished or its files are unreadable.
pub fn read_usage(
    layout: &Layout,
    procfs_root: &Path,
    c: &ContainerCgroup,
) -> Option<ContainerUsage> {
    let rel = c.id.trim_start_matches('/');
    match layout {
        Layout::V2 { root } => read_v2(&root.join(rel), procfs_root),
        Layout::V1 {
            cpuacct,
            cpu,
            memory,
        } => read_v1(cpuacct, cpu.as_deref(), memory.as_deref(), rel, procfs_root),
    }
}

/// The collector table's constructor: the cgroup tree found under `sysfs_root`, names
/// from the Docker socket when there is one, and the background measurement of Docker
/// containers' disk use.
pub fn register(s: &mut Setup<'_>) {
    let config = s.config;
    let Some(layout) = Layout::detect(&config.sysfs_root) else {
        tracing::warn!(
            sysfs_root = %config.sysfs_root.display(),
            "no cgroup tree under sysfs_root/fs/cgroup: containers collector disabled"
        );
        return;
    };
    tracing::info!(?layout, "containers: cgroup tree found");
    let names = ContainerNames::connect(
        &config.containers.docker_socket,
        config.containers.name_cache_size,
        tokio::runtime::Handle::current(),
        s.metrics.errors(),
    )
    .map(Arc::new);
    let fs = match (&names, config.containers.fs_usage) {
        (Some(names), true) => {
            let fs = ContainerFs::default();
            let walker = Walker {
                rootfs: config.rootfs.clone(),
                procfs_root: config.procfs_root.clone(),
                max_entries: FS_MAX_ENTRIES,
            };
            s.tasks.push(tokio::spawn(container_fs::run(
                walker,
                names.clone(),
                fs.clone(),
                config.containers.fs_usage_interval,
                s.shutdown.clone(),
            )));
            Some(fs)
        }
        _ => None,
    };
    s.metrics.register_source(CgroupsCollector {
        layout,
        procfs_root: config.procfs_root.clone(),
        sysfs_root: config.sysfs_root.clone(),
        machine: Machine::read(config),
        names,
        fs,
    });
}

/// A writable layer with more entries than this is not walked (its usage is left out,
/// not under-reported).
const FS_MAX_ENTRIES: usize = 2_000_000;

/// The labels of cAdvisor's `machine_*` families.
#[derive(Debug, Clone, Default)]
pub struct Machine {
    pub boot_id: String,
    pub machine_id: String,
    /// DMI's product UUID: readable by root only on most hosts, empty otherwise.
    pub system_uuid: String,
}

impl Machine {
    pub fn read(config: &crate::config::HostConfig) -> Machine {
        let first = |paths: &[PathBuf]| {
            paths
                .iter()
                .find_map(|p| read_trimmed(p).filter(|v| !v.is_empty()))
                .unwrap_or_default()
        };
        Machine {
            boot_id: first(&[config.procfs_root.join("sys/kernel/random/boot_id")]),
            machine_id: first(&[
                config.rootfs.join("etc/machine-id"),
                config.rootfs.join("var/lib/dbus/machine-id"),
            ]),
            system_uuid: first(&[config.sysfs_root.join("class/dmi/id/product_uuid")]),
        }
    }
}

/// Logical CPUs online (`devices/system/cpu/online`), cAdvisor's `machine_cpu_cores`.
fn online_cpus(sysfs_root: &Path) -> Option<f64> {
    let text = read_trimmed(&sysfs_root.join("devices/system/cpu/online"))?;
    crate::node::cpu::parse_cpu_list(&text)
        .ok()
        .map(|l| l.len() as f64)
}

pub struct CgroupsCollector {
    pub layout: Layout,
    pub procfs_root: PathBuf,
    pub sysfs_root: PathBuf,
    pub machine: Machine,
    pub names: Option<Arc<ContainerNames>>,
    pub fs: Option<ContainerFs>,
}

struct Row {
    cgroup: ContainerCgroup,
    name: String,
    image: String,
    usage: ContainerUsage,
    fs: Option<FsUsage>,
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

/// One sample per container that has the value.
fn each<'a>(rows: &'a [Row], value: impl Fn(&Row) -> Option<f64>) -> Vec<Sample<'a>> {
    rows.iter()
        .filter_map(|r| Some(Sample::new(labels(r), value(r)?)))
        .collect()
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
        // Disk use for the containers the engine knows (Docker's; not containerd's).
        let fs = self
            .fs
            .as_ref()
            .map(|fs| fs.get(&names.keys().cloned().collect::<Vec<_>>()))
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
                    fs: fs.get(&c.container_id).cloned(),
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
                Sample::new(l, r.usage.cpu.total)
            })
            .collect();
        counter(
            enc,
            "container_cpu_usage_seconds_total",
            "Cumulative cpu time consumed in seconds.",
            &cpu,
        )?;
        counter(
            enc,
            "container_cpu_user_seconds_total",
            "Cumulative user cpu time consumed in seconds.",
            &each(&rows, |r| Some(r.usage.cpu.user_system?.0)),
        )?;
        counter(
            enc,
            "container_cpu_system_seconds_total",
            "Cumulative system cpu time consumed in seconds.",
            &each(&rows, |r| Some(r.usage.cpu.user_system?.1)),
        )?;
        // As cAdvisor: CFS figures only for a container with a quota.
        let cfs = |r: &Row| {
            r.usage.cpu_spec.as_ref()?.quota?;
            r.usage.cpu.cfs
        };
        counter(
            enc,
            "container_cpu_cfs_periods_total",
            "Number of elapsed enforcement period intervals.",
            &each(&rows, |r| Some(cfs(r)?.0)),
        )?;
        counter(
            enc,
            "container_cpu_cfs_throttled_periods_total",
            "Number of throttled period intervals.",
            &each(&rows, |r| Some(cfs(r)?.1)),
        )?;
        counter(
            enc,
            "container_cpu_cfs_throttled_seconds_total",
            "Total time duration the container has been throttled.",
            &each(&rows, |r| Some(cfs(r)?.2)),
        )?;
        let memory =
            |f: fn(&MemoryUsage) -> f64| each(&rows, move |r| r.usage.memory.as_ref().map(f));
        gauge(
            enc,
            "container_memory_usage_bytes",
            "Current memory usage in bytes, including all memory regardless of when it was accessed",
            &memory(|m| m.usage),
        )?;
        gauge(
            enc,
            "container_memory_working_set_bytes",
            "Current working set in bytes.",
            &memory(|m| m.working_set),
        )?;
        gauge(
            enc,
            "container_memory_cache",
            "Number of bytes of page cache memory.",
            &memory(|m| m.cache),
        )?;
        gauge(
            enc,
            "container_memory_rss",
            "Size of RSS in bytes.",
            &memory(|m| m.rss),
        )?;
        gauge(
            enc,
            "container_spec_cpu_period",
            "CPU period of the container.",
            &each(&rows, |r| Some(r.usage.cpu_spec.as_ref()?.period)),
        )?;
        gauge(
            enc,
            "container_spec_cpu_quota",
            "CPU quota of the container.",
            &each(&rows, |r| r.usage.cpu_spec.as_ref()?.quota),
        )?;
        gauge(
            enc,
            "container_spec_cpu_shares",
            "CPU share of the container.",
            &each(&rows, |r| Some(r.usage.cpu_spec.as_ref()?.shares)),
        )?;
        gauge(
            enc,
            "container_spec_memory_limit_bytes",
            "Memory limit for the container.",
            &each(&rows, |r| r.usage.memory_limit),
        )?;
        let disk = |value: fn(&FsUsage) -> Option<f64>| -> Vec<Sample<'_>> {
            rows.iter()
                .filter_map(|r| {
                    let fs = r.fs.as_ref()?;
                    let mut l = labels(r);
                    l.push(("device", fs.device.as_str()));
                    Some(Sample::new(l, value(fs)?))
                })
                .collect()
        };
        gauge(
            enc,
            "container_fs_usage_bytes",
            "Number of bytes that are consumed by the container on this filesystem.",
            &disk(|f| Some(f.usage)),
        )?;
        gauge(
            enc,
            "container_fs_limit_bytes",
            "Number of bytes that can be consumed by the container on this filesystem.",
            &disk(|f| Some(f.limit)),
        )?;
        gauge(
            enc,
            "container_fs_inodes_total",
            "Number of Inodes",
            &disk(|f| f.inodes),
        )?;
        // cAdvisor never fills it for a container: 0, where it reports inodes at all.
        gauge(
            enc,
            "container_fs_inodes_free",
            "Number of available Inodes",
            &disk(|f| f.inodes.map(|_| 0.0)),
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
            &each(&rows, |_| Some(now)),
        )?;
        let m = &self.machine;
        let machine = |v: Option<f64>| -> Vec<Sample<'_>> {
            v.map(|v| {
                Sample::new(
                    vec![
                        ("boot_id", m.boot_id.as_str()),
                        ("machine_id", m.machine_id.as_str()),
                        ("system_uuid", m.system_uuid.as_str()),
                    ],
                    v,
                )
            })
            .into_iter()
            .collect()
        };
        gauge(
            enc,
            "machine_cpu_cores",
            "Number of logical CPU cores.",
            &machine(online_cpus(&self.sysfs_root)),
        )?;
        let mem_total = meminfo::read_meminfo(&self.procfs_root).ok().and_then(|m| {
            m.into_iter()
                .find(|(k, _)| k == "MemTotal_bytes")
                .map(|(_, v)| v)
        });
        gauge(
            enc,
            "machine_memory_bytes",
            "Amount of memory installed on the machine.",
            &machine(mem_total),
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
