//! One user's presence (`GetUserPresence`): their status judged exactly as
//! listings judge it (the same threshold, the same Redis snapshot, the same
//! rule, degraded to login_history alone when Redis cannot answer), the facts
//! it was judged on, and their last login_history events.

use presence_core::threshold::ThresholdMinutes;
use presence_proto::admin::{LoginEvent, LoginEventKind};
use presence_proto::timestamp_from;
use presence_store::login_history::EventRow;
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

/// The contract's message for one login_history row.
pub fn login_event(row: &EventRow) -> LoginEvent {
    LoginEvent {
        kind: kind_of(&row.event) as i32,
        occurred_at: Some(timestamp_from(row.occurred_at)),
        failure_reason: row.failure_reason.clone().unwrap_or_default(),
        client_address: row.client_address.clone().unwrap_or_default(),
        user_agent: row.user_agent.clone().unwrap_or_default(),
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

impl StatusReader {
    /// The presence of user `id`; NOT_FOUND when there is no such user.
    pub async fn presence(&self, id: Uuid) -> Result<Presence, AdminError> {
        let now = chrono::Utc::now().timestamp();
        let threshold = self.threshold.current();
        let Some(UserRecord { user, disabled }) = self.directory.users_by_ids(&[id]).await?.pop()
        else {
            return Err(AdminError::NotFound("no user has this id"));
        };
        let recent_events = self.directory.recent_events(id, RECENT_EVENTS).await?;
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
    use chrono::DateTime;

    use super::*;

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
        let event = login_event(&row);
        assert_eq!(event.kind, LoginEventKind::Unspecified as i32);
        assert_eq!(event.occurred_at.unwrap().seconds, 1_800_000_000);
        assert!(event.failure_reason.is_empty());
        assert!(event.client_address.is_empty());
        assert!(event.user_agent.is_empty());
    }
}
