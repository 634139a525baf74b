//! The live status stream behind `WatchUserStatuses`.
//!
//! One `StatusHub` per process follows the stores and keeps the set of users
//! online now; every watcher gets a snapshot of that set, then the changes.
//!
//! How it learns of changes, without adding work to pings:
//! - pings: it reads the activity index for entries newer than its cursor
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

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use presence_core::events::{StatusChange, StatusEvent};
use presence_core::proto::admin::{StatusSource, UserStatus};
use presence_core::redis_client::Redis;
use presence_core::settings::ThresholdWatch;
use tokio::sync::{broadcast, mpsc};
use uuid::Uuid;

use crate::status::{Observations, evaluate, to_proto};
use crate::store::{ActivityReader, Directory, UserRow};

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
            activity: HashMap::new(),
            cursor: None,
            names: HashMap::new(),
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
    /// Last ping per user, as far as the index told us.
    activity: HashMap<Uuid, i64>,
    /// Index score up to which pings have been read; `None` forces a full read.
    cursor: Option<i64>,
    /// Usernames and display names of users we have reported.
    names: HashMap<Uuid, (String, String)>,
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
                        self.activity.remove(&event.user_id);
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

    async fn read_pings(&mut self, now: i64, since: i64) -> bool {
        let full = self.cursor.is_none();
        let from = self
            .cursor
            .map_or(since, |cursor| (cursor - CLOCK_SKEW_ALLOWANCE).max(since));
        match self.index.active_since(from).await {
            Ok(entries) => {
                if full {
                    self.activity.clear();
                }
                self.activity.extend(entries);
                self.cursor = Some(now);
                true
            }
            Err(error) => {
                tracing::warn!(%error, "cannot read the activity index; statuses from login_history alone");
                self.activity.clear();
                self.cursor = None;
                false
            }
        }
    }

    /// Recomputes who is online and tells watchers what changed.
    async fn refresh(&mut self) {
        let now = chrono::Utc::now().timestamp();
        let threshold = self.threshold.current();
        let since = now - threshold.seconds();
        self.read_pings(now, since).await;
        self.activity.retain(|_, at| *at >= since);

        let recent = match self.directory.recent_logins(since).await {
            Ok(recent) => recent,
            Err(error) => {
                tracing::warn!(%error, "cannot read recent logins; keeping the last known statuses");
                return;
            }
        };
        let mut observations: HashMap<Uuid, Observations> = HashMap::new();
        for (id, at) in &self.activity {
            observations.entry(*id).or_default().last_activity = Some(*at);
        }
        for login in &recent {
            let seen = observations.entry(login.user_id).or_default();
            seen.last_login = Some(login.last_login);
            seen.last_logout_row = login.last_logout;
        }
        let now_online: HashMap<Uuid, Observations> = observations
            .into_iter()
            .filter(|(_, seen)| evaluate(*seen, now, threshold).online)
            .collect();

        let previously: HashSet<Uuid> = self.online_ids();
        let missing_names: Vec<Uuid> = now_online
            .keys()
            .filter(|id| !self.names.contains_key(id))
            .copied()
            .collect();
        if !missing_names.is_empty() {
            match self.directory.users_by_ids(&missing_names).await {
                Ok(rows) => {
                    for UserRow {
                        id,
                        username,
                        display_name,
                        ..
                    } in rows
                    {
                        self.names.insert(id, (username, display_name));
                    }
                }
                Err(error) => tracing::warn!(%error, "cannot read user names"),
            }
        }

        let mut changed = Vec::new();
        {
            let mut online = self.hub.online.write().expect("status hub lock poisoned");
            for (id, seen) in &now_online {
                // Users unknown to the directory (deleted) are not reported.
                let Some((username, display_name)) = self.names.get(id) else {
                    continue;
                };
                let status = to_proto(
                    *id,
                    username,
                    display_name,
                    &evaluate(*seen, now, threshold),
                );
                let is_new = !previously.contains(id);
                let source_changed = online
                    .get(id)
                    .is_some_and(|user| user.status.source != status.source);
                online.insert(
                    *id,
                    OnlineUser {
                        status: status.clone(),
                    },
                );
                if is_new || source_changed {
                    changed.push(status);
                }
            }
            for id in previously.iter().filter(|id| !now_online.contains_key(id)) {
                if let Some(user) = online.remove(id) {
                    let mut status = user.status;
                    status.online = false;
                    status.source = StatusSource::None as i32;
                    changed.push(status);
                }
            }
        }
        self.names.retain(|id, _| now_online.contains_key(id));
        for status in changed {
            // No receiver is fine: nobody is watching.
            let _ = self.hub.changes.send(status);
        }
    }

    fn online_ids(&self) -> HashSet<Uuid> {
        self.hub
            .online
            .read()
            .expect("status hub lock poisoned")
            .keys()
            .copied()
            .collect()
    }

    /// Drops index entries whose activity keys have expired (older than twice
    /// the threshold), so the index stays the size of the recently active.
    async fn trim_index(&self) {
        let cutoff = chrono::Utc::now().timestamp() - 2 * self.threshold.current().seconds();
        if let Err(error) = self.index.trim_index(cutoff).await {
            tracing::debug!(%error, "index trim skipped");
        }
    }
}
