//! The activity settings (the "online" threshold and idle detection):
//! PostgreSQL is the source of
//! truth, and every process follows changes live through LISTEN/NOTIFY, so a
//! change reaches every replica of every service within a second without any
//! cache that can stay stale.
//!
//! A watcher re-reads the row after every (re)connection, because
//! notifications sent while it was disconnected are lost, and every
//! `RESYNC_INTERVAL` as a last resort; then it also checks that its listening
//! connection still answers, as one that died silently would never say so.
//! Every query has a deadline (`QUERY_DEADLINE`), so a PostgreSQL that hangs
//! makes the watcher reconnect (after a growing delay), not stop.

use std::future::Future;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::watch;

use crate::Error;
use presence_core::threshold::{IdleDetection, IdleMinutes, ThresholdMinutes};

/// The channel the `settings_changed` trigger notifies.
pub const SETTINGS_CHANNEL: &str = "presence_settings_changed";
const RESYNC_INTERVAL: Duration = Duration::from_secs(30);
/// The first wait before listening again; it doubles while attempts fail.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);
const RECONNECT_AT_MOST_EVERY: Duration = Duration::from_secs(30);
/// The longest any query of the watcher (connecting and LISTEN included) may take.
const QUERY_DEADLINE: Duration = Duration::from_secs(5);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActivitySettings {
    pub threshold: ThresholdMinutes,
    pub idle: IdleDetection,
    pub updated_at: Option<DateTime<Utc>>,
    /// Username of the admin who made the last change.
    pub updated_by: Option<String>,
}

impl ActivitySettings {
    pub fn live(&self) -> LiveSettings {
        LiveSettings {
            threshold: self.threshold,
            idle: self.idle,
        }
    }
}

/// Reads the settings row.
pub async fn load(pool: &PgPool) -> Result<ActivitySettings, Error> {
    #[allow(clippy::type_complexity)]
    let (minutes, idle_enabled, idle_minutes, updated_at, updated_by): (
        i32,
        bool,
        i32,
        Option<DateTime<Utc>>,
        Option<String>,
    ) = sqlx::query_as(
        "SELECT s.threshold_minutes, s.idle_detection_enabled, s.idle_after_minutes,
                s.updated_at, u.username
         FROM settings s LEFT JOIN users u ON u.id = s.updated_by",
    )
    .fetch_one(pool)
    .await?;
    // The columns' CHECK constraints keep them in range; a value outside would
    // mean a hand-edited database, and the default is the safe reading.
    let threshold = ThresholdMinutes::new(i64::from(minutes)).unwrap_or_default();
    let idle = IdleDetection {
        enabled: idle_enabled,
        after: IdleMinutes::new(i64::from(idle_minutes)).unwrap_or_default(),
    };
    Ok(ActivitySettings {
        threshold,
        idle,
        updated_at,
        updated_by,
    })
}

/// The settings every ping and status depends on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LiveSettings {
    pub threshold: ThresholdMinutes,
    pub idle: IdleDetection,
}

/// The settings in force in this process, kept current by a background task.
#[derive(Debug, Clone)]
pub struct ThresholdWatch {
    current: watch::Receiver<LiveSettings>,
}

impl ThresholdWatch {
    /// Reads the threshold (falling back to the default while PostgreSQL is
    /// unreachable) and follows every change from then on.
    pub async fn start(pool: PgPool) -> Self {
        let initial = match within(load(&pool)).await {
            Ok(settings) => settings.live(),
            Err(error) => {
                tracing::warn!(%error, "cannot read the threshold yet; using the default until PostgreSQL answers");
                LiveSettings::default()
            }
        };
        let (sender, current) = watch::channel(initial);
        tokio::spawn(follow_changes(pool, sender));
        Self { current }
    }

    pub fn current(&self) -> ThresholdMinutes {
        self.current.borrow().threshold
    }

    /// The threshold and idle detection, read together.
    pub fn settings(&self) -> LiveSettings {
        *self.current.borrow()
    }
}

/// `query`, failing if it outlives `QUERY_DEADLINE`.
async fn within<T>(query: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
    tokio::time::timeout(QUERY_DEADLINE, query)
        .await
        .unwrap_or_else(|_| {
            Err(Error::Database(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {QUERY_DEADLINE:?}"),
            ))))
        })
}

async fn follow_changes(pool: PgPool, sender: watch::Sender<LiveSettings>) {
    let retry = ExponentialBuilder::new()
        .with_min_delay(RECONNECT_DELAY)
        .with_max_delay(RECONNECT_AT_MOST_EVERY)
        .without_max_times();
    let mut delays = retry.build();
    loop {
        if sender.is_closed() {
            return;
        }
        match within(listen(&pool)).await {
            Ok(listener) => {
                delays = retry.build();
                follow_listener(&pool, listener, &sender).await;
            }
            Err(error) => {
                let delay = delays.next().unwrap_or(RECONNECT_AT_MOST_EVERY);
                tracing::debug!(%error, ?delay, "cannot listen for settings changes; retrying");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

async fn listen(pool: &PgPool) -> Result<PgListener, Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(SETTINGS_CHANNEL).await?;
    Ok(listener)
}

/// Follows one listening connection until it is lost or stops answering.
async fn follow_listener(
    pool: &PgPool,
    mut listener: PgListener,
    sender: &watch::Sender<LiveSettings>,
) {
    // Listening before reading: a change made in between is then both read
    // and notified, never missed.
    reload(pool, sender).await;
    loop {
        match tokio::time::timeout(RESYNC_INTERVAL, listener.try_recv()).await {
            Ok(Ok(Some(_))) => reload(pool, sender).await,
            Err(_) => {
                let answered = within(async {
                    sqlx::query("SELECT 1").execute(&mut listener).await?;
                    Ok(())
                })
                .await;
                if let Err(error) = answered {
                    tracing::warn!(%error, "the settings notification connection does not answer; reconnecting");
                    return;
                }
                reload(pool, sender).await;
            }
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

async fn reload(pool: &PgPool, sender: &watch::Sender<LiveSettings>) {
    match within(load(pool)).await {
        Ok(settings) => {
            let live = settings.live();
            let changed = sender.send_if_modified(|current| {
                let changed = *current != live;
                *current = live;
                changed
            });
            if changed {
                tracing::info!(
                    threshold_minutes = live.threshold.minutes(),
                    idle_detection = live.idle.enabled,
                    idle_after_minutes = live.idle.after.minutes(),
                    "activity settings changed"
                );
            }
        }
        Err(error) => tracing::warn!(%error, "cannot reload the activity settings"),
    }
}
