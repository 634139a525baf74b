//! The live status stream: a snapshot, then every change.

use std::time::Duration;

use presence_core::proto::activity::LogoutRequest;
use presence_core::proto::admin::{StatusSource, UserStatusEvent, WatchUserStatusesRequest};
use presence_core::testing::authorized;
use presence_core::token::Role;
use tonic::Streaming;

use crate::helpers::{now, spawn_stack};

/// Waits (at most `within`) for the first event matching `wanted`.
pub(crate) async fn next_matching(
    stream: &mut Streaming<UserStatusEvent>,
    within: Duration,
    wanted: impl Fn(&UserStatusEvent) -> bool,
) -> UserStatusEvent {
    tokio::time::timeout(within, async {
        loop {
            let event = stream
                .message()
                .await
                .expect("the stream stays healthy")
                .expect("the stream stays open");
            if wanted(&event) {
                return event;
            }
        }
    })
    .await
    .expect("the expected event arrived in time")
}

pub(crate) fn about<'a>(username: &'a str, online: bool) -> impl Fn(&UserStatusEvent) -> bool + 'a {
    move |event| {
        event
            .status
            .as_ref()
            .is_some_and(|status| status.username == username && status.online == online)
    }
}

const SOON: Duration = Duration::from_secs(10);

#[sqlx::test(migrator = "presence_core::db::MIGRATOR")]
async fn the_stream_starts_with_who_is_online_then_a_marker(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool).await;
    let early = stack.create_user("early", Role::User).await;
    stack.place_activity(early, now() - 5).await;
    // Give the hub a tick to learn about it.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let mut stream = stack.watch().await;

    let mut snapshot = Vec::new();
    loop {
        let event = stream.message().await.unwrap().unwrap();
        if event.snapshot_complete {
            break;
        }
        assert!(
            event.snapshot,
            "a live change came before the snapshot was complete"
        );
        snapshot.push(event.status.unwrap().username);
    }
    // The stack's admin, online by their login, and the user who pinged.
    assert_eq!(snapshot, ["admintest1", "early"]);
}

#[sqlx::test(migrator = "presence_core::db::MIGRATOR")]
async fn the_stream_tells_of_pings_logouts_and_expiry(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool).await;
    stack.create_user("usertest1", Role::User).await;
    let laptop = stack.login("usertest1").await.access_token;
    let phone = stack.login("usertest1").await.access_token;
    // Signed out on the laptop: offline, although the phone's token still works.
    stack
        .activity
        .logout(authorized(LogoutRequest {}, &laptop))
        .await
        .unwrap();

    let mut stream = stack.watch().await;
    next_matching(&mut stream, SOON, |event| event.snapshot_complete).await;

    stack.ping(&phone).await;
    let online = next_matching(&mut stream, SOON, about("usertest1", true)).await;
    assert_eq!(online.status.unwrap().source, StatusSource::Activity as i32);

    stack
        .activity
        .logout(authorized(LogoutRequest {}, &phone))
        .await
        .unwrap();
    next_matching(&mut stream, SOON, about("usertest1", false)).await;
}

#[sqlx::test(migrator = "presence_core::db::MIGRATOR")]
async fn the_stream_tells_when_activity_expires(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool).await;
    // A ping that crosses the 15-minute threshold three seconds from now,
    // placed before a replica starts (it reads the whole index at start).
    let fading = stack.create_user("fading", Role::User).await;
    stack.place_activity(fading, now() - 15 * 60 + 3).await;
    let mut replica = stack.spawn_admin_replica().await;

    let mut stream = replica
        .watch_user_statuses(authorized(WatchUserStatusesRequest {}, &stack.admin_token))
        .await
        .unwrap()
        .into_inner();
    next_matching(&mut stream, SOON, about("fading", true)).await;
    let expired = next_matching(&mut stream, SOON, about("fading", false)).await;

    assert!(!expired.snapshot);
    assert_eq!(expired.status.unwrap().source, StatusSource::None as i32);
}

#[sqlx::test(migrator = "presence_core::db::MIGRATOR")]
async fn many_admins_can_watch_at_once(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool).await;
    stack.create_user("usertest1", Role::User).await;
    let token = stack.login("usertest1").await.access_token;
    let mut replica = stack.spawn_admin_replica().await;
    let mut streams = Vec::new();
    for client in [&mut stack.admin.clone(), &mut replica] {
        for _ in 0..3 {
            let mut stream = client
                .watch_user_statuses(authorized(WatchUserStatusesRequest {}, &stack.admin_token))
                .await
                .unwrap()
                .into_inner();
            next_matching(&mut stream, SOON, |event| event.snapshot_complete).await;
            streams.push(stream);
        }
    }

    stack.ping(&token).await;

    for stream in &mut streams {
        next_matching(stream, SOON, about("usertest1", true)).await;
    }
}
