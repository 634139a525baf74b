//! PostgreSQL: the pool every service uses and the embedded migrations.
//!
//! Every pooled connection carries a statement timeout, so no query (nor a
//! wait for a row lock) can hold a caller longer than that. sqlx 0.8 cannot
//! turn on client-side TCP keep-alive, so the connection asks the server for
//! it instead (`tcp_keepalives_*`): PostgreSQL then notices a vanished client
//! within about a minute and releases its locks, and the probes keep idle
//! connections alive through NAT. On our side, idle connections are closed
//! after a few minutes and every connection is checked before it is lent.

use std::str::FromStr;
use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::Connection;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::Error;
use crate::config::DatabaseArgs;

/// The schema, embedded in every binary so `migrate` needs no files at run time.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// A transaction left open and idle this long is a bug or a dead client
/// holding row locks: PostgreSQL ends its session. Ours last milliseconds.
const IDLE_IN_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Server-side TCP keep-alive: first probe after this much silence, ...
const KEEPALIVE_IDLE_SECONDS: u32 = 30;
/// ... then one every this many seconds, ...
const KEEPALIVE_INTERVAL_SECONDS: u32 = 10;
/// ... and the connection is dropped after this many unanswered probes.
const KEEPALIVE_COUNT: u32 = 3;
/// Idle pooled connections are closed after this long, below the idle limit
/// of common NAT gateways and firewalls (about 5 minutes).
const IDLE_TIMEOUT: Duration = Duration::from_secs(4 * 60);
/// No connection lives longer than this (fail-overs and re-balancing reach
/// every process within this time).
const MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);
/// SQLSTATE `query_canceled`: the statement timeout fired (or an operator
/// cancelled the query).
const QUERY_CANCELED: &str = "57014";

/// How each connection is opened: the URL plus the session settings above.
pub fn connect_options(args: &DatabaseArgs) -> Result<PgConnectOptions, Error> {
    let session = [
        (
            "statement_timeout",
            args.database_statement_timeout_ms.to_string(),
        ),
        (
            "idle_in_transaction_session_timeout",
            IDLE_IN_TRANSACTION_TIMEOUT.as_millis().to_string(),
        ),
        ("tcp_keepalives_idle", KEEPALIVE_IDLE_SECONDS.to_string()),
        (
            "tcp_keepalives_interval",
            KEEPALIVE_INTERVAL_SECONDS.to_string(),
        ),
        ("tcp_keepalives_count", KEEPALIVE_COUNT.to_string()),
    ];
    Ok(PgConnectOptions::from_str(args.database_url.expose_secret())?.options(session))
}

/// A pool that connects on first use, so a service starts (and serves what
/// needs no SQL, like pings) while PostgreSQL is still unreachable.
pub fn connect_lazy(args: &DatabaseArgs) -> Result<PgPool, Error> {
    let pool = PgPoolOptions::new()
        .max_connections(args.database_max_connections)
        .acquire_timeout(Duration::from_millis(args.database_timeout_ms))
        .idle_timeout(IDLE_TIMEOUT)
        .max_lifetime(MAX_LIFETIME)
        .test_before_acquire(true)
        .connect_lazy_with(connect_options(args)?);
    Ok(pool)
}

/// Creates the database if it does not exist yet, then migrates it.
pub async fn create_and_migrate(args: &DatabaseArgs) -> Result<(), Error> {
    use sqlx::migrate::MigrateDatabase;
    if !sqlx::Postgres::database_exists(args.database_url.expose_secret()).await? {
        sqlx::Postgres::create_database(args.database_url.expose_secret()).await?;
        tracing::info!("database created");
    }
    migrate(&connect_lazy(args)?).await
}

/// True when a query failed because PostgreSQL could not be reached or did
/// not finish in time (the caller should retry later), as opposed to a bug or
/// a refused statement.
pub fn is_unreachable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(database) => database.code().as_deref() == Some(QUERY_CANCELED),
        _ => false,
    }
}

/// Applies pending migrations. Safe to run concurrently and repeatedly: sqlx
/// takes an advisory lock and skips what is already applied. Runs on a
/// connection of its own without the statement timeout (building an index on
/// a large table takes longer than any query may), closed afterwards.
/// Connects once, outside the pool: the pool retries a refused connection
/// until its acquire timeout and then says only that it timed out, where this
/// keeps the cause (refused, unknown host, authentication).
pub async fn check_reachable(pool: &PgPool) -> Result<(), Error> {
    let within = pool.options().get_acquire_timeout();
    let connection = tokio::time::timeout(
        within,
        sqlx::PgConnection::connect_with(&pool.connect_options()),
    )
    .await
    .map_err(|_| Error::DatabaseTimedOut(within))?
    .map_err(Error::DatabaseUnreachable)?;
    if let Err(error) = connection.close().await {
        tracing::debug!(%error, "closing the probe connection failed");
    }
    Ok(())
}

pub async fn migrate(pool: &PgPool) -> Result<(), Error> {
    let mut connection = pool.acquire().await?.detach();
    sqlx::query("SET statement_timeout = 0")
        .execute(&mut connection)
        .await?;
    let migrated = MIGRATOR.run(&mut connection).await;
    if let Err(error) = connection.close().await {
        tracing::debug!(%error, "closing the migration connection failed");
    }
    migrated?;
    Ok(())
}
