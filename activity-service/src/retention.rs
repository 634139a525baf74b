//! Keeps login_history and the sign-in throttle counters from growing
//! forever: a background task of every activity-service process deletes
//! login_history rows older than the retention, and expired throttle
//! counters, at start and then at every interval.
//!
//! It deletes in small batches with a pause between them, so a large backlog
//! (the first purge of a year's history) never holds many row locks or a long
//! transaction, nor starves the sign-ins writing to the same table. Several
//! replicas may purge at once: each batch skips the rows another is deleting
//! rather than waiting for them. Every statement has a deadline, and the task
//! stops between two batches when the service shuts down.

use std::future::Future;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::ActivityError;
use crate::throttle::LoginThrottle;

/// Rows deleted per statement.
const BATCH: i64 = 1000;
/// The pause between two batches, leaving the table to the sign-ins.
const PAUSE: Duration = Duration::from_millis(100);
/// The longest one batch may take, whatever PostgreSQL's own timeouts are.
const BATCH_DEADLINE: Duration = Duration::from_secs(30);

/// Deletes up to `$2` rows older than `$1` days; rows another replica's
/// purge is deleting are skipped, not waited for.
const PURGE_LOGIN_HISTORY: &str = "
WITH old AS (
    SELECT id FROM login_history
     WHERE occurred_at < now() - make_interval(days => $1)
     ORDER BY occurred_at
     LIMIT $2
       FOR UPDATE SKIP LOCKED)
DELETE FROM login_history WHERE id IN (SELECT id FROM old)";

#[derive(Clone, Copy, Debug)]
pub struct RetentionSettings {
    /// login_history rows older than this many days are deleted.
    pub login_history_days: i32,
    /// Time between two purges.
    pub interval: Duration,
}

#[derive(Debug, Clone)]
pub struct Purge {
    pool: PgPool,
    throttle: LoginThrottle,
    settings: RetentionSettings,
}

/// Asks a running purge to stop, and waits for it.
#[derive(Debug)]
pub struct RunningPurge {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl RunningPurge {
    /// Stops the purge between two batches; waits at most `within` for it.
    pub async fn stop(self, within: Duration) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(within, self.task).await.is_err() {
            tracing::warn!("the login_history purge did not stop in time");
        }
    }
}

impl Purge {
    pub fn new(pool: PgPool, throttle: LoginThrottle, settings: RetentionSettings) -> Self {
        Self {
            pool,
            throttle,
            settings,
        }
    }

    /// Purges now, then at every interval, until stopped.
    pub fn start(self) -> RunningPurge {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                if let Err(error) = self.purge_once(&mut stopped).await {
                    tracing::warn!(%error, "login_history purge failed; retrying at the next interval");
                }
                tokio::select! {
                    () = tokio::time::sleep(self.settings.interval) => {}
                    () = stop_requested(&mut stopped) => return,
                }
            }
        });
        RunningPurge { stop, task }
    }

    /// One purge of both tables, batch after batch until nothing is left.
    pub async fn purge_once(
        &self,
        stopped: &mut watch::Receiver<bool>,
    ) -> Result<(), ActivityError> {
        let days = self.settings.login_history_days;
        let history = in_batches(stopped, || async {
            let deleted = sqlx::query(PURGE_LOGIN_HISTORY)
                .bind(days)
                .bind(BATCH)
                .execute(&self.pool)
                .await?;
            Ok(deleted.rows_affected())
        })
        .await?;
        let counters = in_batches(stopped, || self.throttle.purge_expired(BATCH)).await?;
        if history > 0 || counters > 0 {
            tracing::info!(
                login_history_rows = history,
                throttle_counters = counters,
                retention_days = days,
                "purged old sign-in records"
            );
        }
        Ok(())
    }
}

/// Runs `batch` until it deletes less than a full batch, pausing between
/// two; returns the rows deleted. Stops early when asked to.
async fn in_batches<F, Fut>(
    stopped: &mut watch::Receiver<bool>,
    mut batch: F,
) -> Result<u64, ActivityError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<u64, ActivityError>>,
{
    let mut total = 0;
    loop {
        if *stopped.borrow() {
            return Ok(total);
        }
        let deleted = tokio::time::timeout(BATCH_DEADLINE, batch())
            .await
            .map_err(|_| ActivityError::Internal("a purge batch timed out".into()))??;
        total += deleted;
        if deleted < BATCH as u64 {
            return Ok(total);
        }
        tokio::select! {
            () = tokio::time::sleep(PAUSE) => {}
            () = stop_requested(stopped) => return Ok(total),
        }
    }
}

/// Completes when a stop is asked for (or the asker is gone).
async fn stop_requested(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}
