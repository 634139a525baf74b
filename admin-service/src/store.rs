//! Storage reads and writes of the admin service.
//!
//! `Directory` is PostgreSQL: users, their last login and logout from
//! login_history, the user total and the settings. `ActivityReader` is Redis:
//! activity timestamps, logout markers and the presence index (all of its
//! shards on Redis Cluster). Each listing costs one query to each, whatever
//! the page size.

use std::collections::HashMap;

use presence_core::threshold::{IdleMinutes, ThresholdMinutes};
use presence_store::redis_client::Redis;
use presence_store::settings::{self, ActivitySettings};
use redis::Cmd;
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::AdminError;
use crate::search::SearchQuery;
use crate::status::Observations;
use presence_store::login_history::{self, EventRow};

/// Which users a listing shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListFilter {
    All,
    Online,
    Offline,
}

/// A user as listings show it, with the login_history facts of the status rule.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct UserRow {
    pub id: Uuid,
    pub username: String,
    pub display_name: String,
    pub last_login: Option<i64>,
    pub last_logout: Option<i64>,
}

/// A user with whether their account is disabled, for lookups by id (which,
/// unlike listings, find disabled accounts too).
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct UserRecord {
    #[sqlx(flatten)]
    pub user: UserRow,
    pub disabled: bool,
}

/// A user whose last successful login is recent enough to make them online by
/// login_history alone (if no logout followed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecentLogin {
    pub user_id: Uuid,
    pub last_login: i64,
    pub last_logout: Option<i64>,
}

impl RecentLogin {
    /// What PostgreSQL alone says of this user: rule 2's facts.
    pub fn observations(&self) -> Observations {
        Observations {
            last_login: Some(self.last_login),
            last_logout_row: self.last_logout,
            ..Observations::default()
        }
    }
}

#[derive(Debug, Default)]
pub struct PageRows {
    /// Ordered by username.
    pub rows: Vec<UserRow>,
    pub total_users: i64,
}

/// The columns every user listing selects; timestamps as whole Unix seconds.
const USER_COLUMNS: &str = "
    u.id, u.username, u.display_name,
    (SELECT floor(extract(epoch FROM max(h.occurred_at)))::bigint FROM login_history h
      WHERE h.user_id = u.id AND h.event = 'login_success') AS last_login,
    (SELECT floor(extract(epoch FROM max(h.occurred_at)))::bigint FROM login_history h
      WHERE h.user_id = u.id AND h.event = 'logout') AS last_logout";

#[derive(Debug, Clone)]
pub struct Directory {
    pool: PgPool,
}

/// Recent successful logins (since `$1`, Unix seconds) of enabled users, with
/// their last logout: the candidates for "online by login_history".
const RECENT_LOGINS_CTE: &str = "
    recent AS (
        SELECT DISTINCT ON (h.user_id) h.user_id, h.occurred_at
        FROM login_history h
        WHERE h.event = 'login_success' AND h.occurred_at >= to_timestamp($1::float8)
        ORDER BY h.user_id, h.occurred_at DESC
    ),
    recent_status AS (
        SELECT r.user_id,
               floor(extract(epoch FROM r.occurred_at))::bigint AS last_login,
               (SELECT floor(extract(epoch FROM max(l.occurred_at)))::bigint FROM login_history l
                 WHERE l.user_id = r.user_id AND l.event = 'logout') AS last_logout
        FROM recent r JOIN users u ON u.id = r.user_id AND NOT u.disabled
    )";

/// One condition per query word, on parameters `$first`...: the word,
/// folded as the names are (`presence_fold`) and with every character but
/// letters, digits and spaces escaped (so `%`, `.` or `(` are literal), must
/// follow the start of the text or a character that is neither a letter nor a
/// digit: it starts a word of the username or of the display name. The
/// trigram index on `search_text` serves such a regular expression.
fn search_clause(first: usize, words: usize) -> String {
    (first..first + words)
        .map(|n| {
            format!(
                r"AND u.search_text ~ ('(^|[^[:alnum:]])' || regexp_replace(
                    presence_fold(${n}::text), '([^[:alnum:][:space:]])', '\\\1', 'g'))"
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

type PageRecord = (
    Option<Uuid>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

/// A login or logout of login_history, in the order rows were written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryEvent {
    pub row: i64,
    pub user_id: Uuid,
    pub login: bool,
    pub at: i64,
}

impl Directory {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Up to `limit` enabled users after `after_username` in username order
    /// (only those of `among`, when given, and those matching `search`) and
    /// the user total, in one query.
    pub async fn page(
        &self,
        after_username: &str,
        limit: i64,
        among: Option<&[Uuid]>,
        search: &SearchQuery,
    ) -> Result<PageRows, AdminError> {
        // Two statements, so each gets its own plan.
        let among_clause = if among.is_some() {
            "AND u.id = ANY($3)"
        } else {
            ""
        };
        let search_clause = search_clause(4, search.words().len());
        let query = format!(
            "WITH page AS (
                SELECT {USER_COLUMNS}
                FROM users u
                WHERE NOT u.disabled AND u.username > $1 {among_clause} {search_clause}
                ORDER BY u.username
                LIMIT $2
             )
             SELECT id, username, display_name, last_login, last_logout, NULL::bigint FROM page
             UNION ALL
             SELECT NULL, NULL, NULL, NULL, NULL, enabled_users FROM user_totals"
        );
        let mut statement = sqlx::query_as(&query)
            .bind(after_username)
            .bind(limit)
            .bind(among.unwrap_or_default());
        for word in search.words() {
            statement = statement.bind(word);
        }
        // A search is planned with its words (an unnamed statement is planned
        // at each call): a word most users have is best found by walking
        // users in username order, a rare one through the trigram index, and
        // only the words' statistics tell which (docs/benchmarks.md, Search).
        let records: Vec<PageRecord> = statement
            .persistent(search.is_empty())
            .fetch_all(&self.pool)
            .await?;
        let mut page = PageRows::default();
        for (id, username, display_name, last_login, last_logout, total) in records {
            match id {
                Some(id) => page.rows.push(UserRow {
                    id,
                    username: username.unwrap_or_default(),
                    display_name: display_name.unwrap_or_default(),
                    last_login,
                    last_logout,
                }),
                None => page.total_users = total.unwrap_or_default(),
            }
        }
        // UNION ALL does not promise to keep the page's order.
        page.rows.sort_by(|a, b| a.username.cmp(&b.username));
        Ok(page)
    }

    /// Logins and logouts of known users written after row `after_row`, oldest
    /// first, at most `limit`.
    pub async fn history_after(
        &self,
        after_row: i64,
        limit: i64,
    ) -> Result<Vec<HistoryEvent>, AdminError> {
        let records: Vec<(i64, Uuid, bool, i64)> = sqlx::query_as(
            "SELECT id, user_id, event = 'login_success',
                    floor(extract(epoch FROM occurred_at))::bigint
             FROM login_history
             WHERE id > $1 AND user_id IS NOT NULL AND event IN ('login_success', 'logout')
             ORDER BY id
             LIMIT $2",
        )
        .bind(after_row)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(records
            .into_iter()
            .map(|(row, user_id, login, at)| HistoryEvent {
                row,
                user_id,
                login,
                at,
            })
            .collect())
    }

    /// The newest row of login_history (0 when empty).
    pub async fn last_history_row(&self) -> Result<i64, AdminError> {
        Ok(
            sqlx::query_scalar("SELECT coalesce(max(id), 0)::bigint FROM login_history")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Recent logins since `since` (Unix seconds), with the last logout of each.
    pub async fn recent_logins(&self, since: i64) -> Result<Vec<RecentLogin>, AdminError> {
        let query = format!(
            "WITH {RECENT_LOGINS_CTE} SELECT user_id, last_login, last_logout FROM recent_status"
        );
        let records: Vec<(Uuid, i64, Option<i64>)> = sqlx::query_as(&query)
            .bind(since as f64)
            .fetch_all(&self.pool)
            .await?;
        Ok(records
            .into_iter()
            .map(|(user_id, last_login, last_logout)| RecentLogin {
                user_id,
                last_login,
                last_logout,
            })
            .collect())
    }

    /// The users with these ids (disabled ones included), in no particular order.
    pub async fn users_by_ids(&self, ids: &[Uuid]) -> Result<Vec<UserRecord>, AdminError> {
        let query = format!("SELECT {USER_COLUMNS}, u.disabled FROM users u WHERE u.id = ANY($1)");
        let rows = sqlx::query_as::<_, UserRecord>(&query)
            .bind(ids)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows)
    }

    /// The last `limit` login_history rows of `user`, newest first.
    pub async fn recent_events(&self, user: Uuid, limit: i64) -> Result<Vec<EventRow>, AdminError> {
        Ok(login_history::recent_events(&self.pool, user, limit).await?)
    }

    pub async fn settings(&self) -> Result<ActivitySettings, AdminError> {
        Ok(settings::load(&self.pool).await?)
    }

    /// Applies the fields of `change` and audits each one that changed, in
    /// one transaction; the settings trigger notifies every process when it
    /// commits.
    pub async fn update_settings(
        &self,
        change: SettingsChange,
        admin_id: Uuid,
    ) -> Result<ActivitySettings, AdminError> {
        let mut transaction = self.pool.begin().await?;
        let (threshold, idle_enabled, idle_after): (i32, bool, i32) = sqlx::query_as(
            "SELECT threshold_minutes, idle_detection_enabled, idle_after_minutes
             FROM settings FOR UPDATE",
        )
        .fetch_one(&mut *transaction)
        .await?;
        let new_threshold = change
            .threshold
            .map_or(threshold, |minutes| i32::from(minutes.minutes()));
        let new_idle_enabled = change.idle_enabled.unwrap_or(idle_enabled);
        let new_idle_after = change
            .idle_after
            .map_or(idle_after, |minutes| i32::from(minutes.minutes()));
        // The admin may come from an external issuer and have no users row.
        sqlx::query(
            "UPDATE settings SET threshold_minutes = $1, idle_detection_enabled = $2,
                    idle_after_minutes = $3, updated_at = now(),
                    updated_by = (SELECT id FROM users WHERE id = $4)",
        )
        .bind(new_threshold)
        .bind(new_idle_enabled)
        .bind(new_idle_after)
        .bind(admin_id)
        .execute(&mut *transaction)
        .await?;
        let audited = [
            (
                "threshold_minutes",
                threshold.to_string(),
                new_threshold.to_string(),
            ),
            (
                "idle_detection_enabled",
                idle_enabled.to_string(),
                new_idle_enabled.to_string(),
            ),
            (
                "idle_after_minutes",
                idle_after.to_string(),
                new_idle_after.to_string(),
            ),
        ];
        for (setting, old, new) in audited.into_iter().filter(|(_, old, new)| old != new) {
            sqlx::query(
                "INSERT INTO settings_audit (setting, old_value, new_value, changed_by)
                 VALUES ($1, $2, $3, (SELECT id FROM users WHERE id = $4))",
            )
            .bind(setting)
            .bind(&old)
            .bind(&new)
            .bind(admin_id)
            .execute(&mut *transaction)
            .await?;
            tracing::info!(%admin_id, setting, old, new, "activity setting changed");
        }
        transaction.commit().await?;
        self.settings().await
    }
}

/// The settings an admin asked to change (`None`: left as it is).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SettingsChange {
    pub threshold: Option<ThresholdMinutes>,
    pub idle_enabled: Option<bool>,
    pub idle_after: Option<IdleMinutes>,
}

/// What Redis knows about the users of one listing.
#[derive(Debug, Default)]
pub struct ActivitySnapshot {
    pub last_activity: HashMap<Uuid, i64>,
    pub logout_markers: HashMap<Uuid, i64>,
    /// Browsers of each user that pinged since the cut-off (users with none left out).
    pub browsers: HashMap<Uuid, u32>,
    /// With idle detection on, the away index entry of each user in it.
    pub away: HashMap<Uuid, i64>,
    /// With idle detection on, the users away since the cut-off, all users counted.
    pub away_online: u64,
    /// Users online at the cut-off by the presence index (a ping, or a login
    /// not followed by a logout), all users counted.
    pub online: u64,
}

#[derive(Debug, Clone)]
pub struct ActivityReader {
    redis: Redis,
}

impl ActivityReader {
    pub fn new(redis: Redis) -> Self {
        Self { redis }
    }

    /// Every index entry (user, last ping in Unix seconds) at or after
    /// `since`, from every shard of the presence index at once.
    pub async fn active_since(&self, since: i64) -> Result<Vec<(Uuid, i64)>, AdminError> {
        let reads =
            self.on_every_index_shard(|shard| Cmd::zrangebyscore_withscores(shard, since, "+inf"));
        let mut entries = Vec::new();
        for shard in self.redis.batch_all(reads).await? {
            let shard: Vec<(String, i64)> = from_value(shard)?;
            entries.extend(
                shard
                    .into_iter()
                    .filter_map(|(member, at)| Some((member.parse().ok()?, at))),
            );
        }
        Ok(entries)
    }

    /// Every user online by the index since `since` (Unix seconds), if there
    /// are at most about `limit` of them; `None` if there are more.
    pub async fn online_ids(
        &self,
        since: i64,
        limit: usize,
    ) -> Result<Option<Vec<Uuid>>, AdminError> {
        let shards = self.redis.keys().presence_index_shards().len();
        let per_shard = limit.div_ceil(shards.max(1));
        let reads = self.on_every_index_shard(|shard| {
            let mut command = Cmd::zrangebyscore(shard, since, "+inf");
            command.arg("LIMIT").arg(0).arg(per_shard + 1);
            command
        });
        let mut ids = Vec::new();
        for shard in self.redis.batch_all(reads).await? {
            let members: Vec<String> = from_value(shard)?;
            if members.len() > per_shard {
                return Ok(None);
            }
            ids.extend(
                members
                    .iter()
                    .filter_map(|member| member.parse::<Uuid>().ok()),
            );
        }
        Ok(Some(ids))
    }

    /// Drops index entries older than `before` (Unix seconds) from every shard.
    /// The away index is trimmed the same way.
    pub async fn trim_index(&self, before: i64) -> Result<(), AdminError> {
        let mut trims = self
            .on_every_index_shard(|shard| Cmd::zrembyscore(shard, "-inf", format!("({before}")));
        trims.extend(
            self.redis
                .keys()
                .away_index_shards()
                .into_iter()
                .map(|shard| Cmd::zrembyscore(shard, "-inf", format!("({before}"))),
        );
        self.redis.batch_all(trims).await?;
        Ok(())
    }

    fn on_every_index_shard(&self, command: impl Fn(String) -> Cmd) -> Vec<Cmd> {
        let shards = self.redis.keys().presence_index_shards();
        shards.into_iter().map(command).collect()
    }

    /// Activity timestamps, logout markers and browser counts of `users`, and
    /// the count of users online by activity since `since`: one batch (one
    /// round trip).
    /// With `away` (idle detection on), also their away index entries and
    /// the count of users away.
    pub async fn snapshot(
        &self,
        users: &[Uuid],
        since: i64,
        away: bool,
    ) -> Result<ActivitySnapshot, AdminError> {
        let keys = self.redis.keys();
        let mut commands = self.on_every_index_shard(|shard| Cmd::zcount(shard, since, "+inf"));
        let shard_count = commands.len();
        if away {
            commands.extend(
                keys.away_index_shards()
                    .into_iter()
                    .map(|shard| Cmd::zcount(shard, since, "+inf")),
            );
        }
        if !users.is_empty() {
            let activity_keys: Vec<String> =
                users.iter().map(|id| keys.last_activity(*id)).collect();
            let logout_keys: Vec<String> = users.iter().map(|id| keys.last_logout(*id)).collect();
            commands.push(Cmd::mget(activity_keys));
            commands.push(Cmd::mget(logout_keys));
            if away {
                commands.extend(self.away_scores(users));
            }
            commands.extend(self.browser_counts(users, since));
        }
        let mut values = self.redis.batch_all(commands).await?.into_iter();
        let mut online = 0;
        for count in values.by_ref().take(shard_count) {
            online += from_value::<u64>(count)?;
        }
        let mut away_online = 0;
        if away {
            for count in values.by_ref().take(shard_count) {
                away_online += from_value::<u64>(count)?;
            }
        }
        let last_activity = by_user(users, values.next())?;
        let logout_markers = by_user(users, values.next())?;
        let away_entries = if away && !users.is_empty() {
            scores_by_user(users, values.by_ref().take(users.len()))?
        } else {
            HashMap::new()
        };
        Ok(ActivitySnapshot {
            last_activity,
            logout_markers,
            browsers: counts_by_user(users, values)?,
            away: away_entries,
            away_online,
            online,
        })
    }

    /// One `ZSCORE` per user in the away index.
    fn away_scores(&self, users: &[Uuid]) -> Vec<Cmd> {
        let keys = self.redis.keys();
        users
            .iter()
            .map(|id| Cmd::zscore(keys.away_index_for(*id), id.to_string()))
            .collect()
    }

    /// One `ZCOUNT` per user of their browsers that pinged since `since`.
    fn browser_counts(&self, users: &[Uuid], since: i64) -> Vec<Cmd> {
        let keys = self.redis.keys();
        users
            .iter()
            .map(|id| Cmd::zcount(keys.browsers(*id), since, "+inf"))
            .collect()
    }

    /// The last ping, the browsers seen since `since` and (with `away`) the
    /// away index entry of each of `users`, in one round trip (the status
    /// stream's reading of those who pinged).
    pub async fn activity_and_browsers(
        &self,
        users: &[Uuid],
        since: i64,
        away: bool,
    ) -> Result<ActivitySnapshot, AdminError> {
        if users.is_empty() {
            return Ok(ActivitySnapshot::default());
        }
        let keys = self.redis.keys();
        let activity_keys: Vec<String> = users.iter().map(|id| keys.last_activity(*id)).collect();
        let mut commands = vec![Cmd::mget(activity_keys)];
        if away {
            commands.extend(self.away_scores(users));
        }
        commands.extend(self.browser_counts(users, since));
        let mut values = self.redis.batch_all(commands).await?.into_iter();
        let last_activity = by_user(users, values.next())?;
        let away_entries = if away {
            scores_by_user(users, values.by_ref().take(users.len()))?
        } else {
            HashMap::new()
        };
        Ok(ActivitySnapshot {
            last_activity,
            browsers: counts_by_user(users, values)?,
            away: away_entries,
            ..ActivitySnapshot::default()
        })
    }

    /// Forgets who was away (idle detection was turned off).
    pub async fn clear_away(&self) -> Result<(), AdminError> {
        let clears = self
            .redis
            .keys()
            .away_index_shards()
            .into_iter()
            .map(Cmd::del)
            .collect();
        self.redis.batch_all(clears).await?;
        Ok(())
    }

    async fn values_of(
        &self,
        users: &[Uuid],
        key: impl Fn(Uuid) -> String,
    ) -> Result<HashMap<Uuid, i64>, AdminError> {
        if users.is_empty() {
            return Ok(HashMap::new());
        }
        let keys: Vec<String> = users.iter().map(|id| key(*id)).collect();
        let mut values = self.redis.batch_all(vec![Cmd::mget(keys)]).await?;
        by_user(users, values.pop())
    }

    /// Puts logins (user, Unix seconds) in the presence index, except those
    /// a logout marker shows were followed by a logout. Returns how many it
    /// wrote. `ZADD GT` never moves an entry back.
    pub async fn add_logins(&self, logins: &[(Uuid, i64)]) -> Result<usize, AdminError> {
        let users: Vec<Uuid> = logins.iter().map(|(id, _)| *id).collect();
        let markers = self
            .values_of(&users, |id| self.redis.keys().last_logout(id))
            .await?;
        let keys = self.redis.keys();
        let writes: Vec<Cmd> = logins
            .iter()
            .filter(|(id, at)| markers.get(id).is_none_or(|logout| logout < at))
            .map(|(id, at)| keys.presence_index_entry(*id, *at))
            .collect();
        let written = writes.len();
        for chunk in chunks(writes) {
            self.redis.batch_all(chunk).await?;
        }
        Ok(written)
    }

    /// Takes out of the presence index the users of these logouts (user, Unix
    /// seconds) whose entry is not newer than the logout (a later ping or
    /// login stays).
    pub async fn remove_logged_out(&self, logouts: &[(Uuid, i64)]) -> Result<(), AdminError> {
        let keys = self.redis.keys();
        let removals: Vec<Cmd> = logouts
            .iter()
            .map(|(id, at)| {
                let mut command = Cmd::new();
                command
                    .arg("EVAL")
                    .arg(REMOVE_IF_NOT_NEWER)
                    .arg(1)
                    .arg(keys.presence_index_for(*id))
                    .arg(id.to_string())
                    .arg(*at);
                command
            })
            .collect();
        for chunk in chunks(removals) {
            self.redis.batch_all(chunk).await?;
        }
        Ok(())
    }

    /// Whether every shard of the index holds the recent logins of
    /// login_history (see `RedisKeys::presence_index_complete`).
    pub async fn index_complete(&self) -> Result<bool, AdminError> {
        let checks = self
            .redis
            .keys()
            .presence_index_complete()
            .into_iter()
            .map(Cmd::exists)
            .collect();
        for exists in self.redis.batch_all(checks).await? {
            if !from_value::<bool>(exists)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    pub async fn mark_index_complete(&self) -> Result<(), AdminError> {
        let marks = self
            .redis
            .keys()
            .presence_index_complete()
            .into_iter()
            .map(|key| Cmd::set(key, 1))
            .collect();
        self.redis.batch_all(marks).await?;
        Ok(())
    }
}

/// KEYS: an index shard. ARGV: user id, logout time. One key, so it runs on a
/// cluster too.
const REMOVE_IF_NOT_NEWER: &str = r"
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) <= tonumber(ARGV[2]) then
    return redis.call('ZREM', KEYS[1], ARGV[1])
end
return 0
";

/// Splits long batches so no single pipeline holds Redis for long.
fn chunks(commands: Vec<Cmd>) -> Vec<Vec<Cmd>> {
    const CHUNK: usize = 1000;
    let mut chunks = Vec::new();
    let mut commands = commands.into_iter().peekable();
    while commands.peek().is_some() {
        chunks.push(commands.by_ref().take(CHUNK).collect());
    }
    chunks
}

/// The reply of an `MGET` of one key per user, as user → value (users
/// without a value left out; no reply at all, as nothing).
fn by_user(users: &[Uuid], reply: Option<redis::Value>) -> Result<HashMap<Uuid, i64>, AdminError> {
    let Some(reply) = reply else {
        return Ok(HashMap::new());
    };
    let values: Vec<Option<i64>> = from_value(reply)?;
    Ok(users
        .iter()
        .zip(values)
        .filter_map(|(id, value)| Some((*id, value?)))
        .collect())
}

/// Parses one reply; a reply of the wrong shape counts as Redis misbehaving.
/// The scores of `users` that have one, answered one per user in order.
fn scores_by_user(
    users: &[Uuid],
    scores: impl Iterator<Item = redis::Value>,
) -> Result<HashMap<Uuid, i64>, AdminError> {
    let mut by_user = HashMap::new();
    for (id, score) in users.iter().zip(scores) {
        let score: Option<f64> = from_value(score)?;
        if let Some(score) = score {
            by_user.insert(*id, score as i64);
        }
    }
    Ok(by_user)
}

/// The non-zero counts of `users`, answered one per user in order.
fn counts_by_user(
    users: &[Uuid],
    counts: impl Iterator<Item = redis::Value>,
) -> Result<HashMap<Uuid, u32>, AdminError> {
    let mut by_user = HashMap::new();
    for (id, count) in users.iter().zip(counts) {
        let count: u32 = from_value(count)?;
        if count > 0 {
            by_user.insert(*id, count);
        }
    }
    Ok(by_user)
}

fn from_value<T: redis::FromRedisValue>(value: redis::Value) -> Result<T, AdminError> {
    redis::from_redis_value(value).map_err(|error| presence_store::Error::from(error).into())
}
