//! What vigia-host reads: the roots of the host's /proc, /sys and /, which collectors run,
//! and the settings of each. Loaded from YAML, then `VIGIA_HOST__...` overrides, then
//! node_exporter's own command-line flags (`--path.procfs`, `--collector.cpu`,
//! `--no-collector.cpu`, `--collector.filesystem.mount-points-exclude=...`), which win.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;
use serde_json::Value;
use vigia_kit::{ConfigError, Validate};

use crate::collectors::{self, COLLECTORS};

/// node_exporter 1.9's upstream default for `--collector.filesystem.mount-points-exclude`.
/// (Debian's package patches its own default to also drop /run, /mnt and /media.)
pub const DEFAULT_MOUNT_POINTS_EXCLUDE: &str =
    "^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)";
/// node_exporter 1.9's default for `--collector.filesystem.fs-types-exclude`.
pub const DEFAULT_FS_TYPES_EXCLUDE: &str = "^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|sysfs|tracefs)$";
/// node_exporter 1.9's default for `--collector.diskstats.device-exclude`: partitions and
/// pseudo block devices, whose I/O is already counted on the whole disk.
pub const DEFAULT_DISK_DEVICE_EXCLUDE: &str =
    "^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\\d+n\\d+p)\\d+$";
/// node_exporter 1.9's default for `--collector.netstat.fields`.
pub const DEFAULT_NETSTAT_FIELDS: &str = "^(.*_(InErrors|InErrs)|Ip_Forwarding|Ip(6|Ext)_(InOctets|OutOctets)|Icmp6?_(InMsgs|OutMsgs)|TcpExt_(Listen.*|Syncookies.*|TCPSynRetrans|TCPTimeouts|TCPOFOQueue|TCPRcvQDrop)|Tcp_(ActiveOpens|InSegs|OutSegs|OutRsts|PassiveOpens|RetransSegs|CurrEstab)|Udp6?_(InDatagrams|OutDatagrams|NoPorts|RcvbufErrors|SndbufErrors))$";
/// node_exporter 1.9's default for `--collector.vmstat.fields`.
pub const DEFAULT_VMSTAT_FIELDS: &str = "^(oom_kill|pgpg|pswp|pg.*fault).*";
/// node_exporter 1.9's default for `--collector.ipvs.backend-labels`.
pub const DEFAULT_IPVS_BACKEND_LABELS: &str =
    "local_address,local_port,remote_address,remote_port,proto,local_mark";

/// Upper bound for `inventory.top_processes` and `inventory.max_users`: each becomes a label
/// value, and label values must stay bounded.
pub const MAX_TOP: usize = 100;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostConfig {
    /// The host's /proc (`/host/proc` in a container); `--path.procfs`.
    pub procfs_root: PathBuf,
    /// The host's /sys (`/host/sys` in a container); `--path.sysfs`.
    pub sysfs_root: PathBuf,
    /// The host's / (`/host/root` in a container): filesystems are measured under it and
    /// reported with the host's mount point; os-release and utmp are read from it;
    /// `--path.rootfs`.
    pub rootfs: PathBuf,
    /// udev's device database, for `node_disk_info` and friends; `--path.udev.data`.
    pub udev_data_path: PathBuf,
    /// Start from no collector instead of the default set, as
    /// `--collector.disable-defaults`: only those set true in `collectors` run.
    pub disable_default_collectors: bool,
    /// Collector name → on/off, over the defaults of the collector table
    /// (`collectors.rs`); a name that is not in the table is an error.
    pub collectors: BTreeMap<String, bool>,
    pub arp: DeviceFilterConfig,
    pub cpu: CpuConfig,
    pub diskstats: DeviceFilterConfig,
    pub filesystem: FilesystemConfig,
    pub hwmon: HwmonConfig,
    pub ipvs: IpvsConfig,
    pub netclass: NetclassConfig,
    pub netdev: NetdevConfig,
    pub netstat: FieldsConfig,
    pub powersupplyclass: IgnoredConfig,
    pub rapl: RaplConfig,
    pub stat: StatConfig,
    pub tapestats: IgnoredConfig,
    pub textfile: TextfileConfig,
    pub vmstat: FieldsConfig,
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
            udev_data_path: PathBuf::from("/run/udev/data"),
            disable_default_collectors: false,
            collectors: BTreeMap::new(),
            arp: DeviceFilterConfig::default(),
            cpu: CpuConfig::default(),
            diskstats: DeviceFilterConfig::default(),
            filesystem: FilesystemConfig::default(),
            hwmon: HwmonConfig::default(),
            ipvs: IpvsConfig::default(),
            netclass: NetclassConfig::default(),
            netdev: NetdevConfig::default(),
            netstat: FieldsConfig::default(),
            powersupplyclass: IgnoredConfig::default(),
            rapl: RaplConfig::default(),
            stat: StatConfig::default(),
            tapestats: IgnoredConfig::default(),
            textfile: TextfileConfig::default(),
            vmstat: FieldsConfig::default(),
            containers: ContainersConfig::default(),
            inventory: InventoryConfig::default(),
            energy: EnergyConfig::default(),
            anomaly: AnomalyConfig::default(),
            influxdb: None,
        }
    }
}

impl HostConfig {
    /// Whether the collector `name` runs: its setting in `collectors`, else its default
    /// (none when `disable_default_collectors`).
    pub fn enabled(&self, name: &str) -> bool {
        match self.collectors.get(name) {
            Some(on) => *on,
            None => {
                !self.disable_default_collectors
                    && COLLECTORS.iter().any(|c| c.name == name && c.default)
            }
        }
    }

    /// A device or name filter; `default_exclude` applies when neither side is set.
    pub fn filter(
        f: &DeviceFilterConfig,
        default_exclude: Option<&str>,
    ) -> crate::node::util::NameFilter {
        let exclude = match (&f.device_exclude, &f.device_include) {
            (Some(e), _) => Some(e.as_str()),
            (None, None) => default_exclude,
            (None, Some(_)) => None,
        };
        crate::node::util::NameFilter::new(exclude, f.device_include.as_deref())
    }
}

/// `device_exclude` / `device_include` (mutually exclusive, as node_exporter's
/// `--collector.<name>.device-exclude` and `-include`). Unset exclude means the
/// collector's default one.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeviceFilterConfig {
    pub device_exclude: Option<String>,
    pub device_include: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CpuConfig {
    /// `node_cpu_guest_seconds_total` (`--collector.cpu.guest`, on by default).
    pub guest: bool,
}

impl Default for CpuConfig {
    fn default() -> Self {
        Self { guest: true }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatConfig {
    /// `node_softirqs_total{vector}` (`--collector.stat.softirq`, off by default).
    pub softirq: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilesystemConfig {
    /// Unset: node_exporter's default (unless `mount_points_include` is set).
    pub mount_points_exclude: Option<String>,
    pub mount_points_include: Option<String>,
    pub fs_types_exclude: Option<String>,
    pub fs_types_include: Option<String>,
    /// How long one mount's statvfs may take before the mount is reported with
    /// `node_filesystem_device_error 1` and left alone until the call returns (a dead NFS
    /// server must not hang every scrape), as node_exporter's `--collector.filesystem.mount-timeout`.
    #[serde(with = "humantime_serde")]
    pub mount_timeout: Duration,
}

impl Default for FilesystemConfig {
    fn default() -> Self {
        Self {
            mount_points_exclude: None,
            mount_points_include: None,
            fs_types_exclude: None,
            fs_types_include: None,
            mount_timeout: Duration::from_secs(5),
        }
    }
}

impl FilesystemConfig {
    pub fn mount_points(&self) -> crate::node::util::NameFilter {
        HostConfig::filter(
            &DeviceFilterConfig {
                device_exclude: self.mount_points_exclude.clone(),
                device_include: self.mount_points_include.clone(),
            },
            Some(DEFAULT_MOUNT_POINTS_EXCLUDE),
        )
    }

    pub fn fs_types(&self) -> crate::node::util::NameFilter {
        HostConfig::filter(
            &DeviceFilterConfig {
                device_exclude: self.fs_types_exclude.clone(),
                device_include: self.fs_types_include.clone(),
            },
            Some(DEFAULT_FS_TYPES_EXCLUDE),
        )
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HwmonConfig {
    pub chip_include: Option<String>,
    pub chip_exclude: Option<String>,
    pub sensor_include: Option<String>,
    pub sensor_exclude: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IpvsConfig {
    /// Comma-separated labels of `node_ipvs_backend_*` (`--collector.ipvs.backend-labels`).
    pub backend_labels: String,
}

impl Default for IpvsConfig {
    fn default() -> Self {
        Self {
            backend_labels: DEFAULT_IPVS_BACKEND_LABELS.to_string(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetclassConfig {
    /// `--collector.netclass.ignored-devices`.
    pub ignored_devices: String,
    /// `--collector.netclass.ignore-invalid-speed`: no `node_network_speed_bytes` for a
    /// device whose speed reads -1 (node_exporter 2.x's default).
    pub ignore_invalid_speed: bool,
}

impl Default for NetclassConfig {
    fn default() -> Self {
        Self {
            ignored_devices: "^$".to_string(),
            ignore_invalid_speed: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetdevConfig {
    /// Unset: every interface (node_exporter's upstream default).
    pub device_exclude: Option<String>,
    pub device_include: Option<String>,
    /// As node_exporter's `--collector.netdev.netlink` (on by default): the kernel's full
    /// link statistics, which add `node_network_receive_nohandler_total` to the 16
    /// columns of `/proc/net/dev` (vigia-host reads it from sysfs, the same counter).
    pub netlink: bool,
}

impl Default for NetdevConfig {
    fn default() -> Self {
        Self {
            device_exclude: None,
            device_include: None,
            netlink: true,
        }
    }
}

impl NetdevConfig {
    pub fn filter(&self) -> crate::node::util::NameFilter {
        HostConfig::filter(
            &DeviceFilterConfig {
                device_exclude: self.device_exclude.clone(),
                device_include: self.device_include.clone(),
            },
            None,
        )
    }
}

/// A field selection regex (`--collector.netstat.fields`, `--collector.vmstat.fields`);
/// unset means the collector's default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FieldsConfig {
    pub fields: Option<String>,
}

/// A regex of names to leave out (`--collector.powersupply.ignored-supplies`,
/// `--collector.tapestats.ignored-devices`); `^$` (nothing) by default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IgnoredConfig {
    pub ignored: String,
}

impl Default for IgnoredConfig {
    fn default() -> Self {
        Self {
            ignored: "^$".to_string(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaplConfig {
    /// `--collector.rapl.enable-zone-label`: one `node_rapl_joules_total{path,zone}`
    /// family instead of one family per zone name.
    pub enable_zone_label: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TextfileConfig {
    /// Directories (globs allowed) whose `*.prom` files are read at every scrape, as
    /// `--collector.textfile.directory` (repeatable); none by default, as upstream.
    pub directories: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContainersConfig {
    /// The Docker Engine API socket (mounted read-only); absent → containers by id only.
    pub docker_socket: PathBuf,
    /// How many container names are remembered; ids beyond it are looked up again.
    pub name_cache_size: usize,
    /// Whether Docker containers' disk use is measured (`container_fs_*`): a walk of
    /// each writable layer, in the background.
    pub fs_usage: bool,
    /// How often that walk runs (cAdvisor: every minute).
    #[serde(with = "humantime_serde")]
    pub fs_usage_interval: Duration,
}

impl Default for ContainersConfig {
    fn default() -> Self {
        Self {
            docker_socket: PathBuf::from("/var/run/docker.sock"),
            name_cache_size: 1024,
            fs_usage: true,
            fs_usage_interval: Duration::from_secs(60),
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

/// Compiles a configured regex, naming the field when it does not compile. Empty means
/// no filter.
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

/// An include/exclude pair: each must compile, and they are mutually exclusive.
fn check_pair(
    exclude: &Option<String>,
    include: &Option<String>,
    exclude_field: &str,
    include_field: &str,
) -> Result<(), ConfigError> {
    if let Some(e) = exclude {
        compile(e, exclude_field)?;
    }
    if let Some(i) = include {
        compile(i, include_field)?;
    }
    if exclude.is_some() && include.is_some() {
        return Err(ConfigError::new(
            include_field,
            format!("cannot be set together with {exclude_field} (they are mutually exclusive, as in node_exporter)"),
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
        check_dir_field(&self.udev_data_path, "udev_data_path")?;
        for name in self.collectors.keys() {
            if collectors::find(name).is_none() {
                let known: Vec<&str> = COLLECTORS.iter().map(|c| c.name).collect();
                return Err(ConfigError::new(
                    format!("collectors.{name}"),
                    format!("no such collector; known: {}", known.join(", ")),
                ));
            }
        }
        let fs = &self.filesystem;
        check_pair(
            &fs.mount_points_exclude,
            &fs.mount_points_include,
            "filesystem.mount_points_exclude",
            "filesystem.mount_points_include",
        )?;
        check_pair(
            &fs.fs_types_exclude,
            &fs.fs_types_include,
            "filesystem.fs_types_exclude",
            "filesystem.fs_types_include",
        )?;
        if fs.mount_timeout < Duration::from_millis(10) {
            return Err(ConfigError::new(
                "filesystem.mount_timeout",
                "must be at least 10ms",
            ));
        }
        for (section, f) in [("arp", &self.arp), ("diskstats", &self.diskstats)] {
            check_pair(
                &f.device_exclude,
                &f.device_include,
                &format!("{section}.device_exclude"),
                &format!("{section}.device_include"),
            )?;
        }
        check_pair(
            &self.netdev.device_exclude,
            &self.netdev.device_include,
            "netdev.device_exclude",
            "netdev.device_include",
        )?;
        check_pair(
            &self.hwmon.chip_exclude,
            &self.hwmon.chip_include,
            "hwmon.chip_exclude",
            "hwmon.chip_include",
        )?;
        check_pair(
            &self.hwmon.sensor_exclude,
            &self.hwmon.sensor_include,
            "hwmon.sensor_exclude",
            "hwmon.sensor_include",
        )?;
        compile(&self.netclass.ignored_devices, "netclass.ignored_devices")?;
        compile(&self.powersupplyclass.ignored, "powersupplyclass.ignored")?;
        compile(&self.tapestats.ignored, "tapestats.ignored")?;
        if let Some(f) = &self.netstat.fields {
            compile(f, "netstat.fields")?;
        }
        if let Some(f) = &self.vmstat.fields {
            compile(f, "vmstat.fields")?;
        }
        for label in self
            .ipvs
            .backend_labels
            .split(',')
            .filter(|l| !l.is_empty())
        {
            if ![
                "local_address",
                "local_port",
                "remote_address",
                "remote_port",
                "proto",
                "local_mark",
            ]
            .contains(&label)
            {
                //TODO
                return Err(ConfigError::new(
                    "ipvs.backend_labels",
                    format!(
                        "unknown label {label:?}; known: {}",
                        crate::node::ipvs::BACKEND_LABELS.join(",")
                    ),
                ));
            }
        }
        for (i, dir) in self.textfile.directories.iter().enumerate() {
            if dir.is_empty() {
                return Err(ConfigError::new(
                    format!("textfile.directories[{i}]"),
                    "must not be empty",
                ));
            }
        }
        if self.containers.name_cache_size == 0 {
            return Err(ConfigError::new(
                "containers.name_cache_size",
                "must be at least 1",
            ));
        }
        if self.containers.fs_usage_interval < Duration::from_secs(1) {
            return Err(ConfigError::new(
                "containers.fs_usage_interval",
                format!(
                    "must be at least 1s, got {:?}",
                    self.containers.fs_usage_interval
                ),
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

/// How a node_exporter flag's value lands in the configuration tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagKind {
    /// `--flag=value` (or `--flag value`), a string.
    Text,
    /// `--flag` / `--no-flag`, a boolean.
    Switch,
    /// Repeatable `--flag=value`, a list.
    List,
}

/// node_exporter's flags that vigia-host takes, and the configuration field each sets.
/// `--collector.<name>` / `--no-collector.<name>` come from the collector table.
pub const NODE_FLAGS: &[(&str, &str, FlagKind)] = &[
    ("path.procfs", "procfs_root", FlagKind::Text),
    ("path.sysfs", "sysfs_root", FlagKind::Text),
    ("path.rootfs", "rootfs", FlagKind::Text),
    ("path.udev.data", "udev_data_path", FlagKind::Text),
    (
        "collector.disable-defaults",
        "disable_default_collectors",
        FlagKind::Switch,
    ),
    (
        "collector.arp.device-include",
        "arp.device_include",
        FlagKind::Text,
    ),
    (
        "collector.arp.device-exclude",
        "arp.device_exclude",
        FlagKind::Text,
    ),
    // Read from /proc/net/arp either way: the same table; taken so that a unit file
    // written for node_exporter starts.
    ("collector.arp.netlink", "", FlagKind::Switch),
    ("collector.cpu.guest", "cpu.guest", FlagKind::Switch),
    (
        "collector.diskstats.device-exclude",
        "diskstats.device_exclude",
        FlagKind::Text,
    ),
    (
        "collector.diskstats.device-include",
        "diskstats.device_include",
        FlagKind::Text,
    ),
    (
        "collector.filesystem.mount-points-exclude",
        "filesystem.mount_points_exclude",
        FlagKind::Text,
    ),
    (
        "collector.filesystem.mount-points-include",
        "filesystem.mount_points_include",
        FlagKind::Text,
    ),
    (
        "collector.filesystem.fs-types-exclude",
        "filesystem.fs_types_exclude",
        FlagKind::Text,
    ),
    (
        "collector.filesystem.fs-types-include",
        "filesystem.fs_types_include",
        FlagKind::Text,
    ),
    (
        "collector.filesystem.mount-timeout",
        "filesystem.mount_timeout",
        FlagKind::Text,
    ),
    (
        "collector.hwmon.chip-include",
        "hwmon.chip_include",
        FlagKind::Text,
    ),
    (
        "collector.hwmon.chip-exclude",
        "hwmon.chip_exclude",
        FlagKind::Text,
    ),
    (
        "collector.hwmon.sensor-include",
        "hwmon.sensor_include",
        FlagKind::Text,
    ),
    (
        "collector.hwmon.sensor-exclude",
        "hwmon.sensor_exclude",
        FlagKind::Text,
    ),
    (
        "collector.ipvs.backend-labels",
        "ipvs.backend_labels",
        FlagKind::Text,
    ),
    (
        "collector.netclass.ignored-devices",
        "netclass.ignored_devices",
        FlagKind::Text,
    ),
    (
        "collector.netclass.ignore-invalid-speed",
        "netclass.ignore_invalid_speed",
        FlagKind::Switch,
    ),
    (
        "collector.netdev.device-include",
        "netdev.device_include",
        FlagKind::Text,
    ),
    (
        "collector.netdev.device-exclude",
        "netdev.device_exclude",
        FlagKind::Text,
    ),
    (
        "collector.netdev.netlink",
        "netdev.netlink",
        FlagKind::Switch,
    ),
    ("collector.netstat.fields", "netstat.fields", FlagKind::Text),
    (
        "collector.powersupply.ignored-supplies",
        "powersupplyclass.ignored",
        FlagKind::Text,
    ),
    (
        "collector.rapl.enable-zone-label",
        "rapl.enable_zone_label",
        FlagKind::Switch,
    ),
    ("collector.stat.softirq", "stat.softirq", FlagKind::Switch),
    (
        "collector.tapestats.ignored-devices",
        "tapestats.ignored",
        FlagKind::Text,
    ),
    (
        "collector.textfile.directory",
        "textfile.directories",
        FlagKind::List,
    ),
    ("collector.vmstat.fields", "vmstat.fields", FlagKind::Text),
];

/// Sets `path` (dotted) in a configuration tree; flags win over the file and environment.
pub fn set_field(tree: &mut Value, path: &str, value: Value) {
    let mut node = tree;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        if !node.is_object() {
            *node = Value::Object(Default::default());
        }
        let map = node.as_object_mut().expect("made an object above");
        if parts.peek().is_none() {
            map.insert(part.to_string(), value);
            return;
        }
        node = map
            .entry(part.to_string())
            .or_insert_with(|| Value::Object(Default::default()));
    }
}

/// Loads the configuration: the file, then `VIGIA_HOST__...` variables, then `flags`
/// (configuration path → value, from node_exporter's flags), then validation.
pub fn load(
    file: Option<&std::path::Path>,
    env: impl IntoIterator<Item = (String, String)>,
    flags: &[(String, Value)],
) -> Result<HostConfig, ConfigError> {
    let mut tree = match file {
        Some(path) => {
            let origin = path.display().to_string();
            let text = std::fs::read_to_string(path)
                .map_err(|e| ConfigError::new(&origin, format!("cannot read config file: {e}")))?;
            vigia_kit::config::parse_yaml(&text, &origin)?
        }
        None => Value::Object(Default::default()),
    };
    vigia_kit::config::apply_env_overrides(&mut tree, "VIGIA_HOST", env)?;
    for (path, value) in flags {
        set_field(&mut tree, path, value.clone());
    }
    let mut config: HostConfig = vigia_kit::config::from_value(tree)?;
    config.resolve();
    config.validate()?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_yaml(yaml: &str) -> Result<HostConfig, ConfigError> {
        let tree = vigia_kit::config::parse_yaml(yaml, "host.yaml")?;
        let mut c: HostConfig = vigia_kit::config::from_value(tree)?;
        c.resolve();
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn inventory_host_and_the_writers_host_tag_agree() {
        let influx = "influxdb:\n  url: http://127.0.0.1:8086\n  database: vigia\n";
        let c = load_yaml(&format!("inventory:\n  host: edge-1\n{influx}")).unwrap();
        assert_eq!(c.influxdb.unwrap().host_tag().as_deref(), Some("edge-1"));
        assert_eq!(c.inventory.host, "edge-1");
        let c = load_yaml(&format!(
            "inventory:\n  host: edge-1\n{influx}  tags: {{host: edge-2}}\n"
        ))
        .unwrap();
        assert_eq!(c.influxdb.unwrap().host_tag().as_deref(), Some("edge-2"));
        assert_eq!(c.inventory.host, "edge-2");
        let c = load_yaml(influx).unwrap();
        assert_eq!(c.inventory.host, vigia_kit::influx::hostname());
        assert_eq!(load_yaml("").unwrap().inventory.host, "");
    }

    #[test]
    fn defaults_match_node_exporter_and_validate() {
        let c = load_yaml("").unwrap();
        assert_eq!(c.procfs_root, PathBuf::from("/proc"));
        assert!(c.enabled("cpu") && c.enabled("cgroups") && c.enabled("netstat"));
        assert_eq!(c.inventory.top_processes, 10);
        let fs = c.filesystem.fs_types();
        assert!(!fs.ignored("tmpfs") && fs.ignored("cgroup2") && fs.ignored("proc"));
        let mp = c.filesystem.mount_points();
        assert!(mp.ignored("/proc/sys") && mp.ignored("/var/lib/docker/overlay2/x"));
        assert!(!mp.ignored("/") && !mp.ignored("/home") && !mp.ignored("/run"));
        let disk = HostConfig::filter(&c.diskstats, Some(DEFAULT_DISK_DEVICE_EXCLUDE));
        assert!(disk.ignored("sda1") && disk.ignored("nvme0n1p2") && disk.ignored("loop3"));
        assert!(disk.ignored("zram0"));
        assert!(!disk.ignored("sda") && !disk.ignored("nvme0n1") && !disk.ignored("dm-0"));
        assert!(!c.netdev.filter().ignored("lo"));
    }

    #[test]
    fn collectors_and_defaults() {
        let c = load_yaml("disable_default_collectors: true\ncollectors:\n  cpu: true\n").unwrap();
        assert!(c.enabled("cpu") && !c.enabled("meminfo") && !c.enabled("cgroups"));
        let c = load_yaml("collectors:\n  meminfo: false\n").unwrap();
        assert!(c.enabled("cpu") && !c.enabled("meminfo"));
        let e = load_yaml("collectors:\n  gpu: true\n").unwrap_err();
        assert_eq!(e.path, "collectors.gpu");
        // An include alone drops the default exclude, as node_exporter.
        let c = load_yaml("filesystem:\n  mount_points_include: '^/proc'\n").unwrap();
        let mp = c.filesystem.mount_points();
        assert!(!mp.ignored("/proc") && mp.ignored("/"));
    }

    #[test]
    fn flags_win_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("host.yaml");
        std::fs::write(
            &file,
            "procfs_root: /file/proc\nnetdev:\n  device_exclude: eth\n",
        )
        .unwrap();
        let flags = vec![
            (
                "procfs_root".to_string(),
                Value::String("/flag/proc".into()),
            ),
            (
                "netdev.device_exclude".to_string(),
                Value::String("[a-z]+0".into()),
            ),
            ("collectors.cpu".to_string(), Value::Bool(false)),
        ];
        let c = load(Some(&file), Vec::new(), &flags).unwrap();
        assert_eq!(c.procfs_root, PathBuf::from("/flag/proc"));
        assert_eq!(c.netdev.device_exclude.as_deref(), Some("[a-z]+0"));
        assert!(!c.enabled("cpu"));
    }

    #[test]
    fn bad_values_name_their_field() {
        let e = load_yaml("procfs_root: relative/proc\n").unwrap_err();
        assert_eq!(e.path, "procfs_root");
        let e = load_yaml("filesystem:\n  fs_types_exclude: '(['\n").unwrap_err();
        assert_eq!(e.path, "filesystem.fs_types_exclude");
        let e = load_yaml("netdev:\n  device_exclude: a\n  device_include: b\n").unwrap_err();
        assert_eq!(e.path, "netdev.device_include");
        let e = load_yaml("inventory:\n  top_processes: 0\n").unwrap_err();
        assert_eq!(e.path, "inventory.top_processes");
        let e = load_yaml("inventory:\n  interval: soon\n").unwrap_err();
        assert_eq!(e.path, "inventory.interval");
        let e = load_yaml("energy:\n  model: {idle_watts: 80, max_watts: 20}\n").unwrap_err();
        assert_eq!(e.path, "energy.model.max_watts");
        let e = load_yaml("anomaly:\n  threshold: 1.5\n").unwrap_err();
        assert_eq!(e.path, "anomaly.threshold");
        let e = load_yaml("ipvs:\n  backend_labels: local_address,colour\n").unwrap_err();
        assert_eq!(e.path, "ipvs.backend_labels");
    }
}
