//! Command-line pieces both services share: the `migrate` command and the
//! way a command's outcome becomes the process's exit status.

use std::fmt::Display;
use std::process::ExitCode;

use clap::Args;

use crate::config::{CommonArgs, DatabaseArgs};
use crate::{Error, db, telemetry};

/// Create the database if needed and apply pending migrations (safe to run twice).
#[derive(Args, Debug)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
}

impl MigrateArgs {
    pub async fn run(&self) -> Result<(), Error> {
        telemetry::init(self.common.log_format);
        db::create_and_migrate(&self.database).await?;
        tracing::info!("migrations applied");
        Ok(())
    }
}

/// Success, or the error on standard error behind the program's name and a failure status.
pub fn exit_code(program: &str, outcome: Result<(), impl Display>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{program}: {error}");
            ExitCode::FAILURE
        }
    }
}
