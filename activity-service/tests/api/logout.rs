use presence_core::proto::activity::{LogoutRequest, PingRequest};
use presence_core::token::Role;
use tonic::Code;

use presence_core::testing::authorized;

use crate::helpers::spawn_app;

#[sqlx::test(migrator = "presence_core::db::MIGRATOR")]
async fn logout_deletes_the_activity_key_and_writes_a_logout_row(pool: sqlx::PgPool) {
    let mut app = spawn_app(pool).await;
    let user_id = app.create_user("usertest1", Role::User).await.to_string();
    let token = app.login("usertest1").await.access_token;
    app.client
        .ping(authorized(PingRequest {}, &token))
        .await
        .unwrap();
    assert!(app.last_activity(&user_id).await.is_some());

    app.client
        .logout(authorized(LogoutRequest {}, &token))
        .await
        .unwrap();

    assert_eq!(app.last_activity(&user_id).await, None);
    let marker = app.key("last_logout", &user_id);
    let ttl = app.ttl(&marker).await;
    assert!((1790..=1800).contains(&ttl), "logout marker TTL {ttl}");
    let index = format!("{}presence_index", app.prefix);
    let score: Option<i64> = redis::AsyncCommands::zscore(&mut app.redis, &index, &user_id)
        .await
        .unwrap();
    assert_eq!(score, None);
    let events = app.events("usertest1").await;
    assert_eq!(events, ["login_success", "logout"]);
}

#[sqlx::test(migrator = "presence_core::db::MIGRATOR")]
async fn a_ping_after_logout_with_the_same_token_is_refused(pool: sqlx::PgPool) {
    let mut app = spawn_app(pool).await;
    let user_id = app.create_user("usertest1", Role::User).await.to_string();
    let token = app.login("usertest1").await.access_token;
    app.client
        .logout(authorized(LogoutRequest {}, &token))
        .await
        .unwrap();

    let status = app
        .client
        .ping(authorized(PingRequest {}, &token))
        .await
        .unwrap_err();

    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(app.last_activity(&user_id).await, None);
}

#[sqlx::test(migrator = "presence_core::db::MIGRATOR")]
async fn logout_is_idempotent(pool: sqlx::PgPool) {
    let mut app = spawn_app(pool).await;
    app.create_user("usertest1", Role::User).await;
    let token = app.login("usertest1").await.access_token;

    app.client
        .logout(authorized(LogoutRequest {}, &token))
        .await
        .unwrap();
    app.client
        .logout(authorized(LogoutRequest {}, &token))
        .await
        .unwrap();

    let events = app.events("usertest1").await;
    assert_eq!(events, ["login_success", "logout"]);
}

#[sqlx::test(migrator = "presence_core::db::MIGRATOR")]
async fn another_session_of_the_same_user_keeps_working_after_one_logout(pool: sqlx::PgPool) {
    let mut app = spawn_app(pool).await;
    app.create_user("usertest1", Role::User).await;
    let laptop = app.login("usertest1").await.access_token;
    let phone = app.login("usertest1").await.access_token;

    app.client
        .logout(authorized(LogoutRequest {}, &laptop))
        .await
        .unwrap();

    app.client
        .ping(authorized(PingRequest {}, &phone))
        .await
        .unwrap();
}
