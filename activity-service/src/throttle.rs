//! Sign-in throttling, shaped so that guessing is slow but nobody can lock an
//! account's owner out:
//!
//! - per username from one client address ("pair"): after a few failures in
//!   the window, that address may not try that username again until the
//!   window has passed since its last counted failure;
//! - per client address, whatever the username: the same, with a higher limit
//!   (one address spraying many usernames);
//! - per username across every address: after a few failures the username is
//!   in backoff, and an address that has itself failed for it must wait
//!   `base × 2ⁿ` (capped) after the username's last failure before each
//!   further try. An address that has not failed for the username is never
//!   held back by it, so the owner's right password from their own address
//!   always gets checked, however many strangers are guessing.
//!
//! Refusals never count as failures, so they extend nothing; a success resets
//! the username's backoff and its pair.
//!
//! Every attempt is reserved before its password is checked: one short
//! transaction with one conditional upsert per scope (in `login_throttle`)
//! counts it as a failure in advance, or refuses it. Parallel guesses thus
//! see each other, and no lock is held while argon2 runs. A success, or an
//! attempt that could not be checked (busy, error), gives the reservation
//! back.

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use sqlx::{PgPool, Postgres, Transaction};

use crate::error::ActivityError;

/// Limits of the sign-in throttle (see the module comment).
#[derive(Clone, Copy, Debug)]
pub struct ThrottleSettings {
    /// Failures of one username from one client address per window.
    pub max_failures_per_pair: i32,
    /// Failures from one client address per window, whatever the username.
    pub max_failures_per_client: i32,
    /// Failures of one username, from every address, before its backoff starts.
    pub backoff_after_failures: i32,
    /// The first backoff wait; it doubles with each further failure.
    pub backoff_base: Duration,
    /// The longest backoff wait.
    pub backoff_max: Duration,
    /// How long a counted failure is remembered.
    pub window: Duration,
}

impl ThrottleSettings {
    /// How long a counter lives after its last failure: the window, or the
    /// longest backoff if that is longer (a backoff must not end early
    /// because its counter expired).
    fn counter_lifetime(&self) -> Duration {
        self.window.max(self.backoff_max)
    }
}

/// Which limit refused an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    Client,
    Pair,
    Backoff,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Client => "client address limit",
            Refusal::Pair => "username and address limit",
            Refusal::Backoff => "username backoff",
        }
    }
}

/// An attempt counted in advance as a failure in each scope, with the counts
/// it brought them to.
#[derive(Debug)]
#[must_use = "a reservation is a failure until it is given back"]
pub struct Reserved {
    username: String,
    client: String,
    client_failures: i32,
    pair_failures: i32,
    username_failures: i32,
}

#[derive(Debug)]
pub enum Reservation {
    Granted(Reserved),
    Refused(Refusal),
}

/// One scope's counter: starts again after `$5` seconds without a failure;
/// counts one more unless it already reached `$4`. No row back = refused.
const COUNT_FAILURE: &str = "
INSERT INTO login_throttle AS counter
       (scope, username, client, failures, last_failure_at, expires_at)
VALUES ($1, $2, $3, 1, now(), now() + make_interval(secs => $5))
ON CONFLICT (scope, username, client) DO UPDATE
   SET failures = CASE WHEN counter.expires_at <= now() THEN 1 ELSE counter.failures + 1 END,
       last_failure_at = now(),
       expires_at = now() + make_interval(secs => $5)
 WHERE counter.expires_at <= now() OR counter.failures < $4
RETURNING counter.failures";

/// The username's counter. Counts one more unless the username is in backoff
/// (`$3` failures or more), this address has failed for it before (`$2`) and
/// the wait `$4 × 2ⁿ` capped at `$5` seconds has not passed since its last
/// failure. No row back = refused.
const COUNT_USERNAME_FAILURE: &str = "
INSERT INTO login_throttle AS counter
       (scope, username, client, failures, last_failure_at, expires_at)
VALUES ('username', $1, '', 1, now(), now() + make_interval(secs => $6))
ON CONFLICT (scope, username, client) DO UPDATE
   SET failures = CASE WHEN counter.expires_at <= now() THEN 1 ELSE counter.failures + 1 END,
       last_failure_at = now(),
       expires_at = now() + make_interval(secs => $6)
 WHERE counter.expires_at <= now()
    OR NOT $2
    OR counter.failures < $3
    OR now() >= counter.last_failure_at + make_interval(secs =>
           least($4 * power(2, least(counter.failures - $3, 30)), $5))
RETURNING counter.failures";

/// Gives one counted failure back.
const UNCOUNT_FAILURE: &str = "
UPDATE login_throttle SET failures = greatest(failures - 1, 0)
 WHERE scope = $1 AND username = $2 AND client = $3";

const FORGET: &str =
    "DELETE FROM login_throttle WHERE scope = $1 AND username = $2 AND client = $3";

/// Deletes up to `$1` expired counters; rows another replica's purge is
/// deleting are skipped, not waited for.
const PURGE_EXPIRED: &str = "
WITH expired AS (
    SELECT scope, username, client FROM login_throttle
     WHERE expires_at < now()
     LIMIT $1
       FOR UPDATE SKIP LOCKED)
DELETE FROM login_throttle AS counter USING expired
 WHERE (counter.scope, counter.username, counter.client)
     = (expired.scope, expired.username, expired.client)";

#[derive(Debug, Clone)]
pub struct LoginThrottle {
    pool: PgPool,
    settings: ThrottleSettings,
}

impl LoginThrottle {
    pub fn new(pool: PgPool, settings: ThrottleSettings) -> Self {
        Self { pool, settings }
    }

    /// Counts this attempt as a failure in advance, or refuses it.
    pub async fn reserve(
        &self,
        username: &str,
        ip: Option<IpAddr>,
    ) -> Result<Reservation, ActivityError> {
        let settings = &self.settings;
        let client = client_key(ip);
        let lifetime = settings.counter_lifetime().as_secs_f64();
        // Every transaction touching these rows takes them in this order
        // (client, pair, username), so two of them never wait for each other.
        let mut transaction = self.pool.begin().await?;
        let client_failures = count(
            &mut transaction,
            ("client", "", &client),
            settings.max_failures_per_client,
            lifetime,
        )
        .await?;
        let Some(client_failures) = client_failures else {
            transaction.rollback().await?;
            return Ok(Reservation::Refused(Refusal::Client));
        };
        let pair_failures = count(
            &mut transaction,
            ("pair", username, &client),
            settings.max_failures_per_pair,
            lifetime,
        )
        .await?;
        let Some(pair_failures) = pair_failures else {
            transaction.rollback().await?;
            return Ok(Reservation::Refused(Refusal::Pair));
        };
        let address_failed_before = pair_failures > 1;
        let username_failures: Option<i32> = sqlx::query_scalar(COUNT_USERNAME_FAILURE)
            .bind(username)
            .bind(address_failed_before)
            .bind(settings.backoff_after_failures)
            .bind(settings.backoff_base.as_secs_f64())
            .bind(settings.backoff_max.as_secs_f64())
            .bind(lifetime)
            .fetch_optional(&mut *transaction)
            .await?;
        let Some(username_failures) = username_failures else {
            transaction.rollback().await?;
            return Ok(Reservation::Refused(Refusal::Backoff));
        };
        transaction.commit().await?;
        Ok(Reservation::Granted(Reserved {
            username: username.to_owned(),
            client,
            client_failures,
            pair_failures,
            username_failures,
        }))
    }

    /// The attempt failed: the reservation stays counted. Tells the admin
    /// when this failure made a limit take effect (once per limit reached,
    /// not once per refusal).
    pub fn failed(&self, reserved: Reserved) {
        let settings = &self.settings;
        let Reserved {
            username, client, ..
        } = &reserved;
        if reserved.client_failures == settings.max_failures_per_client {
            tracing::warn!(
                %client,
                failures = reserved.client_failures,
                "sign-ins from this client address are throttled"
            );
        }
        if reserved.pair_failures == settings.max_failures_per_pair {
            tracing::warn!(
                ?username,
                %client,
                failures = reserved.pair_failures,
                "sign-ins for this username from this client address are throttled"
            );
        }
        if reserved.username_failures == settings.backoff_after_failures {
            tracing::warn!(
                ?username,
                %client,
                failures = reserved.username_failures,
                "account in sign-in backoff: addresses that failed for it must wait"
            );
        }
    }

    /// The owner signed in: their username's backoff and this address's
    /// failures for it start again; the address's own count gets this
    /// attempt back. Best effort: the sign-in has happened either way.
    pub async fn succeeded(&self, reserved: Reserved) {
        let reset = async {
            let mut transaction = self.pool.begin().await?;
            for (statement, key) in [
                (UNCOUNT_FAILURE, ("client", "", reserved.client.as_str())),
                (
                    FORGET,
                    ("pair", reserved.username.as_str(), reserved.client.as_str()),
                ),
                (FORGET, ("username", reserved.username.as_str(), "")),
            ] {
                run(&mut transaction, statement, key).await?;
            }
            transaction.commit().await?;
            Ok::<(), ActivityError>(())
        };
        if let Err(error) = reset.await {
            tracing::warn!(%error, "could not reset the sign-in throttle after a success");
        }
    }

    /// The attempt was never checked (busy, or an error): gives it back in
    /// every scope. Best effort; a reservation left behind counts as one
    /// failure until the window passes.
    pub async fn release(&self, reserved: Reserved) {
        let released = async {
            let mut transaction = self.pool.begin().await?;
            for key in [
                ("client", "", reserved.client.as_str()),
                ("pair", reserved.username.as_str(), reserved.client.as_str()),
                ("username", reserved.username.as_str(), ""),
            ] {
                run(&mut transaction, UNCOUNT_FAILURE, key).await?;
            }
            transaction.commit().await?;
            Ok::<(), ActivityError>(())
        };
        if let Err(error) = released.await {
            tracing::warn!(%error, "could not give back a sign-in reservation");
        }
    }

    /// Deletes up to `batch` expired counters; returns how many.
    pub async fn purge_expired(&self, batch: i64) -> Result<u64, ActivityError> {
        let deleted = sqlx::query(PURGE_EXPIRED)
            .bind(batch)
            .execute(&self.pool)
            .await?;
        Ok(deleted.rows_affected())
    }
}

/// Runs `COUNT_FAILURE` for one scope: the new count, or None when refused.
async fn count(
    transaction: &mut Transaction<'_, Postgres>,
    (scope, username, client): (&str, &str, &str),
    limit: i32,
    lifetime_seconds: f64,
) -> Result<Option<i32>, ActivityError> {
    Ok(sqlx::query_scalar(COUNT_FAILURE)
        .bind(scope)
        .bind(username)
        .bind(client)
        .bind(limit)
        .bind(lifetime_seconds)
        .fetch_optional(&mut **transaction)
        .await?)
}

async fn run(
    transaction: &mut Transaction<'_, Postgres>,
    statement: &'static str,
    (scope, username, client): (&str, &str, &str),
) -> Result<(), ActivityError> {
    sqlx::query(statement)
        .bind(scope)
        .bind(username)
        .bind(client)
        .execute(&mut **transaction)
        .await?;
    Ok(())
}

/// The client as the throttle counts it: an IPv4 address, or the /64 network
/// of an IPv6 address (one subscriber usually holds a whole /64, so counting
/// single IPv6 addresses would let one attacker rotate through millions).
pub fn client_key(ip: Option<IpAddr>) -> String {
    match ip.as_ref().map(IpAddr::to_canonical) {
        None => "unknown".into(),
        Some(IpAddr::V4(address)) => address.to_string(),
        Some(IpAddr::V6(address)) => {
            let [a, b, c, d, ..] = address.segments();
            format!("{}/64", Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> String {
        client_key(Some(text.parse().unwrap()))
    }

    #[test]
    fn ipv4_addresses_count_one_by_one() {
        assert_eq!(key("203.0.113.7"), "203.0.113.7");
        assert_ne!(key("203.0.113.7"), key("203.0.113.8"));
    }

    #[test]
    fn ipv6_addresses_count_by_their_64_bit_network() {
        assert_eq!(key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(key("2001:db8:1:2:aaaa::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
    }

    #[test]
    fn ipv4_mapped_ipv6_addresses_count_as_ipv4() {
        assert_eq!(key("::ffff:203.0.113.7"), "203.0.113.7");
    }

    #[test]
    fn a_missing_address_is_one_shared_client() {
        assert_eq!(client_key(None), "unknown");
    }
}
