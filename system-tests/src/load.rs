//! A steady ping load through the gateway, shaped like browsers: each user
//! has their own token and their own HTTP/1.1 connection, and pings on a
//! fixed period (the users' phases spread over it), as a visible tab does.
//! Every ping is recorded (when it was sent, how long it took, how it
//! ended), so a test can count failures by code, see when they happened,
//! and know each user's last acknowledged ping.
//!
//! Ownership: one task per user, all ended by `stop`, which waits for each
//! to finish its ping in flight. The record is capped (`MAX_RECORDS`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use presence_proto::activity::{PingRequest, PingResponse};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use uuid::Uuid;

use crate::grpc_web::{CallError, WebClient};

pub const PING: &str = "/presence.activity.v1.ActivityService/Ping";
/// The client's deadline of a ping: far above any answer the services
/// promise (a Redis failure is answered within its timeout), so a ping that
/// runs into it hung.
pub const PING_DEADLINE: Duration = Duration::from_secs(5);
/// Pings recorded at most (hours of a test's load); later ones are not.
const MAX_RECORDS: usize = 2_000_000;

/// A user of the load: who they are and the token they ping with.
#[derive(Clone, Debug)]
pub struct LoadUser {
    pub id: Uuid,
    pub username: String,
    pub token: String,
}

/// One ping, as the client saw it.
#[derive(Clone, Debug)]
pub struct PingRecord {
    /// Index of the user in the load's list.
    pub user: usize,
    pub sent: Instant,
    /// Unix seconds when it was sent (the service writes its own clock's
    /// second, which cannot be earlier: one machine, one clock).
    pub sent_unix: i64,
    pub took: Duration,
    /// `None` when acknowledged; otherwise how it failed (`CallError::label`).
    pub failure: Option<String>,
}

#[derive(Debug)]
pub struct PingLoad {
    pub started: Instant,
    pub users: Vec<LoadUser>,
    records: Arc<Mutex<Vec<PingRecord>>>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl PingLoad {
    /// Starts `users` pinging `gateway`, each every `period`.
    pub fn start(gateway: SocketAddr, users: Vec<LoadUser>, period: Duration) -> Self {
        let started = Instant::now();
        let records = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let count = users.len().max(1) as u32;
        for (index, user) in users.iter().enumerate() {
            let phase = period * index as u32 / count;
            tasks.spawn(ping_forever(
                gateway,
                index,
                user.token.clone(),
                started + phase,
                period,
                records.clone(),
                stopped.clone(),
            ));
        }
        Self {
            started,
            users,
            records,
            stop,
            tasks,
        }
    }

    /// Every ping so far.
    pub fn records(&self) -> Vec<PingRecord> {
        self.records.lock().clone()
    }

    /// Stops every user after their ping in flight; returns every ping.
    pub async fn stop(mut self) -> Vec<PingRecord> {
        self.stop.send_replace(true);
        let finished = tokio::time::timeout(PING_DEADLINE * 2, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        assert!(finished.is_ok(), "the load did not stop in time");
        self.records()
    }

    /// Waits until every user has had a ping sent after `since`
    /// acknowledged, at most `within`.
    pub async fn wait_for_every_user(&self, since: Instant, within: Duration) {
        crate::eventually(within, "a ping of every user acknowledged", || async {
            let mut acknowledged = vec![false; self.users.len()];
            for record in self.records().iter() {
                if record.sent >= since && record.failure.is_none() {
                    acknowledged[record.user] = true;
                }
            }
            acknowledged.iter().all(|done| *done).then_some(())
        })
        .await;
    }
}

async fn ping_forever(
    gateway: SocketAddr,
    user: usize,
    token: String,
    first: Instant,
    period: Duration,
    records: Arc<Mutex<Vec<PingRecord>>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval_at(first, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut client: Option<WebClient> = None;
    loop {
        tokio::select! {
            biased;
            () = stopped(&mut stop) => return,
            _ = ticks.tick() => {}
        }
        let sent = Instant::now();
        let sent_unix = crate::now();
        let outcome = ping(gateway, &mut client, &token).await;
        if outcome.is_err() {
            // A browser's next fetch may open a new connection; so does this.
            client = None;
        }
        let record = PingRecord {
            user,
            sent,
            sent_unix,
            took: sent.elapsed(),
            failure: outcome.err().map(|error| error.label()),
        };
        let mut records = records.lock();
        if records.len() < MAX_RECORDS {
            records.push(record);
        }
    }
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

async fn ping(
    gateway: SocketAddr,
    client: &mut Option<WebClient>,
    token: &str,
) -> Result<PingResponse, CallError> {
    if !client.as_ref().is_some_and(WebClient::is_open) {
        *client = Some(WebClient::connect(gateway).await?);
    }
    let client = client.as_mut().expect("connected just now");
    client
        .unary(PING, Some(token), &PingRequest::default(), PING_DEADLINE)
        .await
}

/// Pings by outcome: "OK", or the failure's label.
pub fn outcomes(records: &[PingRecord]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for record in records {
        let label = record.failure.clone().unwrap_or_else(|| "OK".to_owned());
        *counts.entry(label).or_default() += 1;
    }
    counts
}

/// The failed pings, each with when it was sent (seconds after `since`),
/// its outcome and how long it took; at most `limit`, for a message.
pub fn failures_listed(records: &[PingRecord], since: Instant, limit: usize) -> String {
    records
        .iter()
        .filter(|record| record.failure.is_some())
        .take(limit)
        .map(|record| {
            format!(
                "t+{:.3}s {} after {:?}",
                record.sent.saturating_duration_since(since).as_secs_f64(),
                record.failure.as_deref().unwrap_or_default(),
                record.took
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The last acknowledged ping of each user (by index), as sent.
pub fn last_acknowledged(records: &[PingRecord], users: usize) -> Vec<Option<&PingRecord>> {
    let mut last: Vec<Option<&PingRecord>> = vec![None; users];
    for record in records.iter().filter(|record| record.failure.is_none()) {
        if last[record.user].is_none_or(|known| known.sent < record.sent) {
            last[record.user] = Some(record);
        }
    }
    last
}

/// Pings sent per second over `records`, for the report.
pub fn rate(records: &[PingRecord]) -> f64 {
    let (Some(first), Some(last)) = (
        records.iter().map(|record| record.sent).min(),
        records.iter().map(|record| record.sent).max(),
    ) else {
        return 0.0;
    };
    let seconds = last.duration_since(first).as_secs_f64();
    if seconds == 0.0 {
        0.0
    } else {
        records.len() as f64 / seconds
    }
}
