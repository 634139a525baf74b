//! Keeps the logins of the presence index in step with login_history.
//!
//! The presence index is what makes the counts one `ZCOUNT`: it holds every
//! user online now, by a ping or by a login not followed by a logout. The
//! activity service writes both as they happen; this keeper covers what it
//! cannot: logins written while Redis was unreachable, a Redis that lost its
//! data, rows written to login_history by another system, and a threshold
//! raised past logins the index no longer holds.
//!
//! - Every `TICK` it applies the login_history rows written since the last
//!   look (by row id, re-reading `LOOKBACK_ROWS` behind it for rows whose
//!   transaction committed late): a recent login enters the index unless a
//!   logout marker shows it was followed by a logout; a logout takes the user
//!   out unless a later ping or login moved their entry past it.
//! - A full pass puts every recent login with no later logout in the index:
//!   at start, when the threshold changes, when Redis lacks the
//!   `presence_index_complete` marker (it lost its data), and every
//!   `FULL_PASS_EVERY` as a safety net.
//!
//! Every admin replica runs one; the writes are idempotent. Each of its
//! PostgreSQL queries has a deadline (Redis calls have the client's), so a
//! store that hangs fails a step, which is retried after a growing delay.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use presence_core::threshold::ThresholdMinutes;
use presence_store::settings::ThresholdWatch;
use uuid::Uuid;

use crate::background::{Retry, within};
use crate::error::AdminError;
use crate::status::evaluate;
use crate::store::{ActivityReader, Directory, HistoryEvent};

const TICK: Duration = Duration::from_secs(1);
const FULL_PASS_EVERY: Duration = Duration::from_secs(300);
/// How far behind the newest applied row each look starts again.
const LOOKBACK_ROWS: i64 = 1000;
/// Rows read per query; a backlog is read in several.
const ROWS_PER_READ: i64 = 5000;
/// The longest pause after failed steps.
const RETRY_AT_MOST_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct IndexKeeper {
    directory: Directory,
    index: ActivityReader,
    threshold: ThresholdWatch,
    /// The newest login_history row applied; `None` until a full pass.
    cursor: Option<i64>,
    /// Rows applied within the look-back window, so none is applied twice.
    applied: BTreeSet<i64>,
    /// The threshold of the last full pass.
    full_pass_threshold: Option<ThresholdMinutes>,
    last_full_pass: tokio::time::Instant,
}

impl IndexKeeper {
    pub fn start(directory: Directory, index: ActivityReader, threshold: ThresholdWatch) {
        let keeper = Self {
            directory,
            index,
            threshold,
            cursor: None,
            applied: BTreeSet::new(),
            full_pass_threshold: None,
            last_full_pass: tokio::time::Instant::now(),
        };
        tokio::spawn(keeper.run());
    }

    async fn run(mut self) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut retry = Retry::new(RETRY_AT_MOST_EVERY);
        loop {
            tick.tick().await;
            match self.step().await {
                Ok(()) => retry.succeeded(),
                // Redis or PostgreSQL is away or stuck: the same rows are read again later.
                Err(error) => {
                    let delay = retry.failed();
                    if matches!(error, AdminError::TimedOut(..)) {
                        tracing::warn!(%error, ?delay, "presence index not reconciled this time");
                    } else {
                        tracing::debug!(%error, ?delay, "presence index not reconciled this time");
                    }
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    async fn step(&mut self) -> Result<(), AdminError> {
        let threshold = self.threshold.current();
        let full_pass_due = self.cursor.is_none()
            || self.full_pass_threshold != Some(threshold)
            || self.last_full_pass.elapsed() >= FULL_PASS_EVERY
            || !self.index.index_complete().await?;
        if full_pass_due {
            self.full_pass(threshold).await
        } else {
            self.apply_new_rows(threshold).await
        }
    }

    async fn full_pass(&mut self, threshold: ThresholdMinutes) -> Result<(), AdminError> {
        // Rows written from here on are applied by the next looks.
        let cursor = within(
            "reading the newest login_history row",
            self.directory.last_history_row(),
        )
        .await?;
        let now = chrono::Utc::now().timestamp();
        let logins: Vec<(Uuid, i64)> = within(
            "reading recent logins",
            self.directory.recent_logins(now - threshold.seconds()),
        )
        .await?
        .into_iter()
        .filter(|login| evaluate(login.observations(), now, threshold).online)
        .map(|login| (login.user_id, login.last_login))
        .collect();
        let written = self.index.add_logins(&logins).await?;
        self.index.mark_index_complete().await?;
        tracing::info!(
            recent_logins = logins.len(),
            written,
            "presence index reconciled with login_history"
        );
        self.cursor = Some(self.cursor.map_or(cursor, |old| old.max(cursor)));
        self.full_pass_threshold = Some(threshold);
        self.last_full_pass = tokio::time::Instant::now();
        Ok(())
    }

    async fn apply_new_rows(&mut self, threshold: ThresholdMinutes) -> Result<(), AdminError> {
        loop {
            let cursor = self.cursor.unwrap_or_default();
            let rows = within(
                "reading new login_history rows",
                self.directory
                    .history_after(cursor - LOOKBACK_ROWS, ROWS_PER_READ),
            )
            .await?;
            let read_all = (rows.len() as i64) < ROWS_PER_READ;
            let fresh: Vec<HistoryEvent> = rows
                .into_iter()
                .filter(|row| !self.applied.contains(&row.row))
                .collect();
            let since = chrono::Utc::now().timestamp() - threshold.seconds();
            let (logins, logouts) = net_effect(&fresh, since);
            self.index.add_logins(&logins).await?;
            self.index.remove_logged_out(&logouts).await?;
            let newest = fresh.iter().map(|row| row.row).max().unwrap_or(cursor);
            self.applied.extend(fresh.iter().map(|row| row.row));
            self.cursor = Some(cursor.max(newest));
            let oldest_kept = cursor.max(newest) - LOOKBACK_ROWS;
            self.applied = self.applied.split_off(&oldest_kept);
            if read_all {
                return Ok(());
            }
        }
    }
}

/// A user and a moment (Unix seconds).
type UserAt = (Uuid, i64);

/// What rows in write order do to the index: the logins since `since` to add
/// (the last of each user, unless a logout of theirs follows it) and the
/// logouts to apply.
fn net_effect(rows: &[HistoryEvent], since: i64) -> (Vec<UserAt>, Vec<UserAt>) {
    let mut logins: HashMap<Uuid, i64> = HashMap::new();
    let mut logouts = Vec::new();
    for row in rows {
        if row.login {
            if row.at >= since {
                let login = logins.entry(row.user_id).or_insert(row.at);
                *login = (*login).max(row.at);
            }
        } else {
            if logins.get(&row.user_id).is_some_and(|at| *at <= row.at) {
                logins.remove(&row.user_id);
            }
            logouts.push((row.user_id, row.at));
        }
    }
    (logins.into_iter().collect(), logouts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(row: i64, user: u128, login: bool, at: i64) -> HistoryEvent {
        HistoryEvent {
            row,
            user_id: Uuid::from_u128(user),
            login,
            at,
        }
    }

    #[test]
    fn a_logout_cancels_the_logins_before_it_but_not_after() {
        let rows = [
            row(1, 1, true, 100),
            row(2, 1, false, 150),
            row(3, 2, true, 100),
            row(4, 2, false, 150),
            row(5, 2, true, 200),
            row(6, 3, true, 10),
        ];
        let (mut logins, logouts) = net_effect(&rows, 50);
        logins.sort();
        assert_eq!(logins, vec![(Uuid::from_u128(2), 200)]);
        assert_eq!(
            logouts,
            vec![(Uuid::from_u128(1), 150), (Uuid::from_u128(2), 150)]
        );
    }

    #[test]
    fn a_logout_in_the_same_second_as_the_login_wins() {
        let (logins, _) = net_effect(&[row(1, 1, true, 100), row(2, 1, false, 100)], 0);
        assert!(logins.is_empty());
    }
}
