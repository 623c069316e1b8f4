//! What vigia-host reads: the roots of the host's /proc, /sys and /, which collectors run,
//! and the settings of each. Loaded from YAML plus `VIGIA_HOST__...` overrides.

use std::path::PathBuf;
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;
use vigia_kit::{ConfigError, Validate};

/// node_exporter 1.5's upstream default for `--collector.filesystem.mount-points-exclude`.
/// (Debian's package patches its own default to also drop /run, /mnt and /media.)
pub const DEFAULT_MOUNT_POINTS_EXCLUDE: &str =
    "^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)";
/// node_exporter 1.5's default for `--collector.filesystem.fs-types-exclude`.
pub const DEFAULT_FS_TYPES_EXCLUDE: &str = "^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|sysfs|tracefs)$";
/// node_exporter 1.5's default for `--collector.diskstats.device-exclude`: partitions and
/// pseudo block devices, whose I/O is already counted on the whole disk.
pub const DEFAULT_DISK_DEVICE_EXCLUDE: &str = "^(ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\\d+n\\d+p)\\d+$";

/// Upper bound for `inventory.top_processes` and `inventory.max_users`: each becomes a label
/// value, and label values must stay bounded.
pub const MAX_TOP: usize = 100;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostConfig {
    /// The host's /proc (`/host/proc` in a container).
    pub procfs_root: PathBuf,
    /// The host's /sys (`/host/sys` in a container).
    pub sysfs_root: PathBuf,
    /// The host's / (`/host/root` in a container): filesystems are measured under it and
    /// reported with the host's mount point; os-release and utmp are read from it.
    pub rootfs: PathBuf,
    pub collectors: Collectors,
    pub filesystem: FilesystemConfig,
    pub netdev: DeviceFilter,
    pub diskstats: DiskstatsConfig,
    pub containers: ContainersConfig,
    pub inventory: InventoryConfig,
    pub energy: EnergyConfig,
    pub anomaly: AnomalyConfig,
    /// Where the inventory snapshot is written; without it the inventory goes to
    /// Prometheus only.
    pub influxdb: Option<vigia_kit::influx::InfluxConfig>,
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            procfs_root: PathBuf::from("/proc"),
            sysfs_root: PathBuf::from("/sys"),
            rootfs: PathBuf::from("/"),
            collectors: Collectors::default(),
            filesystem: FilesystemConfig::default(),
            netdev: DeviceFilter::default(),
            diskstats: DiskstatsConfig::default(),
            containers: ContainersConfig::default(),
            inventory: InventoryConfig::default(),
            energy: EnergyConfig::default(),
            anomaly: AnomalyConfig::default(),
            influxdb: None,
        }
    }
}

/// One switch per collector, as node_exporter's `--collector.<name>` flags.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Collectors {
    pub cpu: bool,
    pub loadavg: bool,
    pub meminfo: bool,
    pub filesystem: bool,
    pub netdev: bool,
    pub diskstats: bool,
    /// Boot time (node_exporter's `stat` collector).
    pub stat: bool,
    pub time: bool,
    pub uname: bool,
    pub os: bool,
    pub cgroups: bool,
    pub inventory: bool,
    pub energy: bool,
    pub anomaly: bool,
}

impl Default for Collectors {
    fn default() -> Self {
        Self {
            cpu: true,
            loadavg: true,
            meminfo: true,
            filesystem: true,
            netdev: true,
            diskstats: true,
            stat: true,
            time: true,
            uname: true,
            os: true,
            cgroups: true,
            inventory: true,
            energy: true,
            anomaly: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilesystemConfig {
    pub mount_points_exclude: String,
    pub fs_types_exclude: String,
    /// How long one mount's statvfs may take before the mount is reported with
    /// `node_filesystem_device_error 1` and left alone until the call returns (a dead NFS
    /// server must not hang every scrape), as node_exporter's `--collector.filesystem.mount-timeout`.
    #[serde(with = "humantime_serde")]
    pub mount_timeout: Duration,
}

impl Default for FilesystemConfig {
    fn default() -> Self {
        Self {
            mount_points_exclude: DEFAULT_MOUNT_POINTS_EXCLUDE.to_string(),
            fs_types_exclude: DEFAULT_FS_TYPES_EXCLUDE.to_string(),
            mount_timeout: Duration::from_secs(5),
        }
    }
}

/// Network devices to leave out; empty (node_exporter's upstream default) keeps all.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeviceFilter {
    pub device_exclude: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiskstatsConfig {
    pub device_exclude: String,
}

impl Default for DiskstatsConfig {
    fn default() -> Self {
        Self {
            device_exclude: DEFAULT_DISK_DEVICE_EXCLUDE.to_string(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContainersConfig {
    /// The Docker Engine API socket (mounted read-only); absent → containers by id only.
    pub docker_socket: PathBuf,
    /// How many container names are remembered; ids beyond it are looked up again.
    pub name_cache_size: usize,
}

impl Default for ContainersConfig {
    fn default() -> Self {
        Self {
            docker_socket: PathBuf::from("/var/run/docker.sock"),
            name_cache_size: 1024,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InventoryConfig {
    /// How often the snapshot is pushed to InfluxDB.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// How many process names the CPU top list keeps.
    pub top_processes: usize,
    /// How many distinct user names get a `vigia_host_user_sessions` series.
    pub max_users: usize,
    /// The `host` tag of the InfluxDB rows, unless `influxdb.tags` names one; the
    /// machine's host name when empty. Resolved at load to the writer's `host` tag, so
    /// the inventory rows and the writer's default agree.
    pub host: String,
}

impl Default for InventoryConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(60),
            top_processes: 10,
            max_users: 50,
            host: String::new(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnergyConfig {
    /// Linear power model used only when the host has no RAPL or hwmon power sensor.
    pub model: Option<PowerModel>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowerModel {
    /// Power draw at 0 % CPU, in watts.
    pub idle_watts: f64,
    /// Power draw at 100 % CPU, in watts.
    pub max_watts: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnomalyConfig {
    /// How often a feature vector is scored.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Detector settings, as `vigia-anomaly` documents them. Warm-up lasts
    /// `window_size × interval` (250 × 15 s ≈ 1 h by default).
    pub trees: usize,
    pub depth: usize,
    pub window_size: usize,
    /// Score at or above which the host counts as anomalous (0..1].
    pub threshold: f64,
    /// Seed of the detector, so two runs over the same data agree.
    pub seed: u64,
}

impl Default for AnomalyConfig {
    fn default() -> Self {
        let d = vigia_anomaly::AnomalyConfig::default();
        Self {
            interval: Duration::from_secs(15),
            trees: d.trees,
            depth: d.depth,
            window_size: d.window_size,
            threshold: d.threshold,
            seed: d.seed,
        }
    }
}

impl AnomalyConfig {
    pub fn detector(&self) -> vigia_anomaly::AnomalyConfig {
        vigia_anomaly::AnomalyConfig {
            trees: self.trees,
            depth: self.depth,
            window_size: self.window_size,
            threshold: self.threshold,
            seed: self.seed,
        }
    }
}

/// Compiles a configured regex, naming the field when it does not compile.
pub fn compile(pattern: &str, field: &str) -> Result<Option<Regex>, ConfigError> {
    if pattern.is_empty() {
        return Ok(None);
    }
    Regex::new(pattern)
        .map(Some)
        .map_err(|e| ConfigError::new(field, format!("not a valid regular expression: {e}")))
}

fn check_dir_field(path: &std::path::Path, field: &str) -> Result<(), ConfigError> {
    if path.as_os_str().is_empty() {
        return Err(ConfigError::new(field, "must not be empty"));
    }
    if !path.is_absolute() {
        return Err(ConfigError::new(
            field,
            format!("must be an absolute path, got {}", path.display()),
        ));
    }
    Ok(())
}

impl Validate for HostConfig {
    /// `inventory.host` predates `influxdb.tags` and feeds its `host` when that is not
    /// set; then both hold the writer's `host` tag.
    fn resolve(&mut self) {
        if let Some(influx) = &mut self.influxdb {
            if !self.inventory.host.is_empty() {
                influx.add_tag_if_unset(vigia_kit::influx::HOST_TAG, &self.inventory.host);
            }
            self.inventory.host = influx.host_tag().unwrap_or_default();
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        check_dir_field(&self.procfs_root, "procfs_root")?;
        check_dir_field(&self.sysfs_root, "sysfs_root")?;
        check_dir_field(&self.rootfs, "rootfs")?;
        compile(
            &self.filesystem.mount_points_exclude,
            "filesystem.mount_points_exclude",
        )?;
        compile(
            &self.filesystem.fs_types_exclude,
            "filesystem.fs_types_exclude",
        )?;
        if self.filesystem.mount_timeout < Duration::from_millis(10) {
            return Err(ConfigError::new(
                "filesystem.mount_timeout",
                "must be at least 10ms",
            ));
        }
        compile(&self.netdev.device_exclude, "netdev.device_exclude")?;
        compile(&self.diskstats.device_exclude, "diskstats.device_exclude")?;
        if self.containers.name_cache_size == 0 {
            return Err(ConfigError::new(
                "containers.name_cache_size",
                "must be at least 1",
            ));
        }
        let inv = &self.inventory;
        if inv.interval < Duration::from_secs(1) {
            return Err(ConfigError::new(
                "inventory.interval",
                "must be at least 1s",
            ));
        }
        if inv.top_processes == 0 || inv.top_processes > MAX_TOP {
            return Err(ConfigError::new(
                "inventory.top_processes",
                format!("must be between 1 and {MAX_TOP}"),
            ));
        }
        if inv.max_users == 0 || inv.max_users > MAX_TOP {
            return Err(ConfigError::new(
                "inventory.max_users",
                format!("must be between 1 and {MAX_TOP}"),
            ));
        }
        if let Some(influx) = &self.influxdb {
            influx.validate("influxdb")?;
        }
        if let Some(model) = &self.energy.model {
            if !model.idle_watts.is_finite() || model.idle_watts < 0.0 {
                return Err(ConfigError::new(
                    "energy.model.idle_watts",
                    "must be a finite number of watts, 0 or more",
                ));
            }
            if !model.max_watts.is_finite() || model.max_watts < model.idle_watts {
                return Err(ConfigError::new(
                    "energy.model.max_watts",
                    "must be a finite number of watts, at least idle_watts",
                ));
            }
        }
        let an = &self.anomaly;
        if an.interval < Duration::from_millis(100) {
            return Err(ConfigError::new(
                "anomaly.interval",
                "must be at least 100ms",
            ));
        }
        an.detector()
            .validate("anomaly")
            .map_err(|p| ConfigError::new(p.path, p.message))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str) -> Result<HostConfig, ConfigError> {
        let tree = vigia_kit::config::parse_yaml(yaml, "host.yaml")?;
        let mut c: HostConfig = vigia_kit::config::from_value(tree)?;
        c.resolve();
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn inventory_host_and_the_writers_host_tag_agree() {
        let influx = "influxdb:\n  url: http://127.0.0.1:8086\n  database: vigia\n";
        let c = load(&format!("inventory:\n  host: edge-1\n{influx}")).unwrap();
        assert_eq!(c.influxdb.unwrap().host_tag().as_deref(), Some("edge-1"));
        assert_eq!(c.inventory.host, "edge-1");
        let c = load(&format!(
            "inventory:\n  host: edge-1\n{influx}  tags: {{host: edge-2}}\n"
        ))
        .unwrap();
        assert_eq!(c.influxdb.unwrap().host_tag().as_deref(), Some("edge-2"));
        assert_eq!(c.inventory.host, "edge-2");
        let c = load(influx).unwrap();
        assert_eq!(c.inventory.host, vigia_kit::influx::hostname());
        assert_eq!(load("").unwrap().inventory.host, "");
    }

    #[test]
    fn defaults_match_node_exporter_and_validate() {
        let c = load("").unwrap();
        assert_eq!(c.procfs_root, PathBuf::from("/proc"));
        assert!(c.collectors.cpu && c.collectors.cgroups);
        assert_eq!(c.inventory.top_processes, 10);
        let fs = compile(&c.filesystem.fs_types_exclude, "x")
            .unwrap()
            .unwrap();
        assert!(!fs.is_match("tmpfs") && fs.is_match("cgroup2") && fs.is_match("proc"));
        let mp = compile(&c.filesystem.mount_points_exclude, "x")
            .unwrap()
            .unwrap();
        assert!(mp.is_match("/proc/sys") && mp.is_match("/var/lib/docker/overlay2/x"));
        assert!(!mp.is_match("/") && !mp.is_match("/home"));
        let disk = compile(&c.diskstats.device_exclude, "x").unwrap().unwrap();
        assert!(disk.is_match("sda1") && disk.is_match("nvme0n1p2") && disk.is_match("loop3"));
        assert!(!disk.is_match("sda") && !disk.is_match("nvme0n1") && !disk.is_match("dm-0"));
    }

    #[test]
    fn bad_values_name_their_field() {
        let e = load("procfs_root: relative/proc\n").unwrap_err();
        assert_eq!(e.path, "procfs_root");
        let e = load("filesystem:\n  fs_types_exclude: '(['\n").unwrap_err();
        assert_eq!(e.path, "filesystem.fs_types_exclude");
        let e = load("inventory:\n  top_processes: 0\n").unwrap_err();
        assert_eq!(e.path, "inventory.top_processes");
        let e = load("inventory:\n  interval: soon\n").unwrap_err();
        assert_eq!(e.path, "inventory.interval");
        let e = load("collectors:\n  gpu: true\n").unwrap_err();
        assert!(e.message.contains("gpu"), "{e}");
        let e = load("energy:\n  model: {idle_watts: 80, max_watts: 20}\n").unwrap_err();
        assert_eq!(e.path, "energy.model.max_watts");
        let e = load("anomaly:\n  threshold: 1.5\n").unwrap_err();
        assert_eq!(e.path, "anomaly.threshold");
    }
}
