//! What vigia-capture reads: the YAML config file and `VIGIA_CAPTURE__*` overrides.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use vigia_anomaly::AnomalyConfig;
use vigia_kit::influx::InfluxConfig;
use vigia_kit::{ConfigError, Validate};

pub const ENV_PREFIX: &str = "VIGIA_CAPTURE";
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED), 9473);

/// Most top talkers a window may expose: each one is a series.
pub const MAX_TOP_TALKERS: usize = 20;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Live capture from this interface (`eth0`, `lo`, `any`). Exclusive with `file`.
    #[serde(default)]
    pub interface: Option<String>,
    /// Offline replay of a pcap or pcapng file, or `-` for standard input (as `tcpdump
    /// -r -` reads). Exclusive with `interface`.
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// BPF filter (tcpdump syntax), compiled at startup.
    #[serde(default)]
    pub filter: Option<String>,
    /// Bytes captured per packet. Headers are all the analysis reads.
    #[serde(default = "default_snaplen")]
    pub snaplen: u32,
    /// Kernel capture buffer, in bytes.
    #[serde(default = "default_buffer_size")]
    pub buffer_size: u32,
    /// Deliver packets as they arrive instead of when the kernel buffer block fills.
    #[serde(default = "default_true")]
    pub immediate_mode: bool,
    #[serde(default)]
    pub promiscuous: bool,
    /// How long a live read waits for packets before the capture thread checks for
    /// shutdown and hands over what it has.
    #[serde(default = "default_read_timeout", with = "humantime_serde")]
    pub read_timeout: Duration,
    /// Packets the queue between the capture thread and the analyser holds; a live
    /// capture drops (and counts) what does not fit, a file replay waits.
    #[serde(default = "default_queue_packets")]
    pub queue_packets: usize,
    /// Length of a feature window. In a file replay, windows follow packet timestamps.
    #[serde(default = "default_window", with = "humantime_serde")]
    pub window: Duration,
    #[serde(default)]
    pub flows: FlowsConfig,
    /// Exact distinct counts (addresses) per window up to this many values; beyond it the
    /// window's count is a HyperLogLog estimate (about 1.6 % error).
    #[serde(default = "default_distinct_cap")]
    pub distinct_cap: usize,
    /// Top sources by bytes in the last window exposed as series (at most 20).
    #[serde(default = "default_top_talkers")]
    pub top_talkers: usize,
    #[serde(default = "default_anomaly")]
    pub anomaly: AnomalyConfig,
    #[serde(default)]
    pub influxdb: Option<InfluxConfig>,
    /// Write one `vigia_flow` row per finished flow (when `influxdb` is set).
    #[serde(default = "default_true")]
    pub flow_rows: bool,
    #[serde(default)]
    pub packet_rows: PacketRowsConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlowsConfig {
    /// A flow with no packet for this long is finished.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A flow older than this is finished (and a new one starts), so long transfers are
    /// reported while they last.
    #[serde(with = "humantime_serde")]
    pub active_timeout: Duration,
    /// Hard bound on tracked flows; when full, the longest-idle flows are evicted.
    pub max_flows: usize,
}

impl Default for FlowsConfig {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(60),
            active_timeout: Duration::from_secs(300),
            max_flows: 100_000,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PacketRowsMode {
    #[default]
    Off,
    /// Packets of windows whose score reached the threshold (up to `max_per_window`).
    Anomalous,
    /// One packet in `1 / sample_rate`.
    Sample,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PacketRowsConfig {
    pub mode: PacketRowsMode,
    pub sample_rate: f64,
    /// Packets held per window for `anomalous` mode; later packets of the window are not
    /// written.
    pub max_per_window: usize,
}

impl Default for PacketRowsConfig {
    fn default() -> Self {
        Self {
            mode: PacketRowsMode::Off,
            sample_rate: 0.001,
            max_per_window: 10_000,
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_snaplen() -> u32 {
    256
}
fn default_buffer_size() -> u32 {
    8 << 20
}
fn default_read_timeout() -> Duration {
    Duration::from_millis(100)
}
fn default_queue_packets() -> usize {
    65_536
}
fn default_window() -> Duration {
    Duration::from_secs(10)
}
fn default_distinct_cap() -> usize {
    65_536
}
fn default_top_talkers() -> usize {
    5
}
fn default_anomaly() -> AnomalyConfig {
    // 60 windows of 10 s: a 10-minute warm-up and reference profile. The crate's
    // default of 250 points would take 42 minutes to say anything.
    AnomalyConfig {
        window_size: 60,
        ..AnomalyConfig::default()
    }
}

/// Where packets come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Live(String),
    File(PathBuf),
    /// `file: -`: a capture written to standard input (`tcpdump -w - | vigia-capture`).
    Stdin,
}

impl Config {
    pub fn input(&self) -> Input {
        match (&self.interface, &self.file) {
            (_, Some(f)) if f.as_os_str() == "-" => Input::Stdin,
            (_, Some(f)) => Input::File(f.clone()),
            (Some(i), None) => Input::Live(i.clone()),
            (None, None) => Input::Live("any".to_string()),
        }
    }
}

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.interface.is_some() && self.file.is_some() {
            return Err(ConfigError::new(
                "file",
                "set either `interface` (live capture) or `file` (replay), not both",
            ));
        }
        if let Some(i) = &self.interface {
            if i.is_empty() || i.len() > 64 || i.contains(['/', '\0']) {
                return Err(ConfigError::new(
                    "interface",
                    format!("{i:?} is not an interface name"),
                ));
            }
        }
        if let Some(f) = self.file.as_ref().filter(|f| f.as_os_str() != "-") {
            if let Err(e) = std::fs::metadata(f) {
                return Err(ConfigError::new(
                    "file",
                    format!("cannot read {}: {e}", f.display()),
                ));
            }
        }
        if !(64..=262_144).contains(&self.snaplen) {
            return Err(ConfigError::new(
                "snaplen",
                format!("must be between 64 and 262144, got {}", self.snaplen),
            ));
        }
        if self.buffer_size < 65_536 {
            return Err(ConfigError::new(
                "buffer_size",
                format!("must be at least 65536 bytes, got {}", self.buffer_size),
            ));
        }
        if self.read_timeout < Duration::from_millis(1)
            || self.read_timeout > Duration::from_secs(10)
        {
            return Err(ConfigError::new(
                "read_timeout",
                "must be between 1ms and 10s",
            ));
        }
        if !(1_024..=16_777_216).contains(&self.queue_packets) {
            return Err(ConfigError::new(
                "queue_packets",
                format!(
                    "must be between 1024 and 16777216, got {}",
                    self.queue_packets
                ),
            ));
        }
        if self.window < Duration::from_millis(100) || self.window > Duration::from_secs(3600) {
            return Err(ConfigError::new("window", "must be between 100ms and 1h"));
        }
        let f = &self.flows;
        if f.idle_timeout < Duration::from_secs(1) {
            return Err(ConfigError::new(
                "flows.idle_timeout",
                "must be at least 1s",
            ));
        }
        if f.active_timeout < f.idle_timeout {
            return Err(ConfigError::new(
                "flows.active_timeout",
                "must be at least flows.idle_timeout",
            ));
        }
        if !(16..=50_000_000).contains(&f.max_flows) {
            return Err(ConfigError::new(
                "flows.max_flows",
                format!("must be between 16 and 50000000, got {}", f.max_flows),
            ));
        }
        if !(16..=10_000_000).contains(&self.distinct_cap) {
            return Err(ConfigError::new(
                "distinct_cap",
                format!("must be between 16 and 10000000, got {}", self.distinct_cap),
            ));
        }
        if self.top_talkers > MAX_TOP_TALKERS {
            return Err(ConfigError::new(
                "top_talkers",
                format!(
                    "must be at most {MAX_TOP_TALKERS} (each is a series), got {}",
                    self.top_talkers
                ),
            ));
        }
        self.anomaly
            .validate("anomaly")
            .map_err(|p| ConfigError::new(p.path, p.message))?;
        if let Some(influx) = &self.influxdb {
            influx.validate("influxdb")?;
        }
        let p = &self.packet_rows;
        if p.mode == PacketRowsMode::Sample && !(p.sample_rate > 0.0 && p.sample_rate <= 1.0) {
            return Err(ConfigError::new(
                "packet_rows.sample_rate",
                format!(
                    "must be greater than 0 and at most 1, got {}",
                    p.sample_rate
                ),
            ));
        }
        if p.max_per_window > 1_000_000 {
            return Err(ConfigError::new(
                "packet_rows.max_per_window",
                "must be at most 1000000",
            ));
        }
        if p.mode != PacketRowsMode::Off && self.influxdb.is_none() {
            return Err(ConfigError::new(
                "packet_rows.mode",
                "packet rows need an `influxdb` section",
            ));
        }
        Ok(())
    }
}

/// Loads the config file (optional) plus environment overrides; `file_override` is the
/// `--capture.file` flag, `interface_override` the `--capture.interface` flag.
pub fn load(
    path: Option<&Path>,
    interface_override: Option<String>,
    file_override: Option<PathBuf>,
) -> Result<Config, ConfigError> {
    let mut tree = match path {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| {
                ConfigError::new(
                    p.display().to_string(),
                    format!("cannot read config file: {e}"),
                )
            })?;
            vigia_kit::config::parse_yaml(&text, &p.display().to_string())?
        }
        None => serde_json::Value::Object(serde_json::Map::new()),
    };
    vigia_kit::config::apply_env_overrides(
        &mut tree,
        ENV_PREFIX,
        vigia_kit::config::environment(ENV_PREFIX)?,
    )?;
    // Flags beat the file: a replay of a capture with a live config is one flag away.
    if let serde_json::Value::Object(map) = &mut tree {
        if let Some(i) = interface_override {
            map.remove("file");
            map.insert("interface".into(), serde_json::Value::String(i));
        }
        if let Some(f) = file_override {
            map.remove("interface");
            map.insert(
                "file".into(),
                serde_json::Value::String(f.to_string_lossy().into_owned()),
            );
        }
    }
    let config: Config = vigia_kit::config::from_value(tree)?;
    config.validate()?;
    Ok(config)
}
