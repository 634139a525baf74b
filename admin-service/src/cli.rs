//! The command line: serve (the default) or `migrate`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use presence_core::cli::exit_code;
use presence_core::telemetry;
use presence_store::cli::MigrateArgs;

use crate::config::AdminConfig;
use crate::startup::{Application, StartupError};
use presence_core::cli::Report;

/// With no command, serves gRPC with the settings below.
#[derive(Parser, Debug)]
#[command(
    name = "admin-service",
    version,
    about = "presence admin service: user statuses, threshold setting and live status stream over gRPC",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: AdminConfig,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create the database if needed and apply pending migrations (safe to run twice).
    Migrate(MigrateArgs),
}

impl Cli {
    pub async fn run(self) -> ExitCode {
        let outcome = match self.command {
            Some(Command::Migrate(migrate)) => {
                migrate.run().await.map_err(StartupError::Migrations)
            }
            None => serve(self.serve).await,
        };
        exit_code("admin-service", outcome.map_err(Report))
    }
}

async fn serve(config: AdminConfig) -> Result<(), StartupError> {
    telemetry::init(config.common.log_format);
    tracing::info!(config = ?config, "starting admin-service");
    let application = Application::build(config).await?;
    application
        .run_until(presence_core::shutdown::signal())
        .await
}
