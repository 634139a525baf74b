//! The reliability promises of docs/reliability.md, tested on the real
//! binaries under a steady ping load through the gateway: each module
//! injects one fault into processes the test owns (a throwaway Redis or
//! PostgreSQL, a service replica, the network in between) and checks what
//! users would notice. Figures (recovery times, errors by code) are printed
//! and written to `target/reliability/`, never asserted.

mod admin_killed;
mod history_writer_hung;
mod postgres_stopped;
mod redis_killed;
mod replicas_by_name;
mod rolling_restart;
mod slow_redis;

use std::collections::BTreeMap;
use std::time::Duration;

use presence_proto::activity::{PingRequest, PingResponse};
use presence_system_tests::grpc_web::CallError;
use presence_system_tests::load::{self, PING, PING_DEADLINE, PingRecord};
use presence_system_tests::stack::Stack;
use tokio::time::Instant;

/// Each load user pings this often: 200 users make about 330 pings a second.
pub const PING_PERIOD: Duration = Duration::from_millis(600);
/// How long a store or replica may take to be back in use after it is.
pub const RECOVERY_WITHIN: Duration = Duration::from_secs(30);

/// One ping through the gateway with `token`, on a connection of its own.
pub async fn ping(stack: &Stack, token: &str) -> Result<PingResponse, CallError> {
    stack
        .browser()
        .await
        .unary(PING, Some(token), &PingRequest::default(), PING_DEADLINE)
        .await
}

/// Waits until the load has a ping sent after `since` acknowledged, and
/// returns how long after `since` it was sent.
pub async fn first_acknowledged_after(
    load: &load::PingLoad,
    since: Instant,
    within: Duration,
) -> Duration {
    presence_system_tests::eventually(within, "a ping acknowledged", || async {
        load.records()
            .iter()
            .filter(|record| record.sent >= since && record.failure.is_none())
            .map(|record| record.sent + record.took)
            .min()
            .map(|answered| answered.duration_since(since))
    })
    .await
}

/// The pings' outcomes, for messages and reports: `OK: 9000, Unavailable: 12`.
pub fn outcomes_line(records: &[PingRecord]) -> String {
    let outcomes: BTreeMap<String, usize> = load::outcomes(records);
    outcomes
        .iter()
        .map(|(outcome, count)| format!("{outcome}: {count}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Panics, listing the first failures, if any ping ended otherwise than
/// with one of `allowed` ("OK" or a code's name).
pub fn assert_outcomes_within(records: &[PingRecord], allowed: &[&str], since: Instant) {
    let outcomes = load::outcomes(records);
    let unexpected: Vec<&String> = outcomes
        .keys()
        .filter(|outcome| !allowed.contains(&outcome.as_str()))
        .collect();
    assert!(
        unexpected.is_empty(),
        "pings ended with {unexpected:?} ({}); the first failures:\n{}",
        outcomes_line(records),
        load::failures_listed(records, since, 20)
    );
}

/// Panics unless every user's last ping was acknowledged: the load ended healthy.
pub fn assert_every_user_ends_acknowledged(records: &[PingRecord], users: usize) {
    let mut last: Vec<Option<&PingRecord>> = vec![None; users];
    for record in records {
        if last[record.user].is_none_or(|known| known.sent < record.sent) {
            last[record.user] = Some(record);
        }
    }
    let failing: Vec<String> = last
        .iter()
        .enumerate()
        .filter_map(|(user, record)| match record {
            None => Some(format!("user {user}: no ping")),
            Some(record) => record
                .failure
                .as_ref()
                .map(|failure| format!("user {user}: {failure}")),
        })
        .collect();
    assert!(
        failing.is_empty(),
        "the load did not end healthy: {failing:?}"
    );
}

/// Seconds with millisecond precision, for reports.
pub fn seconds(duration: Duration) -> String {
    format!("{:.3} s", duration.as_secs_f64())
}
