//! The runtime every vigia exporter shares, so that none of them re-implements it:
//! config loading and validation ([`config`]), command-line flags ([`cli`]), logging
//! ([`logging`]), the metrics registry with self-metrics and scrape-time sources
//! ([`metrics`]), the HTTP server with the exporter-toolkit web config ([`server`],
//! [`web_config`]) and the InfluxDB writer ([`influx`]).

pub mod cli;
pub mod config;
pub mod exposition;
pub mod influx;
pub mod logging;
pub mod metrics;
pub mod server;
pub mod shutdown;
pub mod web_config;

pub use cli::CommonArgs;
pub use config::{ConfigError, Validate};
pub use metrics::{Metrics, Source, SourceError};

use std::process::ExitCode;

/// Exit status for a configuration or startup error: nothing was started.
pub const EXIT_CONFIG: u8 = 2;

/// Prints a startup error the way every exporter does and returns exit status 2.
pub fn exit_config_error(program: &str, err: impl std::fmt::Display) -> ExitCode {
    eprintln!("{program}: {err}");
    ExitCode::from(EXIT_CONFIG)
}

/// Version string shared by `--version`, the landing page and `vigia_build_info`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
