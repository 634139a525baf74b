//! The gateway binary: read the configuration, then serve until stopped.

use std::process::ExitCode;

use clap::Parser;
use gateway::config::GatewayConfig;
use gateway::startup::{Application, StartupError};
use presence_core::cli::Report;
use presence_core::telemetry;

// glibc's allocator showed as a large share of the gateway's CPU under load
// (docs/benchmarks.md), with threads waiting on its arena locks: every
// request allocates and frees headers, frames and futures on both sides of
// the proxy.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "gateway",
    version,
    about = "presence gateway: gRPC-Web for browsers and the web app, on one origin"
)]
struct Cli {
    #[command(flatten)]
    config: GatewayConfig,
}

fn main() -> ExitCode {
    let config = Cli::parse().config;
    telemetry::init(config.common.log_format);
    tracing::info!(config = ?config, "starting gateway");
    let runtime = match config.worker_threads {
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        threads => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(usize::from(threads))
            .enable_all()
            .build(),
    };
    let outcome = match runtime {
        Ok(runtime) => runtime.block_on(async {
            let application = Application::build(config).await?;
            application
                .run_until(presence_core::shutdown::signal())
                .await
        }),
        Err(error) => Err(StartupError::Runtime(error)),
    };
    presence_core::cli::exit_code("gateway", outcome.map_err(Report))
}
