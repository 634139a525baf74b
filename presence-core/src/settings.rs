//! The activity settings (the "online" threshold): PostgreSQL is the source of
//! truth, and every process follows changes live through LISTEN/NOTIFY, so a
//! change reaches every replica of every service within a second without any
//! cache that can stay stale.
//!
//! A watcher re-reads the row after every (re)connection, because
//! notifications sent while it was disconnected are lost, and every
//! `RESYNC_INTERVAL` as a last resort.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::watch;

use crate::Error;
use crate::threshold::ThresholdMinutes;

/// The channel the `settings_changed` trigger notifies.
pub const SETTINGS_CHANNEL: &str = "presence_settings_changed";
const RESYNC_INTERVAL: Duration = Duration::from_secs(30);
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActivitySettings {
    pub threshold: ThresholdMinutes,
    pub updated_at: Option<DateTime<Utc>>,
    /// Username of the admin who made the last change.
    pub updated_by: Option<String>,
}

/// Reads the settings row.
pub async fn load(pool: &PgPool) -> Result<ActivitySettings, Error> {
    let (minutes, updated_at, updated_by): (i32, Option<DateTime<Utc>>, Option<String>) =
        sqlx::query_as(
            "SELECT s.threshold_minutes, s.updated_at, u.username
             FROM settings s LEFT JOIN users u ON u.id = s.updated_by",
        )
        .fetch_one(pool)
        .await?;
    // The column's CHECK constraint keeps it in range; a value outside would
    // mean a hand-edited database, and the default is the safe reading.
    let threshold = ThresholdMinutes::new(i64::from(minutes)).unwrap_or_default();
    Ok(ActivitySettings {
        threshold,
        updated_at,
        updated_by,
    })
}

/// The threshold in force in this process, kept current by a background task.
#[derive(Clone)]
pub struct ThresholdWatch {
    current: watch::Receiver<ThresholdMinutes>,
}

impl ThresholdWatch {
    /// Reads the threshold (falling back to the default while PostgreSQL is
    /// unreachable) and follows every change from then on.
    pub async fn start(pool: PgPool) -> Self {
        let initial = match load(&pool).await {
            Ok(settings) => settings.threshold,
            Err(error) => {
                tracing::warn!(%error, "cannot read the threshold yet; using the default until PostgreSQL answers");
                ThresholdMinutes::default()
            }
        };
        let (sender, current) = watch::channel(initial);
        tokio::spawn(follow_changes(pool, sender));
        Self { current }
    }

    pub fn current(&self) -> ThresholdMinutes {
        *self.current.borrow()
    }

    /// A receiver that wakes on every change (the status stream re-evaluates expiry with it).
    pub fn subscribe(&self) -> watch::Receiver<ThresholdMinutes> {
        self.current.clone()
    }
}

async fn follow_changes(pool: PgPool, sender: watch::Sender<ThresholdMinutes>) {
    loop {
        if sender.is_closed() {
            return;
        }
        match listen(&pool).await {
            Ok(listener) => follow_listener(&pool, listener, &sender).await,
            Err(error) => {
                tracing::debug!(%error, "cannot listen for settings changes; retrying");
                tokio::time::sleep(RECONNECT_DELAY).await;
            }
        }
    }
}

async fn listen(pool: &PgPool) -> Result<PgListener, Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(SETTINGS_CHANNEL).await?;
    Ok(listener)
}

/// Follows one listening connection until it is lost.
async fn follow_listener(
    pool: &PgPool,
    mut listener: PgListener,
    sender: &watch::Sender<ThresholdMinutes>,
) {
    // Listening before reading: a change made in between is then both read
    // and notified, never missed.
    reload(pool, sender).await;
    loop {
        match tokio::time::timeout(RESYNC_INTERVAL, listener.try_recv()).await {
            Ok(Ok(Some(_))) | Err(_) => reload(pool, sender).await,
            Ok(Ok(None)) | Ok(Err(_)) => {
                tracing::warn!("lost the settings notification connection; reconnecting");
                return;
            }
        }
        if sender.is_closed() {
            return;
        }
    }
}

async fn reload(pool: &PgPool, sender: &watch::Sender<ThresholdMinutes>) {
    match load(pool).await {
        Ok(settings) => {
            let changed = sender.send_if_modified(|current| {
                let changed = *current != settings.threshold;
                *current = settings.threshold;
                changed
            });
            if changed {
                tracing::info!(
                    threshold_minutes = settings.threshold.minutes(),
                    "activity threshold changed"
                );
            }
        }
        Err(error) => tracing::warn!(%error, "cannot reload the activity settings"),
    }
}
