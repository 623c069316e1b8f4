//! What vigia-ports reads: the YAML config file, `VIGIA_PORTS__*` overrides, and the two
//! environment variables of the seed's script (`PUERTOS_A_MONITOREAR`, `PROMETHEUS_PORT`),
//! which keep working so a deployment can switch without rewriting its environment.

use std::ffi::OsStr;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use vigia_kit::config::{apply_env_overrides, from_value, parse_yaml};
use vigia_kit::influx::InfluxConfig;
use vigia_kit::{ConfigError, Validate};

pub const ENV_PREFIX: &str = "VIGIA_PORTS";
/// The seed's list of ports, comma-separated.
pub const SEED_PORTS_VAR: &str = "PUERTOS_A_MONITOREAR";
/// The seed's listen port (it listened on all addresses).
pub const SEED_LISTEN_PORT_VAR: &str = "PROMETHEUS_PORT";
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED), 9470);

/// Where the socket table is read from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// Netlink sock_diag, falling back to procfs (with a warning) when netlink fails.
    #[default]
    Auto,
    Netlink,
    Procfs,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The ports whose connections are broken down by side and state.
    #[serde(default)]
    pub ports: Vec<u16>,
    #[serde(default)]
    pub source: SourceKind,
    /// The proc filesystem to read `net/tcp{,6}` from: `/host/proc` in a container.
    #[serde(default = "default_procfs_root")]
    pub procfs_root: PathBuf,
    /// Optional push of the same counts to InfluxDB.
    #[serde(default)]
    pub influxdb: Option<InfluxConfig>,
    /// How often the counts are pushed to InfluxDB.
    #[serde(default = "default_influxdb_interval", with = "humantime_serde")]
    pub influxdb_interval: Duration,
    /// The `host` tag of pushed points, when `influxdb.tags` does not name one; default:
    /// this machine's hostname (the writer's own default).
    #[serde(default)]
    pub host: Option<String>,
}

fn default_procfs_root() -> PathBuf {
    PathBuf::from("/proc")
}

fn default_influxdb_interval() -> Duration {
    Duration::from_secs(10)
}

impl Validate for Config {
    /// `host:` predates `influxdb.tags` and feeds its `host` when that is not set.
    fn resolve(&mut self) {
        if let (Some(host), Some(influxdb)) = (&self.host, &mut self.influxdb) {
            influxdb.add_tag_if_unset(vigia_kit::influx::HOST_TAG, host);
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.ports.is_empty() {
            return Err(ConfigError::new(
                "ports",
                format!("no ports configured: list at least one port (or set {SEED_PORTS_VAR})"),
            ));
        }
        let mut seen = std::collections::HashMap::with_capacity(self.ports.len());
        for (i, &port) in self.ports.iter().enumerate() {
            if port == 0 {
                return Err(ConfigError::new(
                    format!("ports[{i}]"),
                    "0 is not a port: use 1-65535",
                ));
            }
            if let Some(first) = seen.insert(port, i) {
                return Err(ConfigError::new(
                    format!("ports[{i}]"),
                    format!("port {port} is already listed as ports[{first}]"),
                ));
            }
        }
        if self.procfs_root.as_os_str().is_empty() {
            return Err(ConfigError::new("procfs_root", "must not be empty"));
        }
        if self.influxdb_interval < Duration::from_secs(1) {
            return Err(ConfigError::new("influxdb_interval", "must be at least 1s"));
        }
        if let Some(influxdb) = &self.influxdb {
            influxdb.validate("influxdb")?;
        }
        if let Some(host) = &self.host {
            if host.trim().is_empty() {
                return Err(ConfigError::new("host", "must not be empty"));
            }
        }
        Ok(())
    }
}

/// The process environment, keeping only variables whose names and values are UTF-8 (the
/// ones this exporter reads are checked separately, so a stray binary variable elsewhere
/// cannot stop it).
pub fn environment() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

fn seed_var(name: &str, value: Option<&OsStr>) -> Result<Option<String>, ConfigError> {
    match value {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.to_string()))
            .ok_or_else(|| ConfigError::new(name, "is not valid UTF-8")),
    }
}

/// Loads the config: the file, then `PUERTOS_A_MONITOREAR`, then `VIGIA_PORTS__*`
/// overrides (each later one wins), then validation.
pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
    let seed_ports = seed_var(SEED_PORTS_VAR, std::env::var_os(SEED_PORTS_VAR).as_deref())?;
    load_from(file, seed_ports.as_deref(), environment())
}

/// As [`load`], with the environment given explicitly (tests).
pub fn load_from(
    file: Option<&Path>,
    seed_ports: Option<&str>,
    env: Vec<(String, String)>,
) -> Result<Config, ConfigError> {
    let mut tree = match file {
        Some(path) => {
            let origin = path.display().to_string();
            let text = std::fs::read_to_string(path)
                .map_err(|e| ConfigError::new(&origin, format!("cannot read config file: {e}")))?;
            parse_yaml(&text, &origin)?
        }
        None => Value::Object(Default::default()),
    };
    if let Some(raw) = seed_ports {
        let ports = parse_seed_ports(raw)?;
        if let Value::Object(map) = &mut tree {
            map.insert("ports".to_string(), Value::from(ports));
        }
    }
    apply_env_overrides(&mut tree, ENV_PREFIX, env)?;
    let mut config: Config = from_value(tree)?;
    config.resolve();
    config.validate()?;
    Ok(config)
}

/// Parses the seed's `PUERTOS_A_MONITOREAR="22,80,443"`. Spaces around entries are
/// tolerated, as the seed's `int()` tolerated them; anything else names the variable.
pub fn parse_seed_ports(raw: &str) -> Result<Vec<u16>, ConfigError> {
    let err = |msg: String| ConfigError::new(SEED_PORTS_VAR, msg);
    if raw.trim().is_empty() {
        return Err(err(
            "is empty: give comma-separated ports, like \"22,80,443\"".to_string(),
        ));
    }
    let mut ports = Vec::new();
    for (i, entry) in raw.split(',').enumerate() {
        let entry = entry.trim();
        let port =
            parse_port(entry).map_err(|why| err(format!("entry {} ({entry:?}) {why}", i + 1)))?;
        if ports.contains(&port) {
            return Err(err(format!("port {port} is listed twice")));
        }
        ports.push(port);
    }
    Ok(ports)
}

fn parse_port(text: &str) -> Result<u16, &'static str> {
    if text.is_empty() {
        return Err("is empty");
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err("is not a port number");
    }
    match text.parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => Ok(p as u16),
        _ => Err("is not a port in 1-65535"),
    }
}

/// The listen address: `--web.listen-address` if given, else `0.0.0.0:$PROMETHEUS_PORT`
/// if that is set, else the default `0.0.0.0:9470`. A bad `PROMETHEUS_PORT` is an error
/// even when the flag wins: a typo in the environment should not go unnoticed.
pub fn listen_address(
    flag: Option<SocketAddr>,
    prometheus_port: Option<&OsStr>,
) -> Result<SocketAddr, ConfigError> {
    let seed = match seed_var(SEED_LISTEN_PORT_VAR, prometheus_port)? {
        None => None,
        Some(raw) => {
            let raw = raw.trim();
            let port = parse_port(raw)
                .map_err(|why| ConfigError::new(SEED_LISTEN_PORT_VAR, format!("{raw:?} {why}")))?;
            Some(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port))
        }
    };
    Ok(flag.or(seed).unwrap_or(DEFAULT_LISTEN))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ports.yaml");
        std::fs::write(&path, text).unwrap();
        load_from(Some(&path), None, vec![])
    }

    #[test]
    fn defaults_and_full_file() {
        let c = yaml("ports: [22, 443]\n").unwrap();
        assert_eq!(c.ports, vec![22, 443]);
        assert_eq!(c.source, SourceKind::Auto);
        assert_eq!(c.procfs_root, PathBuf::from("/proc"));
        assert_eq!(c.influxdb_interval, Duration::from_secs(10));
        let c = yaml("ports: [80]\nsource: procfs\nprocfs_root: /host/proc\ninfluxdb_interval: 30s\nhost: edge-1\n").unwrap();
        assert_eq!(c.source, SourceKind::Procfs);
        assert_eq!(c.procfs_root, PathBuf::from("/host/proc"));
        assert_eq!(c.influxdb_interval, Duration::from_secs(30));
        assert_eq!(c.host.as_deref(), Some("edge-1"));
        let c = yaml("ports: [80]\ninfluxdb:\n  url: http://127.0.0.1:8086\n  database: vigia\n")
            .unwrap();
        let influxdb = c.influxdb.unwrap();
        assert_eq!(influxdb.database.as_deref(), Some("vigia"));
        assert_eq!(influxdb.host_tag(), Some(vigia_kit::influx::hostname()));
    }

    #[test]
    fn host_feeds_the_writers_host_tag_unless_influxdb_tags_names_one() {
        let influx = "influxdb:\n  url: http://127.0.0.1:8086\n  database: vigia\n";
        let c = yaml(&format!("ports: [80]\nhost: edge-1\n{influx}")).unwrap();
        assert_eq!(c.influxdb.unwrap().host_tag().as_deref(), Some("edge-1"));
        let c = yaml(&format!(
            "ports: [80]\nhost: edge-1\n{influx}  tags: {{host: edge-2, site: norte}}\n"
        ))
        .unwrap();
        let influxdb = c.influxdb.unwrap();
        assert_eq!(influxdb.host_tag().as_deref(), Some("edge-2"));
        assert_eq!(influxdb.tags["site"], "norte");
    }

    #[test]
    fn bad_files_name_the_field() {
        let cases = [
            ("ports: []\n", "ports"),
            ("source: netlink\n", "ports"),
            ("ports: [22, 70000]\n", "ports[1]"),
            ("ports: [22, 0]\n", "ports[1]"),
            ("ports: [22, 80, 22]\n", "ports[2]"),
            ("ports: [22]\nsource: kernel\n", "source"),
            ("ports: [22]\ninfluxdb_interval: 0s\n", "influxdb_interval"),
            (
                "ports: [22]\ninfluxdb_interval: soon\n",
                "influxdb_interval",
            ),
            ("ports: [22]\nprocfs_root: ''\n", "procfs_root"),
            (
                "ports: [22]\ninfluxdb:\n  url: http://127.0.0.1:8086\n",
                "influxdb.database",
            ),
        ];
        for (text, path) in cases {
            let e = yaml(text).unwrap_err();
            assert_eq!(e.path, path, "{text:?}: {e}");
        }
        let e = yaml("ports: [22]\ninfluxdb:\n  database: vigia\n").unwrap_err();
        assert_eq!(e.path, "influxdb");
        assert!(e.message.contains("`url`"), "{e}");
        let e = yaml("ports: [22]\nport: 80\n").unwrap_err();
        assert!(e.message.contains("port"), "{e}");
        assert!(e.to_string().contains("unknown field"), "{e}");
    }

    #[test]
    fn seed_ports_variable() {
        assert_eq!(parse_seed_ports("22,80,443").unwrap(), vec![22, 80, 443]);
        assert_eq!(
            parse_seed_ports(" 22 , 80,443 ").unwrap(),
            vec![22, 80, 443]
        );
        for bad in [
            "", "  ", "abc", "22,abc", "70000", "0", "22,,80", "22,", "-1", "+22", "22,22",
        ] {
            let e = parse_seed_ports(bad).unwrap_err();
            assert_eq!(e.path, SEED_PORTS_VAR, "{bad:?}");
        }
    }

    #[test]
    fn seed_variable_then_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ports.yaml");
        std::fs::write(&path, "ports: [1]\n").unwrap();
        let c = load_from(Some(&path), Some("22,80"), vec![]).unwrap();
        assert_eq!(c.ports, vec![22, 80]);
        let env = vec![("VIGIA_PORTS__PORTS".to_string(), "[8080]".to_string())];
        let c = load_from(Some(&path), Some("22,80"), env).unwrap();
        assert_eq!(c.ports, vec![8080]);
        let c = load_from(None, Some("443"), vec![]).unwrap();
        assert_eq!(c.ports, vec![443]);
        let e = load_from(None, Some("abc"), vec![]).unwrap_err();
        assert_eq!(e.path, SEED_PORTS_VAR);
    }

    #[test]
    fn listen_address_precedence() {
        let flag: SocketAddr = "127.0.0.1:9999".parse().unwrap();
        assert_eq!(
            listen_address(Some(flag), Some(OsStr::new("8000"))).unwrap(),
            flag
        );
        assert_eq!(
            listen_address(None, Some(OsStr::new("8000"))).unwrap(),
            "0.0.0.0:8000".parse().unwrap()
        );
        assert_eq!(listen_address(None, None).unwrap(), DEFAULT_LISTEN);
        for bad in ["", "abc", "0", "65536", "80.5"] {
            let e = listen_address(None, Some(OsStr::new(bad))).unwrap_err();
            assert_eq!(e.path, SEED_LISTEN_PORT_VAR, "{bad:?}");
            let e = listen_address(Some(flag), Some(OsStr::new(bad))).unwrap_err();
            assert_eq!(e.path, SEED_LISTEN_PORT_VAR, "{bad:?}");
        }
    }
}
