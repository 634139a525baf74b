//! The live status stream behind `WatchUserStatuses`.
//!
//! One `StatusHub` per process follows the stores and keeps the set of users
//! online now; every watcher gets a snapshot of that set, then the changes.
//!
//! How it learns of changes, without adding work to pings:
//! - pings: it reads the presence index for entries newer than its cursor
//!   every `TICK`, and re-reads the whole online range every `FULL_RESYNC`
//!   (and after Redis comes back) to heal anything missed;
//! - logouts and logins: the activity service publishes them on the status
//!   channel, so a logout shows at once;
//! - expiry and logins without pings: every `TICK` it re-evaluates the rule
//!   against the clock and the recent logins in login_history.
//!
//! Fan-out is a `broadcast` channel: publishing never waits for a watcher. A
//! watcher that falls more than its buffer behind gets a resync marker and a
//! fresh snapshot instead of the events it missed.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use presence_core::events::{StatusChange, StatusEvent};
use presence_core::proto::admin::{StatusSource, UserStatus};
use presence_core::redis_client::Redis;
use presence_core::settings::ThresholdWatch;
use tokio::sync::{broadcast, mpsc};
use uuid::Uuid;

use presence_core::threshold::ThresholdMinutes;

use crate::status::{Observations, Status, evaluate, to_proto};
use crate::store::{ActivityReader, Directory};

const TICK: Duration = Duration::from_secs(1);
const FULL_RESYNC: Duration = Duration::from_secs(30);
const INDEX_TRIM_EVERY: Duration = Duration::from_secs(60);
/// How far back each incremental read of the index starts before the last
/// one: pings are scored by the activity service's clock, which may run a
/// little behind ours.
const CLOCK_SKEW_ALLOWANCE: i64 = 5;

/// A user who is online, as watchers are told.
#[derive(Clone, Debug)]
struct OnlineUser {
    status: UserStatus,
}

#[derive(Clone)]
pub struct StatusHub {
    online: Arc<RwLock<HashMap<Uuid, OnlineUser>>>,
    changes: broadcast::Sender<UserStatus>,
}

impl StatusHub {
    /// Starts following the stores in the background.
    pub fn start(
        redis: Redis,
        directory: Directory,
        threshold: ThresholdWatch,
        buffer: usize,
    ) -> Self {
        let (changes, _) = broadcast::channel(buffer);
        let hub = Self {
            online: Arc::default(),
            changes,
        };
        let (logouts_tx, logouts_rx) = mpsc::channel(buffer);
        tokio::spawn(follow_status_channel(redis.clone(), logouts_tx));
        let follower = Follower {
            hub: hub.clone(),
            index: ActivityReader::new(redis),
            directory,
            threshold,
            presence: HashMap::new(),
            cursor: None,
            known: HashMap::new(),
        };
        tokio::spawn(follower.run(logouts_rx));
        hub
    }

    /// Subscribe first, then take the snapshot: a change in between is then
    /// seen twice (harmless) rather than never.
    pub fn subscribe(&self) -> broadcast::Receiver<UserStatus> {
        self.changes.subscribe()
    }

    pub fn snapshot(&self) -> Vec<UserStatus> {
        let online = self.online.read().expect("status hub lock poisoned");
        let mut statuses: Vec<UserStatus> =
            online.values().map(|user| user.status.clone()).collect();
        statuses.sort_by(|a, b| a.username.cmp(&b.username));
        statuses
    }
}

/// Forwards the activity service's login/logout announcements, reconnecting
/// as needed. On Redis Cluster any node relays every published message, so
/// when the node it listens to dies it moves on to the next seed node.
async fn follow_status_channel(redis: Redis, events: mpsc::Sender<StatusEvent>) {
    let channel = redis.keys().status_channel();
    let nodes = redis.pubsub_nodes().to_vec();
    for node in nodes.iter().cycle() {
        // Bounded, so a node that accepts connections but never answers is skipped.
        let subscribed = tokio::time::timeout(redis.timeout(), async {
            let mut pubsub = node.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            redis::RedisResult::Ok(pubsub)
        })
        .await;
        match subscribed {
            Ok(Ok(mut pubsub)) => {
                let mut messages = pubsub.on_message();
                while let Some(message) = messages.next().await {
                    let payload: String = message.get_payload().unwrap_or_default();
                    if let Some(event) = StatusEvent::from_json(&payload)
                        && events.send(event).await.is_err()
                    {
                        return;
                    }
                }
                tracing::warn!("status channel subscription lost; reconnecting");
            }
            Ok(Err(error)) => tracing::debug!(%error, "cannot subscribe to the status channel yet"),
            Err(_) => tracing::debug!("status channel subscription timed out"),
        }
        if events.is_closed() {
            return;
        }
        tokio::time::sleep(TICK).await;
    }
}

struct Follower {
    hub: StatusHub,
    index: ActivityReader,
    directory: Directory,
    threshold: ThresholdWatch,
    /// Presence index scores of the users online by the index.
    presence: HashMap<Uuid, i64>,
    /// Index score up to which entries have been read; `None` forces a full read.
    cursor: Option<i64>,
    /// Names and last login of users we have reported.
    known: HashMap<Uuid, Known>,
}

#[derive(Clone, Debug)]
struct Known {
    username: String,
    display_name: String,
    last_login: Option<i64>,
}

impl Follower {
    async fn run(mut self, mut announcements: mpsc::Receiver<StatusEvent>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_full = tokio::time::Instant::now();
        let mut last_trim = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                Some(event) = announcements.recv() => {
                    if event.change == StatusChange::Logout {
                        self.presence.remove(&event.user_id);
                    }
                    // A login or logout: re-evaluate now, not at the next tick.
                }
            }
            if last_full.elapsed() >= FULL_RESYNC {
                self.cursor = None;
                last_full = tokio::time::Instant::now();
            }
            if last_trim.elapsed() >= INDEX_TRIM_EVERY {
                self.trim_index().await;
                last_trim = tokio::time::Instant::now();
            }
            self.refresh().await;
        }
    }

    /// Recomputes who is online and tells watchers what changed.
    async fn refresh(&mut self) {
        let now = chrono::Utc::now().timestamp();
        let threshold = self.threshold.current();
        let since = now - threshold.seconds();
        let verdicts = match self.read_index(now, since).await {
            Some(changed) => self.judge_changed(changed, now, threshold).await,
            None => self.judge_by_login_history(now, threshold).await,
        };
        let Some(Verdicts { online, complete }) = verdicts else {
            return;
        };
        self.publish(online, complete);
    }

    /// Reads the index (from the cursor, or all of it), updates `presence`
    /// and returns the users to judge again; `None` when Redis fails.
    async fn read_index(&mut self, now: i64, since: i64) -> Option<Vec<Uuid>> {
        let full = self.cursor.is_none();
        let from = self
            .cursor
            .map_or(since, |cursor| (cursor - CLOCK_SKEW_ALLOWANCE).max(since));
        let entries = match self.index.active_since(from).await {
            Ok(entries) => entries,
            Err(error) => {
                tracing::warn!(%error, "cannot read the presence index; statuses from login_history alone");
                self.presence.clear();
                self.cursor = None;
                return None;
            }
        };
        // Entries read again are judged again only if their score moved, or
        // if they are online by a login: a ping in the same second as the
        // login leaves the score as it was (`ZADD GT`), yet makes it rule 1.
        let changed: Vec<Uuid> = {
            let online = self.hub.online.read().expect("status hub lock poisoned");
            let by_login = |id: &Uuid| {
                online
                    .get(id)
                    .is_some_and(|user| user.status.source == StatusSource::LoginHistory as i32)
            };
            entries
                .iter()
                .filter(|(id, score)| self.presence.get(id) != Some(score) || by_login(id))
                .map(|(id, _)| *id)
                .collect()
        };
        // Users who left the index go offline in `publish`: they are no
        // longer in `presence`.
        if full {
            self.presence = entries.into_iter().collect();
        } else {
            self.presence.extend(entries);
        }
        self.presence.retain(|_, score| *score >= since);
        self.cursor = Some(now);
        Some(changed)
    }

    /// Statuses of the users whose index entry changed: the index says they
    /// are online, their last ping says by which rule.
    async fn judge_changed(
        &mut self,
        ids: Vec<Uuid>,
        now: i64,
        threshold: ThresholdMinutes,
    ) -> Option<Verdicts> {
        let activity = match self.index.last_activity(&ids).await {
            Ok(activity) => activity,
            Err(error) => {
                tracing::warn!(%error, "cannot read last pings; trying again next tick");
                self.cursor = None;
                return None;
            }
        };
        self.learn_names(&ids).await;
        let mut online = HashMap::new();
        for id in ids {
            let Some(score) = self.presence.get(&id).copied() else {
                continue;
            };
            let last_activity = activity.get(&id).copied();
            let known = self.known.get_mut(&id);
            // A score newer than the last ping is a login.
            let login_set_score = last_activity.is_none_or(|ping| score > ping);
            let last_login = match known {
                Some(known) if login_set_score => {
                    known.last_login = Some(score);
                    Some(score)
                }
                Some(known) => known.last_login,
                None => login_set_score.then_some(score),
            };
            let seen = Observations {
                last_activity,
                last_login,
                ..Default::default()
            };
            online.insert(id, evaluate(seen, now, threshold));
        }
        Some(Verdicts {
            online,
            complete: false,
        })
    }

    /// Without Redis: rule 2 alone, for every user with a recent login.
    async fn judge_by_login_history(
        &mut self,
        now: i64,
        threshold: ThresholdMinutes,
    ) -> Option<Verdicts> {
        let recent = match self
            .directory
            .recent_logins(now - threshold.seconds())
            .await
        {
            Ok(recent) => recent,
            Err(error) => {
                tracing::warn!(%error, "cannot read recent logins; keeping the last known statuses");
                return None;
            }
        };
        let online: HashMap<Uuid, Status> = recent
            .iter()
            .map(|login| {
                (
                    login.user_id,
                    evaluate(login.observations(), now, threshold),
                )
            })
            .filter(|(_, status)| status.online)
            .collect();
        let ids: Vec<Uuid> = online.keys().copied().collect();
        self.learn_names(&ids).await;
        Some(Verdicts {
            online,
            complete: true,
        })
    }

    /// Reads the names (and last login) of users not met before.
    async fn learn_names(&mut self, ids: &[Uuid]) {
        let missing: Vec<Uuid> = ids
            .iter()
            .filter(|id| !self.known.contains_key(id))
            .copied()
            .collect();
        if missing.is_empty() {
            return;
        }
        match self.directory.users_by_ids(&missing).await {
            Ok(rows) => {
                for row in rows {
                    self.known.insert(
                        row.id,
                        Known {
                            username: row.username,
                            display_name: row.display_name,
                            last_login: row.last_login,
                        },
                    );
                }
            }
            Err(error) => tracing::warn!(%error, "cannot read user names"),
        }
    }

    /// Applies the verdicts and tells watchers what changed: users coming
    /// online or changing rule, and users going offline (those whose score
    /// aged past the threshold or left the index, or, when the verdicts are
    /// complete, everyone not in them).
    fn publish(&mut self, verdicts: HashMap<Uuid, Status>, complete: bool) {
        let mut changes = Vec::new();
        {
            let mut online = self.hub.online.write().expect("status hub lock poisoned");
            for (id, status) in &verdicts {
                // Users unknown to the directory (deleted) are not reported.
                let Some(known) = self.known.get(id) else {
                    continue;
                };
                let status = to_proto(*id, &known.username, &known.display_name, status);
                let previous = online.insert(
                    *id,
                    OnlineUser {
                        status: status.clone(),
                    },
                );
                if previous.is_none_or(|user| user.status.source != status.source) {
                    changes.push(status);
                }
            }
            let gone: Vec<Uuid> = online
                .keys()
                .filter(|id| {
                    if complete {
                        !verdicts.contains_key(id)
                    } else {
                        !self.presence.contains_key(id)
                    }
                })
                .copied()
                .collect();
            for id in gone {
                if let Some(user) = online.remove(&id) {
                    let mut status = user.status;
                    status.online = false;
                    status.source = StatusSource::None as i32;
                    changes.push(status);
                }
            }
            self.known
                .retain(|id, _| online.contains_key(id) || verdicts.contains_key(id));
        }
        for status in changes {
            // No receiver is fine: nobody is watching.
            let _ = self.hub.changes.send(status);
        }
    }

    /// Drops index entries older than twice the threshold (their activity
    /// keys have expired), so the index stays the size of the recently online.
    async fn trim_index(&self) {
        let cutoff = chrono::Utc::now().timestamp() - 2 * self.threshold.current().seconds();
        if let Err(error) = self.index.trim_index(cutoff).await {
            tracing::debug!(%error, "index trim skipped");
        }
    }
}

/// Who is online after one look at the stores.
struct Verdicts {
    online: HashMap<Uuid, Status>,
    /// Everyone online is in `online` (otherwise only the users that changed).
    complete: bool,
}
