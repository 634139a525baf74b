//! Storage of the activity service.
//!
//! `ActivityStore` is Redis: the hot path. On a single Redis a ping is one
//! atomic script (one round trip) that refuses a revoked token (revoked by
//! its logout, or by its user's disabling) and otherwise writes the activity
//! key, clears the logout marker and updates the activity index together; a
//! logout is another, which also revokes the token. When Redis lost its data
//! and the revocations are not back yet (no `revocations_complete` marker),
//! a ping is refused as unavailable rather than risk a revoked token.
//!
//! On Redis Cluster those keys live in different slots, which no script may
//! span, so the same guarantees are kept in steps:
//! - ping, two round trips: is the token revoked, or can Redis not vouch for
//!   it? (if so nothing is written);
//!   then the three writes in one batch, the activity key before the index
//!   entry, so a reader sees an index entry ahead of its key for at most the
//!   moment between them (or, if a master fails in between, until the next ping);
//! - logout, three: is the token revoked? (if so nothing changes: idempotent);
//!   then clear the activity, mark the logout and leave the index; then revoke
//!   the token with `SET NX`, whose answer says which of two concurrent logouts
//!   was first (that one alone writes the login_history row). Revoking last
//!   means a logout that failed half-way is retried in full by the client,
//!   rather than being taken for done.
//!
//! What a cluster cannot promise: a ping racing a logout *with the same token*
//! may land just after it (the user then shows online until the threshold
//! passes, as if the ping had come first).
//!
//! A user's own records (`GetMyPresence`) are read with their token's
//! revocation in one batch: on a cluster its commands go to their slots at once.
//!
//! `Accounts` is PostgreSQL: accounts and login_history, never touched by a ping.
//! (The sign-in throttle's counters live in `throttle`, their purge and that
//! of old login_history rows in `retention`.)

use std::net::IpAddr;
use std::time::Duration;

use presence_core::events::{StatusChange, StatusEvent};
use presence_core::token::{Caller, Role};
use presence_store::keys::MAX_BROWSERS_PER_USER;
use presence_store::redis_client::Redis;
use presence_store::revocation::{RedisVerdict, check_in_redis, redis_check, redis_verdict};
use redis::{Cmd, ExistenceCheck, Script, SetExpiry, SetOptions, Value};
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::ActivityError;
use crate::password;

/// KEYS: revoked token, the user's revoked_before, revocations_complete,
/// last_activity, last_logout, presence index.
/// ARGV: now (Unix s), key TTL (s), user id, the token's iat (Unix s).
/// Returns 0 if the token is revoked, 2 if Redis cannot vouch for it (its
/// revocations are not restored yet), nothing written either way; 1 otherwise.
const PING_SCRIPT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local before = redis.call('GET', KEYS[2])
if before and tonumber(before) >= tonumber(ARGV[4]) then return 0 end
if redis.call('EXISTS', KEYS[3]) == 0 then return 2 end
redis.call('SET', KEYS[4], ARGV[1], 'EX', ARGV[2])
redis.call('DEL', KEYS[5])
redis.call('ZADD', KEYS[6], 'GT', ARGV[1], ARGV[3])
return 1
";

/// KEYS: revoked token, last_activity, last_logout, presence index.
/// ARGV: now, key TTL, user id, revocation TTL, status channel, event.
/// Returns 0 if the token was already revoked (nothing written), 1 otherwise.
const LOGOUT_SCRIPT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('DEL', KEYS[2])
redis.call('SET', KEYS[3], ARGV[1], 'EX', ARGV[2])
redis.call('ZREM', KEYS[4], ARGV[3])
redis.call('SET', KEYS[1], '1', 'EX', ARGV[4])
redis.call('PUBLISH', ARGV[5], ARGV[6])
return 1
";

#[derive(Debug, Clone)]
pub struct ActivityStore {
    redis: Redis,
    ping_script: Script,
    logout_script: Script,
}

impl ActivityStore {
    pub fn new(redis: Redis) -> Self {
        Self {
            redis,
            ping_script: Script::new(PING_SCRIPT),
            logout_script: Script::new(LOGOUT_SCRIPT),
        }
    }

    /// Records `user_id` as active at `now`, unless the caller's token has been
    /// revoked (`InvalidToken`) or Redis cannot tell (`RevocationUnknown`), in
    /// which cases nothing is written.
    pub async fn record_activity(
        &self,
        user_id: Uuid,
        caller: &Caller,
        now: i64,
        key_ttl: Duration,
    ) -> Result<(), ActivityError> {
        let ping = Ping {
            user_id,
            caller,
            now,
            key_ttl,
        };
        let verdict = if self.redis.is_cluster() {
            self.record_activity_in_steps(ping).await?
        } else {
            self.record_activity_atomically(ping).await?
        };
        match verdict {
            RedisVerdict::NotRevoked => Ok(()),
            RedisVerdict::Revoked => Err(presence_store::Error::TokenRevoked.into()),
            RedisVerdict::Unknown => Err(presence_store::Error::RevocationUnknown {
                reason: "Redis lost its data and its revocations are not restored yet",
                source: None,
            }
            .into()),
        }
    }

    async fn record_activity_atomically(
        &self,
        ping: Ping<'_>,
    ) -> Result<RedisVerdict, ActivityError> {
        let keys = self.redis.keys();
        let mut invocation = self.ping_script.prepare_invoke();
        invocation
            .key(keys.revoked_token(&ping.caller.token_id))
            .key(keys.revoked_before(ping.caller.user_id))
            .key(keys.revocations_complete())
            .key(keys.last_activity(ping.user_id))
            .key(keys.last_logout(ping.user_id))
            .key(keys.presence_index_for(ping.user_id))
            .arg(ping.now)
            .arg(ping.key_ttl.as_secs())
            .arg(ping.user_id.to_string())
            .arg(ping.caller.issued_at);
        let outcome: i64 = self
            .redis
            .run(|mut connection| async move { invocation.invoke_async(&mut connection).await })
            .await?;
        Ok(match outcome {
            1 => RedisVerdict::NotRevoked,
            2 => RedisVerdict::Unknown,
            _ => RedisVerdict::Revoked,
        })
    }

    /// The cluster ping (see the module comment): check, then one batch.
    async fn record_activity_in_steps(
        &self,
        ping: Ping<'_>,
    ) -> Result<RedisVerdict, ActivityError> {
        let verdict = check_in_redis(&self.redis, ping.caller).await?;
        if verdict != RedisVerdict::NotRevoked {
            return Ok(verdict);
        }
        let keys = self.redis.keys();
        self.redis
            .batch_all(vec![
                Cmd::set_ex(
                    keys.last_activity(ping.user_id),
                    ping.now,
                    ping.key_ttl.as_secs(),
                ),
                Cmd::del(keys.last_logout(ping.user_id)),
                keys.presence_index_entry(ping.user_id, ping.now),
            ])
            .await?;
        Ok(RedisVerdict::NotRevoked)
    }

    async fn is_revoked(&self, token_id: &str) -> Result<bool, ActivityError> {
        let key = self.redis.keys().revoked_token(token_id);
        Ok(self
            .redis
            .run(
                |mut connection| async move { Cmd::exists(key).query_async(&mut connection).await },
            )
            .await?)
    }

    /// Clears the caller's activity, marks the logout, revokes the token until
    /// it expires and tells status watchers, atomically. Returns false when
    /// the token was already revoked (an earlier logout): nothing changes then.
    pub async fn sign_out(
        &self,
        caller: &Caller,
        now: i64,
        key_ttl: Duration,
    ) -> Result<bool, ActivityError> {
        let logout = Logout {
            caller,
            now,
            key_ttl,
            // Keep the revocation a little past `exp`: verifiers allow clock leeway.
            revocation_ttl: (caller.expires_at - now).max(0) as u64 + 60,
            event: StatusEvent {
                user_id: caller.user_id,
                change: StatusChange::Logout,
                at: now,
            },
        };
        if self.redis.is_cluster() {
            self.sign_out_in_steps(logout).await
        } else {
            self.sign_out_atomically(logout).await
        }
    }

    async fn sign_out_atomically(&self, logout: Logout<'_>) -> Result<bool, ActivityError> {
        let keys = self.redis.keys();
        let user_id = logout.caller.user_id;
        let mut invocation = self.logout_script.prepare_invoke();
        invocation
            .key(keys.revoked_token(&logout.caller.token_id))
            .key(keys.last_activity(user_id))
            .key(keys.last_logout(user_id))
            .key(keys.presence_index_for(user_id))
            .arg(logout.now)
            .arg(logout.key_ttl.as_secs())
            .arg(user_id.to_string())
            .arg(logout.revocation_ttl)
            .arg(keys.status_channel())
            .arg(logout.event.to_json()?);
        let signed_out: i64 = self
            .redis
            .run(|mut connection| async move { invocation.invoke_async(&mut connection).await })
            .await?;
        Ok(signed_out == 1)
    }

    /// The cluster logout (see the module comment): check, clear, then revoke.
    async fn sign_out_in_steps(&self, logout: Logout<'_>) -> Result<bool, ActivityError> {
        let keys = self.redis.keys();
        let user_id = logout.caller.user_id;
        // Encoded before anything is written, so a failure leaves nothing half done.
        let announcement = logout.event.to_json()?;
        if self.is_revoked(&logout.caller.token_id).await? {
            return Ok(false);
        }
        self.redis
            .batch_all(vec![
                Cmd::del(keys.last_activity(user_id)),
                Cmd::set_ex(
                    keys.last_logout(user_id),
                    logout.now,
                    logout.key_ttl.as_secs(),
                ),
                Cmd::zrem(keys.presence_index_for(user_id), user_id.to_string()),
            ])
            .await?;
        let revoke_once = SetOptions::default()
            .conditional_set(ExistenceCheck::NX)
            .with_expiration(SetExpiry::EX(logout.revocation_ttl));
        let mut results = self
            .redis
            .batch(vec![
                Cmd::set_options(keys.revoked_token(&logout.caller.token_id), 1, revoke_once),
                Cmd::publish(keys.status_channel(), announcement),
            ])
            .await?
            .into_iter();
        let revoked = results
            .next()
            .unwrap_or(Ok(Value::Nil))
            .map_err(presence_store::Error::from)?;
        // Watchers also find the logout at their next full read of the index.
        if let Some(Err(error)) = results.next() {
            tracing::warn!(%error, "could not announce a logout to status watchers");
        }
        // `SET NX` answers nil when another logout with this token came first.
        Ok(revoked != Value::Nil)
    }

    /// Puts a fresh login in the presence index (so the counts include the
    /// user before any ping) and tells status watchers, in one round trip.
    /// Best effort: the login is already in login_history, which is what makes
    /// the user online, and the admin service reconciles the index from it.
    pub async fn record_login(&self, user_id: Uuid, now: i64) {
        let keys = self.redis.keys();
        let event = StatusEvent {
            user_id,
            change: StatusChange::Login,
            at: now,
        };
        let mut commands = vec![keys.presence_index_entry(user_id, now)];
        match event.to_json() {
            Ok(payload) => commands.push(Cmd::publish(keys.status_channel(), payload)),
            Err(error) => tracing::error!(%error, "could not announce a login to status watchers"),
        }
        let written = self.redis.batch_all(commands).await;
        if let Err(error) = written {
            tracing::warn!(%error, "could not put a login in the presence index");
        }
    }

    /// The caller's own activity, with what Redis says of their token, in
    /// one round trip (on a cluster, one batch): their last ping and their
    /// browsers that pinged at or after `since` (Unix seconds).
    pub async fn own_activity(
        &self,
        caller: &Caller,
        since: i64,
    ) -> Result<(RedisVerdict, OwnActivity), ActivityError> {
        let keys = self.redis.keys();
        let mut commands = redis_check(&self.redis, caller);
        let checks = commands.len();
        commands.push(Cmd::get(keys.last_activity(caller.user_id)));
        let mut browsers = Cmd::new();
        browsers
            .arg("ZREVRANGEBYSCORE")
            .arg(keys.browsers(caller.user_id))
            .arg("+inf")
            .arg(since)
            .arg("WITHSCORES")
            .arg("LIMIT")
            .arg(0)
            .arg(MAX_BROWSERS_PER_USER);
        commands.push(browsers);
        let mut values = self.redis.batch_all(commands).await?;
        let reads = values.split_off(checks.min(values.len()));
        let verdict = redis_verdict(values, caller)?;
        let mut reads = reads.into_iter();
        let mut next = || reads.next().unwrap_or(Value::Nil);
        let last_activity: Option<i64> =
            redis::from_redis_value(next()).map_err(presence_store::Error::from)?;
        // Scores are read as floats: whole seconds, however Redis spells them.
        let browsers: Vec<(String, f64)> =
            redis::from_redis_value(next()).map_err(presence_store::Error::from)?;
        let browsers = browsers
            .into_iter()
            .map(|(id, at)| (id, at as i64))
            .collect();
        Ok((
            verdict,
            OwnActivity {
                last_activity,
                browsers,
            },
        ))
    }
}

/// What Redis holds of one user's activity.
#[derive(Debug, Default)]
pub struct OwnActivity {
    /// Their last ping (Unix seconds), while its key lives.
    pub last_activity: Option<i64>,
    /// (browser id, last ping in Unix seconds), most recent first.
    pub browsers: Vec<(String, i64)>,
}

/// What one ping writes, whichever way it is sent.
struct Ping<'a> {
    user_id: Uuid,
    /// The caller, whose token must not be revoked.
    caller: &'a Caller,
    now: i64,
    key_ttl: Duration,
}

/// What one logout writes, whichever way it is sent.
struct Logout<'a> {
    caller: &'a Caller,
    now: i64,
    key_ttl: Duration,
    revocation_ttl: u64,
    event: StatusEvent,
}

/// An account as the sign-in check needs it.
#[derive(Debug, sqlx::FromRow)]
pub struct Account {
    pub id: Uuid,
    pub password_hash: String,
    /// Parsed when the row is read (`Role: TryFrom<String>`).
    #[sqlx(try_from = "String")]
    pub role: Role,
    pub display_name: String,
    pub disabled: bool,
}

/// Where a sign-in attempt came from, as recorded in login_history.
#[derive(Clone, Debug, Default)]
pub struct ClientInfo {
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Accounts {
    pool: PgPool,
}

impl Accounts {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub async fn find_by_username(&self, username: &str) -> Result<Option<Account>, ActivityError> {
        let account = sqlx::query_as::<_, Account>(
            "SELECT id, password_hash, role, display_name, disabled FROM users WHERE username = $1",
        )
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        Ok(account)
    }

    pub async fn user_exists(&self, user_id: Uuid) -> Result<bool, ActivityError> {
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)")
            .bind(user_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(exists)
    }

    pub async fn record_login_success(
        &self,
        user_id: Uuid,
        username: &str,
        client: &ClientInfo,
    ) -> Result<(), ActivityError> {
        self.record(Some(user_id), username, "login_success", None, client)
            .await
    }

    pub async fn record_login_failure(
        &self,
        user_id: Option<Uuid>,
        username: &str,
        reason: &'static str,
        client: &ClientInfo,
    ) -> Result<(), ActivityError> {
        self.record(user_id, username, "login_failure", Some(reason), client)
            .await
    }

    /// Records the logout of `token` at `at` (Unix seconds), looking the
    /// username up. The row carries the revoked token's id and expiry, the
    /// record that outlives Redis; a second logout with the same token adds
    /// no row. A token of a user without a row (an external issuer's) is
    /// still recorded as revoked.
    pub async fn record_logout(
        &self,
        token: &Caller,
        at: i64,
        client: &ClientInfo,
    ) -> Result<(), ActivityError> {
        sqlx::query(
            "INSERT INTO login_history
                    (user_id, username, event, client_ip, user_agent, occurred_at,
                     token_id, token_expires_at)
             SELECT u.id, coalesce(u.username, ''), 'logout', $2, $3, to_timestamp($4),
                    $5, to_timestamp($6)
             FROM (SELECT $1::uuid AS wanted) w LEFT JOIN users u ON u.id = w.wanted
             ON CONFLICT (token_id) WHERE token_id IS NOT NULL DO NOTHING",
        )
        .bind(token.user_id)
        .bind(client.ip)
        .bind(client.user_agent.as_deref())
        .bind(at as f64)
        .bind(&token.token_id)
        .bind(token.expires_at as f64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn record(
        &self,
        user_id: Option<Uuid>,
        username: &str,
        event: &'static str,
        failure_reason: Option<&'static str>,
        client: &ClientInfo,
    ) -> Result<(), ActivityError> {
        sqlx::query(
            "INSERT INTO login_history (user_id, username, event, failure_reason, client_ip, user_agent)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(user_id)
        .bind(username)
        .bind(event)
        .bind(failure_reason)
        .bind(client.ip)
        .bind(client.user_agent.as_deref())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Creates the account or updates it in place; returns its id.
    pub async fn upsert_user(
        &self,
        username: &str,
        password: &str,
        role: Role,
        display_name: &str,
        disabled: bool,
    ) -> Result<Uuid, ActivityError> {
        let hash = password::hash(password.to_owned()).await?;
        let id: Uuid = sqlx::query_scalar(
            "INSERT INTO users (id, username, password_hash, role, display_name, disabled)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (username) DO UPDATE
               SET password_hash = EXCLUDED.password_hash, role = EXCLUDED.role,
                   display_name = EXCLUDED.display_name, disabled = EXCLUDED.disabled,
                   updated_at = now()
             RETURNING id",
        )
        .bind(Uuid::new_v4())
        .bind(username)
        .bind(hash)
        .bind(role.as_str())
        .bind(display_name)
        .bind(disabled)
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    /// The last `limit` login_history rows of `user_id`, newest first, ties
    /// (rows of one instant) by the order they were written; read through
    /// the index login_history_by_user.
    pub async fn recent_events(
        &self,
        user_id: Uuid,
        limit: i64,
    ) -> Result<Vec<OwnEvent>, ActivityError> {
        let mut rows = sqlx::query_as::<_, OwnEvent>(
            "SELECT id, event, occurred_at, failure_reason,
                    host(client_ip) AS client_address, left(user_agent, 256) AS user_agent
             FROM login_history
             WHERE user_id = $1
             ORDER BY occurred_at DESC, id DESC
             LIMIT $2",
        )
        .bind(user_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        // A logout row carries the whole second its logout took effect, a
        // login row the instant it was written: within one second, the order
        // of writing says which came first.
        rows.sort_by_key(|row| std::cmp::Reverse((row.occurred_at.timestamp(), row.id)));
        Ok(rows)
    }

    /// Whether PostgreSQL records the caller's token as revoked (for when
    /// Redis cannot say).
    pub async fn is_revoked(&self, caller: &Caller) -> Result<bool, ActivityError> {
        Ok(presence_store::revocation::revoked_in_postgres(&self.pool, caller).await?)
    }
}

/// One login_history row as its user sees it.
#[derive(Debug, sqlx::FromRow)]
pub struct OwnEvent {
    /// Its row in login_history: the order rows were written.
    pub id: i64,
    pub event: String,
    pub occurred_at: chrono::DateTime<chrono::Utc>,
    pub failure_reason: Option<String>,
    /// `host(client_ip)`: the address without its mask.
    pub client_address: Option<String>,
    /// At most 256 characters (cut in SQL, on characters, not bytes).
    pub user_agent: Option<String>,
}
