//! Keeps Redis's copy of the revocations in step with PostgreSQL, their record.
//!
//! Logout revokes a token in Redis (`revoked_token:<jti>`) and records it in
//! its login_history row; a disabling is recorded in `users.disabled_at` (by
//! a trigger, whoever disabled the account: the CLI or a plain `UPDATE`).
//! Redis alone would forget both when it loses its data (a flush, a failover
//! to an empty replica, an eviction), so every activity replica runs this
//! keeper:
//!
//! - Every `TICK` it copies into Redis the revocation rows written since the
//!   last look (by row id, re-reading `LOOKBACK_ROWS` behind it for rows whose
//!   transaction committed late; this also brings in logouts written while
//!   Redis was down), and the disablings of the last `RECENT_DISABLINGS`
//!   (as `revoked_before:<user id>`, which ends every token issued at or
//!   before it: so a disabled user's tokens stop within seconds). An account
//!   still disabled is also signed out of presence as a logout would: its
//!   activity key deleted, a logout marker at the disabling, its entry out
//!   of the presence index, so it shows offline (and leaves the counts)
//!   within seconds rather than when its last ping or login ages out.
//! - A full pass copies every revocation still in force and every disabling
//!   recent enough to matter, then sets `revocations_complete`: at start,
//!   when Redis lacks that marker (it lost its data; until the marker is back
//!   pings are refused as unavailable rather than trust a token Redis cannot
//!   vouch for), and every `FULL_PASS_EVERY` as a safety net.
//!
//! Every write is idempotent, so several replicas may run it at once; every
//! step is bounded by `STEP_TIMEOUT`, every Redis command by the Redis timeout.

use std::collections::BTreeSet;
use std::time::Duration;

use presence_core::threshold::ThresholdMinutes;
use presence_core::token::LEEWAY_SECONDS;
use presence_store::redis_client::Redis;
use redis::Cmd;
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::ActivityError;

const TICK: Duration = Duration::from_secs(2);
const FULL_PASS_EVERY: Duration = Duration::from_secs(300);
/// A step (a full pass included) that takes longer is abandoned and retried.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the service waits at start for the first full pass, so it
/// serves with the revocations in place when Redis and PostgreSQL are up
/// (and starts anyway, a little later, when they are not).
const FIRST_PASS_WAIT: Duration = Duration::from_secs(5);
/// How far behind the newest applied row each look starts again.
const LOOKBACK_ROWS: i64 = 1000;
/// Rows read per query (and Redis writes per batch).
const ROWS_PER_READ: i64 = 1000;
/// Disablings this recent are copied at every tick (they are rare; a copy
/// is one `SET`).
const RECENT_DISABLINGS: Duration = Duration::from_secs(120);
/// A revocation outlives its token's `exp` by this much: verifiers allow
/// clock leeway.
const KEEP_PAST_EXPIRY_SECONDS: i64 = 60;
/// The logout marker of a disabled account lives as long as one set by a
/// logout under the highest threshold (twice the threshold).
const DISABLED_MARKER_SECONDS: u64 = 2 * 60 * ThresholdMinutes::MAX as u64;

#[derive(Debug)]
pub struct RevocationKeeper {
    pool: PgPool,
    redis: Redis,
    /// The longest any token lives: older disablings cannot matter any more.
    longest_lifetime_seconds: i64,
    /// The newest revocation row applied; `None` until a full pass.
    cursor: Option<i64>,
    /// Rows applied within the look-back window, so none is applied twice.
    applied: BTreeSet<i64>,
    last_full_pass: tokio::time::Instant,
}

impl RevocationKeeper {
    /// Runs a first full pass (waiting at most `FIRST_PASS_WAIT`), then keeps
    /// going in the background for the life of the process.
    pub async fn start(pool: PgPool, redis: Redis, longest_lifetime_seconds: i64) {
        let mut keeper = Self {
            pool,
            redis,
            longest_lifetime_seconds,
            cursor: None,
            applied: BTreeSet::new(),
            last_full_pass: tokio::time::Instant::now(),
        };
        match tokio::time::timeout(FIRST_PASS_WAIT, keeper.bounded_step()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "revocations not restored at start"),
            Err(_) => tracing::warn!("revocations not restored at start: still trying"),
        }
        tokio::spawn(keeper.run());
    }

    async fn run(mut self) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(error) = self.bounded_step().await {
                // Redis or PostgreSQL is away: the same rows are read again later.
                tracing::debug!(%error, "revocations not copied to Redis this time");
            }
        }
    }

    async fn bounded_step(&mut self) -> Result<(), ActivityError> {
        tokio::time::timeout(STEP_TIMEOUT, self.step())
            .await
            .map_err(|_| {
                ActivityError::Internal("copying revocations to Redis took too long".into())
            })?
    }

    async fn step(&mut self) -> Result<(), ActivityError> {
        let full_pass_due = self.cursor.is_none()
            || self.last_full_pass.elapsed() >= FULL_PASS_EVERY
            || !self.marker_present().await?;
        if full_pass_due {
            self.full_pass().await
        } else {
            self.apply_new_rows().await?;
            let recent = RECENT_DISABLINGS.as_secs() as i64;
            self.copy_disablings(recent).await
        }
    }

    async fn marker_present(&self) -> Result<bool, ActivityError> {
        let key = self.redis.keys().revocations_complete();
        Ok(self
            .redis
            .run(
                |mut connection| async move { Cmd::exists(key).query_async(&mut connection).await },
            )
            .await?)
    }

    async fn full_pass(&mut self) -> Result<(), ActivityError> {
        // Rows written from here on are applied by the next looks.
        let cursor: i64 = sqlx::query_scalar(
            "SELECT coalesce(max(id), 0)::bigint FROM login_history WHERE token_id IS NOT NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        let mut copied = 0;
        // Keyset over (expiry, row): the revocations in force, in chunks.
        let mut after: (f64, i64) = (0.0, 0);
        loop {
            let rows: Vec<(i64, String, f64)> = sqlx::query_as(
                "SELECT id, token_id, extract(epoch FROM token_expires_at)::float8
                 FROM login_history
                 WHERE token_id IS NOT NULL AND token_expires_at > now()
                   AND (token_expires_at, id) > (to_timestamp($1), $2)
                 ORDER BY token_expires_at, id
                 LIMIT $3",
            )
            .bind(after.0)
            .bind(after.1)
            .bind(ROWS_PER_READ)
            .fetch_all(&self.pool)
            .await?;
            let Some((id, _, exp)) = rows.last() else {
                break;
            };
            after = (*exp, *id);
            copied += rows.len();
            let revocations: Vec<(String, i64)> = rows
                .into_iter()
                .map(|(_, jti, exp)| (jti, exp.ceil() as i64))
                .collect();
            self.copy_revocations(&revocations).await?;
        }
        self.copy_disablings(self.longest_lifetime_seconds + LEEWAY_SECONDS)
            .await?;
        let marker = self.redis.keys().revocations_complete();
        self.redis.batch_all(vec![Cmd::set(marker, 1)]).await?;
        tracing::info!(revocations = copied, "revocations copied to Redis");
        self.cursor = Some(self.cursor.map_or(cursor, |old| old.max(cursor)));
        self.last_full_pass = tokio::time::Instant::now();
        Ok(())
    }

    async fn apply_new_rows(&mut self) -> Result<(), ActivityError> {
        loop {
            let cursor = self.cursor.unwrap_or_default();
            let rows: Vec<(i64, String, i64)> = sqlx::query_as(
                "SELECT id, token_id, ceil(extract(epoch FROM token_expires_at))::bigint
                 FROM login_history
                 WHERE token_id IS NOT NULL AND id > $1
                 ORDER BY id
                 LIMIT $2",
            )
            .bind(cursor - LOOKBACK_ROWS)
            .bind(ROWS_PER_READ)
            .fetch_all(&self.pool)
            .await?;
            let read_all = (rows.len() as i64) < ROWS_PER_READ;
            let fresh: Vec<(i64, String, i64)> = rows
                .into_iter()
                .filter(|(row, _, _)| !self.applied.contains(row))
                .collect();
            let revocations: Vec<(String, i64)> = fresh
                .iter()
                .map(|(_, jti, exp)| (jti.clone(), *exp))
                .collect();
            self.copy_revocations(&revocations).await?;
            let newest = fresh.iter().map(|(row, _, _)| *row).max().unwrap_or(cursor);
            self.applied.extend(fresh.iter().map(|(row, _, _)| *row));
            self.cursor = Some(cursor.max(newest));
            let oldest_kept = cursor.max(newest) - LOOKBACK_ROWS;
            self.applied = self.applied.split_off(&oldest_kept);
            if read_all {
                return Ok(());
            }
        }
    }

    /// Revokes tokens (jti, `exp` in Unix seconds) in Redis until a little
    /// past their expiry; those already expired need nothing.
    async fn copy_revocations(&self, revocations: &[(String, i64)]) -> Result<(), ActivityError> {
        let now = chrono::Utc::now().timestamp();
        let keys = self.redis.keys();
        let writes: Vec<Cmd> = revocations
            .iter()
            .filter_map(|(jti, exp)| {
                let ttl = exp + KEEP_PAST_EXPIRY_SECONDS - now;
                (ttl > 0).then(|| Cmd::set_ex(keys.revoked_token(jti), 1, ttl as u64))
            })
            .collect();
        self.write_all(writes).await
    }

    /// Copies the disablings of the last `within_seconds` as
    /// `revoked_before:<user id>`, each kept until no token issued before it
    /// can still be valid; and signs the accounts still disabled out of
    /// presence (an account enabled again keeps what it did since).
    async fn copy_disablings(&self, within_seconds: i64) -> Result<(), ActivityError> {
        let mut after = Uuid::nil();
        loop {
            let rows: Vec<(Uuid, i64, bool)> = sqlx::query_as(
                "SELECT id, ceil(extract(epoch FROM disabled_at))::bigint, disabled
                 FROM users
                 WHERE disabled_at > now() - make_interval(secs => $1) AND id > $2
                 ORDER BY id
                 LIMIT $3",
            )
            .bind(within_seconds as f64)
            .bind(after)
            .bind(ROWS_PER_READ)
            .fetch_all(&self.pool)
            .await?;
            let Some((last, _, _)) = rows.last() else {
                return Ok(());
            };
            after = *last;
            let now = chrono::Utc::now().timestamp();
            let keys = self.redis.keys();
            let mut writes: Vec<Cmd> = rows
                .iter()
                .filter_map(|(user_id, at, _)| {
                    let ttl = at + self.longest_lifetime_seconds + KEEP_PAST_EXPIRY_SECONDS - now;
                    (ttl > 0).then(|| Cmd::set_ex(keys.revoked_before(*user_id), at, ttl as u64))
                })
                .collect();
            for (user_id, at, _) in rows.iter().filter(|(_, _, disabled)| *disabled) {
                writes.extend([
                    Cmd::del(keys.last_activity(*user_id)),
                    Cmd::set_ex(keys.last_logout(*user_id), at, DISABLED_MARKER_SECONDS),
                    Cmd::zrem(keys.presence_index_for(*user_id), user_id.to_string()),
                    Cmd::del(keys.browsers(*user_id)),
                    Cmd::del(keys.browsers_with_input(*user_id)),
                    Cmd::zrem(keys.away_index_for(*user_id), user_id.to_string()),
                ]);
            }
            self.write_all(writes).await?;
            if (rows.len() as i64) < ROWS_PER_READ {
                return Ok(());
            }
        }
    }

    async fn write_all(&self, writes: Vec<Cmd>) -> Result<(), ActivityError> {
        let mut writes = writes.into_iter().peekable();
        while writes.peek().is_some() {
            let chunk: Vec<Cmd> = writes.by_ref().take(ROWS_PER_READ as usize).collect();
            self.redis.batch_all(chunk).await?;
        }
        Ok(())
    }
}
