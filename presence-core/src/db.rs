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

/// Creates the database if it does not exist yet, then migrates it.
pub async fn create_and_migrate(args: &DatabaseArgs) -> Result<(), Error> {
    use sqlx::migrate::MigrateDatabase;
    if !sqlx::Postgres::database_exists(&args.database_url).await? {
        sqlx::Postgres::create_database(&args.database_url).await?;
        tracing::info!("database created");
    }
    migrate(&connect_lazy(args)?).await
}

/// True when a query failed because PostgreSQL could not be reached (the
/// caller should retry later), as opposed to a bug or a refused statement.
pub fn is_unreachable(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed
    )
}

/// Applies pending migrations. Safe to run concurrently and repeatedly: sqlx
/// takes an advisory lock and skips what is already applied.
pub async fn migrate(pool: &PgPool) -> Result<(), Error> {
    MIGRATOR.run(pool).await?;
    Ok(())
}
