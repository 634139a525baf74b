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
//!   channel, so a logout shows at once; so are a user becoming away or
//!   coming back, and one browser of several signing out: the users they
//!   name are judged again and told of even if this hub's view did not
//!   change (their away spell may have lasted less than a tick, yet shown in
//!   a listing);
//! - expiry and logins without pings: every `TICK` it re-evaluates the rule
//!   against the clock and the recent logins in login_history.
//!
//! Fan-out is a `broadcast` channel: publishing never waits for a watcher. A
//! watcher that falls more than its buffer behind gets a resync marker and a
//! fresh snapshot instead of the events it missed. Sign-outs are fanned out
//! the same way, so each watcher can check whether its own session ended.
//!
//! Every store call of the hub has a deadline (`background::within`, and the
//! Redis client's own timeout), so a store that hangs makes a tick fail, not
//! the hub stop; the status channel is pinged while idle, so a subscription
//! whose connection died silently is replaced.
//!
//! `WatcherSlots` caps the open streams, in all and per account (admin or service).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use parking_lot::{Mutex, MutexGuard, RwLock};
use presence_core::events::{StatusChange, StatusEvent};
use presence_proto::admin::{PresenceState, StatusSource, UserStatus};
use presence_store::redis_client::Redis;
use presence_store::settings::ThresholdWatch;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, mpsc};
use uuid::Uuid;

use presence_core::threshold::ThresholdMinutes;

use crate::background::{Retry, within};
use crate::error::AdminError;
use crate::status::{Observations, Status, evaluate, to_proto};
use crate::store::{ActivityReader, Directory};

const TICK: Duration = Duration::from_secs(1);
const FULL_RESYNC: Duration = Duration::from_secs(30);
const INDEX_TRIM_EVERY: Duration = Duration::from_secs(60);
/// How far back each incremental read of the index starts before the last
/// one: pings are scored by the activity service's clock, which may run a
/// little behind ours.
const CLOCK_SKEW_ALLOWANCE: i64 = 5;
/// How often an idle status channel subscription is pinged, and how long
/// the answer may take before the subscription is replaced. Patient: while
/// it resubscribes, announcements are lost (until the next full read).
const SUBSCRIPTION_PING_EVERY: Duration = Duration::from_secs(5);
const SUBSCRIPTION_PING_ANSWER_WITHIN: Duration = Duration::from_secs(5);
/// The longest wait between attempts to subscribe again.
const RESUBSCRIBE_AT_MOST_EVERY: Duration = Duration::from_secs(5);
/// Sign-outs buffered for watchers; one that misses some checks its session anyway.
const SIGN_OUTS_BUFFER: usize = 256;

/// A user who is online, as watchers are told.
#[derive(Clone, Debug)]
struct OnlineUser {
    status: UserStatus,
}

#[derive(Debug, Clone)]
pub struct StatusHub {
    online: Arc<RwLock<HashMap<Uuid, OnlineUser>>>,
    changes: broadcast::Sender<UserStatus>,
    /// The users who just signed out (one of their tokens was revoked).
    sign_outs: broadcast::Sender<Uuid>,
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
        let (sign_outs, _) = broadcast::channel(SIGN_OUTS_BUFFER);
        let hub = Self {
            online: Arc::default(),
            changes,
            sign_outs: sign_outs.clone(),
        };
        let (logouts_tx, logouts_rx) = mpsc::channel(buffer);
        tokio::spawn(follow_status_channel(redis.clone(), logouts_tx, sign_outs));
        let follower = Follower {
            hub: hub.clone(),
            index: ActivityReader::new(redis),
            directory,
            threshold,
            presence: HashMap::new(),
            cursor: None,
            known: HashMap::new(),
            judge_again: HashSet::new(),
            idle_detection: false,
            tell_anyway: HashSet::new(),
        };
        tokio::spawn(follower.run(logouts_rx));
        hub
    }

    /// Subscribe first, then take the snapshot: a change in between is then
    /// seen twice (harmless) rather than never.
    pub fn subscribe(&self) -> broadcast::Receiver<UserStatus> {
        self.changes.subscribe()
    }

    /// The ids of users as they sign out.
    pub fn sign_outs(&self) -> broadcast::Receiver<Uuid> {
        self.sign_outs.subscribe()
    }

    pub fn snapshot(&self) -> Vec<UserStatus> {
        let online = self.online.read();
        let mut statuses: Vec<UserStatus> =
            online.values().map(|user| user.status.clone()).collect();
        statuses.sort_by(|a, b| a.username.cmp(&b.username));
        statuses
    }
}

/// Forwards the activity service's login/logout announcements, reconnecting
/// as needed. On Redis Cluster any node relays every published message, so
/// when the node it listens to dies it moves on to the next seed node.
async fn follow_status_channel(
    redis: Redis,
    events: mpsc::Sender<StatusEvent>,
    sign_outs: broadcast::Sender<Uuid>,
) {
    let channel = redis.keys().status_channel();
    let nodes = redis.pubsub_nodes().to_vec();
    let mut retry = Retry::new(RESUBSCRIBE_AT_MOST_EVERY);
    for node in nodes.iter().cycle() {
        // Bounded, so a node that accepts connections but never answers is skipped.
        let subscribed = tokio::time::timeout(redis.timeout(), async {
            let mut pubsub = node.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            redis::RedisResult::Ok(pubsub)
        })
        .await;
        match subscribed {
            Ok(Ok(pubsub)) => {
                retry.succeeded();
                if !forward_announcements(pubsub, &events, &sign_outs).await {
                    return;
                }
            }
            Ok(Err(error)) => tracing::debug!(%error, "cannot subscribe to the status channel yet"),
            Err(_) => tracing::debug!("status channel subscription timed out"),
        }
        if events.is_closed() {
            return;
        }
        tokio::time::sleep(retry.failed()).await;
    }
}

/// Follows one subscription until it is lost (or, pinged while idle, does
/// not answer in time). False when the hub is gone.
async fn forward_announcements(
    pubsub: redis::aio::PubSub,
    events: &mpsc::Sender<StatusEvent>,
    sign_outs: &broadcast::Sender<Uuid>,
) -> bool {
    let (mut sink, mut messages) = pubsub.split();
    let mut ping = tokio::time::interval(SUBSCRIPTION_PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    loop {
        tokio::select! {
            message = messages.next() => {
                let Some(message) = message else {
                    tracing::warn!("status channel subscription lost; reconnecting");
                    return true;
                };
                let payload: String = message.get_payload().unwrap_or_default();
                let Some(event) = StatusEvent::from_json(&payload) else {
                    continue;
                };
                if event.change.is_sign_out() {
                    // No receiver is fine: nobody is watching.
                    let _ = sign_outs.send(event.user_id);
                }
                if events.send(event).await.is_err() {
                    return false;
                }
            }
            _ = ping.tick() => {
                let answered = tokio::time::timeout(SUBSCRIPTION_PING_ANSWER_WITHIN, sink.ping::<redis::Value>()).await;
                if !matches!(answered, Ok(Ok(_))) {
                    tracing::warn!("status channel subscription does not answer; reconnecting");
                    return true;
                }
            }
        }
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
    /// Users to judge at the next read even if their index score did not
    /// move (one of their browsers signed out); at most the users online.
    judge_again: HashSet<Uuid>,
    /// Whether idle detection was on at the last refresh.
    idle_detection: bool,
    /// Users whose status is told at the next publish whether or not it
    /// changed (an announcement named them).
    tell_anyway: HashSet<Uuid>,
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
                    match event.change {
                        StatusChange::Logout => {
                            self.presence.remove(&event.user_id);
                        }
                        // Their score may not have moved, yet their browsers
                        // or their away state did.
                        StatusChange::BrowserLogout | StatusChange::AwayChanged => {
                            self.judge_again.insert(event.user_id);
                        }
                        StatusChange::Login => {}
                    }
                    // Re-evaluate now, not at the next tick.
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
        let settings = self.threshold.settings();
        let threshold = settings.threshold;
        // Turning idle detection on or off changes who is away without
        // moving anyone's score: judge everyone online again.
        if self.idle_detection != settings.idle.enabled {
            self.idle_detection = settings.idle.enabled;
            self.judge_again.extend(self.presence.keys().copied());
        }
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
        // So are users one of whose browsers signed out, and those last seen
        // in the second of the previous read: a ping later in that second
        // (another browser, an idle report) leaves the score as it was.
        let judge_again = std::mem::take(&mut self.judge_again);
        // Announced changes are told even when this hub's view did not
        // change: a listing may have shown a state that lasted less than a tick.
        self.tell_anyway.clone_from(&judge_again);
        let same_second_as_last_read = self.cursor.map(|cursor| cursor - 1);
        let changed: Vec<Uuid> = {
            let online = self.hub.online.read();
            let by_login = |id: &Uuid| {
                online
                    .get(id)
                    .is_some_and(|user| user.status.source == StatusSource::LoginHistory as i32)
            };
            entries
                .iter()
                .filter(|(id, score)| {
                    self.presence.get(id) != Some(score)
                        || by_login(id)
                        || judge_again.contains(id)
                        || same_second_as_last_read.is_some_and(|second| *score >= second)
                })
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
        let since = now - threshold.seconds();
        let away = self.threshold.settings().idle.enabled;
        let seen = match self.index.activity_and_browsers(&ids, since, away).await {
            Ok(read) => read,
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
            let last_activity = seen.last_activity.get(&id).copied();
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
            let facts = Observations {
                last_activity,
                last_login,
                browsers: seen.browsers.get(&id).copied().unwrap_or(0),
                away_at: seen.away.get(&id).copied(),
                ..Default::default()
            };
            online.insert(id, evaluate(facts, now, threshold));
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
        let recent = match within(
            "reading recent logins",
            self.directory.recent_logins(now - threshold.seconds()),
        )
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

    /// Reads the names (and last login) of users not met before. If that
    /// fails, they are judged again (and their names read) at the next tick.
    async fn learn_names(&mut self, ids: &[Uuid]) {
        let missing: Vec<Uuid> = ids
            .iter()
            .filter(|id| !self.known.contains_key(id))
            .copied()
            .collect();
        if missing.is_empty() {
            return;
        }
        match within("reading user names", self.directory.users_by_ids(&missing)).await {
            Ok(records) => {
                // A disabled account is not reported, as listings leave it
                // out (its stores are cleared within seconds of the disabling).
                for record in records.into_iter().filter(|record| !record.disabled) {
                    let row = record.user;
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
            Err(error) => {
                tracing::warn!(%error, "cannot read user names; trying again next tick");
                // Unknown users are not reported; forgetting their index
                // entry makes the next (full) read judge them again.
                for id in &missing {
                    self.presence.remove(id);
                }
                self.cursor = None;
            }
        }
    }

    /// Applies the verdicts and tells watchers what changed: users coming
    /// online or changing rule, and users going offline (those whose score
    /// aged past the threshold or left the index, or, when the verdicts are
    /// complete, everyone not in them).
    fn publish(&mut self, verdicts: HashMap<Uuid, Status>, complete: bool) {
        let stays = |id: &Uuid| {
            if complete {
                verdicts.contains_key(id)
            } else {
                self.presence.contains_key(id)
            }
        };
        let mut updates = HashMap::with_capacity(verdicts.len());
        for (id, status) in &verdicts {
            // Users unknown to the directory (deleted) are not reported.
            let Some(known) = self.known.get(id) else {
                continue;
            };
            if stays(id) {
                let status = to_proto(*id, &known.username, &known.display_name, status);
                updates.insert(*id, OnlineUser { status });
            }
        }
        // The follower is the only writer: what changed is worked out under
        // the read lock, and only the changed entries are written (no copy
        // of the whole set each tick).
        let (gone, changes) = {
            let online = self.hub.online.read();
            let gone: Vec<Uuid> = online.keys().filter(|id| !stays(id)).copied().collect();
            let mut changes = status_changes(&online, &updates, &gone);
            let already: std::collections::HashSet<&str> = changes
                .iter()
                .map(|status| status.user_id.as_str())
                .collect();
            let again: Vec<UserStatus> = updates
                .iter()
                .filter(|(id, _)| self.tell_anyway.contains(id))
                .map(|(_, user)| user.status.clone())
                .filter(|status| !already.contains(status.user_id.as_str()))
                .collect();
            changes.extend(again);
            (gone, changes)
        };
        {
            let mut online = self.hub.online.write();
            for id in &gone {
                online.remove(id);
            }
            online.extend(updates);
            self.known
                .retain(|id, _| online.contains_key(id) || verdicts.contains_key(id));
        }
        for status in changes {
            // No receiver is fine: nobody is watching.
            let _ = self.hub.changes.send(status);
        }
        self.tell_anyway.clear();
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

/// What watchers are told when the users online go from `old` to `old`
/// with `updates` applied and `gone` removed (`updates` holds none of
/// `gone`): each user who came online, changed rule or whose count of
/// browsers changed, and each user who went offline (as offline, with no
/// source). A user online by the same rule with the same browsers before and
/// after is not news, even if their last ping moved.
fn status_changes(
    old: &HashMap<Uuid, OnlineUser>,
    updates: &HashMap<Uuid, OnlineUser>,
    gone: &[Uuid],
) -> Vec<UserStatus> {
    let arrived = updates.iter().filter_map(|(id, user)| {
        let changed = old.get(id).is_none_or(|before| {
            before.status.source != user.status.source
                || before.status.state != user.status.state
                || before.status.active_browsers != user.status.active_browsers
        });
        changed.then(|| user.status.clone())
    });
    let left = gone
        .iter()
        .filter_map(|id| old.get(id))
        .map(|user| UserStatus {
            online: false,
            source: StatusSource::None as i32,
            active_browsers: 0,
            state: PresenceState::Offline as i32,
            ..user.status.clone()
        });
    arrived.chain(left).collect()
}

/// Who is online after one look at the stores.
struct Verdicts {
    online: HashMap<Uuid, Status>,
    /// Everyone online is in `online` (otherwise only the users that changed).
    complete: bool,
}

/// The caps on open status streams: in all, and per account (an admin's or
/// a service's). A stream's feed
/// holds a `WatcherSlot` while it runs; when the feed ends (the client left,
/// the session ended, the server is stopping) the slot is dropped and its
/// place is free again.
#[derive(Debug, Clone)]
pub struct WatcherSlots {
    total: Arc<Semaphore>,
    per_user: usize,
    /// Open streams per account; an account with none has no entry, so the map
    /// holds at most as many entries as there are slots in all.
    by_user: Arc<Mutex<HashMap<Uuid, usize>>>,
}

/// One open stream's place; dropping it frees the place.
#[derive(Debug)]
pub struct WatcherSlot {
    _total: OwnedSemaphorePermit,
    user_id: Uuid,
    by_user: Arc<Mutex<HashMap<Uuid, usize>>>,
}

impl WatcherSlots {
    pub fn new(total: usize, per_user: usize) -> Self {
        Self {
            total: Arc::new(Semaphore::new(total)),
            per_user,
            by_user: Arc::default(),
        }
    }

    /// A place for one more stream of `user_id`, or why there is none.
    pub fn acquire(&self, user_id: Uuid) -> Result<WatcherSlot, AdminError> {
        let total = self.total.clone().try_acquire_owned().map_err(|_| {
            AdminError::TooManyStreams(
                "this server has as many status streams open as it allows; retry shortly",
            )
        })?;
        let mut by_user = lock(&self.by_user);
        let open = by_user.entry(user_id).or_default();
        if *open >= self.per_user {
            return Err(AdminError::TooManyStreams(
                "this account has as many status streams open as allowed; close one first",
            ));
        }
        *open += 1;
        Ok(WatcherSlot {
            _total: total,
            user_id,
            by_user: self.by_user.clone(),
        })
    }
}

impl Drop for WatcherSlot {
    fn drop(&mut self) {
        let mut by_user = lock(&self.by_user);
        if let Some(open) = by_user.get_mut(&self.user_id) {
            *open -= 1;
            if *open == 0 {
                by_user.remove(&self.user_id);
            }
        }
    }
}

/// The per-account counts; held for a few instructions, never across an await
/// (a panic while held cannot leave the counts half-updated).
fn lock(counts: &Mutex<HashMap<Uuid, usize>>) -> MutexGuard<'_, HashMap<Uuid, usize>> {
    counts.lock()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_capped_per_admin_and_in_all_and_freed_when_dropped() {
        let slots = WatcherSlots::new(3, 2);
        let (alice, bob) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let first = slots.acquire(alice).unwrap();
        let _second = slots.acquire(alice).unwrap();
        assert!(
            slots.acquire(alice).is_err(),
            "a third stream for one admin"
        );
        let _bob = slots.acquire(bob).unwrap();
        assert!(slots.acquire(bob).is_err(), "a fourth stream in all");
        drop(first);
        assert!(slots.acquire(alice).is_ok());
        assert_eq!(lock(&slots.by_user).len(), 2);
    }

    /// The users online when those of `observed` are judged at `NOW` with
    /// `threshold` (as the follower keeps them: the offline left out).
    fn online_set(
        threshold: ThresholdMinutes,
        observed: &[(u128, Observations)],
    ) -> HashMap<Uuid, OnlineUser> {
        observed
            .iter()
            .map(|(n, seen)| (Uuid::from_u128(*n), evaluate(*seen, NOW, threshold)))
            .filter(|(_, status)| status.online)
            .map(|(id, status)| {
                let name = format!("user{id}");
                let status = to_proto(id, &name, &name, &status);
                (id, OnlineUser { status })
            })
            .collect()
    }

    const NOW: i64 = 1_800_000_000;

    fn pinged(seconds_ago: i64) -> Observations {
        Observations {
            last_activity: Some(NOW - seconds_ago),
            ..Default::default()
        }
    }

    fn logged_in(seconds_ago: i64) -> Observations {
        Observations {
            last_login: Some(NOW - seconds_ago),
            ..Default::default()
        }
    }

    /// The users of `old` not in `new`: with `new` as the updates, the
    /// follower's view of a tick that takes the set from `old` to `new`.
    fn gone_from(old: &HashMap<Uuid, OnlineUser>, new: &HashMap<Uuid, OnlineUser>) -> Vec<Uuid> {
        old.keys()
            .filter(|id| !new.contains_key(id))
            .copied()
            .collect()
    }

    /// The changes as (user number, online, source), in user order.
    fn changes(
        old: &HashMap<Uuid, OnlineUser>,
        new: &HashMap<Uuid, OnlineUser>,
    ) -> Vec<(u128, bool, StatusSource)> {
        let mut changes: Vec<_> = status_changes(old, new, &gone_from(old, new))
            .into_iter()
            .map(|status| {
                let id = Uuid::parse_str(&status.user_id).unwrap().as_u128();
                (id, status.online, status.source())
            })
            .collect();
        changes.sort_by_key(|(id, ..)| *id);
        changes
    }

    fn minutes(minutes: i64) -> ThresholdMinutes {
        ThresholdMinutes::new(minutes).unwrap()
    }

    #[test]
    fn a_user_coming_online_is_announced_once() {
        let before = online_set(minutes(15), &[(1, pinged(60))]);
        let after = online_set(minutes(15), &[(1, pinged(30)), (2, pinged(5))]);
        assert_eq!(
            changes(&before, &after),
            [(2, true, StatusSource::Activity)],
            "only the newcomer: user 1's newer ping is not news"
        );
    }

    #[test]
    fn a_user_going_offline_is_announced_offline_without_a_source() {
        let before = online_set(minutes(15), &[(1, pinged(60)), (2, logged_in(60))]);
        let after = online_set(minutes(15), &[(1, pinged(60))]);
        let announced = status_changes(&before, &after, &gone_from(&before, &after));
        assert_eq!(announced.len(), 1);
        let gone = &announced[0];
        assert_eq!(gone.user_id, Uuid::from_u128(2).to_string());
        assert!(!gone.online);
        assert_eq!(gone.source(), StatusSource::None);
        assert_eq!(gone.username, before[&Uuid::from_u128(2)].status.username);
        assert!(gone.last_login_at.is_some(), "what was last seen is kept");
    }

    #[test]
    fn nothing_changed_is_no_news() {
        let online = online_set(minutes(15), &[(1, pinged(60)), (2, logged_in(60))]);
        assert_eq!(changes(&online, &online), []);
        assert_eq!(changes(&HashMap::new(), &HashMap::new()), []);
    }

    #[test]
    fn a_change_of_rule_is_announced() {
        let before = online_set(minutes(15), &[(1, logged_in(60))]);
        let mut now_pinging = logged_in(60);
        now_pinging.last_activity = Some(NOW - 1);
        let after = online_set(minutes(15), &[(1, now_pinging)]);
        assert_eq!(
            changes(&before, &after),
            [(1, true, StatusSource::Activity)]
        );
    }

    #[test]
    fn a_lower_threshold_takes_many_offline_at_once() {
        let observed: Vec<(u128, Observations)> = (1..=6)
            .map(|n| (n, pinged(i64::try_from(n).unwrap() * 120)))
            .chain([(7, logged_in(8 * 60)), (8, logged_in(60))])
            .collect();
        let before = online_set(minutes(15), &observed);
        assert_eq!(before.len(), 8);
        let after = online_set(minutes(5), &observed);
        assert_eq!(
            changes(&before, &after),
            [
                (3, false, StatusSource::None),
                (4, false, StatusSource::None),
                (5, false, StatusSource::None),
                (6, false, StatusSource::None),
                (7, false, StatusSource::None),
            ],
            "pings 6 to 12 minutes old and a login 8 minutes old are past 5 minutes"
        );
        assert_eq!(
            changes(&after, &before),
            [
                (3, true, StatusSource::Activity),
                (4, true, StatusSource::Activity),
                (5, true, StatusSource::Activity),
                (6, true, StatusSource::Activity),
                (7, true, StatusSource::LoginHistory),
            ],
            "raised again, the same users come back"
        );
    }

    #[test]
    fn from_nothing_everyone_online_is_announced() {
        let online = online_set(
            minutes(15),
            &[(1, pinged(1)), (2, logged_in(1)), (3, pinged(60))],
        );
        assert_eq!(
            changes(&HashMap::new(), &online),
            [
                (1, true, StatusSource::Activity),
                (2, true, StatusSource::LoginHistory),
                (3, true, StatusSource::Activity),
            ]
        );
        assert_eq!(
            changes(&online, &HashMap::new()),
            [
                (1, false, StatusSource::None),
                (2, false, StatusSource::None),
                (3, false, StatusSource::None),
            ]
        );
    }
}
