//! The live status stream: a snapshot, then every change, for as long as
//! the watcher's session lasts, within the caps on open streams.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey};
use presence_core::token::{Role, TokenVerifier};
use presence_proto::activity::LogoutRequest;
use presence_proto::admin::admin_service_client::AdminServiceClient;
use presence_proto::admin::{StatusSource, UserStatusEvent, WatchUserStatusesRequest};
use presence_testkit::authorized;
use redis::AsyncCommands;
use tonic::{Code, Status, Streaming};
use uuid::Uuid;

use crate::helpers::{SECRET, Stack, connect, now, spawn_admin_with, spawn_stack};

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

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn the_stream_starts_with_who_is_online_then_a_marker(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool).await;
    let early = stack.create_user("early", Role::User).await;
    stack.place_activity(early, now() - 5).await;
    // Once the hub knows of it (a first watcher is told, in its snapshot or
    // live), every later snapshot must hold it.
    let mut first = stack.watch().await;
    next_matching(&mut first, SOON, about("early", true)).await;

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

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn the_stream_tells_of_pings_logouts_and_expiry(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool).await;
    stack.create_user("usertest1", Role::User).await;
    let laptop = stack.login("usertest1").await.access_token;
    let phone = stack.login("usertest1").await.access_token;
    // Signed out on the laptop: offline, although the phone's token still works.
    stack
        .activity
        .logout(authorized(LogoutRequest::default(), &laptop))
        .await
        .unwrap();

    let mut stream = stack.watch().await;
    next_matching(&mut stream, SOON, |event| event.snapshot_complete).await;

    stack.ping(&phone).await;
    let online = next_matching(&mut stream, SOON, about("usertest1", true)).await;
    assert_eq!(online.status.unwrap().source, StatusSource::Activity as i32);

    stack
        .activity
        .logout(authorized(LogoutRequest::default(), &phone))
        .await
        .unwrap();
    next_matching(&mut stream, SOON, about("usertest1", false)).await;
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
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

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
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

/// Reads the stream until it ends with an error (at most `within`).
async fn ended_with(stream: &mut Streaming<UserStatusEvent>, within: Duration) -> Status {
    tokio::time::timeout(within, async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the stream ended without an error"),
                Err(status) => return status,
            }
        }
    })
    .await
    .expect("the stream ended in time")
}

async fn user_id(stack: &Stack, username: &str) -> Uuid {
    sqlx::query_scalar("SELECT id FROM users WHERE username = $1")
        .bind(username)
        .fetch_one(&stack.pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_watch_ends_unauthenticated_soon_after_its_admin_signs_out(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool).await;
    let mut stream = stack.watch().await;
    next_matching(&mut stream, SOON, |event| event.snapshot_complete).await;

    stack
        .activity
        .logout(authorized(LogoutRequest::default(), &stack.admin_token))
        .await
        .unwrap();

    let status = ended_with(&mut stream, SOON).await;
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(
        status.message().contains("signed out"),
        "{}",
        status.message()
    );
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_watch_ends_when_its_token_is_revoked_without_any_announcement(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool).await;
    let mut stream = stack.watch().await;
    next_matching(&mut stream, SOON, |event| event.snapshot_complete).await;

    // Revoked as the activity service's logout does, but with no message on
    // the status channel: as if the watcher's replica missed it.
    let verifier = TokenVerifier::new(
        Algorithm::HS256,
        DecodingKey::from_secret(SECRET.as_bytes()),
        "presence",
    );
    let token_id = verifier.verify(&stack.admin_token).unwrap().token_id;
    let key = stack.keys.revoked_token(&token_id);
    let _: () = stack.redis.set_ex(key, 1, 3600).await.unwrap();

    let status = ended_with(&mut stream, SOON).await;
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("revoked"), "{}", status.message());
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_watch_ends_unauthenticated_when_its_token_expires(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool).await;
    let admin = user_id(&stack, "admintest1").await;
    let issuer = presence_testkit::test_issuer(3);
    let short_lived = issuer.issue(admin, Role::Admin, now()).unwrap().token;

    let mut stream = stack
        .admin
        .watch_user_statuses(authorized(WatchUserStatusesRequest {}, &short_lived))
        .await
        .expect("the stream opens while the token is valid")
        .into_inner();
    next_matching(&mut stream, SOON, |event| event.snapshot_complete).await;

    let status = ended_with(&mut stream, Duration::from_secs(20)).await;
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("expired"), "{}", status.message());
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_watch_outlives_the_sign_outs_of_other_sessions_and_other_admins(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool).await;
    stack.create_user("admintest2", Role::Admin).await;
    stack.create_user("usertest1", Role::User).await;
    let other_admin = stack.login("admintest2").await.access_token;
    let other_session = stack.login("admintest1").await.access_token;
    let mut stream = stack.watch().await;
    next_matching(&mut stream, SOON, |event| event.snapshot_complete).await;

    for token in [&other_admin, &other_session] {
        stack
            .activity
            .logout(authorized(LogoutRequest::default(), token))
            .await
            .unwrap();
    }
    next_matching(&mut stream, SOON, about("admintest2", false)).await;
    // Past a periodic check of the session too.
    tokio::time::sleep(Duration::from_secs(6)).await;

    let user = stack.login("usertest1").await.access_token;
    stack.ping(&user).await;
    next_matching(&mut stream, SOON, about("usertest1", true)).await;
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn watches_are_capped_per_admin_and_in_all_and_a_closed_one_frees_its_place(
    pool: sqlx::PgPool,
) {
    let mut stack = spawn_stack(pool).await;
    stack.create_user("admintest2", Role::Admin).await;
    let other_admin = stack.login("admintest2").await.access_token;
    let capped = spawn_admin_with(
        &stack.pool,
        &stack.redis_target,
        &stack.prefix,
        &["--max-watchers=3", "--max-watchers-per-user=2"],
    )
    .await;
    let client = AdminServiceClient::new(connect(capped.address).await);
    let open = |token: String| {
        let mut client = client.clone();
        async move {
            client
                .watch_user_statuses(authorized(WatchUserStatusesRequest {}, &token))
                .await
                .map(tonic::Response::into_inner)
        }
    };
    let admin = stack.admin_token.clone();

    let first = open(admin.clone()).await.expect("a first stream");
    let _second = open(admin.clone()).await.expect("a second stream");
    let refused = open(admin.clone())
        .await
        .expect_err("a third stream of one admin");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(
        refused.message().contains("this account"),
        "{}",
        refused.message()
    );

    let _other = open(other_admin.clone())
        .await
        .expect("another admin still gets a stream");
    let full = open(other_admin).await.expect_err("a fourth stream in all");
    assert_eq!(full.code(), Code::ResourceExhausted);
    assert!(full.message().contains("this server"), "{}", full.message());

    drop(first);
    let deadline = tokio::time::Instant::now() + SOON;
    loop {
        match open(admin.clone()).await {
            Ok(_) => break,
            Err(status) if status.code() == Code::ResourceExhausted => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the closed stream's place was never freed"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(status) => panic!("unexpected refusal: {status:?}"),
        }
    }
}

/// A `service` account (a chat or scheduling back-end, say) and its token.
async fn service_token(stack: &Stack, username: &str) -> String {
    let service = stack.create_user(username, Role::Service).await;
    presence_testkit::test_token(service, Role::Service)
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_service_watches_the_snapshot_then_users_signing_in_and_pinging(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool).await;
    let token = service_token(&stack, "chat").await;
    stack.create_user("usertest1", Role::User).await;
    stack.create_user("usertest2", Role::User).await;
    // Signed out on one device: offline until the other one pings.
    let laptop = stack.login("usertest2").await.access_token;
    let pinging = stack.login("usertest2").await.access_token;
    stack
        .activity
        .logout(authorized(LogoutRequest::default(), &laptop))
        .await
        .unwrap();
    let mut stream = stack
        .admin
        .watch_user_statuses(authorized(WatchUserStatusesRequest {}, &token))
        .await
        .expect("a service token opens the stream")
        .into_inner();

    next_matching(&mut stream, SOON, |event| event.snapshot_complete).await;

    stack.login("usertest1").await;
    let signed_in = next_matching(&mut stream, SOON, about("usertest1", true)).await;
    assert!(!signed_in.snapshot);
    stack.ping(&pinging).await;
    let pinged = next_matching(&mut stream, SOON, |event| {
        about("usertest2", true)(event)
            && event.status.as_ref().unwrap().source == StatusSource::Activity as i32
    })
    .await;
    assert!(!pinged.snapshot);
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_user_token_may_not_watch(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool).await;
    stack.create_user("usertest1", Role::User).await;
    let token = stack.login("usertest1").await.access_token;

    let refused = stack
        .admin
        .watch_user_statuses(authorized(WatchUserStatusesRequest {}, &token))
        .await
        .expect_err("a user token is refused");

    assert_eq!(refused.code(), Code::PermissionDenied);
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_service_watch_ends_unauthenticated_when_its_token_expires(pool: sqlx::PgPool) {
    let stack = spawn_stack(pool).await;
    let service = stack.create_user("chat", Role::Service).await;
    let short_lived = presence_testkit::test_issuer(3)
        .issue(service, Role::Service, now())
        .unwrap()
        .token;

    let mut stream = stack
        .admin
        .clone()
        .watch_user_statuses(authorized(WatchUserStatusesRequest {}, &short_lived))
        .await
        .expect("the stream opens while the token is valid")
        .into_inner();
    next_matching(&mut stream, SOON, |event| event.snapshot_complete).await;

    let status = ended_with(&mut stream, Duration::from_secs(20)).await;
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("expired"), "{}", status.message());
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_services_watches_are_capped_per_service_account(pool: sqlx::PgPool) {
    let stack = spawn_stack(pool).await;
    let chat = service_token(&stack, "chat").await;
    let till = service_token(&stack, "till").await;
    let capped = spawn_admin_with(
        &stack.pool,
        &stack.redis_target,
        &stack.prefix,
        &["--max-watchers=3", "--max-watchers-per-user=1"],
    )
    .await;
    let client = AdminServiceClient::new(connect(capped.address).await);
    let open = |token: String| {
        let mut client = client.clone();
        async move {
            client
                .watch_user_statuses(authorized(WatchUserStatusesRequest {}, &token))
                .await
                .map(tonic::Response::into_inner)
        }
    };

    let _first = open(chat.clone()).await.expect("a first stream");
    let refused = open(chat)
        .await
        .expect_err("a second stream of one service");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(
        refused.message().contains("this account"),
        "{}",
        refused.message()
    );
    let _other = open(till)
        .await
        .expect("another service still gets a stream");
    let _admin = open(stack.admin_token.clone())
        .await
        .expect("and an admin too");
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_service_watch_ends_within_seconds_of_its_accounts_disabling(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool).await;
    let service = stack.create_user("chat", Role::Service).await;
    let token = presence_testkit::test_token(service, Role::Service);
    let mut stream = stack
        .admin
        .clone()
        .watch_user_statuses(authorized(WatchUserStatusesRequest {}, &token))
        .await
        .expect("the stream opens")
        .into_inner();
    next_matching(&mut stream, SOON, |event| event.snapshot_complete).await;

    // Every token of the account issued until now is taken back, as a
    // disabling records it (no announcement: the periodic check finds it).
    let key = stack.keys.revoked_before(service);
    let _: () = stack.redis.set_ex(key, now() + 1, 3600).await.unwrap();

    let status = ended_with(&mut stream, SOON).await;
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("revoked"), "{}", status.message());
}
