//! A rolling restart of every replica under load: two activity and two
//! admin replicas, each behind its Service proxy; one at a time, a replica
//! leaves its Service (as Kubernetes removes a terminating pod's endpoint
//! while its preStop hook sleeps), gets SIGTERM, must exit cleanly, and its
//! replacement joins. The promises: not one ping fails (the gateway sends a
//! call the stopping server refused unprocessed again, on a fresh
//! connection); an admin's open status stream ends with UNAVAILABLE, which
//! the web app reconnects on, and the new stream brings a fresh snapshot and
//! the changes after it.

use std::time::Duration;

use presence_core::token::Role;
use presence_system_tests::eventually;
use presence_system_tests::load;
use presence_system_tests::stack::{Options, Stack};
use presence_system_tests::watcher::Watcher;
use tokio::time::Instant;

use crate::{PING_PERIOD, RECOVERY_WITHIN, assert_outcomes_within, outcomes_line, seconds};

/// Every replica is replaced this many times.
const ROUNDS: usize = 2;

#[tokio::test]
async fn rolling_restart_of_every_replica_under_load_fails_no_ping_and_watchers_resume() {
    let mut stack = Stack::start(Options {
        activity_replicas: 2,
        admin_replicas: 2,
        ..Options::default()
    })
    .await;
    stack.create_user("leaver", Role::User).await;
    let leaver = stack.login("leaver").await.expect("leaver signs in");
    let watcher = Watcher::start(stack.gateway_address(), stack.admin_token.clone());
    let first = watcher.wait_until_live(RECOVERY_WITHIN).await;
    assert!(first.online.contains("leaver"), "{:?}", first.online);
    let load = stack.start_load(PING_PERIOD);
    load.wait_for_every_user(load.started, RECOVERY_WITHIN)
        .await;

    let rolling = Instant::now();
    let mut steps = Vec::new();
    for round in 1..=ROUNDS {
        for index in 0..stack.activity.len() {
            let step = Instant::now();
            stack.roll_activity(index).await;
            steps.push(format!("activity {index}: {}", seconds(step.elapsed())));
            // Traffic reaches the replacement before the next replica goes.
            load.wait_for_every_user(Instant::now(), RECOVERY_WITHIN)
                .await;
        }
        for index in 0..stack.admin.len() {
            let step = Instant::now();
            stack.roll_admin(index).await;
            steps.push(format!("admin {index}: {}", seconds(step.elapsed())));
        }
        steps.push(format!("(round {round} done)"));
    }
    let rolled = rolling.elapsed();

    // The stream open at the start ended; a later one is live again.
    let resumed = eventually(RECOVERY_WITHIN, "a status stream resumed", || async {
        let streams = watcher.streams();
        let live = watcher.live()?;
        (streams.len() > 1).then_some(live)
    })
    .await;
    assert!(
        resumed.online.contains("leaver"),
        "the fresh snapshot shows who is online: {:?}",
        resumed.online
    );
    // ... and changes follow it.
    let signed_out = Instant::now();
    stack
        .logout(&leaver.access_token)
        .await
        .expect("leaver signs out");
    let sign_out_seen = eventually(
        Duration::from_secs(10),
        "the sign-out on the live stream",
        || async {
            let live = watcher.live()?;
            live.changes
                .contains(&("leaver".to_owned(), false))
                .then(|| signed_out.elapsed())
        },
    )
    .await;

    let records = load.stop().await;
    assert_outcomes_within(&records, &["OK"], rolling);
    let streams = watcher.streams();
    let ends: Vec<&str> = streams
        .iter()
        .filter_map(|stream| stream.ended.as_deref())
        .collect();
    assert!(
        !ends.is_empty(),
        "no status stream ended during the restart"
    );
    assert!(
        ends.iter().all(|end| *end == "Unavailable"),
        "streams must end with UNAVAILABLE, which the web app reconnects on: {ends:?}"
    );
    stack.report(
        "rolling_restart",
        &format!(
            "pings: {} ({:.0}/s), {}\n\
             every replica replaced {ROUNDS} times in {} ({}); a sign-out reached the resumed stream in {}\n\
             status streams: {} opened, ended with {ends:?}",
            records.len(),
            load::rate(&records),
            outcomes_line(&records),
            seconds(rolled),
            steps.join(", "),
            seconds(sign_out_seen),
            streams.len(),
        ),
    );
}
