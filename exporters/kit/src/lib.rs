//! The runtime every vigia exporter shares, so that none of them re-implements it:
//! config loading and validation ([`config`]), command-line flags ([`cli`]), logging
//! ([`logging`]), the metrics registry with self-metrics and scrape-time sources
//! ([`metrics`]), the HTTP server with the exporter-toolkit web config ([`server`],
//! [`web_config`]) and the InfluxDB writer ([`influx`]).

pub mod cli;
pub mod config;
pub mod connections;
pub mod exposition;
pub mod influx;
pub mod logging;
pub mod metrics;
pub mod process;
pub mod server;
pub mod shutdown;
#[cfg(feature = "testing")]
pub mod testing;
pub mod web_config;

pub use cli::CommonArgs;
pub use config::{ConfigError, Validate};
pub use metrics::{Metrics, Source, SourceError, SourceStatsNames};

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

/// The source revision in `vigia_build_info{revision}`: `VIGIA_REVISION` at build time,
/// else the checkout's `git rev-parse --short HEAD`, else `unknown` (see `build.rs`).
pub const REVISION: &str = env!("VIGIA_REVISION");

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::process::Command;

    #[test]
    fn revision_is_the_checkouts_commit_when_built_from_one() {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let in_checkout = manifest.ancestors().any(|d| d.join(".git").exists());
        let git_works = Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(manifest)
            .output()
            .is_ok_and(|o| o.status.success());
        match env!("VIGIA_REVISION_SOURCE") {
            "env" => assert_eq!(super::REVISION, env!("VIGIA_REVISION")),
            "git" => {
                // A commit of this repository (HEAD itself may have moved since the build).
                let named = Command::new("git")
                    .args(["cat-file", "-e", &format!("{}^{{commit}}", super::REVISION)])
                    .current_dir(manifest)
                    .status()
                    .unwrap();
                assert!(named.success(), "{} is not a commit", super::REVISION);
                assert!(super::REVISION.len() >= 7, "{}", super::REVISION);
            }
            source => {
                assert_eq!(source, "none");
                assert_eq!(super::REVISION, "unknown");
                assert!(
                    !(in_checkout && git_works),
                    "built in a git checkout, yet the revision is unknown"
                );
            }
        }
    }
}
