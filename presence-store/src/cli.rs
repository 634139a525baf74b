//! The `migrate` command both services offer.

use clap::Args;
use presence_core::config::CommonArgs;
use presence_core::telemetry;

use crate::config::DatabaseArgs;
use crate::{Error, db};

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
