//! Degraded answers: Redis down → login_history alone; PostgreSQL down →
//! UNAVAILABLE. These tests start their own Redis and never touch the shared one.

use std::time::Duration;

use presence_core::token::Role;
use presence_proto::activity::{LoginRequest, LogoutRequest};
use presence_proto::admin::{ListUserStatusesRequest, StatusFilter, StatusSource};
use presence_testkit::{ThrowawayRedis, authorized};
use tonic::Code;

use crate::helpers::{PASSWORD, spawn_stack, spawn_stack_on};

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn without_redis_statuses_come_from_login_history_and_respect_logouts(pool: sqlx::PgPool) {
    let mut redis = ThrowawayRedis::start().await;
    let mut stack = spawn_stack_on(pool, redis.url.clone()).await;
    stack.create_user("stays", Role::User).await;
    stack.create_user("leaves", Role::User).await;
    let stays = stack.login("stays").await.access_token;
    let leaves = stack.login("leaves").await.access_token;
    stack.ping(&stays).await;
    stack
        .activity
        .logout(authorized(LogoutRequest::default(), &leaves))
        .await
        .unwrap();

    redis.stop();
    let everyone = stack.list(StatusFilter::All, 50, "").await;
    let online_only = stack.list_all(StatusFilter::Online, 50).await;

    assert!(everyone.degraded);
    let find = |name: &str| {
        everyone
            .statuses
            .iter()
            .find(|s| s.username == name)
            .unwrap()
            .clone()
    };
    assert!(find("stays").online);
    assert_eq!(find("stays").source, StatusSource::LoginHistory as i32);
    assert!(!find("leaves").online);
    // The stack's admin signed in too.
    assert_eq!(everyone.online_count, 2);
    let online_names: Vec<String> = online_only.into_iter().map(|s| s.username).collect();
    assert_eq!(online_names, ["admintest1", "stays"]);
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn statuses_recover_when_redis_comes_back_without_a_restart(pool: sqlx::PgPool) {
    let mut redis = ThrowawayRedis::start().await;
    let mut stack = spawn_stack_on(pool, redis.url.clone()).await;
    let port = redis.url.rsplit(':').next().unwrap().to_owned();
    redis.stop();
    assert!(stack.list(StatusFilter::All, 10, "").await.degraded);

    let _restarted = ThrowawayRedis::start_on(&port).await;
    let mut recovered = false;
    for _ in 0..50 {
        if !stack.list(StatusFilter::All, 10, "").await.degraded {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(recovered, "still degraded after Redis came back");
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn without_postgresql_listing_is_unavailable_with_a_clear_message(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool.clone()).await;
    let token = stack.admin_token.clone();
    pool.close().await;

    let mut request = authorized(ListUserStatusesRequest::default(), &token);
    request.set_timeout(Duration::from_secs(5));
    let status = stack.admin.list_user_statuses(request).await.unwrap_err();

    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status.message().contains("database unavailable"),
        "{}",
        status.message()
    );
    assert!(!status.message().contains("postgres://"));
    // The sign-in path says the same, in its own words.
    let login = stack
        .activity
        .login(LoginRequest {
            username: "admintest1".into(),
            password: PASSWORD.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(login.code(), Code::Unavailable);
}
