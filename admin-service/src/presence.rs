//! One user's presence (`GetUserPresence`): their status judged exactly as
//! listings judge it (the same threshold, the same Redis snapshot, the same
//! rule, degraded to login_history alone when Redis cannot answer), the facts
//! it was judged on, and their last login_history events.

use std::cmp::Reverse;

use chrono::{DateTime, Utc};
use presence_core::threshold::ThresholdMinutes;
use presence_proto::admin::{LoginEvent, LoginEventKind};
use presence_proto::timestamp_from;
use uuid::Uuid;

use crate::error::AdminError;
use crate::listing::{StatusReader, observe};
use crate::status::{Status, evaluate_account};
use crate::store::{UserRecord, UserRow};

/// How many login_history events a presence shows.
pub const RECENT_EVENTS: i64 = 20;

#[derive(Debug)]
pub struct Presence {
    pub user: UserRow,
    /// A disabled account is offline whatever the stores say, as listings
    /// leave it out of the users (and of the online ones).
    pub disabled: bool,
    pub status: Status,
    /// The later of login_history's last logout and Redis's logout marker.
    pub last_logout: Option<i64>,
    /// Seconds from the last ping to `generated_at` (0 for a ping from a
    /// clock slightly ahead); `None` without a ping.
    pub last_activity_age: Option<u64>,
    pub threshold: ThresholdMinutes,
    pub generated_at: i64,
    pub degraded: bool,
    /// Newest first, at most `RECENT_EVENTS`.
    pub recent_events: Vec<EventRow>,
}

/// One login_history row as the presence shows it.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct EventRow {
    /// Its row in login_history: the order rows were written.
    pub id: i64,
    pub event: String,
    pub occurred_at: DateTime<Utc>,
    pub failure_reason: Option<String>,
    /// `host(client_ip)`: the address without its mask.
    pub client_address: Option<String>,
    /// At most 256 characters (cut in SQL, on characters, not bytes).
    pub user_agent: Option<String>,
}

impl EventRow {
    pub fn to_proto(&self) -> LoginEvent {
        LoginEvent {
            kind: kind_of(&self.event) as i32,
            occurred_at: Some(timestamp_from(self.occurred_at)),
            failure_reason: self.failure_reason.clone().unwrap_or_default(),
            client_address: self.client_address.clone().unwrap_or_default(),
            user_agent: self.user_agent.clone().unwrap_or_default(),
        }
    }
}

/// The contract's kind of a login_history `event`; one it does not know (a
/// kind added to the table later) is UNSPECIFIED rather than a failure.
pub fn kind_of(event: &str) -> LoginEventKind {
    match event {
        "login_success" => LoginEventKind::LoginSuccess,
        "login_failure" => LoginEventKind::LoginFailure,
        "logout" => LoginEventKind::Logout,
        _ => LoginEventKind::Unspecified,
    }
}

/// A logout row carries the whole second the logout took effect (it may be
/// written later, on a retry), a login row the instant it was written: by
/// time alone, a logout in the same second as its login would look older.
/// Events are ordered as the status rule compares them: by the second, then
/// in the order they were written.
fn newest_first(event: &EventRow) -> Reverse<(i64, i64)> {
    Reverse((event.occurred_at.timestamp(), event.id))
}

impl StatusReader {
    /// The presence of user `id`; NOT_FOUND when there is no such user.
    pub async fn presence(&self, id: Uuid) -> Result<Presence, AdminError> {
        let now = chrono::Utc::now().timestamp();
        let threshold = self.threshold.current();
        let Some(UserRecord { user, disabled }) = self.directory.users_by_ids(&[id]).await?.pop()
        else {
            return Err(AdminError::NotFound("no user has this id"));
        };
        let mut recent_events = self.directory.recent_events(id, RECENT_EVENTS).await?;
        recent_events.sort_by_key(newest_first);
        let seen = self.activity_of(&[id], now - threshold.seconds()).await;
        let degraded = seen.is_none();
        let seen = observe(
            user.last_login,
            user.last_logout,
            id,
            &seen.unwrap_or_default(),
        );
        let status = evaluate_account(seen, now, threshold, disabled);
        Ok(Presence {
            user,
            disabled,
            status,
            last_logout: seen.last_logout(),
            last_activity_age: seen
                .last_activity
                .map(|at| u64::try_from(now - at).unwrap_or_default()),
            threshold,
            generated_at: now,
            degraded,
            recent_events,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: i64, event: &str, at: DateTime<Utc>) -> EventRow {
        EventRow {
            id,
            event: event.into(),
            occurred_at: at,
            failure_reason: None,
            client_address: None,
            user_agent: None,
        }
    }

    #[test]
    fn a_logout_in_the_second_of_its_login_comes_first() {
        let second = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let mut events = [
            event(4, "login_success", second + chrono::Duration::seconds(5)),
            event(
                2,
                "login_success",
                second + chrono::Duration::milliseconds(400),
            ),
            event(3, "logout", second),
            event(1, "login_failure", second - chrono::Duration::seconds(1)),
        ];
        events.sort_by_key(newest_first);
        let ids: Vec<i64> = events.iter().map(|event| event.id).collect();
        assert_eq!(ids, [4, 3, 2, 1]);
    }

    #[test]
    fn every_event_of_the_table_has_its_kind_and_others_are_unspecified() {
        assert_eq!(kind_of("login_success"), LoginEventKind::LoginSuccess);
        assert_eq!(kind_of("login_failure"), LoginEventKind::LoginFailure);
        assert_eq!(kind_of("logout"), LoginEventKind::Logout);
        assert_eq!(kind_of("password_reset"), LoginEventKind::Unspecified);
        assert_eq!(kind_of(""), LoginEventKind::Unspecified);
    }

    #[test]
    fn missing_columns_are_empty_strings() {
        let row = EventRow {
            id: 1,
            event: "password_reset".into(),
            occurred_at: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            failure_reason: None,
            client_address: None,
            user_agent: None,
        };
        let event = row.to_proto();
        assert_eq!(event.kind, LoginEventKind::Unspecified as i32);
        assert_eq!(event.occurred_at.unwrap().seconds, 1_800_000_000);
        assert!(event.failure_reason.is_empty());
        assert!(event.client_address.is_empty());
        assert!(event.user_agent.is_empty());
    }
}
