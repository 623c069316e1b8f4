//! vigia-host: host metrics under node_exporter's names, containers under cAdvisor's,
//! an inventory snapshot, energy and an anomaly score. This file only wires things up.

mod anomaly;
mod cgroups;
mod config;
mod cpu;
mod diskstats;
mod docker;
mod energy;
mod filesystem;
mod inventory;
mod loadavg;
mod meminfo;
mod metrics;
mod netdev;
mod os;

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use vigia_kit::influx::InfluxWriter;
use vigia_kit::server::{Landing, Readiness};
use vigia_kit::web_config::WebConfig;
use vigia_kit::{CommonArgs, ConfigError, Metrics};

use crate::config::{compile, HostConfig};

const PROGRAM: &str = "vigia-host";
const DEFAULT_LISTEN: &str = "0.0.0.0:9472";

#[derive(Debug, Parser)]
#[command(name = PROGRAM, version = vigia_kit::VERSION, about = "Host, container, inventory, energy and anomaly metrics")]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    vigia_kit::logging::init(cli.common.log_format);
    let config: HostConfig =
        match vigia_kit::config::load(cli.common.config_file.as_deref(), "VIGIA_HOST") {
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

/// Whether a root directory is usable; when not, the collectors under it are disabled
/// and the reason logged once, instead of failing every scrape. `readers` are the enabled collectors that need this root, named in the log line.
fn root_usable(path: &Path, field: &str, readers: &[(&str, bool)]) -> bool {
    if path.is_dir() {
        return true;
    }
    let collectors: Vec<&str> = readers
        .iter()
        .filter(|(_, on)| *on)
        .map(|(name, _)| *name)
        .collect();
    tracing::warn!(
        root = %path.display(),
        field,
        collectors = %collectors.join(","),
        "root directory not found: collectors reading it are disabled"
    );
    false
}

fn register_collectors(config: &HostConfig, metrics: &mut Metrics) {
    let on = &config.collectors;
    let proc_ok = root_usable(
        &config.procfs_root,
        "procfs_root",
        &[
            ("cpu", on.cpu),
            ("diskstats", on.diskstats),
            ("filesystem", on.filesystem),
            ("loadavg", on.loadavg),
            ("meminfo", on.meminfo),
            ("netdev", on.netdev),
            ("stat", on.stat),
            ("inventory", on.inventory),
            ("anomaly", on.anomaly),
        ],
    );
    let rootfs_ok = root_usable(
        &config.rootfs,
        "rootfs",
        &[("filesystem", on.filesystem), ("os", on.os)],
    );
    let procfs_root = config.procfs_root.clone();
    // Regexes were compiled once in validation; recompiling cannot fail here.
    let re = |p: &str| compile(p, "").ok().flatten();
    if proc_ok {
        if on.cpu {
            metrics.register_source(cpu::CpuCollector {
                procfs_root: procfs_root.clone(),
            });
        }
        if on.diskstats {
            metrics.register_source(diskstats::DiskstatsCollector {
                procfs_root: procfs_root.clone(),
                device_exclude: re(&config.diskstats.device_exclude),
            });
        }
        if on.filesystem && rootfs_ok {
            metrics.register_source(filesystem::FilesystemCollector {
                procfs_root: procfs_root.clone(),
                rootfs: config.rootfs.clone(),
                mount_points_exclude: re(&config.filesystem.mount_points_exclude),
                fs_types_exclude: re(&config.filesystem.fs_types_exclude),
                mount_timeout: config.filesystem.mount_timeout,
                stuck: Default::default(),
            });
        }
        if on.loadavg {
            metrics.register_source(loadavg::LoadavgCollector {
                procfs_root: procfs_root.clone(),
            });
        }
        if on.meminfo {
            metrics.register_source(meminfo::MeminfoCollector {
                procfs_root: procfs_root.clone(),
            });
        }
        if on.netdev {
            metrics.register_source(netdev::NetdevCollector {
                procfs_root: procfs_root.clone(),
                device_exclude: re(&config.netdev.device_exclude),
            });
        }
        if on.stat {
            metrics.register_source(cpu::StatCollector {
                procfs_root: procfs_root.clone(),
            });
        }
    }
    if on.os && rootfs_ok {
        metrics.register_source(os::OsCollector {
            rootfs: config.rootfs.clone(),
        });
    }
    if on.cgroups {
        match cgroups::Layout::detect(&config.sysfs_root) {
            Some(layout) => {
                tracing::info!(?layout, "containers: cgroup tree found");
                let names = docker::ContainerNames::connect(
                    &config.containers.docker_socket,
                    config.containers.name_cache_size,
                    tokio::runtime::Handle::current(),
                    metrics.errors(),
                );
                metrics.register_source(cgroups::CgroupsCollector {
                    layout,
                    procfs_root: procfs_root.clone(),
                    names,
                });
            }
            None => tracing::warn!(
                sysfs_root = %config.sysfs_root.display(),
                "no cgroup tree under sysfs_root/fs/cgroup: containers collector disabled"
            ),
        }
    }
    if on.inventory && proc_ok {
        metrics.register_source(inventory::InventoryCollector {
            sampler: std::sync::Mutex::new(inventory::Sampler::new(
                procfs_root.clone(),
                config.rootfs.clone(),
                config.inventory.top_processes,
            )),
            max_users: config.inventory.max_users,
        });
    }
    if on.energy {
        metrics.register_source(energy::EnergyCollector::new(energy::EnergySources::detect(
            &config.sysfs_root,
            &config.procfs_root,
            config.energy.model.as_ref(),
        )));
    }
    if on.time {
        metrics.register_source(os::TimeCollector);
    }
    if on.uname {
        metrics.register_source(os::UnameCollector);
    }
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
        os::uname().map(|u| u.nodename).unwrap_or_default()
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
                let at = std::time::SystemTime::now();
                for point in inventory::points(&host, at, &snap, &config.rootfs, inv.max_users) {
                    writer.write(point);
                }
            }
            Ok(Err(e)) => {
                errors.inc("inventory");
                tracing::warn!(error = %format!("{e:#}"), "inventory snapshot failed");
            }
            Err(e) => tracing::error!(error = %e, "inventory task failed"),
        }
    }
    writer.shutdown(Duration::from_secs(5)).await;
}

async fn run(config: HostConfig, listen: SocketAddr, web: WebConfig) -> ExitCode {
    let mut metrics = Metrics::new(PROGRAM);
    register_collectors(&config, &mut metrics);
    let writer = match (&config.influxdb, config.collectors.inventory) {
        (Some(influx), true) => match InfluxWriter::start(influx, &mut metrics) {
            Ok(w) => Some(w),
            Err(e) => return vigia_kit::exit_config_error(PROGRAM, e),
        },
        _ => None,
    };
    let anomaly_parts = if config.collectors.anomaly && config.procfs_root.is_dir() {
        let detector = match vigia_anomaly::HalfSpaceTrees::new(
            &config.anomaly.detector(),
            anomaly::features(),
        ) {
            Ok(d) => d,
            Err(p) => {
                return vigia_kit::exit_config_error(PROGRAM, ConfigError::new(p.path, p.message))
            }
        };
        let gauges = anomaly::AnomalyGauges::register(
            &mut metrics,
            config.anomaly.threshold,
            config.anomaly.window_size,
        );
        Some((detector, gauges))
    } else {
        None
    };
    let listener = match vigia_kit::server::bind(listen).await {
        Ok(l) => l,
        Err(e) => return vigia_kit::exit_config_error(PROGRAM, e),
    };
    let (_trigger, shutdown) = vigia_kit::shutdown::Shutdown::on_signals();
    let mut background = Vec::new();
    if let Some((detector, gauges)) = anomaly_parts {
        let reader = anomaly::HostReader {
            procfs_root: config.procfs_root.clone(),
            disk_exclude: compile(&config.diskstats.device_exclude, "").ok().flatten(),
        };
        background.push(tokio::spawn(anomaly::run(
            reader,
            detector,
            config.anomaly.interval,
            gauges,
            metrics.errors(),
            shutdown.clone(),
        )));
    }
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
