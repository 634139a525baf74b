//! What the service does when its stores fail. These tests start their own
//! Redis, or point at a closed port, and never touch the shared servers.

use std::time::Duration;

use presence_core::token::Role;
use presence_proto::activity::{GetMyPresenceRequest, LoginEventKind, LogoutRequest, PingRequest};
use sqlx::postgres::PgPoolOptions;
use tonic::Code;

use presence_testkit::authorized;

use crate::helpers::{Options, TestApp, spawn_app, spawn_app_with};

/// The client gives up after this long: a hanging service would show up as
/// DEADLINE_EXCEEDED instead of the UNAVAILABLE the tests expect.
const CLIENT_DEADLINE: Duration = Duration::from_secs(5);

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn ping_with_redis_stopped_is_unavailable_not_hanging(pool: sqlx::PgPool) {
    let (mut app, mut redis) = TestApp::on_throwaway_redis(pool).await;
    app.create_user("usertest1", Role::User).await;
    let token = app.login("usertest1").await.access_token;
    app.client
        .ping(authorized(PingRequest::default(), &token))
        .await
        .unwrap();

    redis.stop();
    let mut request = authorized(PingRequest::default(), &token);
    request.set_timeout(CLIENT_DEADLINE);
    let status = app.client.ping(request).await.unwrap_err();

    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        !status.message().contains("redis://"),
        "leaks internals: {}",
        status.message()
    );
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn logout_with_redis_down_still_records_the_logout_and_asks_for_a_retry(pool: sqlx::PgPool) {
    let (mut app, mut redis) = TestApp::on_throwaway_redis(pool).await;
    app.create_user("usertest1", Role::User).await;
    let token = app.login("usertest1").await.access_token;

    redis.stop();
    let mut request = authorized(LogoutRequest::default(), &token);
    request.set_timeout(CLIENT_DEADLINE);
    let status = app.client.logout(request).await.unwrap_err();

    assert_eq!(status.code(), Code::Unavailable);
    let events = app.events("usertest1").await;
    assert_eq!(events, ["login_success", "logout"]);
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn ping_works_while_postgresql_is_unreachable(pool: sqlx::PgPool) {
    // Sign in against the real database, then serve from a second instance
    // whose database is a closed port: the token stays valid, and a ping
    // needs no SQL.
    let mut app = spawn_app(pool).await;
    app.create_user("usertest1", Role::User).await;
    let login = app.login("usertest1").await;

    let unreachable = PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(300))
        .connect_lazy("postgres://postgres@127.0.0.1:1/presence")
        .unwrap();
    let options = Options {
        prefix: Some(app.prefix.clone()),
        ..Options::default()
    };
    let mut cut_off = spawn_app_with(unreachable, options).await;
    let mut request = authorized(PingRequest::default(), &login.access_token);
    request.set_timeout(CLIENT_DEADLINE);
    cut_off.client.ping(request).await.unwrap();
    assert!(cut_off.last_activity(&login.user_id).await.is_some());
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn my_presence_with_redis_stopped_comes_from_login_history_marked_degraded(
    pool: sqlx::PgPool,
) {
    let (mut app, mut redis) = TestApp::on_throwaway_redis(pool).await;
    app.create_user("usertest1", Role::User).await;
    let token = app.login("usertest1").await.access_token;
    app.client
        .ping(authorized(PingRequest::default(), &token))
        .await
        .unwrap();

    redis.stop();
    let mut request = authorized(GetMyPresenceRequest {}, &token);
    request.set_timeout(CLIENT_DEADLINE);
    let presence = app
        .client
        .get_my_presence(request)
        .await
        .unwrap()
        .into_inner();

    assert!(presence.degraded);
    assert_eq!(presence.last_activity, None);
    assert!(presence.browsers.is_empty());
    let kinds: Vec<LoginEventKind> = presence.recent_events.iter().map(|e| e.kind()).collect();
    assert_eq!(kinds, [LoginEventKind::LoginSuccess]);
    assert_eq!(presence.retention.unwrap().login_history_days, 365);
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn my_presence_with_redis_stopped_still_refuses_a_signed_out_token(pool: sqlx::PgPool) {
    let (mut app, mut redis) = TestApp::on_throwaway_redis(pool).await;
    app.create_user("usertest1", Role::User).await;
    let token = app.login("usertest1").await.access_token;
    app.client
        .logout(authorized(LogoutRequest::default(), &token))
        .await
        .unwrap();

    redis.stop();
    let mut request = authorized(GetMyPresenceRequest {}, &token);
    request.set_timeout(CLIENT_DEADLINE);
    let status = app.client.get_my_presence(request).await.unwrap_err();

    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
}
