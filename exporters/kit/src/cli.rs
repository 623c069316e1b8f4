//! Flags every exporter accepts, named as the Prometheus exporters name them so an
//! operator's muscle memory (and systemd units) carry over.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

use crate::logging::LogFormat;

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

    /// Validate the configuration and exit (0 when valid, 2 when not).
    #[arg(long = "check-config")]
    pub check_config: bool,
}

impl CommonArgs {
    /// The listen address from the flag, else `default`.
    pub fn listen_address_or(&self, default: SocketAddr) -> SocketAddr {
        self.listen_address.unwrap_or(default)
    }
}
