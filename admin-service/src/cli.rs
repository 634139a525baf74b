//! The command line: serve (the default) or `migrate`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use presence_core::config::{CommonArgs, DatabaseArgs};
use presence_core::{db, telemetry};

use crate::config::AdminConfig;
use crate::error::AdminError;
use crate::startup::Application;

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
    Migrate {
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

impl Cli {
    pub async fn run(self) -> ExitCode {
        let outcome = match self.command {
            Some(Command::Migrate { common, database }) => {
                telemetry::init(common.log_format);
                db::create_and_migrate(&database)
                    .await
                    .map_err(AdminError::from)
            }
            None => serve(self.serve).await,
        };
        match outcome {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("admin-service: {error}");
                ExitCode::FAILURE
            }
        }
    }
}

async fn serve(config: AdminConfig) -> Result<(), AdminError> {
    telemetry::init(config.common.log_format);
    tracing::info!(config = ?config, "starting admin-service");
    let application = Application::build(config).await?;
    application
        .run_until(presence_core::shutdown::signal())
        .await
}
