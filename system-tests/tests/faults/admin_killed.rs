//! An admin replica is killed (SIGKILL) while admins watch statuses through
//! the gateway, their streams spread over two replicas. The promises: the
//! streams it served end with a status the web app reconnects on
//! (UNAVAILABLE); they reconnect, through the Service, to the replica left,
//! and resynchronise from its snapshot; and no one is shown online who is
//! not: a user who signed out while the replica was down is offline there.

use std::collections::BTreeSet;
use std::time::Duration;

use presence_core::token::Role;
use presence_system_tests::eventually;
use presence_system_tests::stack::{Options, Stack, env};
use presence_system_tests::watcher::Watcher;
use tokio::time::Instant;

use crate::{PING_PERIOD, RECOVERY_WITHIN, seconds};

/// Open at once, more than one admin may have on a server by default.
const WATCHERS: usize = 8;

#[tokio::test]
async fn admin_replica_killed_under_watchers_resynchronises_them_on_the_other_replica() {
    let mut stack = Stack::start(Options {
        admin_replicas: 2,
        load_users: 50,
        // All the watchers are one admin's, and all end up on one replica.
        admin_env: env(&[("PRESENCE_MAX_WATCHERS_PER_USER", "64")]),
        ..Options::default()
    })
    .await;
    stack.create_user("leaver", Role::User).await;
    let leaver = stack.login("leaver").await.expect("leaver signs in");
    let load = stack.start_load(PING_PERIOD);
    load.wait_for_every_user(load.started, RECOVERY_WITHIN)
        .await;
    // Opened one after the other, the streams alternate over the gateway's
    // two connections to the admin Service, which went to either replica.
    let mut watchers = Vec::new();
    for _ in 0..WATCHERS {
        let watcher = Watcher::start(stack.gateway_address(), stack.admin_token.clone());
        watcher.wait_until_live(RECOVERY_WITHIN).await;
        watchers.push(watcher);
    }
    let (doomed, survivor) = (stack.admin[0].address, stack.admin[1].address);
    assert!(
        stack.admin_service.open_connections_to(doomed) > 0
            && stack.admin_service.open_connections_to(survivor) > 0,
        "the gateway's connections do not reach both replicas"
    );
    for watcher in &watchers {
        assert!(watcher.live().expect("live").online.contains("leaver"));
    }

    let killed = Instant::now();
    stack.admin[0].kill();
    // The endpoints controller takes the dead pod out of the Service.
    stack.admin_service.remove_backend(doomed);
    stack
        .logout(&leaver.access_token)
        .await
        .expect("leaver signs out");

    let online: BTreeSet<String> = stack
        .online_usernames()
        .await
        .expect("the replica left lists statuses")
        .into_iter()
        .collect();
    assert!(!online.contains("leaver"), "leaver signed out");
    let mut resumed_in = Vec::new();
    for watcher in &watchers {
        let since = eventually(
            RECOVERY_WITHIN,
            "every watcher sees who is online",
            || async {
                let live = watcher.live()?;
                (live.online == online).then(|| killed.elapsed())
            },
        )
        .await;
        resumed_in.push(since);
    }
    let ended: Vec<String> = watchers
        .iter()
        .flat_map(|watcher| watcher.streams())
        .filter_map(|stream| stream.ended)
        .collect();
    assert!(
        !ended.is_empty(),
        "no stream ended: none was on the killed replica"
    );
    assert!(
        ended.iter().all(|end| end == "Unavailable"),
        "streams must end with UNAVAILABLE, which the web app reconnects on: {ended:?}"
    );
    let resynchronised = watchers
        .iter()
        .filter(|watcher| watcher.streams().len() > 1)
        .count();
    let records = load.stop().await;
    assert!(records.iter().any(|record| record.failure.is_none()));

    let slowest = resumed_in.iter().max().copied().unwrap_or(Duration::ZERO);
    stack.report(
        "admin_killed",
        &format!(
            "{WATCHERS} watchers, {resynchronised} on the killed replica: their streams ended with \
             {ended:?} and resynchronised on the other\n\
             every watcher showed exactly who is online (leaver, signed out meanwhile, offline) \
             within {} of the kill",
            seconds(slowest),
        ),
    );
}
