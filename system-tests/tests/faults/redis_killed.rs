//! Redis is killed (SIGKILL) under load, then started again empty on the
//! same port, as after a crash without persistence. The promises: pings
//! fail fast with UNAVAILABLE (never hang); admins get degraded statuses
//! from login_history; without restarting anything, pings and normal
//! statuses come back, every ping acknowledged after that is in Redis, the
//! counts heal (the sign-ins Redis forgot are put back in the presence
//! index), and a token revoked by a logout before the crash stays refused.

use presence_core::token::Role;
use presence_proto::admin::{ListUserStatusesResponse, StatusFilter};
use presence_system_tests::eventually;
use presence_system_tests::load;
use presence_system_tests::stack::{Options, Stack};
use redis::AsyncCommands;
use tokio::time::Instant;
use tonic::Code;

use crate::{
    PING_PERIOD, RECOVERY_WITHIN, assert_every_user_ends_acknowledged, assert_outcomes_within,
    first_acknowledged_after, outcomes_line, ping, seconds,
};

/// How long Redis stays down.
const OUTAGE: std::time::Duration = std::time::Duration::from_secs(3);

fn is_online(page: &ListUserStatusesResponse, username: &str) -> bool {
    page.statuses
        .iter()
        .any(|status| status.username == username && status.online)
}

#[tokio::test]
async fn redis_killed_under_load_degrades_statuses_then_everything_heals_without_a_restart() {
    let mut stack = Stack::start(Options::default()).await;
    let users = stack.users.len() as u64;
    // Online by their sign-in alone (no ping), which an empty Redis forgets.
    stack.create_user("quiet", Role::User).await;
    stack.login("quiet").await.expect("quiet signs in");
    // Signed out before the crash: their token must stay refused after it.
    stack.create_user("leaver", Role::User).await;
    let leaver = stack.login("leaver").await.expect("leaver signs in");
    stack
        .logout(&leaver.access_token)
        .await
        .expect("leaver signs out");
    // The load users, the admin and quiet.
    let online = users + 2;

    let load = stack.start_load(PING_PERIOD);
    load.wait_for_every_user(load.started, RECOVERY_WITHIN)
        .await;
    eventually(RECOVERY_WITHIN, "every user counted online", || async {
        let page = stack.list(StatusFilter::All, "").await.ok()?;
        (!page.degraded && page.online_count == online).then_some(())
    })
    .await;

    let killed = Instant::now();
    stack.kill_redis();
    let degraded = eventually(RECOVERY_WITHIN, "a degraded listing", || async {
        stack
            .list(StatusFilter::All, "")
            .await
            .ok()
            .filter(|page| page.degraded)
    })
    .await;
    // From login_history alone: a sign-in not followed by a sign-out is online.
    assert!(
        is_online(&degraded, "quiet"),
        "quiet is online by their sign-in"
    );
    assert!(is_online(&degraded, "admin"));
    assert!(!is_online(&degraded, "leaver"), "leaver signed out");
    tokio::time::sleep(OUTAGE.saturating_sub(killed.elapsed())).await;
    let failed_while_down = load
        .records()
        .iter()
        .filter(|record| record.sent >= killed && record.failure.is_some())
        .count();
    assert!(
        failed_while_down > 0,
        "pings went on succeeding with Redis killed: was it?"
    );

    let restarted = Instant::now();
    stack.restart_redis().await;
    let pings_back = first_acknowledged_after(&load, restarted, RECOVERY_WITHIN).await;
    let statuses_back = eventually(RECOVERY_WITHIN, "a normal listing", || async {
        let page = stack.list(StatusFilter::All, "").await.ok()?;
        (!page.degraded).then(|| restarted.elapsed())
    })
    .await;
    let counts_back = eventually(RECOVERY_WITHIN, "the counts healed", || async {
        let page = stack.list(StatusFilter::All, "").await.ok()?;
        (!page.degraded && page.online_count == online && is_online(&page, "quiet"))
            .then(|| restarted.elapsed())
    })
    .await;
    let healed = stack.list(StatusFilter::All, "").await.expect("a listing");
    assert!(!is_online(&healed, "leaver"), "leaver is still signed out");

    // Pings work again, so the revocations are back: the old token is refused.
    let refused = ping(&stack, &leaver.access_token)
        .await
        .expect_err("a token revoked before the crash");
    assert_eq!(refused.code(), Some(Code::Unauthenticated), "{refused}");

    let load_started = load.started;
    let records = load.stop().await;
    assert_outcomes_within(&records, &["OK", "Unavailable"], killed);
    let answered_before_the_kill: Vec<_> = records
        .iter()
        .filter(|record| record.sent + record.took < killed)
        .cloned()
        .collect();
    assert_outcomes_within(&answered_before_the_kill, &["OK"], load_started);
    assert_every_user_ends_acknowledged(&records, stack.users.len());
    // Every ping acknowledged since the restart is in Redis (the key holds
    // the second the service recorded it, never before it was sent).
    let mut redis = stack.redis().await;
    for (user, last) in load::last_acknowledged(&records, stack.users.len())
        .into_iter()
        .enumerate()
    {
        let last = last.expect("every user's pings were acknowledged");
        assert!(
            last.sent >= restarted,
            "user {user}: no ping acknowledged since the restart"
        );
        let recorded: Option<i64> = redis
            .get(stack.keys.last_activity(stack.users[user].id))
            .await
            .expect("Redis answers");
        assert!(
            recorded.is_some_and(|at| at >= last.sent_unix),
            "user {user}: ping sent at {} acknowledged, Redis has {recorded:?}",
            last.sent_unix
        );
    }

    let failures: Vec<_> = records.iter().filter(|r| r.failure.is_some()).collect();
    let slowest_failure = failures.iter().map(|r| r.took).max().unwrap_or_default();
    stack.report(
        "redis_killed",
        &format!(
            "pings: {} ({:.0}/s), {}\n\
             Redis down for {}\n\
             slowest failed ping: {}\n\
             after the restart: pings acknowledged again in {}, statuses not degraded in {}, \
             counts healed in {}",
            records.len(),
            load::rate(&records),
            outcomes_line(&records),
            seconds(restarted.duration_since(killed)),
            seconds(slowest_failure),
            seconds(pings_back),
            seconds(statuses_back),
            seconds(counts_back),
        ),
    );
}
