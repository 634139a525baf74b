//! Storage of the activity service.
//!
//! `ActivityStore` is Redis: the hot path. A ping is one atomic script (one
//! round trip) that refuses a revoked token and otherwise writes the activity
//! key, clears the logout marker and updates the activity index together;
//! a logout is another, which also revokes the token.
//! `Accounts` is PostgreSQL: accounts and login_history, never touched by a ping.

use std::net::IpAddr;
use std::time::Duration;

use presence_core::events::{StatusChange, StatusEvent};
use presence_core::redis_client::Redis;
use presence_core::token::{Caller, Role};
use redis::Script;
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::ActivityError;
use crate::password;

/// KEYS: revoked token, last_activity, last_logout, activity index.
/// ARGV: now (Unix s), key TTL (s), user id.
/// Returns 0 if the token is revoked (nothing written), 1 otherwise.
const PING_SCRIPT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
redis.call('DEL', KEYS[3])
redis.call('ZADD', KEYS[4], ARGV[1], ARGV[3])
return 1
";

/// KEYS: revoked token, last_activity, last_logout, activity index.
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

#[derive(Clone)]
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
    /// revoked, in which case nothing is written and `InvalidToken` is returned.
    pub async fn record_activity(
        &self,
        user_id: Uuid,
        caller: &Caller,
        now: i64,
        key_ttl: Duration,
    ) -> Result<(), ActivityError> {
        let keys = self.redis.keys();
        let mut invocation = self.ping_script.prepare_invoke();
        invocation
            .key(keys.revoked_token(&caller.token_id))
            .key(keys.last_activity(user_id))
            .key(keys.last_logout(user_id))
            .key(keys.activity_index())
            .arg(now)
            .arg(key_ttl.as_secs())
            .arg(user_id.to_string());
        let recorded: i64 = self
            .redis
            .run(|mut connection| async move { invocation.invoke_async(&mut connection).await })
            .await?;
        if recorded == 1 {
            Ok(())
        } else {
            Err(ActivityError::InvalidToken("token revoked".into()))
        }
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
        let keys = self.redis.keys();
        let user_id = caller.user_id;
        // Keep the revocation a little past `exp`: verifiers allow clock leeway.
        let revocation_ttl = (caller.expires_at - now).max(0) + 60;
        let event = StatusEvent {
            user_id,
            change: StatusChange::Logout,
            at: now,
        };
        let mut invocation = self.logout_script.prepare_invoke();
        invocation
            .key(keys.revoked_token(&caller.token_id))
            .key(keys.last_activity(user_id))
            .key(keys.last_logout(user_id))
            .key(keys.activity_index())
            .arg(now)
            .arg(key_ttl.as_secs())
            .arg(user_id.to_string())
            .arg(revocation_ttl)
            .arg(keys.status_channel())
            .arg(event.to_json());
        let signed_out: i64 = self
            .redis
            .run(|mut connection| async move { invocation.invoke_async(&mut connection).await })
            .await?;
        Ok(signed_out == 1)
    }

    /// Tells status watchers that a user signed in. Best effort: the login is
    /// already in login_history, which is what makes the user online.
    pub async fn announce_login(&self, user_id: Uuid, now: i64) {
        let channel = self.redis.keys().status_channel();
        let event = StatusEvent {
            user_id,
            change: StatusChange::Login,
            at: now,
        };
        let published = self
            .redis
            .run(|mut connection| async move {
                redis::cmd("PUBLISH")
                    .arg(channel)
                    .arg(event.to_json())
                    .query_async::<i64>(&mut connection)
                    .await
            })
            .await;
        if let Err(error) = published {
            tracing::warn!(%error, "could not announce a login to status watchers");
        }
    }
}

/// An account as the sign-in check needs it.
#[derive(Debug, sqlx::FromRow)]
pub struct Account {
    pub id: Uuid,
    pub password_hash: String,
    #[sqlx(try_from = "String")]
    pub role: RoleColumn,
    pub display_name: String,
    pub disabled: bool,
}

/// The `role` column, parsed when the row is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleColumn(pub Role);

impl TryFrom<String> for RoleColumn {
    type Error = presence_core::Error;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse().map(RoleColumn)
    }
}

impl PartialEq<Role> for RoleColumn {
    fn eq(&self, other: &Role) -> bool {
        self.0 == *other
    }
}

/// Where a sign-in attempt came from, as recorded in login_history.
#[derive(Clone, Debug, Default)]
pub struct ClientInfo {
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
}

#[derive(Clone)]
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

    /// Failed sign-ins within the window, for this username and for this
    /// client address. Refusals by the throttle itself do not count, so an
    /// attacker cannot keep an account locked forever.
    pub async fn recent_failures(
        &self,
        username: &str,
        client: &ClientInfo,
        window_seconds: i64,
    ) -> Result<(i64, i64), ActivityError> {
        let counts: (i64, i64) = sqlx::query_as(
            "SELECT
               (SELECT count(*) FROM login_history
                 WHERE event = 'login_failure' AND failure_reason <> 'throttled'
                   AND username = $1 AND occurred_at > now() - make_interval(secs => $3)),
               (SELECT count(*) FROM login_history
                 WHERE event = 'login_failure' AND failure_reason <> 'throttled'
                   AND $2::inet IS NOT NULL AND client_ip = $2
                   AND occurred_at > now() - make_interval(secs => $3))",
        )
        .bind(username)
        .bind(client.ip)
        .bind(window_seconds as f64)
        .fetch_one(&self.pool)
        .await?;
        Ok(counts)
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

    /// Records a logout at `at` (Unix seconds), looking the username up.
    pub async fn record_logout(
        &self,
        user_id: Uuid,
        at: i64,
        client: &ClientInfo,
    ) -> Result<(), ActivityError> {
        sqlx::query(
            "INSERT INTO login_history (user_id, username, event, client_ip, user_agent, occurred_at)
             SELECT id, username, 'logout', $2, $3, to_timestamp($4) FROM users WHERE id = $1",
        )
        .bind(user_id)
        .bind(client.ip)
        .bind(client.user_agent.as_deref())
        .bind(at as f64)
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
}
