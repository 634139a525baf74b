//! PostgreSQL is stopped under load (`pg_ctl stop -m fast`: every session
//! ended, as in a failover), then started again. The promises: pings need no
//! SQL and keep succeeding, with no error at all; what needs the users table
//! fails cleanly with UNAVAILABLE within its deadline: a sign-in, and an
//! admin's listing (Redis still vouches for the admin's token, but the
//! listing reads who the users are from PostgreSQL, and has no degraded
//! answer without them); both work again, without a restart, once it is back.

use presence_core::token::Role;
use presence_proto::admin::StatusFilter;
use presence_system_tests::eventually;
use presence_system_tests::grpc_web::CallError;
use presence_system_tests::load;
use presence_system_tests::stack::{Options, Stack};
use tokio::time::Instant;
use tonic::Code;

use crate::{PING_PERIOD, RECOVERY_WITHIN, assert_outcomes_within, outcomes_line, seconds};

/// How long PostgreSQL stays down (beyond the calls made meanwhile).
const OUTAGE: std::time::Duration = std::time::Duration::from_secs(3);

fn assert_unavailable(outcome: Result<impl std::fmt::Debug, CallError>, what: &str) {
    match outcome {
        Err(CallError::Status(status)) => {
            assert_eq!(status.code(), Code::Unavailable, "{what}: {status:?}");
            assert!(
                !status.message().contains("postgres"),
                "{what} leaks internals: {}",
                status.message()
            );
        }
        other => panic!("{what} with PostgreSQL down: {other:?}"),
    }
}

#[tokio::test]
async fn postgres_stopped_under_load_keeps_every_ping_and_fails_sign_ins_and_listings_cleanly() {
    let stack = Stack::start(Options {
        throwaway_postgres: true,
        ..Options::default()
    })
    .await;
    stack.create_user("newcomer", Role::User).await;
    let load = stack.start_load(PING_PERIOD);
    load.wait_for_every_user(load.started, RECOVERY_WITHIN)
        .await;
    let postgres = stack.postgres.as_ref().expect("the stack's own cluster");

    let stopped = Instant::now();
    postgres.stop().await;
    assert_unavailable(stack.login("newcomer").await, "a sign-in");
    assert_unavailable(stack.list(StatusFilter::All, "").await, "a listing");
    tokio::time::sleep(OUTAGE).await;
    let pings_while_down = load
        .records()
        .iter()
        .filter(|record| record.sent >= stopped)
        .count();

    let restarted = Instant::now();
    postgres.start_again().await;
    let sign_ins_back = eventually(RECOVERY_WITHIN, "a sign-in", || async {
        stack
            .login("newcomer")
            .await
            .ok()
            .map(|_| restarted.elapsed())
    })
    .await;
    let listings_back = eventually(RECOVERY_WITHIN, "a listing", || async {
        stack
            .list(StatusFilter::All, "")
            .await
            .ok()
            .map(|_| restarted.elapsed())
    })
    .await;
    let records = load.stop().await;

    assert!(
        pings_while_down > 0,
        "no ping was sent while PostgreSQL was down"
    );
    assert_outcomes_within(&records, &["OK"], stopped);
    stack.report(
        "postgres_stopped",
        &format!(
            "pings: {} ({:.0}/s), {}; {pings_while_down} sent while PostgreSQL was down\n\
             PostgreSQL down for {}\n\
             after the restart: sign-ins work again in {}, listings in {}",
            records.len(),
            load::rate(&records),
            outcomes_line(&records),
            seconds(restarted.duration_since(stopped)),
            seconds(sign_ins_back),
            seconds(listings_back),
        ),
    );
}
