use presence_core::token::Role;
use presence_proto::activity::{LogoutRequest, PingRequest};
use presence_store::keys::RedisKeys;
use redis::AsyncCommands;
use tonic::Code;

use presence_testkit::authorized;

use crate::helpers::spawn_app;

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn logout_deletes_the_activity_key_and_writes_a_logout_row(pool: sqlx::PgPool) {
    let mut app = spawn_app(pool).await;
    let user = app.create_user("usertest1", Role::User).await;
    let keys = RedisKeys::new(app.prefix.clone()).unwrap();
    let token = app.login("usertest1").await.access_token;
    app.client
        .ping(authorized(PingRequest::default(), &token))
        .await
        .unwrap();
    let activity: Option<i64> = app.redis.get(keys.last_activity(user)).await.unwrap();
    assert!(activity.is_some(), "the ping was recorded");

    app.client
        .logout(authorized(LogoutRequest::default(), &token))
        .await
        .unwrap();

    let exists: bool = app.redis.exists(keys.last_activity(user)).await.unwrap();
    assert!(!exists, "the activity key is gone");
    let ttl = app.ttl(&keys.last_logout(user)).await;
    assert!((1790..=1800).contains(&ttl), "logout marker TTL {ttl}");
    let score: Option<i64> = app
        .redis
        .zscore(keys.presence_index_for(user), user.to_string())
        .await
        .unwrap();
    assert_eq!(score, None, "out of the presence index");
    let events = app.events("usertest1").await;
    assert_eq!(events, ["login_success", "logout"]);
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_ping_after_logout_with_the_same_token_is_refused(pool: sqlx::PgPool) {
    let mut app = spawn_app(pool).await;
    let user_id = app.create_user("usertest1", Role::User).await.to_string();
    let token = app.login("usertest1").await.access_token;
    app.client
        .logout(authorized(LogoutRequest::default(), &token))
        .await
        .unwrap();

    let status = app
        .client
        .ping(authorized(PingRequest::default(), &token))
        .await
        .unwrap_err();

    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(app.last_activity(&user_id).await, None);
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn logout_is_idempotent(pool: sqlx::PgPool) {
    let mut app = spawn_app(pool).await;
    let user = app.create_user("usertest1", Role::User).await;
    let keys = RedisKeys::new(app.prefix.clone()).unwrap();
    let token = app.login("usertest1").await.access_token;

    app.client
        .logout(authorized(LogoutRequest::default(), &token))
        .await
        .unwrap();
    app.client
        .logout(authorized(LogoutRequest::default(), &token))
        .await
        .expect("a second logout of the same token succeeds too");

    let events = app.events("usertest1").await;
    assert_eq!(events, ["login_success", "logout"], "one logout row");
    let exists: bool = app.redis.exists(keys.last_logout(user)).await.unwrap();
    assert!(exists, "the logout marker is kept");
    let refused = app
        .client
        .ping(authorized(PingRequest::default(), &token))
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Code::Unauthenticated,
        "the token stays refused"
    );
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn another_session_of_the_same_user_keeps_working_after_one_logout(pool: sqlx::PgPool) {
    let mut app = spawn_app(pool).await;
    let user = app.create_user("usertest1", Role::User).await;
    let keys = RedisKeys::new(app.prefix.clone()).unwrap();
    let laptop = app.login("usertest1").await.access_token;
    let phone = app.login("usertest1").await.access_token;

    app.client
        .logout(authorized(LogoutRequest::default(), &laptop))
        .await
        .unwrap();

    let refused = app
        .client
        .ping(authorized(PingRequest::default(), &laptop))
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Code::Unauthenticated,
        "the laptop signed out"
    );
    app.client
        .ping(authorized(PingRequest::default(), &phone))
        .await
        .expect("the phone's session still pings");
    let activity: Option<i64> = app.redis.get(keys.last_activity(user)).await.unwrap();
    assert!(activity.is_some(), "the phone's ping is recorded");
    let score: Option<i64> = app
        .redis
        .zscore(keys.presence_index_for(user), user.to_string())
        .await
        .unwrap();
    assert!(score.is_some(), "online again by the phone's ping");
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn the_logout_row_records_the_revoked_token_and_its_expiry(pool: sqlx::PgPool) {
    let mut app = spawn_app(pool).await;
    app.create_user("usertest1", Role::User).await;
    let login = app.login("usertest1").await;
    let token = login.access_token;
    let claims: serde_json::Value = jsonwebtoken::dangerous::insecure_decode(&token)
        .unwrap()
        .claims;

    app.client
        .logout(authorized(LogoutRequest::default(), &token))
        .await
        .unwrap();

    let (token_id, expires_at): (String, i64) = sqlx::query_as(
        "SELECT token_id, extract(epoch FROM token_expires_at)::bigint
         FROM login_history WHERE event = 'logout'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(serde_json::json!(token_id), claims["jti"]);
    assert_eq!(expires_at, login.expires_at.unwrap().seconds);
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_revoked_token_stays_refused_after_redis_loses_its_data(pool: sqlx::PgPool) {
    let mut app = spawn_app(pool).await;
    let user_id = app.create_user("usertest1", Role::User).await.to_string();
    let token = app.login("usertest1").await.access_token;
    app.client
        .logout(authorized(LogoutRequest::default(), &token))
        .await
        .unwrap();

    // A flush, a failover to an empty replica: every key of this deployment is gone.
    app.lose_redis_data().await;

    // Until the revocations are back Redis cannot vouch (UNAVAILABLE); then
    // the token is refused again. It is never accepted.
    let status = app.ping_once_vouched(&token).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(app.last_activity(&user_id).await, None);
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_revocation_recorded_only_in_postgresql_reaches_redis_within_seconds(pool: sqlx::PgPool) {
    // As when Logout found Redis down: the row (with the token) was written,
    // the Redis key was not.
    let mut app = spawn_app(pool).await;
    app.create_user("usertest1", Role::User).await;
    let token = app.login("usertest1").await.access_token;
    app.ping_once_vouched(&token).await.unwrap();
    let claims: serde_json::Value = jsonwebtoken::dangerous::insecure_decode(&token)
        .unwrap()
        .claims;
    sqlx::query(
        "INSERT INTO login_history (user_id, username, event, token_id, token_expires_at)
         SELECT id, username, 'logout', $1, to_timestamp($2) FROM users WHERE username = 'usertest1'",
    )
    .bind(claims["jti"].as_str().unwrap())
    .bind(claims["exp"].as_f64().unwrap())
    .execute(&app.pool)
    .await
    .unwrap();

    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        match app.ping_once_vouched(&token).await {
            Err(status) if status.code() == Code::Unauthenticated => return,
            answer => assert!(
                tokio::time::Instant::now() < deadline,
                "the revocation never reached Redis: {answer:?}"
            ),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
