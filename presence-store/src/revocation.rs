//! Whether a verified token has been taken back since it was signed: by a
//! logout (its `jti`) or by its user's disabling (every token issued at or
//! before it).
//!
//! PostgreSQL is the record: a logout row carries the revoked `jti` and the
//! token's expiry, and `users.disabled_at` the last disabling. Redis holds a
//! copy for the hot path (`revoked_token:<jti>`, `revoked_before:<user id>`),
//! which the activity service writes at logout and puts back after Redis lost
//! its data; until it has, the `revocations_complete` marker is missing and
//! Redis cannot vouch for a token. Callers fail closed: what Redis cannot
//! vouch for is checked in PostgreSQL, and what neither can check is refused
//! as unavailable.

use std::time::Duration;

use redis::Cmd;
use sqlx::PgPool;

use crate::Error;
use crate::redis_client::Redis;
use presence_core::token::Caller;

/// How long the PostgreSQL check may take before the call is refused.
const POSTGRES_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// What Redis says of a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedisVerdict {
    Revoked,
    NotRevoked,
    /// Redis lost its data and the revocations are not back yet.
    Unknown,
}

/// Whether a disabling at `revoked_before` (Unix seconds, rounded up) ends a
/// token issued at `issued_at`: tokens of the same second go too, the safe side.
pub fn revoked_by_disabling(revoked_before: Option<i64>, issued_at: i64) -> bool {
    revoked_before.is_some_and(|before| before >= issued_at)
}

/// The revocation state of `caller`'s token in Redis, in one round trip.
pub async fn check_in_redis(redis: &Redis, caller: &Caller) -> Result<RedisVerdict, Error> {
    let values = redis.batch_all(redis_check(redis, caller)).await?;
    redis_verdict(values, caller)
}

/// The commands that tell whether Redis holds `caller`'s token as revoked,
/// for a caller that sends them in a batch with its own reads: their values,
/// in order, go to `redis_verdict`.
pub fn redis_check(redis: &Redis, caller: &Caller) -> Vec<Cmd> {
    let keys = redis.keys();
    vec![
        Cmd::exists(keys.revocations_complete()),
        Cmd::exists(keys.revoked_token(&caller.token_id)),
        Cmd::get(keys.revoked_before(caller.user_id)),
    ]
}

/// What the values of `redis_check`'s commands say of `caller`'s token.
pub fn redis_verdict(
    values: impl IntoIterator<Item = redis::Value>,
    caller: &Caller,
) -> Result<RedisVerdict, Error> {
    let mut values = values.into_iter();
    let mut next = || values.next().unwrap_or(redis::Value::Nil);
    let complete: bool = redis::from_redis_value(next())?;
    let revoked: bool = redis::from_redis_value(next())?;
    let revoked_before: Option<i64> = redis::from_redis_value(next())?;
    Ok(
        if revoked || revoked_by_disabling(revoked_before, caller.issued_at) {
            RedisVerdict::Revoked
        } else if complete {
            RedisVerdict::NotRevoked
        } else {
            RedisVerdict::Unknown
        },
    )
}

/// Whether PostgreSQL records `caller`'s token as revoked, or its user as
/// disabled now or since the token was issued. A user without a row (an
/// external issuer's) can only be revoked by logout.
pub async fn revoked_in_postgres(pool: &PgPool, caller: &Caller) -> Result<bool, Error> {
    let query = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM login_history WHERE token_id = $1)
             OR EXISTS (SELECT 1 FROM users WHERE id = $2
                          AND (disabled OR ceil(extract(epoch FROM disabled_at)) >= $3))",
    )
    .bind(&caller.token_id)
    .bind(caller.user_id)
    .bind(caller.issued_at as f64)
    .fetch_one(pool);
    match tokio::time::timeout(POSTGRES_CHECK_TIMEOUT, query).await {
        Ok(Ok(revoked)) => Ok(revoked),
        Ok(Err(error)) => Err(Error::RevocationUnknown {
            reason: "PostgreSQL failed",
            source: Some(error),
        }),
        Err(_) => Err(Error::RevocationUnknown {
            reason: "PostgreSQL gave no answer in time",
            source: None,
        }),
    }
}

/// The check every authorised call makes after verifying a token.
#[derive(Debug, Clone)]
pub struct RevocationCheck {
    redis: Redis,
    pool: PgPool,
}

impl RevocationCheck {
    pub fn new(redis: Redis, pool: PgPool) -> Self {
        Self { redis, pool }
    }

    /// Refuses `caller` if its token was revoked: asks Redis, and PostgreSQL
    /// when Redis is down or cannot vouch; `RevocationUnknown` (unavailable)
    /// when neither can answer.
    pub async fn ensure_not_revoked(&self, caller: &Caller) -> Result<(), Error> {
        let revoked = match check_in_redis(&self.redis, caller).await {
            Ok(RedisVerdict::Revoked) => true,
            Ok(RedisVerdict::NotRevoked) => false,
            Ok(RedisVerdict::Unknown) => revoked_in_postgres(&self.pool, caller).await?,
            Err(error) => {
                tracing::warn!(%error, "revocation checked in PostgreSQL: Redis is unavailable");
                revoked_in_postgres(&self.pool, caller).await?
            }
        };
        if revoked {
            Err(Error::TokenRevoked)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disabling_ends_the_tokens_issued_before_it_and_in_its_second() {
        assert!(revoked_by_disabling(Some(100), 99));
        assert!(revoked_by_disabling(Some(100), 100));
        assert!(!revoked_by_disabling(Some(100), 101));
        assert!(!revoked_by_disabling(None, 100));
    }
}
