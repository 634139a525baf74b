//! A user's recent login_history events, as both services show them: the
//! admin's view of one user and the user's own « what we record ».

use std::cmp::Reverse;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::Error;

/// One login_history row as it is shown.
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

/// The last `limit` rows of `user_id`, newest first, read through the index
/// login_history_by_user. A logout row carries the whole second its logout
/// took effect, a login row the instant it was written: within one second
/// the order of writing says which came first, as the status rule compares
/// them.
pub async fn recent_events(
    pool: &PgPool,
    user_id: Uuid,
    limit: i64,
) -> Result<Vec<EventRow>, Error> {
    let mut rows = sqlx::query_as::<_, EventRow>(
        "SELECT id, event, occurred_at, failure_reason,
                host(client_ip) AS client_address, left(user_agent, 256) AS user_agent
         FROM login_history
         WHERE user_id = $1
         ORDER BY occurred_at DESC, id DESC
         LIMIT $2",
    )
    .bind(user_id)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.sort_by_key(newest_first);
    Ok(rows)
}

/// Events as the status rule compares them: by the second, then in the
/// order they were written.
pub fn newest_first(event: &EventRow) -> Reverse<(i64, i64)> {
    Reverse((event.occurred_at.timestamp(), event.id))
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
}
