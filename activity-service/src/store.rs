//! Storage of the activity service.
//!
//! `ActivityStore` is Redis: the hot path. On a single Redis a ping is one
//! atomic script (one round trip) that refuses a revoked token (revoked by
//! its logout, or by its user's disabling) and otherwise writes the activity
//! key, clears the logout marker, updates the activity index and puts the
//! browser in the user's bounded set of browsers together; a logout is
//! another, which revokes the token, takes the browser out of the set and,
//! if no other browser of the user pinged within the threshold, clears the
//! activity (the user is offline at once). When Redis lost its data
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
//! - logout, three or four: is the token revoked? (if so nothing changes:
//!   idempotent); then leave the user's browsers, counting those left; if
//!   none, clear the activity, mark the logout and leave the index; then revoke
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

use presence_core::events::{StatusChange, StatusEvent};
use presence_core::threshold::ThresholdMinutes;
use presence_core::token::{Caller, Role};
use presence_store::keys::MAX_BROWSERS_PER_USER;
use presence_store::login_history::{self, EventRow};
use presence_store::redis_client::Redis;
use presence_store::revocation::{RedisVerdict, check_in_redis, redis_check, redis_verdict};
use redis::{Cmd, ExistenceCheck, Script, SetExpiry, SetOptions, Value};
use sqlx::PgPool;
use uuid::Uuid;

use crate::browser::BrowserId;
use crate::error::ActivityError;
use crate::password;

/// KEYS: revoked token, the user's revoked_before, revocations_complete,
/// last_activity, last_logout, presence index, browsers, browsers with
/// input, away index.
/// ARGV: now (Unix s), key TTL (s), user id, the token's iat (Unix s),
/// browser id ('' for none), the oldest ping still within the threshold,
/// the most browsers kept, what the ping says of input (`Input::as_arg`),
/// the oldest ping reporting input that still counts, the status channel and
/// the event announcing that the user became away or came back.
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
if ARGV[5] ~= '' then
  redis.call('ZADD', KEYS[7], ARGV[1], ARGV[5])
  redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', '(' .. ARGV[6])
  redis.call('ZREMRANGEBYRANK', KEYS[7], 0, -tonumber(ARGV[7]) - 1)
  redis.call('EXPIRE', KEYS[7], ARGV[2])
end
local input = ARGV[8]
local moved = 0
if input == 'unknown' then
  moved = redis.call('ZREM', KEYS[9], ARGV[3])
elseif input ~= '' then
  if input == 'input' then
    redis.call('ZADD', KEYS[8], ARGV[1], ARGV[5])
  else
    redis.call('ZREM', KEYS[8], ARGV[5])
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[8], '-inf', '(' .. ARGV[9])
  redis.call('ZREMRANGEBYRANK', KEYS[8], 0, -tonumber(ARGV[7]) - 1)
  if redis.call('ZCARD', KEYS[8]) == 0 then
    moved = redis.call('ZADD', KEYS[9], ARGV[1], ARGV[3])
  else
    redis.call('EXPIRE', KEYS[8], ARGV[2])
    moved = redis.call('ZREM', KEYS[9], ARGV[3])
  end
end
if moved == 1 then redis.call('PUBLISH', ARGV[10], ARGV[11]) end
return 1
";

/// KEYS: revoked token, last_activity, last_logout, presence index, browsers,
/// browsers with input, away index.
/// ARGV: now, key TTL, user id, revocation TTL, status channel, the logout
/// event, browser id ('' for none), the oldest ping still within the
/// threshold, the browser logout event.
/// Returns 0 if the token was already revoked (nothing written); 2 if
/// another browser of the user pinged within the threshold (only this
/// browser and its token are signed out); 1 if the user is now offline.
const LOGOUT_SCRIPT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[1], '1', 'EX', ARGV[4])
if ARGV[7] ~= '' then
  redis.call('ZREM', KEYS[5], ARGV[7])
  redis.call('ZREM', KEYS[6], ARGV[7])
end
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', '(' .. ARGV[8])
if redis.call('ZCARD', KEYS[5]) > 0 then
  redis.call('PUBLISH', ARGV[5], ARGV[9])
  return 2
end
redis.call('DEL', KEYS[2], KEYS[5], KEYS[6])
redis.call('SET', KEYS[3], ARGV[1], 'EX', ARGV[2])
redis.call('ZREM', KEYS[4], ARGV[3])
redis.call('ZREM', KEYS[7], ARGV[3])
redis.call('PUBLISH', ARGV[5], ARGV[6])
return 1
";

/// What a ping says of its user's input, with idle detection on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// Idle detection is off: nothing about input is read or stored.
    Off,
    /// On, but the ping does not say (no browser id or no `idle` field, or
    /// a service recording activity): presence without a verdict, so the
    /// user is not away.
    Unknown,
    /// The browser saw input within the idle delay.
    Recent,
    /// The browser saw none for the idle delay.
    Idle,
}

impl Input {
    fn as_arg(self) -> &'static str {
        match self {
            Self::Off => "",
            Self::Unknown => "unknown",
            Self::Recent => "input",
            Self::Idle => "idle",
        }
    }
}

/// What a logout did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignOut {
    /// The token was already revoked by an earlier logout: nothing changed.
    AlreadySignedOut,
    /// The user is offline: no other browser of theirs pinged within the threshold.
    Offline,
    /// This browser is signed out; another keeps the user online.
    StillOnline,
}

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
    pub async fn record_activity(&self, ping: Ping<'_>) -> Result<(), ActivityError> {
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
            .key(keys.browsers(ping.user_id))
            .arg(ping.now)
            .arg(ping.threshold.key_ttl().as_secs())
            .arg(ping.user_id.to_string())
            .arg(ping.caller.issued_at)
            .key(keys.browsers_with_input(ping.user_id))
            .key(keys.away_index_for(ping.user_id))
            .arg(ping.browser.map_or("", BrowserId::as_str))
            .arg(ping.now - ping.threshold.seconds())
            .arg(MAX_BROWSERS_PER_USER)
            .arg(ping.input().as_arg())
            .arg(ping.now - ping.input_counts_for)
            .arg(keys.status_channel())
            .arg(ping.away_event()?);
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
        let key_ttl = ping.threshold.key_ttl().as_secs();
        let mut writes = vec![
            Cmd::set_ex(keys.last_activity(ping.user_id), ping.now, key_ttl),
            Cmd::del(keys.last_logout(ping.user_id)),
            keys.presence_index_entry(ping.user_id, ping.now),
        ];
        if let Some(browser) = ping.browser {
            let browsers = keys.browsers(ping.user_id);
            writes.extend([
                Cmd::zadd(&browsers, browser.as_str(), ping.now),
                Cmd::zrembyscore(
                    &browsers,
                    "-inf",
                    format!("({}", ping.now - ping.threshold.seconds()),
                ),
                Cmd::zremrangebyrank(&browsers, 0, -(MAX_BROWSERS_PER_USER as isize) - 1),
                Cmd::expire(&browsers, key_ttl as i64),
            ]);
        }
        let away_index = keys.away_index_for(ping.user_id);
        let member = ping.user_id.to_string();
        let input = ping.input();
        let with_input = keys.browsers_with_input(ping.user_id);
        match (input, ping.browser) {
            (Input::Off, _) => {}
            (Input::Unknown, _) | (_, None) => writes.push(Cmd::zrem(&away_index, &member)),
            (Input::Recent | Input::Idle, Some(browser)) => {
                writes.push(if input == Input::Recent {
                    Cmd::zadd(&with_input, browser.as_str(), ping.now)
                } else {
                    Cmd::zrem(&with_input, browser.as_str())
                });
                writes.extend([
                    Cmd::zrembyscore(
                        &with_input,
                        "-inf",
                        format!("({}", ping.now - ping.input_counts_for),
                    ),
                    Cmd::zremrangebyrank(&with_input, 0, -(MAX_BROWSERS_PER_USER as isize) - 1),
                    Cmd::expire(&with_input, key_ttl as i64),
                    Cmd::zcard(&with_input),
                ]);
            }
        }
        let with_input_left = self.redis.batch_all(writes).await?.pop();
        // The away index is in another slot: one more round trip, for idle
        // detection only, once the browsers with input are counted.
        if matches!(input, Input::Recent | Input::Idle) && ping.browser.is_some() {
            let left: u64 = with_input_left
                .map(redis::from_redis_value)
                .transpose()
                .map_err(presence_store::Error::from)?
                .unwrap_or(0);
            let away = if left == 0 {
                Cmd::zadd(&away_index, &member, ping.now)
            } else {
                Cmd::zrem(&away_index, &member)
            };
            let moved: u64 = match self.redis.batch_all(vec![away]).await?.pop() {
                Some(value) => {
                    redis::from_redis_value(value).map_err(presence_store::Error::from)?
                }
                None => 0,
            };
            if moved == 1 {
                let announce = Cmd::publish(keys.status_channel(), ping.away_event()?);
                if let Err(error) = self.redis.batch_all(vec![announce]).await {
                    tracing::warn!(%error, "could not announce an away change to status watchers");
                }
            }
        }
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

    /// Signs the caller's browser out, revokes the token until it expires and
    /// tells status watchers, atomically: if no other browser of the user
    /// pinged within the threshold, also clears their activity and marks the
    /// logout (they are offline at once). Nothing changes when the token was
    /// already revoked (an earlier logout).
    pub async fn sign_out(
        &self,
        caller: &Caller,
        browser: Option<&BrowserId>,
        now: i64,
        threshold: ThresholdMinutes,
    ) -> Result<SignOut, ActivityError> {
        let logout = Logout {
            caller,
            browser,
            now,
            threshold,
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

    async fn sign_out_atomically(&self, logout: Logout<'_>) -> Result<SignOut, ActivityError> {
        let keys = self.redis.keys();
        let user_id = logout.caller.user_id;
        let mut invocation = self.logout_script.prepare_invoke();
        invocation
            .key(keys.revoked_token(&logout.caller.token_id))
            .key(keys.last_activity(user_id))
            .key(keys.last_logout(user_id))
            .key(keys.presence_index_for(user_id))
            .key(keys.browsers(user_id))
            .key(keys.browsers_with_input(user_id))
            .key(keys.away_index_for(user_id))
            .arg(logout.now)
            .arg(logout.threshold.key_ttl().as_secs())
            .arg(user_id.to_string())
            .arg(logout.revocation_ttl)
            .arg(keys.status_channel())
            .arg(logout.event.to_json()?)
            .arg(logout.browser.map_or("", BrowserId::as_str))
            .arg(logout.oldest_kept())
            .arg(logout.browser_event().to_json()?);
        let outcome: i64 = self
            .redis
            .run(|mut connection| async move { invocation.invoke_async(&mut connection).await })
            .await?;
        Ok(match outcome {
            0 => SignOut::AlreadySignedOut,
            2 => SignOut::StillOnline,
            _ => SignOut::Offline,
        })
    }

    /// The cluster logout (see the module comment): check, leave the
    /// browsers, clear (when no other browser is left), then revoke.
    async fn sign_out_in_steps(&self, logout: Logout<'_>) -> Result<SignOut, ActivityError> {
        let keys = self.redis.keys();
        let user_id = logout.caller.user_id;
        // Encoded before anything is written, so a failure leaves nothing half done.
        let offline_event = logout.event.to_json()?;
        let browser_event = logout.browser_event().to_json()?;
        if self.is_revoked(&logout.caller.token_id).await? {
            return Ok(SignOut::AlreadySignedOut);
        }
        let browsers = keys.browsers(user_id);
        let mut leave = vec![Cmd::zrembyscore(
            &browsers,
            "-inf",
            format!("({}", logout.oldest_kept()),
        )];
        if let Some(browser) = logout.browser {
            leave.push(Cmd::zrem(&browsers, browser.as_str()));
            leave.push(Cmd::zrem(
                keys.browsers_with_input(user_id),
                browser.as_str(),
            ));
        }
        leave.push(Cmd::zcard(&browsers));
        let left: u64 = match self.redis.batch_all(leave).await?.pop() {
            Some(value) => redis::from_redis_value(value).map_err(presence_store::Error::from)?,
            None => 0,
        };
        let (outcome, announcement) = if left > 0 {
            (SignOut::StillOnline, browser_event)
        } else {
            self.redis
                .batch_all(vec![
                    Cmd::del(keys.last_activity(user_id)),
                    Cmd::del(&browsers),
                    Cmd::del(keys.browsers_with_input(user_id)),
                    Cmd::zrem(keys.away_index_for(user_id), user_id.to_string()),
                    Cmd::set_ex(
                        keys.last_logout(user_id),
                        logout.now,
                        logout.threshold.key_ttl().as_secs(),
                    ),
                    Cmd::zrem(keys.presence_index_for(user_id), user_id.to_string()),
                ])
                .await?;
            (SignOut::Offline, offline_event)
        };
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
        Ok(if revoked == Value::Nil {
            SignOut::AlreadySignedOut
        } else {
            outcome
        })
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
        commands.push(Cmd::zscore(
            keys.away_index_for(caller.user_id),
            caller.user_id.to_string(),
        ));
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
        let away_at: Option<f64> =
            redis::from_redis_value(next()).map_err(presence_store::Error::from)?;
        // As the admin service judges it: the last ping put the user there.
        let away = away_at
            .zip(last_activity)
            .is_some_and(|(away, ping)| away as i64 >= ping && away as i64 >= since);
        Ok((
            verdict,
            OwnActivity {
                last_activity,
                browsers,
                away,
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
    /// In the away index by their last ping (read whatever the setting; it
    /// only counts while idle detection is on).
    pub away: bool,
}

/// What one ping writes, whichever way it is sent.
#[derive(Debug)]
pub struct Ping<'a> {
    pub user_id: Uuid,
    /// The caller, whose token must not be revoked.
    pub caller: &'a Caller,
    /// The browser that pinged, counted among the user's browsers.
    pub browser: Option<&'a BrowserId>,
    /// What the ping says of input (`Input::Off` while idle detection is off).
    pub input: Input,
    /// How long a ping that reported input keeps its browser "with input"
    /// (seconds): a little over two ping intervals, so one lost ping does not
    /// make its user away, and a tab closed without a word stops counting.
    pub input_counts_for: i64,
    pub now: i64,
    pub threshold: ThresholdMinutes,
}

impl Ping<'_> {
    /// Announces that the user became away or came back (sent only then;
    /// not even encoded while idle detection is off).
    fn away_event(&self) -> Result<String, ActivityError> {
        if self.input == Input::Off {
            return Ok(String::new());
        }
        let event = StatusEvent {
            user_id: self.user_id,
            change: StatusChange::AwayChanged,
            at: self.now,
        };
        Ok(event.to_json()?)
    }

    /// Input can only be told of a browser: without its id, presence alone.
    fn input(&self) -> Input {
        match (self.input, self.browser) {
            (Input::Recent | Input::Idle, None) => Input::Unknown,
            (input, _) => input,
        }
    }
}

/// What one logout writes, whichever way it is sent.
struct Logout<'a> {
    caller: &'a Caller,
    browser: Option<&'a BrowserId>,
    now: i64,
    threshold: ThresholdMinutes,
    revocation_ttl: u64,
    /// Announced when the user goes offline.
    event: StatusEvent,
}

impl Logout<'_> {
    /// The oldest ping that still makes a browser count as the user's.
    fn oldest_kept(&self) -> i64 {
        self.now - self.threshold.seconds()
    }

    /// Announced when another browser keeps the user online.
    fn browser_event(&self) -> StatusEvent {
        StatusEvent {
            change: StatusChange::BrowserLogout,
            ..self.event.clone()
        }
    }
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

    /// The last `limit` login_history rows of `user_id`, newest first.
    pub async fn recent_events(
        &self,
        user_id: Uuid,
        limit: i64,
    ) -> Result<Vec<EventRow>, ActivityError> {
        Ok(login_history::recent_events(&self.pool, user_id, limit).await?)
    }

    /// Whether PostgreSQL records the caller's token as revoked (for when
    /// Redis cannot say).
    pub async fn is_revoked(&self, caller: &Caller) -> Result<bool, ActivityError> {
        Ok(presence_store::revocation::revoked_in_postgres(&self.pool, caller).await?)
    }
}
