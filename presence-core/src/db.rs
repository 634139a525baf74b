//! PostgreSQL: the pool every service uses and the embedded migrations.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;

use crate::Error;
use crate::config::DatabaseArgs;

/// The schema, embedded in every binary so `migrate` needs no files at run time.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// A pool that connects on first use, so a service starts (and serves what
/// needs no SQL, like pings) while PostgreSQL is still unreachable.
pub fn connect_lazy(args: &DatabaseArgs) -> Result<PgPool, Error> {
    let pool = PgPoolOptions::new()
        .max_connections(args.database_max_connections)
        .acquire_timeout(Duration::from_millis(args.database_timeout_ms))
        .connect_lazy(&args.database_url)?;
    Ok(pool)
}

/// Applies pending migrations. Safe to run concurrently and repeatedly: sqlx
/// takes an advisory lock and skips what is already applied.
pub async fn migrate(pool: &PgPool) -> Result<(), Error> {
    MIGRATOR.run(pool).await?;
    Ok(())
}
