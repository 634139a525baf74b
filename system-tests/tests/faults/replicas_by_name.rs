//! The activity replicas found by name, as pods behind a headless Service:
//! the gateway resolves one name (every second here) to two replicas; a
//! third, started under load and added to the name, must take its share of
//! the pings; then one replica is told to stop (SIGTERM) while the name
//! still lists it, as when the endpoint change has not reached the
//! resolver yet, and leaves the name once it exited. The promises: pings
//! spread over every replica the name lists, a new one gets its share
//! within seconds, and not one ping fails as a replica leaves.
//!
//! Each replica counts the calls it was sent in its own log: its HTTP/2
//! layer logs every frame it receives (`h2` at debug), and a call opens
//! with one HEADERS frame (the gateway's readiness checks, one call every
//! 2 s, are among them).

use std::time::Duration;

use presence_system_tests::stack::{EXIT_WITHIN, Options, Stack, env};
use tokio::time::Instant;

use crate::{PING_PERIOD, RECOVERY_WITHIN, assert_outcomes_within, outcomes_line, seconds};

/// What a replica logs for each call it receives.
const CALL_RECEIVED: &str = "frame=Headers";
/// Each of three replicas takes at least this share of a window's calls
/// (a third, but for the window's edges and the readiness checks).
const FAIR_SHARE: f64 = 0.25;
/// Calls are counted over windows this long.
const WINDOW: Duration = Duration::from_secs(2);

/// The calls each activity replica has received so far.
fn calls_received(stack: &Stack) -> Vec<usize> {
    stack
        .activity
        .iter()
        .map(|replica| replica.log_lines_with(CALL_RECEIVED))
        .collect()
}

/// Waits until, over one window, every activity replica took a fair share
/// of the calls; returns when that window ended and its counts.
async fn fair_share(stack: &Stack, within: Duration) -> (Instant, Vec<usize>) {
    let deadline = Instant::now() + within;
    let mut before = calls_received(stack);
    loop {
        tokio::time::sleep(WINDOW).await;
        let now = calls_received(stack);
        let window: Vec<usize> = now
            .iter()
            .zip(&before)
            .map(|(now, was)| now - was)
            .collect();
        let total: usize = window.iter().sum();
        if total > 0
            && window
                .iter()
                .all(|calls| *calls as f64 >= FAIR_SHARE * total as f64)
        {
            return (Instant::now(), window);
        }
        assert!(
            Instant::now() < deadline,
            "the replicas' calls over the last {WINDOW:?} are {window:?}: not each at least \
             {FAIR_SHARE} of them within {within:?}"
        );
        before = now;
    }
}

#[tokio::test]
async fn pings_spread_over_every_replica_the_name_lists_and_none_fails_as_one_leaves() {
    let mut stack = Stack::start(Options {
        activity_replicas: 2,
        activity_by_name: true,
        load_users: 100,
        activity_env: env(&[("RUST_LOG", "info,h2::codec::framed_read=debug")]),
        gateway_env: env(&[("PRESENCE_UPSTREAM_RESOLVE_SECONDS", "1")]),
        ..Options::default()
    })
    .await;
    let load = stack.start_load(PING_PERIOD);
    load.wait_for_every_user(load.started, RECOVERY_WITHIN)
        .await;
    let (_, before) = fair_share(&stack, RECOVERY_WITHIN).await;

    let third = stack.add_activity().await;
    // Only the kit's own health checks reach a replica the name does not list.
    let unlisted = calls_received(&stack)[third];
    tokio::time::sleep(WINDOW).await;
    assert_eq!(
        calls_received(&stack)[third],
        unlisted,
        "a replica the name does not list took calls"
    );
    let listed = Instant::now();
    stack.resolve_activity_to(&[0, 1, third]);
    let (shared, window) = fair_share(&stack, RECOVERY_WITHIN).await;
    let time_to_share = shared.duration_since(listed);

    let stopping = Instant::now();
    stack.activity[0].terminate();
    let exit = stack.activity[0].wait_for_exit(EXIT_WITHIN).await;
    assert!(
        exit.success(),
        "activity-1 exited with {exit} after SIGTERM"
    );
    let exited = stopping.elapsed();
    // Still listed after it exited: its connects are refused for a while.
    load.wait_for_every_user(Instant::now(), RECOVERY_WITHIN)
        .await;
    stack.resolve_activity_to(&[1, third]);
    load.wait_for_every_user(Instant::now(), RECOVERY_WITHIN)
        .await;
    let after = calls_received(&stack);

    let started = load.started;
    let records = load.stop().await;
    assert_outcomes_within(&records, &["OK"], started);
    stack.report(
        "replicas_by_name",
        &format!(
            "pings: {}, {}\n\
             calls per replica over {WINDOW:?} with two: {before:?}\n\
             a third replica took its share {} after the name listed it: {window:?} over {WINDOW:?}\n\
             the first replica exited {} after SIGTERM\n\
             calls each replica received in all: {after:?}",
            records.len(),
            outcomes_line(&records),
            seconds(time_to_share),
            seconds(exited),
        ),
    );
}
