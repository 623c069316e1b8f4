//! vigia-capture: packets from libpcap (live or a pcap file) into flows, per-window
//! traffic features and a streaming anomaly score, for Prometheus and InfluxDB.
//! This file only wires the parts together.

mod analyser;
mod capture;
mod config;
mod flows;
mod influx_rows;
mod metrics;
mod parse;
mod scoring;
mod window;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use vigia_kit::influx::InfluxWriter;
use vigia_kit::server::{self, Landing, Readiness};
use vigia_kit::shutdown::Shutdown;
use vigia_kit::web_config::WebConfig;
use vigia_kit::{exit_config_error, CommonArgs, Metrics};

use crate::analyser::{Analyser, Report};
use crate::config::{Config, Input};
use crate::metrics::CaptureMetrics;
use crate::scoring::WindowScorer;

const PROGRAM: &str = "vigia-capture";

#[derive(Debug, Parser)]
#[command(
    name = PROGRAM,
    version = vigia_kit::VERSION,
    about = "Packet capture into flows, per-window traffic features and an anomaly score, for Prometheus (and InfluxDB)"
)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,

    /// Capture live from this interface (overrides `interface:`/`file:` of the config).
    #[arg(
        long = "capture.interface",
        value_name = "IFACE",
        conflicts_with = "file"
    )]
    interface: Option<String>,

    /// Replay this pcap or pcapng file (overrides `interface:`/`file:` of the config).
    #[arg(long = "capture.file", value_name = "PATH")]
    file: Option<PathBuf>,

    /// With a file: analyse it, print one JSON line per window and a summary, and exit
    /// without listening.
    #[arg(long = "exit-at-eof")]
    exit_at_eof: bool,

    /// As --exit-at-eof, printing only the summary (packets, elapsed time, packets/s).
    #[arg(long = "bench")]
    bench: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    vigia_kit::logging::init(args.common.log_format);

    let config = match config::load(
        args.common.config_file.as_deref(),
        args.interface.clone(),
        args.file.clone(),
    ) {
        Ok(c) => c,
        Err(e) => return exit_config_error(PROGRAM, e),
    };
    let report = match (args.bench, args.exit_at_eof) {
        (true, _) => Report::Summary,
        (false, true) => Report::Windows,
        (false, false) => Report::None,
    };
    if report != Report::None && matches!(config.input(), Input::Live(_)) {
        return exit_config_error(
            PROGRAM,
            "--exit-at-eof and --bench need a file (--capture.file or `file:`)",
        );
    }
    let web = match args.common.web_config() {
        Ok(w) => w,
        Err(e) => return exit_config_error(PROGRAM, e),
    };
    let scorer = match WindowScorer::new(&config.anomaly) {
        Ok(s) => s,
        Err(e) => return exit_config_error(PROGRAM, e),
    };
    if args.common.check_config && config.input() == Input::Stdin {
        // Opening standard input would read (and lose) the head of the capture.
        println!("{PROGRAM}: configuration is valid (standard input is read when capturing)");
        return ExitCode::SUCCESS;
    }
    let source = match capture::open(&config) {
        Ok(s) => s,
        Err(e) => return exit_config_error(PROGRAM, e),
    };
    if args.common.check_config {
        println!("{PROGRAM}: configuration is valid");
        return ExitCode::SUCCESS;
    }
    let listen = args.common.listen_address_or(config::DEFAULT_LISTEN);

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return exit_config_error(PROGRAM, format!("cannot start the runtime: {e}")),
    };
    runtime.block_on(run(config, source, scorer, listen, web, report))
}

async fn run(
    config: Config,
    mut source: capture::CaptureSource,
    scorer: WindowScorer,
    listen: std::net::SocketAddr,
    web: WebConfig,
    report: Report,
) -> ExitCode {
    let mut metrics = Metrics::new(PROGRAM);
    let (capture_metrics, counters) =
        CaptureMetrics::register(&mut metrics, config.anomaly.threshold);
    let errors = metrics.errors();
    errors.touch("capture");
    let writer = match &config.influxdb {
        Some(influxdb) => match InfluxWriter::start(influxdb, &mut metrics) {
            Ok(w) => Some(w),
            Err(e) => return exit_config_error(PROGRAM, e),
        },
        None => None,
    };
    let listener = if report == Report::None {
        match server::bind(listen).await {
            Ok(l) => Some(l),
            Err(e) => return exit_config_error(PROGRAM, e),
        }
    } else {
        None
    };
    let live = matches!(config.input(), Input::Live(_));
    let description = source.description.clone();
    let breaker = source.breaker.take();
    let stop = Arc::new(AtomicBool::new(false));
    // SIGTERM and SIGINT stop every mode within a batch: the analyser looks at `stop`
    // between batches (a file replay too), and a capture thread still blocked in a read
    // (standard input, a FIFO) is left behind at exit instead of being waited for.
    let (trigger, shutdown) = Shutdown::on_signals();
    {
        let (stop, shutdown) = (stop.clone(), shutdown.clone());
        tokio::spawn(async move {
            shutdown.wait().await;
            stop.store(true, Ordering::Relaxed);
        });
    }
    let (rx, capture_thread) =
        match capture::spawn(source, config.queue_packets, counters, stop.clone()) {
            Ok(x) => x,
            Err(e) => {
                return exit_config_error(PROGRAM, format!("cannot start the capture thread: {e}"))
            }
        };
    let mut analyser = Analyser::new(
        &config,
        scorer,
        capture_metrics,
        writer.clone(),
        live,
        report,
    );
    let analyser_stop = stop.clone();
    let analyser_errors = errors.clone();
    let analyser_trigger = trigger.clone();
    let analysis = tokio::task::spawn_blocking(move || {
        let result = analyser.run(rx, analyser_stop);
        if let Err(e) = &result {
            analyser_errors.inc("capture");
            tracing::error!(error = %e, "capture failed");
            // A live capture that fails (interface gone) ends the exporter, so its
            // supervisor restarts it; a replay keeps serving what it read.
            if live {
                analyser_trigger.trigger();
            }
        } else {
            tracing::info!("capture ended");
        }
        result
    });

    let exit = match listener {
        None => {
            // --exit-at-eof / --bench: no server; the result is what was printed.
            match analysis.await {
                Ok(Ok(totals)) if totals.interrupted => {
                    eprintln!(
                        "{PROGRAM}: stopped by a signal before the end of the capture; the summary covers the {} packets read",
                        totals.packets
                    );
                    ExitCode::FAILURE
                }
                Ok(Ok(_)) => ExitCode::SUCCESS,
                Ok(Err(e)) => {
                    eprintln!("{PROGRAM}: {e}");
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("{PROGRAM}: analyser failed: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(listener) => {
            let landing = Landing {
                title: PROGRAM.to_string(),
                description: format!(
                    "Packet capture from {description}: flows, {}-second windows of traffic features and an anomaly score.",
                    config.window.as_secs_f64()
                ),
                links: Vec::new(),
            };
            let router = server::router(
                Arc::new(metrics),
                Readiness::new(true),
                Some(landing),
                axum::Router::new(),
            );
            tracing::info!(input = %description, "capturing");
            server::serve(listener, router, web, shutdown, Duration::from_secs(5)).await;
            stop.store(true, Ordering::Relaxed);
            if let Some(b) = &breaker {
                b.breakloop();
            }
            let failed_live = match analysis.await {
                Ok(Err(_)) => live,
                _ => false,
            };
            if failed_live {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
    };
    // A capture thread reading a pipe may be blocked in read(2) for good: it is waited
    // for briefly, then left to end with the process.
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    while !capture_thread.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    if capture_thread.is_finished() {
        let _ = capture_thread.join();
    }
    if let Some(writer) = writer {
        writer.shutdown(Duration::from_secs(5)).await;
    }
    exit
}
