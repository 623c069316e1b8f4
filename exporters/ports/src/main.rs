//! vigia-ports: TCP connection counts per configured port, side and state, read from the
//! kernel at scrape time. This file only wires the parts together.

mod config;
mod counts;
mod metrics;
mod proc_net;
mod push;
mod sock_diag;
mod sockets;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use vigia_kit::influx::InfluxWriter;
use vigia_kit::server::{self, Landing, Readiness};
use vigia_kit::shutdown::Shutdown;
use vigia_kit::web_config::WebConfig;
use vigia_kit::{exit_config_error, CommonArgs, Metrics};

use crate::config::Config;
use crate::sockets::SocketTable;

const PROGRAM: &str = "vigia-ports";

#[derive(Debug, Parser)]
#[command(
    name = PROGRAM,
    version = vigia_kit::VERSION,
    about = "TCP connection counts per port, side and state, for Prometheus (and InfluxDB)"
)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    vigia_kit::logging::init(args.common.log_format);

    let config = match config::load(args.common.config_file.as_deref()) {
        Ok(c) => c,
        Err(e) => return exit_config_error(PROGRAM, e),
    };
    let listen = match config::listen_address(
        args.common.listen_address,
        std::env::var_os(config::SEED_LISTEN_PORT_VAR).as_deref(),
    ) {
        Ok(a) => a,
        Err(e) => return exit_config_error(PROGRAM, e),
    };
    let web = match args.common.web_config() {
        Ok(w) => w,
        Err(e) => return exit_config_error(PROGRAM, e),
    };
    let table = match SocketTable::open(&config) {
        Ok(t) => t,
        Err(e) => return exit_config_error(PROGRAM, e),
    };
    if args.common.check_config {
        println!("{PROGRAM}: configuration is valid");
        return ExitCode::SUCCESS;
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return exit_config_error(PROGRAM, format!("cannot start the runtime: {e}")),
    };
    runtime.block_on(run(config, table, listen, web))
}

async fn run(
    config: Config,
    table: Arc<SocketTable>,
    listen: std::net::SocketAddr,
    web: WebConfig,
) -> ExitCode {
    let mut metrics = Metrics::new(PROGRAM);
    metrics::register(&mut metrics, table.clone());
    let writer = match &config.influxdb {
        Some(influxdb) => match InfluxWriter::start(influxdb, &mut metrics) {
            Ok(w) => Some(w),
            Err(e) => return exit_config_error(PROGRAM, e),
        },
        None => None,
    };

    let listener = match server::bind(listen).await {
        Ok(l) => l,
        Err(e) => return exit_config_error(PROGRAM, e),
    };
    let (_trigger, shutdown) = Shutdown::on_signals();
    let pusher = writer.clone().map(|writer| {
        push::spawn(
            table.clone(),
            writer,
            config.influxdb_interval,
            metrics.errors(),
            shutdown.clone(),
        )
    });
    let landing = Landing {
        title: "vigia-ports".to_string(),
        description: format!(
            "TCP connections per port, side and state for ports {:?}, read through {}.",
            config.ports,
            table.source()
        ),
        links: Vec::new(),
    };
    let router = server::router(
        Arc::new(metrics),
        Readiness::new(true),
        Some(landing),
        axum::Router::new(),
    );
    tracing::info!(source = table.source(), ports = ?config.ports, "counting TCP sockets");
    server::serve(listener, router, web, shutdown, Duration::from_secs(5)).await;
    if let Some(pusher) = pusher {
        let _ = pusher.await;
    }
    if let Some(writer) = writer {
        writer.shutdown(Duration::from_secs(5)).await;
    }
    ExitCode::SUCCESS
}
