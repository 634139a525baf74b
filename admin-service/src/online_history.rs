//! The online count over time: one sample per period (a minute by default),
//! written by one admin replica at a time, kept for the retention period.
//!
//! - One writer: the replica that holds a PostgreSQL advisory lock, taken on
//!   a connection of its own (outside the pool). A replica that dies loses
//!   the connection and so the lock; the others try to take it every half
//!   period, so one of them writes the next sample. A writer that hangs, or
//!   is cut off, keeps its socket open, so PostgreSQL would hold the lock
//!   for it (for hours, until TCP keep-alive gives up): the writer's session
//!   is ended by PostgreSQL itself after a period and `WRITER_IDLE_GRACE` of
//!   silence (`idle_session_timeout`), while a live writer uses it every
//!   half period. Samples are keyed by their period, so even two writers
//!   could not count a period twice.
//! - The count is the one the users page shows (the presence index, or
//!   login_history alone when Redis is down).
//! - Retention: the writer deletes samples older than the retention period,
//!   a bounded batch at a time, so a long backlog never holds the table.
//! - Reading: `history` groups samples into at most `MAX_BUCKETS` buckets;
//!   a bucket without samples is absent, not zero.

use std::net::SocketAddr;
use std::time::Duration;

use sqlx::postgres::PgConnection;
use sqlx::{Connection, PgPool};
use tokio::sync::watch;

use crate::background::within;
use crate::error::AdminError;
use crate::listing::StatusReader;
use crate::search::SearchQuery;
use crate::store::ListFilter;

/// Names the writer's lock (any constant: the lock is per database).
const WRITER_LOCK: i64 = 0x7072_6573_656e_6365; // "presence"
/// What the writer's connection is called (then its replica's address).
pub const WRITER_NAME: &str = "presence-admin online history";
/// The most buckets one reading returns (a day of minutes).
pub const MAX_BUCKETS: i64 = 1440;
/// The longest range one reading covers.
pub const MAX_RANGE_SECONDS: i64 = 400 * 86_400;
/// Samples deleted per statement, and statements per period at most.
const PURGE_BATCH: i64 = 1000;
const PURGE_BATCHES_PER_PERIOD: usize = 20;
/// How long past a period the writer's session may stay silent before
/// PostgreSQL ends it (and so hands the lock over): a live writer is never
/// silent longer than half a period plus one sample's deadline.
const WRITER_IDLE_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy)]
pub struct RecorderSettings {
    /// One sample per period.
    pub every: Duration,
    pub retention: Duration,
}

/// Starts the sampling loop of the replica listening on `address` (which
/// names its connection, so an operator sees which replica writes); it ends,
/// releasing the lock, when `stopping` turns true or its sender goes away.
/// The first sample is taken a period after the start.
pub fn start_recorder(
    pool: PgPool,
    reader: StatusReader,
    settings: RecorderSettings,
    address: SocketAddr,
    stopping: watch::Receiver<bool>,
) {
    tokio::spawn(record(pool, reader, settings, address, stopping));
}

async fn record(
    pool: PgPool,
    reader: StatusReader,
    settings: RecorderSettings,
    address: SocketAddr,
    mut stopping: watch::Receiver<bool>,
) {
    // The writer samples (at most once a period: see `sample`) and the others
    // try the lock at every tick.
    let every = (settings.every / 2).max(Duration::from_secs(1));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The connection that holds the lock, while this replica is the writer.
    let mut writer: Option<PgConnection> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopping.wait_for(|stopping| *stopping) => break,
        }
        if writer.is_none() {
            let idle_limit = settings.every + WRITER_IDLE_GRACE;
            writer = match within(
                "taking the online history lock",
                take_lock(&pool, address, idle_limit),
            )
            .await
            {
                Ok(connection) => connection,
                Err(error) => {
                    tracing::warn!(%error, "online history: could not try the writer lock");
                    None
                }
            };
        }
        let Some(connection) = writer.as_mut() else {
            continue;
        };
        if let Err(error) = within(
            "recording the online count",
            sample(connection, &reader, settings),
        )
        .await
        {
            // The lock may be gone with the connection: start again from a new one.
            tracing::warn!(%error, "online history: sample not recorded");
            writer = None;
        }
    }
    if let Some(connection) = writer {
        let _ = connection.close().await;
    }
}

/// A connection holding the writer lock, or `None` if another replica holds
/// it. PostgreSQL ends the connection once silent for `idle_limit`.
async fn take_lock(
    pool: &PgPool,
    address: SocketAddr,
    idle_limit: Duration,
) -> Result<Option<PgConnection>, AdminError> {
    let options = pool
        .connect_options()
        .as_ref()
        .clone()
        .application_name(&format!("{WRITER_NAME} {address}"));
    let mut connection = PgConnection::connect_with(&options).await?;
    // Set before the lock is taken, so no session ever holds it without.
    // PostgreSQL 13 and older do not have the setting: the lock then goes
    // only with the connection.
    let limit = format!("SET idle_session_timeout = {}", idle_limit.as_millis());
    if let Err(error) = sqlx::query(&limit).execute(&mut connection).await {
        tracing::warn!(%error, "online history: a hung writer will keep the lock until its connection drops");
    }
    let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(WRITER_LOCK)
        .fetch_one(&mut connection)
        .await?;
    if taken {
        tracing::info!("online history: this replica records the online count");
        Ok(Some(connection))
    } else {
        let _ = connection.close().await;
        Ok(None)
    }
}

/// Records this period's count (once: a period already recorded is kept)
/// and purges what is past retention.
async fn sample(
    connection: &mut PgConnection,
    reader: &StatusReader,
    settings: RecorderSettings,
) -> Result<(), AdminError> {
    let counts = reader
        .list(ListFilter::All, 1, None, SearchQuery::default())
        .await?;
    let period = settings.every.as_secs().max(1) as i64;
    let at = counts.generated_at - counts.generated_at.rem_euclid(period);
    sqlx::query(
        "INSERT INTO online_counts (sampled_at, online, total)
         VALUES (to_timestamp($1::float8), $2, $3) ON CONFLICT (sampled_at) DO NOTHING",
    )
    .bind(at as f64)
    .bind(counts.online as i64)
    .bind(counts.total as i64)
    .execute(&mut *connection)
    .await?;
    let cutoff = counts.generated_at - settings.retention.as_secs() as i64;
    for _ in 0..PURGE_BATCHES_PER_PERIOD {
        let deleted = sqlx::query(
            "DELETE FROM online_counts WHERE sampled_at IN (
                SELECT sampled_at FROM online_counts
                WHERE sampled_at < to_timestamp($1::float8)
                ORDER BY sampled_at LIMIT $2)",
        )
        .bind(cutoff as f64)
        .bind(PURGE_BATCH)
        .execute(&mut *connection)
        .await?
        .rows_affected();
        if deleted < PURGE_BATCH as u64 {
            break;
        }
    }
    Ok(())
}

/// The bucket width for a range of `range` seconds when `requested` is asked
/// for: at least a minute, whole minutes, and no more than `MAX_BUCKETS`.
pub fn step_for(range: i64, requested: u32) -> i64 {
    let fitting = (range + MAX_BUCKETS - 1) / MAX_BUCKETS;
    let step = i64::from(requested).max(fitting).max(60);
    (step + 59) / 60 * 60
}

/// Where the buckets of [from, to) start, and their width: `step_for`'s step,
/// widened if aligning `from` on it would make one bucket too many.
pub fn buckets_for(from: i64, to: i64, requested: u32) -> (i64, i64) {
    let mut step = step_for(to - from, requested);
    loop {
        let start = from - from.rem_euclid(step);
        if buckets(to - start, step) <= MAX_BUCKETS {
            return (start, step);
        }
        step += 60;
    }
}

/// Buckets of `step` seconds needed to cover `range` seconds (both positive).
fn buckets(range: i64, step: i64) -> i64 {
    (range + step - 1) / step
}

/// One bucket of samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// Its start, Unix seconds.
    pub at: i64,
    pub max_online: i64,
    pub mean_online: f64,
    pub samples: i64,
}

/// The samples of [from, to) in buckets of `step` seconds aligned on the
/// epoch, oldest first; empty buckets left out.
pub async fn history(
    pool: &PgPool,
    from: i64,
    to: i64,
    step: i64,
) -> Result<Vec<Bucket>, AdminError> {
    let rows: Vec<(i64, i64, f64, i64)> = sqlx::query_as(
        "SELECT (floor(extract(epoch FROM sampled_at) / $3) * $3)::bigint AS bucket,
                max(online), avg(online)::float8, count(*)
         FROM online_counts
         WHERE sampled_at >= to_timestamp($1::float8) AND sampled_at < to_timestamp($2::float8)
         GROUP BY bucket ORDER BY bucket",
    )
    .bind(from as f64)
    .bind(to as f64)
    .bind(step)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(at, max_online, mean_online, samples)| Bucket {
            at,
            max_online,
            mean_online,
            samples,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_whole_minutes_and_never_make_more_than_a_day_of_buckets() {
        const DAY: i64 = 86_400;
        // A day: a minute each. A week: 7 minutes. 30 days: half an hour.
        assert_eq!(step_for(DAY, 0), 60);
        assert_eq!(step_for(7 * DAY, 0), 420);
        assert_eq!(step_for(30 * DAY, 0), 1800);
        // A wider step asked for is kept, rounded up to a whole minute.
        assert_eq!(step_for(DAY, 3600), 3600);
        assert_eq!(step_for(DAY, 61), 120);
        // Never under a minute, never over MAX_BUCKETS buckets.
        assert_eq!(step_for(600, 1), 60);
        for range in [1, 59, 3601, DAY + 1, 30 * DAY + 7, MAX_RANGE_SECONDS] {
            let step = step_for(range, 0);
            assert_eq!(step % 60, 0);
            assert!(
                buckets(range, step) <= MAX_BUCKETS,
                "{range} s in {step} s steps"
            );
        }
    }

    #[test]
    fn aligned_buckets_cover_the_range_and_stay_within_the_bound() {
        // A day from an unaligned start: aligning on minutes would make 1441.
        let from = 1_700_000_030;
        let (start, step) = buckets_for(from, from + 86_400, 0);
        assert!(start <= from && start % step == 0);
        assert!(buckets(from + 86_400 - start, step) <= MAX_BUCKETS);
        assert_eq!(step, 120);
        // Aligned: the step asked for.
        assert_eq!(
            buckets_for(1_700_000_040, 1_700_003_640, 60),
            (1_700_000_040, 60)
        );
    }
}
