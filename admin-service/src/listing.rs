//! Statuses for listings and lookups: PostgreSQL for who the users are and
//! their login_history, Redis for their activity, and `status::evaluate` for
//! the verdict. When Redis cannot answer, statuses come from login_history
//! alone and the answer says it is degraded.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use presence_core::threshold::ThresholdMinutes;
use presence_store::settings::ThresholdWatch;
use uuid::Uuid;

use crate::error::AdminError;
use crate::search::SearchQuery;
use crate::status::{Observations, Status, evaluate, evaluate_account};
use crate::store::{
    ActivityReader, ActivitySnapshot, Directory, ListFilter, RecentLogin, UserRecord, UserRow,
};

pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 500;
pub const MAX_BATCH: usize = 1000;
/// An "online" page is chosen among the ids of the users online (from the
/// presence index) when they are few, and by scanning users in order when
/// they are many. The first costs in proportion to the users online, the
/// second to the page size times total / online: they break even near
/// sqrt(page size × total), kept within these bounds.
const FEW_ONLINE: std::ops::RangeInclusive<usize> = 500..=20_000;
/// The most users one scanning step reads.
const MAX_SCAN_CHUNK: usize = 20_000;
/// `online_per_mille` before any listing has measured it.
pub const UNKNOWN_SHARE: u32 = u32::MAX;

#[derive(Debug)]
pub struct Listing {
    pub statuses: Vec<(UserRow, Status)>,
    /// The username to continue after, when there is a next page.
    pub continue_after: Option<String>,
    pub total: u64,
    /// Online or away.
    pub online: u64,
    /// Of them, away.
    pub away: u64,
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

#[derive(Debug, Clone)]
pub struct StatusReader {
    pub directory: Directory,
    pub activity: ActivityReader,
    pub threshold: ThresholdWatch,
    /// The share of users online at the last listing (per mille), which sizes
    /// the chunks of filtered pages; `UNKNOWN_SHARE` at first.
    pub online_per_mille: Arc<AtomicU32>,
    /// The user total at the last listing (0 at first).
    pub last_total: Arc<AtomicU64>,
}

impl StatusReader {
    pub fn new(directory: Directory, activity: ActivityReader, threshold: ThresholdWatch) -> Self {
        Self {
            directory,
            activity,
            threshold,
            online_per_mille: Arc::new(AtomicU32::new(UNKNOWN_SHARE)),
            last_total: Arc::default(),
        }
    }
}

/// A page being put together.
struct Reading {
    now: i64,
    threshold: ThresholdMinutes,
    since: i64,
    page_size: usize,
    /// Only users matching it are read (every user, when empty).
    search: SearchQuery,
    rows: Vec<(UserRow, Status)>,
    counts: Option<Counts>,
    has_more: bool,
    /// Redis failed during this listing: the rest is read without it rather
    /// than waiting for it to time out again.
    degraded: bool,
}

#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    total: u64,
    /// Online or away.
    online: u64,
    away: u64,
}

/// The facts of one user's status: login_history's (from their row) and
/// Redis's (from the snapshot, empty when degraded).
pub(crate) fn observe(
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
        browsers: seen.browsers.get(&id).copied().unwrap_or(0),
        away_at: seen.away.get(&id).copied(),
    }
}

impl StatusReader {
    /// Redis's view of `users`, or `None` (degraded) when it cannot answer.
    pub(crate) async fn activity_of(&self, users: &[Uuid], since: i64) -> Option<ActivitySnapshot> {
        let away = self.threshold.settings().idle.enabled;
        match self.activity.snapshot(users, since, away).await {
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
        search: SearchQuery,
    ) -> Result<Listing, AdminError> {
        let page_size = page_size_of(page_size)?;
        let now = chrono::Utc::now().timestamp();
        let threshold = self.threshold.current();
        let after = after_username.unwrap_or_default();
        let wanted = match filter {
            ListFilter::All => None,
            ListFilter::Online => Some(true),
            ListFilter::Offline => Some(false),
        };
        let mut reading = Reading {
            now,
            threshold,
            since: now - threshold.seconds(),
            page_size,
            search,
            rows: Vec::new(),
            counts: None,
            has_more: false,
            degraded: false,
        };
        match wanted {
            None => {
                self.read_chunk(&mut reading, &after, page_size as i64 + 1, None, None)
                    .await?;
            }
            Some(true) => match self.few_online(&mut reading).await {
                Some(ids) => {
                    let limit = page_size as i64 + 1;
                    self.read_chunk(&mut reading, &after, limit, Some(&ids), wanted)
                        .await?;
                }
                None => self.scan(&mut reading, &after, true).await?,
            },
            Some(false) => self.scan(&mut reading, &after, false).await?,
        }
        let Counts {
            total,
            online,
            away,
        } = reading.counts.unwrap_or_default();
        if total > 0 {
            let share = (online as f64 / total as f64 * 1000.0) as u32;
            self.online_per_mille.store(share, Ordering::Relaxed);
            self.last_total.store(total, Ordering::Relaxed);
        }
        let continue_after = reading
            .has_more
            .then(|| reading.rows.last().map(|(row, _)| row.username.clone()))
            .flatten();
        Ok(Listing {
            statuses: reading.rows,
            continue_after,
            total,
            // Activity of a user missing from the directory could tip the sum over.
            online: online.min(total),
            away: away.min(online.min(total)),
            threshold,
            generated_at: now,
            degraded: reading.degraded,
        })
    }

    /// The users online by the presence index, when they are few enough to
    /// hand to PostgreSQL as a list; `None` when they are many (or Redis
    /// cannot say): the page is then found by scanning.
    async fn few_online(&self, reading: &mut Reading) -> Option<Vec<Uuid>> {
        let total = self.last_total.load(Ordering::Relaxed);
        let balance = ((reading.page_size as u64 * total) as f64).sqrt() as usize;
        let few = balance.clamp(*FEW_ONLINE.start(), *FEW_ONLINE.end());
        match self.activity.online_ids(reading.since, few).await {
            Ok(ids) => ids,
            Err(error) => {
                tracing::warn!(%error, "Redis unavailable: filtering from login_history alone");
                reading.degraded = true;
                None
            }
        }
    }

    /// Fills a filtered page by reading users in order, in chunks sized by
    /// the share of users expected to match, and keeping those that do. One
    /// chunk is usually enough: about one query to each store per page.
    async fn scan(
        &self,
        reading: &mut Reading,
        after: &str,
        online: bool,
    ) -> Result<(), AdminError> {
        let mut after = after.to_owned();
        loop {
            let chunk = scan_chunk(
                reading.page_size + 1 - reading.rows.len(),
                self.online_per_mille.load(Ordering::Relaxed),
                online,
            );
            match self
                .read_chunk(reading, &after, chunk, None, Some(online))
                .await?
            {
                Some(last) if !reading.has_more => after = last,
                _ => return Ok(()),
            }
        }
    }

    /// Reads up to `limit` users after `after` (only those of `among`, when
    /// given), judges them and adds to the page those whose status is
    /// `wanted` (any, when `None`), up to one more than the page holds (which
    /// says there is a next page). The first chunk also gives the counts.
    /// Returns the last username read when the list may go on past it.
    async fn read_chunk(
        &self,
        reading: &mut Reading,
        after: &str,
        limit: i64,
        among: Option<&[Uuid]>,
        wanted: Option<bool>,
    ) -> Result<Option<String>, AdminError> {
        let page = self
            .directory
            .page(after, limit, among, &reading.search)
            .await?;
        let seen = if reading.degraded {
            None
        } else {
            let users: Vec<Uuid> = page.rows.iter().map(|row| row.id).collect();
            self.activity_of(&users, reading.since).await
        };
        reading.degraded = seen.is_none();
        if reading.counts.is_none() {
            let (online, away) = match &seen {
                Some(seen) => (seen.online, seen.away_online),
                None => {
                    let recent = self.directory.recent_logins(reading.since).await?;
                    let online = count_online_by_login(&recent, reading.now, reading.threshold);
                    (online, 0)
                }
            };
            reading.counts = Some(Counts {
                total: u64::try_from(page.total_users).unwrap_or_default(),
                online,
                away,
            });
        }
        let seen = seen.unwrap_or_default();
        let read = page.rows.len();
        let last = page.rows.last().map(|row| row.username.clone());
        let (now, threshold) = (reading.now, reading.threshold);
        let judged = page.rows.into_iter().map(|row| {
            let seen = observe(row.last_login, row.last_logout, row.id, &seen);
            let status = evaluate(seen, now, threshold);
            (row, status)
        });
        if fill_page(&mut reading.rows, reading.page_size, judged, wanted) {
            reading.has_more = true;
            return Ok(None);
        }
        Ok(last.filter(|_| read as i64 == limit))
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
        let found: Vec<Uuid> = rows.iter().map(|record| record.user.id).collect();
        let seen = self.activity_of(&found, now - threshold.seconds()).await;
        let degraded = seen.is_none();
        let seen = seen.unwrap_or_default();
        let mut by_id: std::collections::HashMap<Uuid, UserRecord> = rows
            .into_iter()
            .map(|record| (record.user.id, record))
            .collect();
        let mut statuses = Vec::new();
        let mut not_found = Vec::new();
        for id in ids {
            match by_id.remove(&id) {
                Some(UserRecord { user, disabled }) => {
                    let seen = observe(user.last_login, user.last_logout, id, &seen);
                    let status = evaluate_account(seen, now, threshold, disabled);
                    statuses.push((user, status));
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

/// The page size asked for: 0 means the default; more than the maximum is refused.
fn page_size_of(requested: u32) -> Result<usize, AdminError> {
    match requested {
        0 => Ok(DEFAULT_PAGE_SIZE as usize),
        size if size > MAX_PAGE_SIZE => Err(AdminError::InvalidArgument(format!(
            "page_size must be at most {MAX_PAGE_SIZE} (0 means {DEFAULT_PAGE_SIZE})"
        ))),
        size => Ok(size as usize),
    }
}

/// How many users the next scanning step reads to find `missing` more of
/// those `online` (or offline), given the share of users online at the last
/// listing: a quarter more than expected plus a few, within `MAX_SCAN_CHUNK`.
fn scan_chunk(missing: usize, online_per_mille: u32, online: bool) -> i64 {
    let share = match online_per_mille {
        UNKNOWN_SHARE => 0.5,
        per_mille => f64::from(per_mille.min(1000)) / 1000.0,
    };
    let share = if online { share } else { 1.0 - share };
    (missing as f64 / share.max(0.001) * 1.25 + 16.0).min(MAX_SCAN_CHUNK as f64) as i64
}

/// Adds to `page` (up to `page_size`) the judged users whose status is
/// `wanted` (any, when `None`), in order. True when one more matched past a
/// full page: there is a next page.
fn fill_page(
    page: &mut Vec<(UserRow, Status)>,
    page_size: usize,
    judged: impl IntoIterator<Item = (UserRow, Status)>,
    wanted: Option<bool>,
) -> bool {
    for (row, status) in judged {
        if wanted.is_some_and(|online| online != status.online) {
            continue;
        }
        if page.len() == page_size {
            return true;
        }
        page.push((row, status));
    }
    false
}

/// Without Redis, users online by login_history (rule 2 alone): a recent
/// login and no logout at or after it.
fn count_online_by_login(recent: &[RecentLogin], now: i64, threshold: ThresholdMinutes) -> u64 {
    recent
        .iter()
        .filter(|login| evaluate(login.observations(), now, threshold).online)
        .count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(statuses: &[(&str, bool)]) -> Vec<(UserRow, Status)> {
        statuses
            .iter()
            .enumerate()
            .map(|(n, (username, online))| {
                let row = UserRow {
                    id: Uuid::from_u128(n as u128),
                    username: (*username).to_owned(),
                    display_name: (*username).to_owned(),
                    last_login: None,
                    last_logout: None,
                };
                let status = Status {
                    online: *online,
                    source: if *online {
                        presence_proto::admin::StatusSource::Activity
                    } else {
                        presence_proto::admin::StatusSource::None
                    },
                    last_activity: None,
                    last_login: None,
                    last_seen: None,
                    active_browsers: 0,
                    state: if *online {
                        presence_proto::admin::PresenceState::Online
                    } else {
                        presence_proto::admin::PresenceState::Offline
                    },
                };
                (row, status)
            })
            .collect()
    }

    fn names(page: &[(UserRow, Status)]) -> Vec<&str> {
        page.iter().map(|(row, _)| row.username.as_str()).collect()
    }

    const USERS: [(&str, bool); 6] = [
        ("ann", true),
        ("bob", false),
        ("cat", true),
        ("dan", false),
        ("eve", true),
        ("fay", false),
    ];

    #[test]
    fn a_filter_keeps_only_the_matching_users_in_order() {
        for (wanted, expected) in [
            (Some(true), vec!["ann", "cat", "eve"]),
            (Some(false), vec!["bob", "dan", "fay"]),
            (None, vec!["ann", "bob", "cat", "dan", "eve", "fay"]),
        ] {
            let mut page = Vec::new();
            let more = fill_page(&mut page, 10, judged(&USERS), wanted);
            assert_eq!(names(&page), expected, "{wanted:?}");
            assert!(!more, "{wanted:?}: everything fit");
        }
    }

    #[test]
    fn a_next_page_is_one_more_match_past_a_full_page() {
        let mut page = Vec::new();
        assert!(fill_page(&mut page, 2, judged(&USERS), Some(true)));
        assert_eq!(names(&page), ["ann", "cat"]);

        // Exactly full, and nothing else matches: no next page.
        let mut page = Vec::new();
        assert!(!fill_page(&mut page, 3, judged(&USERS), Some(true)));
        assert_eq!(names(&page), ["ann", "cat", "eve"]);
        // Full at "dan"; only "eve", online, follows in this chunk.
        let mut page = Vec::new();
        let more = fill_page(&mut page, 2, judged(&USERS[..5]), Some(false));
        assert_eq!(names(&page), ["bob", "dan"]);
        assert!(!more, "no offline user past dan in the chunk");
    }

    #[test]
    fn a_page_is_filled_across_chunks() {
        let mut page = Vec::new();
        assert!(!fill_page(&mut page, 3, judged(&USERS[..2]), Some(true)));
        assert!(!fill_page(&mut page, 3, judged(&USERS[2..4]), Some(true)));
        assert_eq!(names(&page), ["ann", "cat"]);
        assert!(!fill_page(&mut page, 3, judged(&USERS[4..]), Some(true)));
        assert_eq!(names(&page), ["ann", "cat", "eve"]);
    }

    #[test]
    fn page_sizes() {
        assert_eq!(page_size_of(0).unwrap(), DEFAULT_PAGE_SIZE as usize);
        assert_eq!(page_size_of(1).unwrap(), 1);
        assert_eq!(page_size_of(MAX_PAGE_SIZE).unwrap(), MAX_PAGE_SIZE as usize);
        assert!(matches!(
            page_size_of(MAX_PAGE_SIZE + 1),
            Err(AdminError::InvalidArgument(_))
        ));
    }

    #[test]
    fn scan_chunks_follow_the_share_online() {
        // Unknown share: half expected to match, either way.
        assert_eq!(scan_chunk(51, UNKNOWN_SHARE, true), 143);
        assert_eq!(scan_chunk(51, UNKNOWN_SHARE, false), 143);
        // 10 % online: ten times the page for online users, a little more
        // than the page for offline ones.
        assert_eq!(scan_chunk(51, 100, true), 653);
        assert_eq!(scan_chunk(51, 100, false), 86);
        // Everyone offline, looking for online users: capped.
        assert_eq!(scan_chunk(51, 0, true), MAX_SCAN_CHUNK as i64);
        // A share above 1000 per mille is read as all.
        assert_eq!(scan_chunk(51, 5000, true), scan_chunk(51, 1000, true));
        assert_eq!(scan_chunk(51, 1000, false), MAX_SCAN_CHUNK as i64);
        // The last user missing still reads a few.
        assert_eq!(scan_chunk(1, 1000, true), 17);
    }
}
