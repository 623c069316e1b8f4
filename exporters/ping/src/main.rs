//! vigia-ping: ICMP echo, TCP, HTTP(S) and DNS probes to thousands of targets with an ok /
//! warning / down status per target, a JSON-lines transition log, round rows in InfluxDB
//! and the NOC status board.
//! This file only wires the parts together.

mod board;
mod config;
mod dns;
mod http;
mod maintenance;
mod metrics;
mod probe;
mod probe_config;
mod resolve;
mod rounds;
mod schedule;
mod services;
mod status;
mod tcp;
mod tls;
mod transitions;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use clap::Parser;
use vigia_kit::influx::InfluxWriter;
use vigia_kit::server::{self, Readiness};
use vigia_kit::shutdown::Shutdown;
use vigia_kit::web_config::WebConfig;
use vigia_kit::{exit_config_error, CommonArgs, ConfigError, Metrics};

use crate::config::{Config, ENV_PREFIX};
use crate::metrics::{ExporterMetrics, TargetMetrics};
use crate::probe::Prober;
use crate::rounds::RoundWriter;
use crate::schedule::{ProbeContext, Scheduler};
use crate::status::StatusTable;
use crate::transitions::TransitionLog;

const PROGRAM: &str = "vigia-ping";
const DEFAULT_LISTEN: &str = "0.0.0.0:9471";

#[derive(Debug, Parser)]
#[command(
    name = PROGRAM,
    version = vigia_kit::VERSION,
    about = "ICMP, TCP, HTTP(S) and DNS probes to many targets with ok / warning / down status, for Prometheus, InfluxDB and a NOC status board"
)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    vigia_kit::logging::init(args.common.log_format);
    let config: Config =
        match vigia_kit::config::load(args.common.config_file.as_deref(), ENV_PREFIX) {
            Ok(c) => c,
            Err(e) => return exit_config_error(PROGRAM, e),
        };
    let web = match args.common.web_config() {
        Ok(w) => w,
        Err(e) => return exit_config_error(PROGRAM, e),
    };
    if args.common.check_config {
        println!("{PROGRAM}: configuration is valid");
        return ExitCode::SUCCESS;
    }
    let listen = args
        .common
        .listen_address_or(DEFAULT_LISTEN.parse().expect("valid default address"));
    // Two single-threaded runtimes. One thread runs every probe loop and the ICMP receive
    // tasks, and nothing else: a reply wakes its waiter without a cross-thread wake-up
    // (half the CPU per echo at 1,000 targets), and surge-ping stamps a reply's arrival
    // when that thread reads it, so no HTTP work may ever run there. The other serves
    // HTTP (the board's JSON, scrapes, TLS); scrapes are encoded and gzipped on its
    // blocking pool. Before, both shared one thread, and each gzip scrape at 5,000
    // targets held every probe for 0.4 s: loopback RTTs of 0.4 s, targets in warning.
    // A third thread runs the tcp, http and dns probes: their TLS handshakes and HTTP
    // parsing cost CPU that must not delay an echo reply on the ICMP thread, and no
    // scrape may stall their timings either.
    let http_runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_start(lower_this_threads_priority)
        .build();
    let http_runtime = match http_runtime {
        Ok(h) => h,
        Err(e) => return exit_config_error(PROGRAM, format!("cannot start the runtime: {e}")),
    };
    let probes = match ProbeThread::start("vigia-ping-probes") {
        Ok(t) => t,
        Err(e) => return exit_config_error(PROGRAM, e),
    };
    let services = match ProbeThread::start("vigia-ping-services") {
        Ok(t) => t,
        Err(e) => return exit_config_error(PROGRAM, e),
    };
    // After the probe threads started (threads inherit their creator's priority).
    lower_this_threads_priority();
    let code = http_runtime.block_on(run(
        config,
        listen,
        web,
        probes.handle.clone(),
        services.handle.clone(),
    ));
    probes.stop();
    services.stop();
    code
}

/// A thread running a single-threaded runtime until stopped.
struct ProbeThread {
    handle: tokio::runtime::Handle,
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl ProbeThread {
    fn start(name: &str) -> Result<Self, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the runtime: {e}"))?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                })
            })
            .map_err(|e| format!("cannot start the thread {name}: {e}"))?;
        Ok(Self {
            handle,
            stop,
            thread,
        })
    }

    fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

/// HTTP work (and its blocking pool, where scrapes are encoded and gzipped) runs at nice
/// 5, below the probe thread: when the two compete for a core, the scheduler favours the
/// probe that has a reply to read (about 3 to 1), so a reply waits for the CPU as little
/// as it can. Not lower: against other programs' work a scrape must still finish within
/// Prometheus' timeout. Lowering one's own priority needs no privilege; a failure only
/// costs that preference.
fn lower_this_threads_priority() {
    // SAFETY: gettid and setpriority have no memory preconditions; on Linux,
    // PRIO_PROCESS with a thread id sets that thread's nice value alone.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 5);
    }
}

async fn run(
    config: Config,
    listen: SocketAddr,
    web: WebConfig,
    probes: tokio::runtime::Handle,
    services: tokio::runtime::Handle,
) -> ExitCode {
    let file_targets = match &config.targets_file {
        Some(path) => match config.read_targets_file(path) {
            Ok(t) => t,
            Err(e) => return exit_config_error(PROGRAM, e),
        },
        None => Vec::new(),
    };
    let specs = match config.all_targets(&file_targets) {
        Ok(s) => s,
        Err(e) => return exit_config_error(PROGRAM, e),
    };
    let transitions = match &config.transition_log {
        Some(c) => match TransitionLog::open(c) {
            Ok(log) => Some(Mutex::new(log)),
            Err(e) => {
                let why = format!("cannot open {}: {e}", c.path.display());
                return exit_config_error(PROGRAM, ConfigError::new("transition_log.path", why));
            }
        },
        None => None,
    };
    // surge-ping spawns its receive tasks where the sockets are opened: on the probe thread.
    let opened = {
        let _probe_context = probes.enter();
        Prober::open(config.socket)
    };
    let prober = match opened {
        Ok(p) => p,
        Err(e) => return exit_config_error(PROGRAM, e),
    };

    let mut metrics = Metrics::new(PROGRAM);
    let exporter_metrics = ExporterMetrics::register(
        &mut metrics,
        config.targets_file.is_some(),
        config.maintenance_file.is_some(),
    );
    for (family, kind) in prober.kinds() {
        exporter_metrics
            .socket_info
            .get_or_create(&vec![
                ("family".to_string(), family.to_string()),
                ("type".to_string(), kind.as_str().to_string()),
            ])
            .set(1);
    }
    let influx = match &config.influxdb {
        Some(c) => match InfluxWriter::start(c, &mut metrics) {
            Ok(w) => Some(w),
            Err(e) => return exit_config_error(PROGRAM, e),
        },
        None => None,
    };
    let table = Arc::new(StatusTable::default());
    if let Some(path) = &config.maintenance_file {
        match maintenance::read(path) {
            Ok(w) => table.maintenance.replace(w),
            Err(e) => return exit_config_error(PROGRAM, e),
        }
    }
    metrics.register_source(TargetMetrics {
        table: table.clone(),
    });
    let errors = metrics.errors();
    errors.touch("transition_log");

    let listener = match server::bind(listen).await {
        Ok(l) => l,
        Err(e) => return exit_config_error(PROGRAM, e),
    };
    let (_trigger, shutdown) = Shutdown::on_signals();
    let ready = Readiness::new(false);
    let ctx = Arc::new(ProbeContext {
        prober,
        table: table.clone(),
        transitions,
        rounds: RoundWriter::new(influx.clone()),
        ready: ready.clone(),
        errors,
        lookup: resolve::system_lookup(),
    });
    let mut scheduler = Scheduler::new(ctx, probes.clone(), services, config.rtt_buckets.clone());
    scheduler.apply(specs);
    if config.targets_file.is_some() {
        exporter_metrics.targets_file_reload_success.set(1);
    }
    if config.maintenance_file.is_some() {
        exporter_metrics.maintenance_file_reload_success.set(1);
    }
    let maintenance_watcher = config.maintenance_file.clone().map(|path| {
        tokio::spawn(watch_maintenance_file(
            path,
            config.targets_file_check_interval,
            table.clone(),
            exporter_metrics.clone(),
            shutdown.clone(),
        ))
    });

    let router = server::router(Arc::new(metrics), ready, None, board::routes(table.clone()));
    tracing::info!(address = %listen, targets = table.entries().len(), "listening");
    // Without a targets file the scheduler stays here, alive until shutdown.
    let mut fixed_targets = None;
    let watcher = match config.targets_file.clone() {
        Some(path) => Some(probes.spawn(watch_targets_file(
            config.clone(),
            path,
            scheduler,
            exporter_metrics.clone(),
            shutdown.clone(),
        ))),
        None => {
            fixed_targets = Some(scheduler);
            None
        }
    };
    server::serve(listener, router, web, shutdown, Duration::from_secs(5)).await;
    if let Some(w) = watcher {
        w.abort();
    }
    if let Some(w) = maintenance_watcher {
        w.abort();
    }
    drop(fixed_targets);
    if let Some(w) = influx {
        w.shutdown(Duration::from_secs(5)).await;
    }
    ExitCode::SUCCESS
}

/// A changed targets file is read, validated with the rest of the config and applied, or
/// rejected (logged, counted) with the previous list kept.
async fn watch_targets_file(
    config: Config,
    path: PathBuf,
    mut scheduler: Scheduler,
    metrics: ExporterMetrics,
    shutdown: Shutdown,
) {
    on_file_change(&path, config.targets_file_check_interval, &shutdown, || {
        let result = config
            .read_targets_file(&path)
            .and_then(|t| config.all_targets(&t));
        match result {
            Ok(specs) => {
                tracing::info!(path = %path.display(), "targets file changed");
                scheduler.apply(specs);
                metrics.targets_file_reload_success.set(1);
            }
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "targets file rejected; keeping the previous targets");
                metrics.targets_file_reload_errors.inc();
                metrics.targets_file_reload_success.set(0);
            }
        }
    })
    .await;
    scheduler.stop();
}

/// Like the targets file: a changed maintenance file replaces the windows when it is
/// valid, and is rejected (logged, counted) with the previous windows kept when not.
async fn watch_maintenance_file(
    path: PathBuf,
    every: Duration,
    table: Arc<StatusTable>,
    metrics: ExporterMetrics,
    shutdown: Shutdown,
) {
    on_file_change(&path, every, &shutdown, || match maintenance::read(&path) {
        Ok(windows) => {
            tracing::info!(path = %path.display(), windows = windows.len(), "maintenance file changed");
            table.maintenance.replace(windows);
            metrics.maintenance_file_reload_success.set(1);
        }
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "maintenance file rejected; keeping the previous windows");
            metrics.maintenance_file_reload_errors.inc();
            metrics.maintenance_file_reload_success.set(0);
        }
    })
    .await;
}

/// Calls `changed` each time the file's modification time or size differs from the last
/// look (polled every `every`), until shutdown.
async fn on_file_change(
    path: &Path,
    every: Duration,
    shutdown: &Shutdown,
    mut changed: impl FnMut(),
) {
    let stamp = |p: &Path| -> Option<(SystemTime, u64)> {
        let m = std::fs::metadata(p).ok()?;
        Some((m.modified().ok()?, m.len()))
    };
    let mut last = stamp(path);
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.wait() => break,
        }
        let now = stamp(path);
        if now != last {
            last = now;
            changed();
        }
    }
}
