//! What vigia-ping reads: the YAML config (plus `VIGIA_PING__...` environment overrides)
//! and the optional targets file a NOC edits by hand.
//!
//! Everything is validated once, at load, into [`TargetSpec`]s that carry every setting
//! already resolved against the defaults, so the probe loop never sees a bad value.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use vigia_kit::{ConfigError, Validate};

use crate::probe_config::{ListSetting, ProbeKind, ProbeSpec};

/// Environment prefix for overrides: `VIGIA_PING__DEFAULTS__INTERVAL=1s`.
pub const ENV_PREFIX: &str = "VIGIA_PING";

/// Label names a target may not define: the exporter sets them itself, or Prometheus
/// gives them a meaning (`le` on the RTT histogram, `status` on `vigia_ping_status`), or
/// the InfluxDB writer does (`host`, the agent that probed, on every round row), or every
/// series of a target carries it (`probe`, the kind), or an unreachable target's series
/// names its failed uplink with it (`behind`). Each kind adds its own
/// ([`ProbeKind::reserved_labels`]).
const RESERVED_LABELS: [&str; 7] = [
    "target", "address", "status", "le", "host", "probe", "behind",
];

/// Largest ICMP payload accepted; jumbo frames, not fragmented monsters.
const MAX_PAYLOAD: usize = 9000;
const MAX_COUNT: u32 = 1000;

/// Floors on the schedule, so that a typo (`1ns` for `1s`) cannot turn the exporter into
/// a flood: at most one round every 100 ms and one echo request every 10 ms per target
/// (100 a second, ten times what `ping -i 0.1` sends), each waiting at least 1 ms.
const MIN_INTERVAL: Duration = Duration::from_millis(100);
const MIN_SPACING: Duration = Duration::from_millis(10);
const MIN_TIMEOUT: Duration = Duration::from_millis(1);

/// Longest name and label value, in characters: a board tile and a label stay readable
/// (a 20,000-character name made a 72,000-pixel tile). An address is at most a DNS name,
/// 253 characters.
const MAX_NAME_CHARS: usize = 128;
const MAX_LABEL_VALUE_CHARS: usize = 256;
const MAX_ADDRESS_CHARS: usize = 253;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Which ICMP socket to open: raw needs CAP_NET_RAW, datagram needs the process's
    /// group inside `net.ipv4.ping_group_range`.
    #[serde(default)]
    pub socket: SocketMode,
    #[serde(default)]
    pub defaults: Defaults,
    #[serde(default)]
    pub targets: Vec<TargetConfig>,
    /// A plain-text list of targets, re-read when it changes (see [`parse_targets_file`]).
    #[serde(default)]
    pub targets_file: Option<PathBuf>,
    /// How often the targets file's (and the maintenance file's) modification time is
    /// checked.
    #[serde(default = "default_targets_file_check", with = "humantime_serde")]
    pub targets_file_check_interval: Duration,
    /// Whether a targets file without any target is a valid list. By default it is an
    /// error (and a reload keeps the previous list): an editor that truncates the file
    /// before writing it would otherwise stop every target for a moment, losing their
    /// down stopwatches and resetting the alerts' `for:`.
    #[serde(default)]
    pub targets_file_allow_empty: bool,
    /// Maintenance windows for targets and sites, shown on the board (the file the stack's
    /// Alertmanager silences are made from; see [`crate::maintenance`]).
    #[serde(default)]
    pub maintenance_file: Option<PathBuf>,
    #[serde(default)]
    pub transition_log: Option<TransitionLogConfig>,
    /// Each round's result as a row of `vigia_ping_round`.
    #[serde(default)]
    pub influxdb: Option<vigia_kit::influx::InfluxConfig>,
    /// Upper bounds (seconds) of the buckets of `vigia_ping_rtt_seconds`, the same for
    /// every target; `[]` keeps only its `_sum` and `_count` (an average RTT).
    #[serde(default = "default_rtt_buckets")]
    pub rtt_buckets: Vec<f64>,
}

fn default_rtt_buckets() -> Vec<f64> {
    crate::status::DEFAULT_RTT_BUCKETS.to_vec()
}

/// Most RTT buckets: each one is a series per target.
const MAX_RTT_BUCKETS: usize = 32;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SocketMode {
    /// Raw when the process has CAP_NET_RAW, else datagram.
    #[default]
    Auto,
    Raw,
    Datagram,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// Time between the starts of two rounds (the seed pings every 10 s).
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Echo requests per round, spread evenly over the interval (the seed sends 5).
    #[serde(default = "default_count")]
    pub count: u32,
    /// How long one echo request waits for its reply.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// A round whose average RTT is above this is a warning.
    #[serde(default = "default_warning_rtt", with = "humantime_serde")]
    pub warning_rtt: Duration,
    /// A round whose loss ratio (0..1) is above this is a warning.
    #[serde(default)]
    pub warning_loss: f64,
    /// Rounds in a row without any reply before a target is down.
    #[serde(default = "default_down_after")]
    pub down_after: u32,
    /// How often host names are resolved again.
    #[serde(default = "default_resolve_interval", with = "humantime_serde")]
    pub resolve_interval: Duration,
    /// ICMP payload bytes per echo request (ping's default is 56).
    #[serde(default = "default_payload_size")]
    pub payload_size: usize,
}

impl Default for Defaults {
    fn default() -> Self {
        Self {
            interval: default_interval(),
            count: default_count(),
            timeout: default_timeout(),
            warning_rtt: default_warning_rtt(),
            warning_loss: 0.0,
            down_after: default_down_after(),
            resolve_interval: default_resolve_interval(),
            payload_size: default_payload_size(),
        }
    }
}

fn default_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_count() -> u32 {
    5
}
fn default_timeout() -> Duration {
    Duration::from_secs(1)
}
fn default_warning_rtt() -> Duration {
    Duration::from_millis(200)
}
fn default_down_after() -> u32 {
    1
}
fn default_resolve_interval() -> Duration {
    Duration::from_secs(300)
}
fn default_payload_size() -> usize {
    56
}
fn default_targets_file_check() -> Duration {
    Duration::from_secs(5)
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    pub name: String,
    /// What is probed: for icmp an IPv4 or IPv6 address or a host name (resolved every
    /// `resolve_interval`); for tcp `host:port`; for http the URL; for dns the server
    /// (`host` or `host:port`, port 53 by default).
    pub address: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default, with = "humantime_serde")]
    pub interval: Option<Duration>,
    #[serde(default)]
    pub count: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub warning_rtt: Option<Duration>,
    #[serde(default)]
    pub warning_loss: Option<f64>,
    #[serde(default)]
    pub down_after: Option<u32>,
    /// The target this one is reached through (its uplink): while the parent is down, a
    /// silent target is `unreachable`, not down. Another target's name; chains allowed.
    #[serde(default)]
    pub parent: Option<String>,
    /// The kind of probe (icmp by default); the settings below belong to one kind each
    /// and are checked in [`crate::probe_config`].
    #[serde(default)]
    pub probe: Option<ProbeKind>,
    #[serde(default)]
    pub tls: Option<bool>,
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    #[serde(default)]
    pub tls_server_name: Option<String>,
    #[serde(default)]
    pub tls_insecure_skip_verify: Option<bool>,
    #[serde(default)]
    pub send: Option<String>,
    #[serde(default)]
    pub expect: Option<String>,
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub headers: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub expect_status: Option<ListSetting>,
    #[serde(default)]
    pub expect_body: Option<String>,
    #[serde(default)]
    pub fail_if_body: Option<String>,
    #[serde(default)]
    pub follow_redirects: Option<bool>,
    #[serde(default)]
    pub max_redirects: Option<u32>,
    #[serde(default)]
    pub query_name: Option<String>,
    #[serde(default)]
    pub query_type: Option<String>,
    #[serde(default)]
    pub transport: Option<String>,
    #[serde(default)]
    pub recursion_desired: Option<bool>,
    #[serde(default)]
    pub expect_rcode: Option<ListSetting>,
    #[serde(default)]
    pub expect_answer: Option<String>,
    #[serde(default)]
    pub fail_if_answer: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransitionLogConfig {
    pub path: PathBuf,
    /// The file is rotated before it would grow past this many bytes.
    #[serde(default = "default_log_max_bytes")]
    pub max_bytes: u64,
    /// Rotated files kept (`path.1` is the newest).
    #[serde(default = "default_log_keep")]
    pub keep: u32,
}

fn default_log_max_bytes() -> u64 {
    10 * 1024 * 1024
}
fn default_log_keep() -> u32 {
    5
}

/// Where a target's address points.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    Ip(IpAddr),
    Name(String),
}

/// One target with every setting resolved against the defaults and validated.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetSpec {
    pub name: String,
    /// The address as configured (an IP or a host name): the `address` label.
    pub address: String,
    pub host: Host,
    pub labels: BTreeMap<String, String>,
    pub interval: Duration,
    pub count: u32,
    pub timeout: Duration,
    pub warning_rtt: Duration,
    pub warning_loss: f64,
    pub down_after: u32,
    pub resolve_interval: Duration,
    pub payload_size: usize,
    /// The kind of probe and its settings.
    pub probe: ProbeSpec,
    /// The name of the target this one is reached through, checked to exist (no cycles).
    pub parent: Option<String>,
}

impl TargetSpec {
    /// Time between two echo requests of one round: the round fills the interval, so
    /// a short outage is seen by one of them wherever it falls.
    pub fn spacing(&self) -> Duration {
        self.interval / self.count
    }
}

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        self.defaults.validate()?;
        if self.targets_file_check_interval.is_zero() {
            return Err(ConfigError::new(
                "targets_file_check_interval",
                "must be greater than 0",
            ));
        }
        if let Some(log) = &self.transition_log {
            if log.path.as_os_str().is_empty() {
                return Err(ConfigError::new("transition_log.path", "must not be empty"));
            }
            check_writable(&log.path)
                .map_err(|why| ConfigError::new("transition_log.path", why))?;
            if log.max_bytes < 1024 {
                return Err(ConfigError::new(
                    "transition_log.max_bytes",
                    format!("{} is too small; use at least 1024", log.max_bytes),
                ));
            }
            if log.keep == 0 {
                return Err(ConfigError::new(
                    "transition_log.keep",
                    "must be at least 1 (rotated files kept)",
                ));
            }
        }
        if let Some(influx) = &self.influxdb {
            influx.validate("influxdb")?;
        }
        if self.rtt_buckets.len() > MAX_RTT_BUCKETS {
            return Err(ConfigError::new(
                "rtt_buckets",
                format!(
                    "{} buckets is more than the {MAX_RTT_BUCKETS} allowed (each is a series per target)",
                    self.rtt_buckets.len()
                ),
            ));
        }
        for (i, b) in self.rtt_buckets.iter().enumerate() {
            if !b.is_finite() || *b <= 0.0 {
                return Err(ConfigError::new(
                    format!("rtt_buckets[{i}]"),
                    format!("{b} is not a positive number of seconds"),
                ));
            }
            if i > 0 && *b <= self.rtt_buckets[i - 1] {
                return Err(ConfigError::new(
                    format!("rtt_buckets[{i}]"),
                    "buckets must be in increasing order",
                ));
            }
        }
        if let Some(path) = &self.maintenance_file {
            crate::maintenance::read(path)?;
        }
        // Through all_targets also without a file: parents are checked there.
        match &self.targets_file {
            Some(path) => self.all_targets(&self.read_targets_file(path)?)?,
            None => self.all_targets(&[])?,
        };
        Ok(())
    }
}

/// What startup will do with the transition log, checked without creating it (so that
/// `--check-config` and a real start agree): the directory must exist, and the file (or,
/// when it does not exist yet, the directory) must be writable by this process.
fn check_writable(path: &Path) -> Result<(), String> {
    use std::os::unix::ffi::OsStrExt;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    match std::fs::metadata(parent) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(format!("{} is not a directory", parent.display())),
        Err(e) => return Err(format!("directory {}: {e}", parent.display())),
    }
    let existing = path.exists();
    if existing && path.is_dir() {
        return Err(format!("{} is a directory, not a file", path.display()));
    }
    let probe = if existing { path } else { parent };
    let Ok(c_path) = std::ffi::CString::new(probe.as_os_str().as_bytes()) else {
        return Err("contains a NUL byte".into());
    };
    // SAFETY: access(2) reads a NUL-terminated path and has no other preconditions.
    if unsafe { libc::access(c_path.as_ptr(), libc::W_OK) } != 0 {
        return Err(format!(
            "cannot write {}: {}",
            probe.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

impl Defaults {
    fn validate(&self) -> Result<(), ConfigError> {
        check_settings(
            &|f| format!("defaults.{f}"),
            self.interval,
            self.count,
            self.timeout,
            self.warning_loss,
            self.down_after,
        )?;
        if self.resolve_interval.is_zero() {
            return Err(ConfigError::new(
                "defaults.resolve_interval",
                "must be greater than 0",
            ));
        }
        if self.payload_size > MAX_PAYLOAD {
            return Err(ConfigError::new(
                "defaults.payload_size",
                format!(
                    "{} bytes is more than the {MAX_PAYLOAD} allowed",
                    self.payload_size
                ),
            ));
        }
        Ok(())
    }
}

/// `field` turns a setting's name into the path errors name (`defaults.interval`,
/// `targets[2].timeout`, `targets_file t.txt line 4: count`).
fn check_settings(
    field: &dyn Fn(&str) -> String,
    interval: Duration,
    count: u32,
    timeout: Duration,
    warning_loss: f64,
    down_after: u32,
) -> Result<(), ConfigError> {
    if interval.is_zero() {
        return Err(ConfigError::new(
            field("interval"),
            "must be greater than 0",
        ));
    }
    if interval < MIN_INTERVAL {
        return Err(ConfigError::new(
            field("interval"),
            format!(
                "{} is below the floor of {} (one round per target at most every {})",
                humantime::format_duration(interval),
                humantime::format_duration(MIN_INTERVAL),
                humantime::format_duration(MIN_INTERVAL),
            ),
        ));
    }
    if count == 0 || count > MAX_COUNT {
        return Err(ConfigError::new(
            field("count"),
            format!("{count} is out of range 1..={MAX_COUNT}"),
        ));
    }
    if timeout.is_zero() {
        return Err(ConfigError::new(field("timeout"), "must be greater than 0"));
    }
    if timeout < MIN_TIMEOUT {
        return Err(ConfigError::new(
            field("timeout"),
            format!(
                "{} is below the floor of {}",
                humantime::format_duration(timeout),
                humantime::format_duration(MIN_TIMEOUT),
            ),
        ));
    }
    let spacing = interval / count;
    if spacing < MIN_SPACING {
        return Err(ConfigError::new(
            field("count"),
            format!(
                "{count} requests per {} is one every {}, below the floor of one every {} \
                 (interval / count); send fewer or lengthen the interval",
                humantime::format_duration(interval),
                humantime::format_duration(spacing),
                humantime::format_duration(MIN_SPACING),
            ),
        ));
    }
    if timeout > spacing {
        return Err(ConfigError::new(
            field("timeout"),
            format!(
                "{} is longer than interval / count ({} / {count} = {}); a round must end before the next begins",
                humantime::format_duration(timeout),
                humantime::format_duration(interval),
                humantime::format_duration(spacing),
            ),
        ));
    }
    if !(0.0..1.0).contains(&warning_loss) {
        return Err(ConfigError::new(
            field("warning_loss"),
            format!("{warning_loss} is not a loss ratio in 0 ..< 1"),
        ));
    }
    if down_after == 0 {
        return Err(ConfigError::new(
            field("down_after"),
            "must be at least 1 round",
        ));
    }
    Ok(())
}

impl Config {
    /// The targets written in the config file itself, validated.
    pub fn inline_targets(&self) -> Result<Vec<TargetSpec>, ConfigError> {
        let mut names = HashSet::new();
        let mut specs = Vec::with_capacity(self.targets.len());
        for (i, t) in self.targets.iter().enumerate() {
            let at = format!("targets[{i}]");
            let spec = self.spec(&at, t)?;
            if !names.insert(spec.name.clone()) {
                return Err(ConfigError::new(
                    format!("{at}.name"),
                    format!("duplicate target name {:?}", spec.name),
                ));
            }
            specs.push(spec);
        }
        Ok(specs)
    }

    /// Inline targets plus the targets file's entries; names must be unique across both,
    /// and every `parent` must name one of them without a cycle.
    pub fn all_targets(&self, from_file: &[FileTarget]) -> Result<Vec<TargetSpec>, ConfigError> {
        let mut specs = self.inline_targets()?;
        let mut parent_fields: Vec<String> = (0..specs.len())
            .map(|i| format!("targets[{i}].parent"))
            .collect();
        let mut names: HashSet<String> = specs.iter().map(|s| s.name.clone()).collect();
        for ft in from_file {
            let at = ft.origin.clone();
            let spec = self.spec(&at, &ft.target)?;
            if !names.insert(spec.name.clone()) {
                return Err(ConfigError::new(
                    at,
                    format!("duplicate target name {:?}", spec.name),
                ));
            }
            parent_fields.push(format!("{at}: parent"));
            specs.push(spec);
        }
        check_parents(&specs, &parent_fields)?;
        Ok(specs)
    }

    fn spec(&self, at: &str, t: &TargetConfig) -> Result<TargetSpec, ConfigError> {
        let field = |f: &str| {
            if at.starts_with("targets[") {
                format!("{at}.{f}")
            } else {
                // A targets-file line: the origin already says where.
                format!("{at}: {f}")
            }
        };
        if t.name.trim().is_empty() {
            return Err(ConfigError::new(field("name"), "must not be empty"));
        }
        check_text(&t.name, MAX_NAME_CHARS).map_err(|m| ConfigError::new(field("name"), m))?;
        check_text(&t.address, MAX_ADDRESS_CHARS)
            .and_then(|()| {
                if t.address.trim() != t.address {
                    return Err("must not start or end with spaces".to_string());
                }
                Ok(())
            })
            .map_err(|m| ConfigError::new(field("address"), m))?;
        let (host, probe) = crate::probe_config::compile(t, &field)?;
        for (k, v) in &t.labels {
            check_label_name(k).map_err(|m| ConfigError::new(field(&format!("labels.{k}")), m))?;
            check_text(v, MAX_LABEL_VALUE_CHARS).map_err(|m| {
                ConfigError::new(field(&format!("labels.{k}")), format!("value {m}"))
            })?;
        }
        let d = &self.defaults;
        let spec = TargetSpec {
            name: t.name.clone(),
            address: t.address.clone(),
            host,
            labels: t.labels.clone(),
            interval: t.interval.unwrap_or(d.interval),
            count: t.count.unwrap_or(d.count),
            timeout: t.timeout.unwrap_or(d.timeout),
            warning_rtt: t.warning_rtt.unwrap_or(d.warning_rtt),
            warning_loss: t.warning_loss.unwrap_or(d.warning_loss),
            down_after: t.down_after.unwrap_or(d.down_after),
            resolve_interval: d.resolve_interval,
            payload_size: d.payload_size,
            parent: t.parent.clone(),
            probe,
        };
        // One request per round for the kinds other than icmp: the timeout bounds the
        // whole probe and must end within the interval.
        let count = match spec.probe {
            ProbeSpec::Icmp => spec.count,
            _ => 1,
        };
        let overrides = t.interval.is_some()
            || t.count.is_some()
            || t.timeout.is_some()
            || t.warning_loss.is_some()
            || t.down_after.is_some();
        if overrides {
            check_settings(
                &field,
                spec.interval,
                count,
                spec.timeout,
                spec.warning_loss,
                spec.down_after,
            )?;
        }
        Ok(spec)
    }
}

/// Operator text that becomes a label value and a tile: no control characters (a newline
/// in a label breaks every line-based reader of /metrics and the logs), and bounded.
fn check_text(text: &str, max_chars: usize) -> Result<(), String> {
    if text.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    let chars = text.chars().count();
    if chars > max_chars {
        return Err(format!(
            "is {chars} characters long, more than the {max_chars} allowed"
        ));
    }
    Ok(())
}

/// Every `parent` names another target, and following parents never comes back to where
/// it started (a loop would make each target wait on the other forever). `fields[i]` is
/// the error path of `specs[i]`'s parent: `targets[2].parent`, `targets_file ... line 4: parent`.
fn check_parents(specs: &[TargetSpec], fields: &[String]) -> Result<(), ConfigError> {
    let index: HashMap<&str, usize> = specs
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    let mut parent_of = vec![None; specs.len()];
    for (i, s) in specs.iter().enumerate() {
        let Some(p) = &s.parent else { continue };
        match index.get(p.as_str()) {
            Some(&j) if j == i => {
                return Err(ConfigError::new(
                    &fields[i],
                    format!("{p:?} is the target itself; a parent is the target this one is reached through"),
                ))
            }
            Some(&j) => parent_of[i] = Some(j),
            None => {
                return Err(ConfigError::new(
                    &fields[i],
                    format!("no target is named {p:?}"),
                ))
            }
        }
    }
    // Walk up from each target; a chain longer than the number of targets has a loop.
    // Targets already known to lead to a root are not walked again.
    let mut reaches_root = vec![false; specs.len()];
    for start in 0..specs.len() {
        let mut path = vec![start];
        let mut at = start;
        while let Some(up) = parent_of[at] {
            if reaches_root[up] {
                break;
            }
            if let Some(k) = path.iter().position(|&v| v == up) {
                let names: Vec<&str> = path[k..]
                    .iter()
                    .chain(std::iter::once(&up))
                    .map(|&v| specs[v].name.as_str())
                    .collect();
                return Err(ConfigError::new(
                    &fields[path[k]],
                    format!("parents form a loop: {}", names.join(" -> ")),
                ));
            }
            path.push(up);
            at = up;
        }
        for v in path {
            reaches_root[v] = true;
        }
    }
    Ok(())
}

/// An IP address, or a syntactically valid host name (checked here so that a typo is a
/// startup error, not a resolve error at 3 a.m.).
pub fn parse_host(address: &str) -> Result<Host, String> {
    let address = address.trim();
    if address.is_empty() {
        return Err("must not be empty".into());
    }
    if let Ok(ip) = address.parse::<IpAddr>() {
        if ip.is_unspecified() || ip.is_multicast() {
            return Err(format!("{address} cannot be pinged as a single host"));
        }
        return Ok(Host::Ip(ip));
    }
    let name = address.strip_suffix('.').unwrap_or(address);
    let labels: Vec<&str> = name.split('.').collect();
    let valid_label = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    let all_numeric_tail = labels
        .last()
        .is_some_and(|l| l.chars().all(|c| c.is_ascii_digit()));
    if name.len() > 253 || !labels.iter().all(valid_label) || all_numeric_tail {
        return Err(format!(
            "{address:?} is neither an IP address nor a valid host name"
        ));
    }
    Ok(Host::Name(name.to_ascii_lowercase()))
}

fn check_label_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!(
            "{name:?} is not a valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)"
        ));
    }
    if name.starts_with("__") {
        return Err(format!(
            "{name:?}: names starting with __ are reserved by Prometheus"
        ));
    }
    if RESERVED_LABELS.contains(&name) {
        return Err(format!(
            "{name:?} clashes with a label vigia-ping sets itself ({})",
            RESERVED_LABELS.join(", ")
        ));
    }
    Ok(())
}

/// A target read from the targets file, with the line it came from.
#[derive(Debug, Clone)]
pub struct FileTarget {
    /// `<file> line <n>`, used as the field path of errors.
    pub origin: String,
    pub target: TargetConfig,
}

impl Config {
    /// Reads and parses the targets file; one without any target is an error unless
    /// `targets_file_allow_empty` says it may be empty.
    pub fn read_targets_file(&self, path: &Path) -> Result<Vec<FileTarget>, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(
                "targets_file",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        let targets = parse_targets_file(&text, &path.display().to_string())?;
        if targets.is_empty() && !self.targets_file_allow_empty {
            return Err(ConfigError::new(
                format!("targets_file {}", path.display()),
                format!(
                    "lists no target ({} bytes{}); an editor may be halfway through saving \
                     it. Set targets_file_allow_empty: true if an empty list is meant",
                    text.len(),
                    if text.trim().is_empty() {
                        ""
                    } else {
                        ", comments only"
                    }
                ),
            ));
        }
        Ok(targets)
    }
}

/// Per-target settings a targets-file line may override, written `key=value` like a
/// label: in the file these names are settings, never labels (a target that needs a
/// label called `count` belongs in the config file).
pub const FILE_SETTINGS: [&str; 7] = [
    "interval",
    "count",
    "timeout",
    "warning_rtt",
    "warning_loss",
    "down_after",
    "parent",
];

/// The targets file: one target per line, `name address [key=value ...]`, fields
/// separated by spaces or tabs. A key in [`FILE_SETTINGS`] overrides that setting of the
/// `defaults` for this target (`interval=5s down_after=24`); any other key is a label.
/// `#` starts a comment; blank lines are ignored. A value with spaces is written in
/// double quotes: `site="San Martín"`.
pub fn parse_targets_file(text: &str, file: &str) -> Result<Vec<FileTarget>, ConfigError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let origin = format!("targets_file {file} line {}", i + 1);
        let words = split_words(raw).map_err(|m| ConfigError::new(&origin, m))?;
        if words.is_empty() {
            continue;
        }
        if words.len() < 2 {
            return Err(ConfigError::new(
                &origin,
                "expected `name address [key=value ...]`",
            ));
        }
        let mut target = TargetConfig {
            name: words[0].clone(),
            address: words[1].clone(),
            ..Default::default()
        };
        let mut settings = HashSet::new();
        for w in &words[2..] {
            let Some((k, v)) = w.split_once('=') else {
                return Err(ConfigError::new(
                    &origin,
                    format!("{w:?} is not a key=value pair (a label or a setting)"),
                ));
            };
            if FILE_SETTINGS.contains(&k) {
                if !settings.insert(k) {
                    return Err(ConfigError::new(format!("{origin}: {k}"), "given twice"));
                }
                set_file_setting(&mut target, k, v)
                    .map_err(|m| ConfigError::new(format!("{origin}: {k}"), m))?;
            } else if crate::probe_config::is_file_key(k) {
                if !settings.insert(k) && !crate::probe_config::is_repeatable(k) {
                    return Err(ConfigError::new(format!("{origin}: {k}"), "given twice"));
                }
                crate::probe_config::set_file_key(&mut target, k, v)
                    .map_err(|m| ConfigError::new(format!("{origin}: {k}"), m))?;
            } else if target.labels.insert(k.to_string(), v.to_string()).is_some() {
                return Err(ConfigError::new(
                    &origin,
                    format!("label {k:?} given twice"),
                ));
            }
        }
        out.push(FileTarget { origin, target });
    }
    Ok(out)
}

/// Parses the value of one of [`FILE_SETTINGS`] into `target`; ranges and combinations
/// (timeout within interval / count, ...) are checked with the config's own rules.
fn set_file_setting(target: &mut TargetConfig, key: &str, value: &str) -> Result<(), String> {
    let duration = |v: &str| {
        humantime::parse_duration(v)
            .map_err(|e| format!("{v:?} is not a duration like 10s or 500ms ({e})"))
    };
    let whole = |v: &str| {
        v.parse::<u32>()
            .map_err(|_| format!("{v:?} is not a whole number"))
    };
    match key {
        "interval" => target.interval = Some(duration(value)?),
        "count" => target.count = Some(whole(value)?),
        "timeout" => target.timeout = Some(duration(value)?),
        "warning_rtt" => target.warning_rtt = Some(duration(value)?),
        "warning_loss" => {
            target.warning_loss = Some(
                value
                    .parse::<f64>()
                    .ok()
                    .filter(|l| l.is_finite())
                    .ok_or_else(|| format!("{value:?} is not a loss ratio like 0.2"))?,
            )
        }
        "down_after" => target.down_after = Some(whole(value)?),
        "parent" => {
            if value.is_empty() {
                return Err("must name the target this one is reached through".into());
            }
            target.parent = Some(value.to_string())
        }
        other => return Err(format!("{other:?} is not a per-target setting")),
    }
    Ok(())
}

/// Splits a line on whitespace up to a `#` comment; double quotes group words.
fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            '#' if !quoted => break,
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quoted {
        return Err("unterminated double quote".into());
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str) -> Result<Config, ConfigError> {
        let mut tree = vigia_kit::config::parse_yaml(yaml, "test.yaml")?;
        vigia_kit::config::apply_env_overrides(&mut tree, ENV_PREFIX, Vec::new())?;
        let c: Config = vigia_kit::config::from_value(tree)?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn defaults_apply_and_overrides_win() {
        let c = load(
            "targets:\n  - {name: a, address: 127.0.0.1, labels: {site: norte}}\n  - {name: b, address: Router-1.example, interval: 20s, count: 2}\n",
        )
        .unwrap();
        let t = c.inline_targets().unwrap();
        assert_eq!(t[0].interval, Duration::from_secs(10));
        assert_eq!(t[0].count, 5);
        assert_eq!(t[0].spacing(), Duration::from_secs(2));
        assert_eq!(t[0].host, Host::Ip("127.0.0.1".parse().unwrap()));
        assert_eq!(t[1].interval, Duration::from_secs(20));
        assert_eq!(t[1].count, 2);
        assert_eq!(t[1].host, Host::Name("router-1.example".into()));
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            ("bogus: 1\n", "bogus"),
            ("defaults: {interval: 0s}\n", "defaults.interval"),
            ("defaults: {count: 0}\n", "defaults.count"),
            ("defaults: {timeout: 3s}\n", "defaults.timeout"),
            ("defaults: {down_after: 0}\n", "defaults.down_after"),
            ("defaults: {warning_loss: 1.5}\n", "defaults.warning_loss"),
            (
                "targets: [{name: a, address: 300.1.2.3}]\n",
                "targets[0].address",
            ),
            (
                "targets: [{name: a, address: 'a b'}]\n",
                "targets[0].address",
            ),
            (
                "targets: [{name: a, address: 127.0.0.1, interval: 0s}]\n",
                "targets[0].interval",
            ),
            (
                "targets: [{name: a, address: 127.0.0.1}, {name: a, address: 127.0.0.2}]\n",
                "targets[1].name",
            ),
            (
                "targets: [{name: a, address: 127.0.0.1, labels: {target: x}}]\n",
                "targets[0].labels.target",
            ),
            (
                "targets: [{name: a, address: 127.0.0.1, labels: {host: x}}]\n",
                "targets[0].labels.host",
            ),
            (
                "targets: [{name: a, address: 127.0.0.1, labels: {1site: x}}]\n",
                "targets[0].labels.1site",
            ),
            (
                "targets: [{name: a, address: 127.0.0.1, colour: red}]\n",
                "targets[0]",
            ),
            (
                "transition_log: {path: x.log, keep: 0}\n",
                "transition_log.keep",
            ),
        ];
        for (yaml, field) in cases {
            let e = load(yaml).expect_err(yaml);
            assert!(
                e.path.starts_with(field) || e.message.contains(field),
                "{yaml}: {e}"
            );
        }
    }

    #[test]
    fn targets_file_lines() {
        let text = "# NOC list\n\ndslam-1 198.18.0.1 site=centro kind=dslam\nolt-2\t198.18.0.2 site=\"San Martín\" # fibre\n";
        let t = parse_targets_file(text, "t.txt").unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[1].target.labels["site"], "San Martín");
        assert_eq!(t[1].origin, "targets_file t.txt line 4");
        let e = parse_targets_file("x 127.0.0.1 site\n", "t.txt").unwrap_err();
        assert_eq!(e.path, "targets_file t.txt line 1");
        let e = parse_targets_file("lonely\n", "t.txt").unwrap_err();
        assert!(e.message.contains("name address"));

        let c = load("targets: [{name: dslam-1, address: 127.0.0.1}]\n").unwrap();
        let e = c.all_targets(&t).unwrap_err();
        assert!(e.message.contains("duplicate"), "{e}");
        let bad = parse_targets_file("x 1.2.3.4.5\n", "t.txt").unwrap();
        let e = c.all_targets(&bad).unwrap_err();
        assert_eq!(e.path, "targets_file t.txt line 1: address");
    }

    #[test]
    fn targets_file_settings_override_the_defaults_and_labels_stay_labels() {
        let text = "core 198.18.0.1 site=centro interval=5s count=2 timeout=500ms warning_rtt=50ms warning_loss=0.25 down_after=24\n\
                    plain 198.18.0.2 kind=olt\n";
        let t = parse_targets_file(text, "t.txt").unwrap();
        let core = &t[0].target;
        assert_eq!(core.interval, Some(Duration::from_secs(5)));
        assert_eq!(core.count, Some(2));
        assert_eq!(core.timeout, Some(Duration::from_millis(500)));
        assert_eq!(core.warning_rtt, Some(Duration::from_millis(50)));
        assert_eq!(core.warning_loss, Some(0.25));
        assert_eq!(core.down_after, Some(24));
        // Settings are not labels: only `site` becomes one.
        assert_eq!(
            core.labels,
            BTreeMap::from([("site".to_string(), "centro".to_string())])
        );

        let c =
            load("defaults: {interval: 10s, count: 5, timeout: 1s, warning_rtt: 200ms}\n").unwrap();
        let specs = c.all_targets(&t).unwrap();
        let (core, plain) = (&specs[0], &specs[1]);
        assert_eq!(
            (core.interval, core.count, core.timeout, core.warning_rtt),
            (
                Duration::from_secs(5),
                2,
                Duration::from_millis(500),
                Duration::from_millis(50)
            )
        );
        assert_eq!((core.warning_loss, core.down_after), (0.25, 24));
        // A line without settings keeps the defaults.
        assert_eq!(
            (
                plain.interval,
                plain.count,
                plain.timeout,
                plain.warning_rtt
            ),
            (
                Duration::from_secs(10),
                5,
                Duration::from_secs(1),
                Duration::from_millis(200)
            )
        );
        assert_eq!(plain.labels["kind"], "olt");
    }

    #[test]
    fn targets_file_bad_settings_name_the_line_and_the_key() {
        // Values that do not parse: rejected by the parser.
        for (line, key, says) in [
            ("a 127.0.0.1 interval=often", "interval", "not a duration"),
            ("a 127.0.0.1 interval=", "interval", "not a duration"),
            ("a 127.0.0.1 timeout=5", "timeout", "not a duration"),
            (
                "a 127.0.0.1 warning_rtt=fast",
                "warning_rtt",
                "not a duration",
            ),
            ("a 127.0.0.1 count=lots", "count", "not a whole number"),
            ("a 127.0.0.1 count=-1", "count", "not a whole number"),
            (
                "a 127.0.0.1 down_after=2.5",
                "down_after",
                "not a whole number",
            ),
            (
                "a 127.0.0.1 warning_loss=some",
                "warning_loss",
                "not a loss ratio",
            ),
            (
                "a 127.0.0.1 warning_loss=NaN",
                "warning_loss",
                "not a loss ratio",
            ),
            ("a 127.0.0.1 count=2 count=3", "count", "given twice"),
        ] {
            let text = format!("ok 127.0.0.2\n{line}\n");
            let e = parse_targets_file(&text, "t.txt").expect_err(line);
            assert_eq!(
                e.path,
                format!("targets_file t.txt line 2: {key}"),
                "{line}"
            );
            assert!(e.message.contains(says), "{line}: {e}");
        }
        // Values that parse but break the config's rules: rejected with the defaults.
        let c = load("defaults: {interval: 10s, count: 5, timeout: 1s}\n").unwrap();
        for (line, key, says) in [
            ("a 127.0.0.1 interval=0s", "interval", "greater than 0"),
            ("a 127.0.0.1 count=0", "count", "out of range"),
            ("a 127.0.0.1 count=5000", "count", "out of range"),
            ("a 127.0.0.1 down_after=0", "down_after", "at least 1"),
            ("a 127.0.0.1 warning_loss=1", "warning_loss", "loss ratio"),
            // 2 s / 5 requests leaves 400 ms per request, less than the default 1 s.
            (
                "a 127.0.0.1 interval=2s",
                "timeout",
                "longer than interval / count",
            ),
        ] {
            let t = parse_targets_file(&format!("{line}\n"), "t.txt").unwrap();
            let e = c.all_targets(&t).expect_err(line);
            assert_eq!(
                e.path,
                format!("targets_file t.txt line 1: {key}"),
                "{line}"
            );
            assert!(e.message.contains(says), "{line}: {e}");
        }
    }

    #[test]
    fn parents_name_existing_targets_without_loops() {
        // Chains across the config and the targets file are fine.
        let c = load(
            "targets:\n  - {name: core, address: 198.18.0.1}\n  - {name: sw, address: 198.18.0.2, parent: core}\n",
        )
        .unwrap();
        let file = parse_targets_file(
            "dslam-1 198.18.0.3 site=centro parent=sw\ndslam-2 198.18.0.4 parent=dslam-1\n",
            "t.txt",
        )
        .unwrap();
        assert_eq!(file[0].target.parent.as_deref(), Some("sw"));
        // `parent` is a setting, not a label.
        assert!(!file[0].target.labels.contains_key("parent"));
        let specs = c.all_targets(&file).unwrap();
        let parents: Vec<Option<&str>> = specs.iter().map(|s| s.parent.as_deref()).collect();
        assert_eq!(parents, [None, Some("core"), Some("sw"), Some("dslam-1")]);

        for (yaml, field, says) in [
            (
                "targets: [{name: a, address: 127.0.0.1, parent: nobody}]\n",
                "targets[0].parent",
                "no target is named \"nobody\"",
            ),
            (
                "targets: [{name: a, address: 127.0.0.1, parent: a}]\n",
                "targets[0].parent",
                "the target itself",
            ),
            (
                "targets:\n  - {name: x, address: 127.0.0.9}\n  - {name: a, address: 127.0.0.1, parent: c}\n  - {name: b, address: 127.0.0.2, parent: a}\n  - {name: c, address: 127.0.0.3, parent: b}\n",
                "targets[1].parent",
                "parents form a loop: a -> c -> b -> a",
            ),
        ] {
            let e = load(yaml).expect_err(yaml);
            assert_eq!(e.path, field, "{yaml}: {e}");
            assert!(e.message.contains(says), "{yaml}: {e}");
        }
        // In the targets file: the line and the field.
        let c = load("targets: [{name: core, address: 198.18.0.1, parent: b}]\n");
        assert!(
            c.is_err(),
            "a parent only the file has is unknown without it"
        );
        let c = load("targets: [{name: core, address: 198.18.0.1}]\n").unwrap();
        for (text, field, says) in [
            (
                "a 127.0.0.1\nb 127.0.0.2 parent=ghost\n",
                "targets_file t.txt line 2: parent",
                "no target",
            ),
            (
                "a 127.0.0.1 parent=b\nb 127.0.0.2 parent=a\n",
                "targets_file t.txt line 1: parent",
                "a -> b -> a",
            ),
        ] {
            let t = parse_targets_file(text, "t.txt").unwrap();
            let e = c.all_targets(&t).expect_err(text);
            assert_eq!(e.path, field, "{text}: {e}");
            assert!(e.message.contains(says), "{text}: {e}");
        }
        let e = parse_targets_file("a 127.0.0.1 parent=\n", "t.txt").unwrap_err();
        assert_eq!(e.path, "targets_file t.txt line 1: parent");
        // A label called `behind` would clash with vigia_ping_unreachable_behind's.
        let e =
            load("targets: [{name: a, address: 127.0.0.1, labels: {behind: x}}]\n").unwrap_err();
        assert_eq!(e.path, "targets[0].labels.behind");
    }

    #[test]
    fn host_names() {
        assert!(parse_host("::1").is_ok());
        assert!(parse_host("0.0.0.0").is_err());
        assert!(parse_host("-bad.example").is_err());
        assert!(parse_host("good.example.").is_ok());
        assert!(parse_host("1.2.3").is_err());
    }
}
