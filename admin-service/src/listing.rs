//! Statuses for listings and lookups: PostgreSQL for who the users are and
//! their login_history, Redis for their activity, and `status::evaluate` for
//! the verdict. When Redis cannot answer, statuses come from login_history
//! alone and the answer says it is degraded.

use std::collections::HashSet;

use presence_core::settings::ThresholdWatch;
use presence_core::threshold::ThresholdMinutes;
use uuid::Uuid;

use crate::error::AdminError;
use crate::status::{Observations, Status, evaluate};
use crate::store::{
    ActivityReader, ActivitySnapshot, Directory, ListFilter, OnlineSet, RecentLogin, UserRow,
};

pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 500;
pub const MAX_BATCH: usize = 1000;

#[derive(Debug)]
pub struct Listing {
    pub statuses: Vec<(UserRow, Status)>,
    /// The username to continue after, when there is a next page.
    pub continue_after: Option<String>,
    pub total: u64,
    pub online: u64,
    pub threshold: ThresholdMinutes,
    pub generated_at: i64,
    pub degraded: bool,
}

#[derive(Debug)]
pub struct Batch {
    pub statuses: Vec<(UserRow, Status)>,
    pub not_found: Vec<Uuid>,
    pub threshold: ThresholdMinutes,
    pub generated_at: i64,
    pub degraded: bool,
}

#[derive(Clone)]
pub struct StatusReader {
    pub directory: Directory,
    pub activity: ActivityReader,
    pub threshold: ThresholdWatch,
}

fn observe(
    row_login: Option<i64>,
    row_logout: Option<i64>,
    id: Uuid,
    seen: &ActivitySnapshot,
) -> Observations {
    Observations {
        last_activity: seen.last_activity.get(&id).copied(),
        last_login: row_login,
        last_logout_row: row_logout,
        logout_marker: seen.logout_markers.get(&id).copied(),
    }
}

impl StatusReader {
    /// Redis's view of `users`, or `None` (degraded) when it cannot answer.
    async fn activity_of(&self, users: &[Uuid], since: i64) -> Option<ActivitySnapshot> {
        match self.activity.snapshot(users, since).await {
            Ok(snapshot) => Some(snapshot),
            Err(error) => {
                tracing::warn!(%error, "Redis unavailable: answering from login_history alone");
                None
            }
        }
    }

    pub async fn list(
        &self,
        filter: ListFilter,
        page_size: u32,
        after_username: Option<String>,
    ) -> Result<Listing, AdminError> {
        let page_size = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            size if size > MAX_PAGE_SIZE => {
                return Err(AdminError::InvalidArgument(format!(
                    "page_size must be at most {MAX_PAGE_SIZE} (0 means {DEFAULT_PAGE_SIZE})"
                )));
            }
            size => size,
        };
        let now = chrono::Utc::now().timestamp();
        let threshold = self.threshold.current();
        let since = now - threshold.seconds();

        // Filtered pages need to know who is online before choosing the page;
        // without Redis that comes from login_history, in the same query.
        let indexed_online = match filter {
            ListFilter::All => Some(Vec::new()),
            ListFilter::Online | ListFilter::Offline => {
                match self.activity.online_ids(since).await {
                    Ok(ids) => Some(ids),
                    Err(error) => {
                        tracing::warn!(%error, "Redis unavailable: filtering from login_history alone");
                        None
                    }
                }
            }
        };
        let online_set = match &indexed_online {
            Some(ids) => OnlineSet::Indexed(ids),
            None => OnlineSet::ByLoginSince(since),
        };
        let after = after_username.as_deref().unwrap_or("");
        let limit = i64::from(page_size) + 1;
        let mut page = self
            .directory
            .page(after, limit, filter, online_set)
            .await?;
        let seen = match indexed_online {
            Some(_) => {
                let users: Vec<Uuid> = page.rows.iter().map(|row| row.id).collect();
                let seen = self.activity_of(&users, since).await;
                if seen.is_none() {
                    // Redis failed after the page was chosen: start again from
                    // login_history alone, which the degraded counts need.
                    page = self
                        .directory
                        .page(after, limit, filter, OnlineSet::ByLoginSince(since))
                        .await?;
                }
                seen
            }
            None => None,
        };
        let has_more = page.rows.len() > page_size as usize;
        page.rows.truncate(page_size as usize);
        let degraded = seen.is_none();
        let online = match seen.as_ref() {
            Some(seen) => seen.online,
            None => count_online_by_login(&page.recent_logins, now, threshold),
        };
        let seen = seen.unwrap_or_default();

        let total = u64::try_from(page.total_users).unwrap_or_default();
        let continue_after = has_more
            .then(|| page.rows.last().map(|row| row.username.clone()))
            .flatten();
        let statuses = page
            .rows
            .into_iter()
            .map(|row| {
                let status = evaluate(
                    observe(row.last_login, row.last_logout, row.id, &seen),
                    now,
                    threshold,
                );
                (row, status)
            })
            .collect();
        Ok(Listing {
            statuses,
            continue_after,
            total,
            // Activity of a user missing from the directory could tip the sum over.
            online: online.min(total),
            threshold,
            generated_at: now,
            degraded,
        })
    }

    pub async fn batch(&self, requested: &[String]) -> Result<Batch, AdminError> {
        if requested.is_empty() || requested.len() > MAX_BATCH {
            return Err(AdminError::InvalidArgument(format!(
                "user_ids must hold 1 to {MAX_BATCH} ids"
            )));
        }
        let mut ids = Vec::with_capacity(requested.len());
        let mut unique = HashSet::new();
        for text in requested {
            let id = Uuid::parse_str(text).map_err(|_| {
                AdminError::InvalidArgument(format!("user_ids: {text:?} is not a UUID"))
            })?;
            if unique.insert(id) {
                ids.push(id);
            }
        }
        let now = chrono::Utc::now().timestamp();
        let threshold = self.threshold.current();
        let rows = self.directory.users_by_ids(&ids).await?;
        let found: Vec<Uuid> = rows.iter().map(|row| row.id).collect();
        let seen = self.activity_of(&found, now - threshold.seconds()).await;
        let degraded = seen.is_none();
        let seen = seen.unwrap_or_default();
        let mut by_id: std::collections::HashMap<Uuid, UserRow> =
            rows.into_iter().map(|row| (row.id, row)).collect();
        let mut statuses = Vec::new();
        let mut not_found = Vec::new();
        for id in ids {
            match by_id.remove(&id) {
                Some(row) => {
                    let status = evaluate(
                        observe(row.last_login, row.last_logout, id, &seen),
                        now,
                        threshold,
                    );
                    statuses.push((row, status));
                }
                None => not_found.push(id),
            }
        }
        Ok(Batch {
            statuses,
            not_found,
            threshold,
            generated_at: now,
            degraded,
        })
    }
}

/// Without Redis, users online by login_history (rule 2 alone): a recent
/// login and no logout at or after it.
fn count_online_by_login(recent: &[RecentLogin], now: i64, threshold: ThresholdMinutes) -> u64 {
    let nothing_from_redis = ActivitySnapshot::default();
    recent
        .iter()
        .filter(|login| {
            let seen = observe(
                Some(login.last_login),
                login.last_logout,
                login.user_id,
                &nothing_from_redis,
            );
            evaluate(seen, now, threshold).online
        })
        .count() as u64
}
