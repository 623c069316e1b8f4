//! Flags every exporter accepts, named as the Prometheus exporters name them so an
//! operator's muscle memory (and systemd units) carry over.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::config::ConfigError;
use crate::connections::ConnectionLimits;
use crate::logging::LogFormat;
use crate::web_config::WebConfig;

/// Common flags; each exporter flattens this into its own `clap` parser.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// YAML configuration file. Without it, defaults plus environment overrides apply.
    #[arg(long = "config.file", env = "VIGIA_CONFIG_FILE", value_name = "PATH")]
    pub config_file: Option<PathBuf>,

    /// Address to listen on for /metrics, health endpoints and the landing page.
    #[arg(
        long = "web.listen-address",
        env = "VIGIA_WEB_LISTEN_ADDRESS",
        value_name = "ADDR"
    )]
    pub listen_address: Option<SocketAddr>,

    /// Exporter-toolkit web config file (TLS and basic auth).
    #[arg(
        long = "web.config.file",
        env = "VIGIA_WEB_CONFIG_FILE",
        value_name = "PATH"
    )]
    pub web_config_file: Option<PathBuf>,

    /// Log format: logfmt or json. The level comes from RUST_LOG (default: info).
    #[arg(
        long = "log.format",
        env = "VIGIA_LOG_FORMAT",
        default_value = "logfmt"
    )]
    pub log_format: LogFormat,

    /// Most HTTP connections held at once. At the cap a new connection replaces the
    /// oldest idle one; when all are busy it is refused.
    #[arg(
        long = "web.max-connections",
        env = "VIGIA_WEB_MAX_CONNECTIONS",
        value_name = "N",
        default_value_t = 512,
        value_parser = clap::value_parser!(u32).range(1..),
    )]
    pub max_connections: u32,

    /// An HTTP connection with no request being handled and no response byte written
    /// for this long is closed.
    #[arg(
        long = "web.idle-timeout",
        env = "VIGIA_WEB_IDLE_TIMEOUT",
        value_name = "DURATION",
        default_value = "90s",
        value_parser = positive_duration,
    )]
    pub idle_timeout: Duration,

    /// A new HTTP connection must send a whole request head within this long.
    #[arg(
        long = "web.read-header-timeout",
        env = "VIGIA_WEB_READ_HEADER_TIMEOUT",
        value_name = "DURATION",
        default_value = "10s",
        value_parser = positive_duration,
    )]
    pub read_header_timeout: Duration,

    /// Validate the configuration and exit (0 when valid, 2 when not).
    #[arg(long = "check-config")]
    pub check_config: bool,
}

fn positive_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration like 10s or 2m ({e})"))?;
    if d.is_zero() {
        return Err("must be greater than 0".into());
    }
    Ok(d)
}

impl CommonArgs {
    /// The connection limits the `--web.*` flags ask for.
    pub fn connection_limits(&self) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: self.max_connections as usize,
            idle_timeout: self.idle_timeout,
            read_header_timeout: self.read_header_timeout,
        }
    }

    /// The web config file (`--web.config.file`, or none: plain HTTP, no auth) with the
    /// connection limits of the `--web.*` flags.
    pub fn web_config(&self) -> Result<WebConfig, ConfigError> {
        let web = match &self.web_config_file {
            Some(path) => WebConfig::load(path)?,
            None => WebConfig::none(),
        };
        Ok(web.with_limits(self.connection_limits()))
    }

    /// The listen address from the flag, else `default`.
    pub fn listen_address_or(&self, default: SocketAddr) -> SocketAddr {
        self.listen_address.unwrap_or(default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        common: CommonArgs,
    }

    #[test]
    fn connection_flags_default_to_the_documented_limits_and_refuse_zero() {
        let cli = Cli::try_parse_from(["x"]).unwrap();
        assert_eq!(cli.common.connection_limits(), ConnectionLimits::default());
        let cli = Cli::try_parse_from([
            "x",
            "--web.max-connections",
            "64",
            "--web.idle-timeout",
            "2m",
            "--web.read-header-timeout",
            "500ms",
        ])
        .unwrap();
        let l = cli.common.connection_limits();
        assert_eq!(l.max_connections, 64);
        assert_eq!(l.idle_timeout, Duration::from_secs(120));
        assert_eq!(l.read_header_timeout, Duration::from_millis(500));
        for bad in [
            ["x", "--web.max-connections", "0"],
            ["x", "--web.idle-timeout", "0s"],
            ["x", "--web.read-header-timeout", "soon"],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }
}
