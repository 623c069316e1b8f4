//! vigia-host: host metrics under node_exporter's names, containers under cAdvisor's,
//! an inventory snapshot, energy and an anomaly score. This file only wires things up:
//! flags and configuration (`config.rs`), the collector table (`collectors.rs`), serving.

mod anomaly;
mod cgroups;
mod collectors;
mod config;
mod container_fs;
mod docker;
mod energy;
mod inventory;
mod metrics;
mod node;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Arg, ArgAction, ArgMatches, CommandFactory, FromArgMatches, Parser};
use serde_json::Value;
use vigia_kit::influx::InfluxWriter;
use vigia_kit::server::{Landing, Readiness};
use vigia_kit::web_config::WebConfig;
use vigia_kit::{CommonArgs, Metrics, SourceStatsNames};

use crate::collectors::{Setup, COLLECTORS};
use crate::config::{FlagKind, HostConfig, NODE_FLAGS};

const PROGRAM: &str = "vigia-host";
const DEFAULT_LISTEN: &str = "0.0.0.0:9472";

#[derive(Debug, Parser)]
#[command(name = PROGRAM, version = vigia_kit::VERSION, about = "Host, container, inventory, energy and anomaly metrics")]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// The shared flags plus node_exporter's: `--collector.<name>` / `--no-collector.<name>`
/// for every collector in the table and the settings in `config::NODE_FLAGS`.
fn command() -> clap::Command {
    let mut cmd = Cli::command();
    for c in COLLECTORS {
        let on = leak(format!("collector.{}", c.name));
        let off = leak(format!("no-collector.{}", c.name));
        cmd = cmd
            .arg(
                Arg::new(on)
                    .long(on)
                    .action(ArgAction::SetTrue)
                    .help(leak(format!(
                        "Enable the {} collector (default: {})",
                        c.name,
                        if c.default { "enabled" } else { "disabled" }
                    ))),
            )
            .arg(
                Arg::new(off)
                    .long(off)
                    .action(ArgAction::SetTrue)
                    .hide(true),
            );
    }
    for (flag, path, kind) in NODE_FLAGS {
        let help = if path.is_empty() {
            "Accepted for node_exporter compatibility; no effect".to_string()
        } else {
            format!("node_exporter's flag: sets `{path}` in the configuration")
        };
        cmd = match kind {
            FlagKind::Text => cmd.arg(
                Arg::new(*flag)
                    .long(*flag)
                    .value_name("VALUE")
                    .action(ArgAction::Set)
                    .help(leak(help)),
            ),
            FlagKind::List => cmd.arg(
                Arg::new(*flag)
                    .long(*flag)
                    .value_name("VALUE")
                    .action(ArgAction::Append)
                    .help(leak(help)),
            ),
            FlagKind::Switch => {
                let off = leak(format!("no-{flag}"));
                cmd.arg(
                    Arg::new(*flag)
                        .long(*flag)
                        .action(ArgAction::SetTrue)
                        .help(leak(help)),
                )
                .arg(
                    Arg::new(off)
                        .long(off)
                        .action(ArgAction::SetTrue)
                        .hide(true),
                )
            }
        };
    }
    cmd
}

/// Whether `--id` or `--no-id` came last, if either was given.
fn switch(m: &ArgMatches, id: &str) -> Option<bool> {
    let no = format!("no-{id}");
    let last = |i: &str| {
        m.get_flag(i)
            .then(|| m.indices_of(i).and_then(|x| x.max()))
            .flatten()
    };
    match (last(id), last(&no)) {
        (Some(a), Some(b)) => Some(a > b),
        (Some(_), None) => Some(true),
        (None, Some(_)) => Some(false),
        (None, None) => None,
    }
}

/// The configuration paths and values the node_exporter flags set.
fn flag_overrides(m: &ArgMatches) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (flag, path, kind) in NODE_FLAGS {
        if path.is_empty() {
            continue;
        }
        let value = match kind {
            FlagKind::Text => m.get_one::<String>(flag).map(|v| Value::String(v.clone())),
            FlagKind::List => m
                .get_many::<String>(flag)
                .map(|vs| Value::Array(vs.map(|v| Value::String(v.clone())).collect())),
            FlagKind::Switch => switch(m, flag).map(Value::Bool),
        };
        if let Some(v) = value {
            out.push((path.to_string(), v));
        }
    }
    for c in COLLECTORS {
        if let Some(on) = switch(m, &format!("collector.{}", c.name)) {
            out.push((format!("collectors.{}", c.name), Value::Bool(on)));
        }
    }
    out
}

fn main() -> ExitCode {
    // glibc gives every thread that allocates its own arena; the scrape's reader threads
    // would each keep one, for megabytes of resident memory. One arena: the allocations
    // are small and short, contention is not the cost here.
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes allocator tuning; called before any other thread.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    let matches = command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    vigia_kit::logging::init(cli.common.log_format);
    // Not std::env::vars: it panics on a variable that is not UTF-8 (see kit's environment).
    let env = match vigia_kit::config::environment("VIGIA_HOST") {
        Ok(env) => env,
        Err(e) => return vigia_kit::exit_config_error(PROGRAM, e),
    };
    let config = match config::load(
        cli.common.config_file.as_deref(),
        env,
        &flag_overrides(&matches),
    ) {
        Ok(c) => c,
        Err(e) => return vigia_kit::exit_config_error(PROGRAM, e),
    };
    let web = match cli.common.web_config() {
        Ok(w) => w,
        Err(e) => return vigia_kit::exit_config_error(PROGRAM, e),
    };
    if cli.common.check_config {
        println!("{PROGRAM}: configuration is valid");
        return ExitCode::SUCCESS;
    }
    let default_listen: SocketAddr = DEFAULT_LISTEN.parse().expect("constant address");
    let listen = cli.common.listen_address_or(default_listen);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return vigia_kit::exit_config_error(PROGRAM, format!("cannot start: {e}")),
    };
    runtime.block_on(run(config, listen, web))
}

/// Pushes an inventory snapshot to InfluxDB every `inventory.interval` until shutdown.
async fn push_inventory(
    config: HostConfig,
    writer: InfluxWriter,
    errors: vigia_kit::metrics::ErrorCounter,
    shutdown: vigia_kit::shutdown::Shutdown,
) {
    let inv = config.inventory.clone();
    let host = if inv.host.is_empty() {
        node::uname::uname().map(|u| u.nodename).unwrap_or_default()
    } else {
        inv.host.clone()
    };
    let sampler = Arc::new(std::sync::Mutex::new(inventory::Sampler::new(
        config.procfs_root.clone(),
        config.rootfs.clone(),
        inv.top_processes,
    )));
    // A first reading now, so the first snapshot (a second later, then every interval)
    // already has CPU use per process, which is a difference between two readings.
    let s = sampler.clone();
    let _ =
        tokio::task::spawn_blocking(move || s.lock().unwrap_or_else(|p| p.into_inner()).snapshot())
            .await;
    let first = tokio::time::Instant::now() + Duration::from_secs(1);
    let mut ticker = tokio::time::interval_at(first, inv.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.wait() => break,
        }
        let s = sampler.clone();
        let taken = tokio::task::spawn_blocking(move || {
            s.lock().unwrap_or_else(|p| p.into_inner()).snapshot()
        })
        .await;
        match taken {
            Ok(Ok(snap)) => {
                if std::mem::take(&mut failing) {
                    tracing::info!("inventory snapshots work again");
                }
                let at = std::time::SystemTime::now();
                for point in inventory::points(&host, at, &snap, &config.rootfs, inv.max_users) {
                    writer.write(point);
                }
            }
            Ok(Err(e)) => {
                errors.inc("inventory");
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(error = %format!("{e:#}"), "inventory snapshot failed (logged once until it works again)");
                }
            }
            Err(e) => tracing::error!(error = %e, "inventory task failed"),
        }
    }
    writer.shutdown(Duration::from_secs(5)).await;
}

async fn run(config: HostConfig, listen: SocketAddr, web: WebConfig) -> ExitCode {
    let mut metrics = Metrics::with_source_stats(PROGRAM, SourceStatsNames::NODE_EXPORTER);
    // Fifty collectors that mostly wait on the kernel's files: read as many at once as
    // there are CPUs (up to 4), as node_exporter runs its collectors concurrently.
    metrics.set_source_threads(
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(4),
    );
    metrics
        .registry_mut()
        .register_collector(Box::new(vigia_kit::process::ProcessCollector::new()));
    let (_trigger, shutdown) = vigia_kit::shutdown::Shutdown::on_signals();
    let mut background = Vec::new();
    collectors::register_all(&mut Setup {
        config: &config,
        metrics: &mut metrics,
        shutdown: shutdown.clone(),
        tasks: &mut background,
    });
    let writer = match (&config.influxdb, config.enabled("inventory")) {
        (Some(influx), true) => match InfluxWriter::start(influx, &mut metrics) {
            Ok(w) => Some(w),
            Err(e) => return vigia_kit::exit_config_error(PROGRAM, e),
        },
        _ => None,
    };
    let listener = match vigia_kit::server::bind(listen).await {
        Ok(l) => l,
        Err(e) => return vigia_kit::exit_config_error(PROGRAM, e),
    };
    if let Some(writer) = writer {
        background.push(tokio::spawn(push_inventory(
            config.clone(),
            writer,
            metrics.errors(),
            shutdown.clone(),
        )));
    }
    let metrics = Arc::new(metrics);
    let ready = Readiness::new(true);
    let landing = Landing {
        title: "vigia-host".to_string(),
        description: "Host metrics (node_exporter names), containers (cAdvisor names), inventory, energy and anomaly score".to_string(),
        links: Vec::new(),
    };
    let router = vigia_kit::server::router(metrics, ready, Some(landing), axum::Router::new());
    vigia_kit::server::serve(listener, router, web, shutdown, Duration::from_secs(5)).await;
    for task in background {
        // Each task flushes what it owes (the InfluxDB writer within its bound) and ends.
        let _ = task.await;
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_exporter_flags_set_the_configuration() {
        let m = command()
            .try_get_matches_from([
                PROGRAM,
                "--path.procfs=/host/proc",
                "--collector.disable-defaults",
                "--collector.cpu",
                "--no-collector.meminfo",
                "--collector.meminfo",
                "--no-collector.netdev.netlink",
                "--collector.textfile.directory=/a",
                "--collector.textfile.directory=/b",
                "--collector.filesystem.mount-points-exclude=^/x",
            ])
            .unwrap();
        let flags = flag_overrides(&m);
        let get = |p: &str| flags.iter().find(|(k, _)| k == p).map(|(_, v)| v.clone());
        assert_eq!(get("procfs_root"), Some(Value::String("/host/proc".into())));
        assert_eq!(get("disable_default_collectors"), Some(Value::Bool(true)));
        assert_eq!(get("collectors.cpu"), Some(Value::Bool(true)));
        assert_eq!(
            get("collectors.meminfo"),
            Some(Value::Bool(true)),
            "the last of --no-x and --x wins"
        );
        assert_eq!(get("netdev.netlink"), Some(Value::Bool(false)));
        assert_eq!(
            get("textfile.directories"),
            Some(Value::Array(vec![
                Value::String("/a".into()),
                Value::String("/b".into())
            ]))
        );
        assert_eq!(get("collectors.uname"), None);
        let c = config::load(None, Vec::new(), &flags).unwrap();
        assert!(c.enabled("cpu") && c.enabled("meminfo") && !c.enabled("uname"));
        assert!(command()
            .try_get_matches_from([PROGRAM, "--collector.gpu"])
            .is_err());
    }
}
