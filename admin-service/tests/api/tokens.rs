//! Tokens at the admin service: page tokens no one else can make, and admin
//! tokens that stay revoked (by logout or by disabling) whatever happens to
//! Redis, refused as unavailable only when nothing can tell.

use std::time::Duration;

use clap::Parser;
use presence_core::token::Role;
use presence_proto::activity::LogoutRequest;
use presence_proto::admin::{ListUserStatusesRequest, StatusFilter};
use presence_testkit::{
    TEST_ED25519_PRIVATE_KEY, TEST_ED25519_PUBLIC_KEY, ThrowawayRedis, authorized,
    delete_keys_under, redis_url, temporary_file,
};
use tonic::Code;

use crate::helpers::{PASSWORD, Stack, spawn_stack, spawn_stack_on, spawn_stack_with};

#[derive(Parser)]
struct AdminOnly {
    #[command(flatten)]
    config: admin_service::config::AdminConfig,
}

async fn list_with(stack: &mut Stack, token: &str) -> Result<bool, tonic::Status> {
    let request = ListUserStatusesRequest {
        page_size: 10,
        ..Default::default()
    };
    stack
        .admin
        .list_user_statuses(authorized(request, token))
        .await
        .map(|answer| answer.into_inner().degraded)
}

/// Lists with `token` until it is refused UNAUTHENTICATED, for up to 15 s.
async fn wait_until_refused(stack: &mut Stack, token: &str, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        match list_with(stack, token).await {
            Err(status) if status.code() == Code::Unauthenticated => return,
            answer => assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: still {answer:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_page_token_forged_with_the_public_jwt_key_is_refused(pool: sqlx::PgPool) {
    let public_key = temporary_file("public.pem", TEST_ED25519_PUBLIC_KEY);
    let private_key = temporary_file("private.pem", TEST_ED25519_PRIVATE_KEY);
    let eddsa = [
        "--jwt-algorithm=EdDSA".to_owned(),
        format!("--jwt-public-key-file={}", public_key.display()),
        format!("--jwt-private-key-file={}", private_key.display()),
    ];
    let mut stack = spawn_stack_with(pool, redis_url(), &eddsa).await;
    for n in 0..12 {
        stack.create_user(&format!("user{n:02}"), Role::User).await;
    }
    // What anyone holding the public key could once make: an HS256 "page
    // token" keyed by the key file's bytes.
    let mut key = TEST_ED25519_PUBLIC_KEY.as_bytes().to_vec();
    key.extend_from_slice(b"/admin-page-tokens");
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"f": StatusFilter::All as i32, "a": "user05"}),
        &jsonwebtoken::EncodingKey::from_secret(&key),
    )
    .unwrap();

    let request = ListUserStatusesRequest {
        page_size: 5,
        page_token: forged,
        filter: StatusFilter::All as i32,
        ..Default::default()
    };
    let status = stack
        .admin
        .list_user_statuses(authorized(request, &stack.admin_token))
        .await
        .unwrap_err();

    assert_eq!(status.code(), Code::InvalidArgument);
    // The service's own tokens still page under EdDSA.
    let first = stack.list(StatusFilter::All, 5, "").await;
    let second = stack
        .list(StatusFilter::All, 5, &first.next_page_token)
        .await;
    assert_eq!(second.statuses.len(), 5);
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn production_refuses_to_start_without_a_page_token_secret(pool: sqlx::PgPool) {
    let args = |extra: &[&str]| {
        let mut args = vec![
            "admin-service",
            "--listen-addr=127.0.0.1:0",
            "--environment=production",
            "--jwt-secret=a-production-jwt-secret-a-production-jwt-secret",
        ];
        args.extend_from_slice(extra);
        AdminOnly::parse_from(args).config
    };
    let build = |config| admin_service::startup::Application::build_with_pool(config, pool.clone());

    let without = build(args(&[])).await;
    let too_short = build(args(&["--page-token-secret=short"])).await;
    let same_as_jwt = build(args(&[
        "--page-token-secret=a-production-jwt-secret-a-production-jwt-secret",
    ]))
    .await;
    let with = build(args(&[
        "--page-token-secret=a-page-token-secret-a-page-token-secret-0123",
    ]))
    .await;

    assert!(without.is_err(), "started without a page-token secret");
    assert!(too_short.is_err(), "started with a short page-token secret");
    assert!(
        same_as_jwt.is_err(),
        "started with the JWT secret for page tokens"
    );
    assert!(with.is_ok());
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_revoked_admin_token_stays_refused_after_redis_loses_its_data(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool).await;
    let revoked = stack.admin_token.clone();
    stack
        .activity
        .logout(authorized(LogoutRequest::default(), &revoked))
        .await
        .unwrap();
    let valid = stack.login("admintest1").await.access_token;

    let mut redis = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    delete_keys_under(&mut redis, &stack.prefix).await;

    let status = list_with(&mut stack, &revoked).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(list_with(&mut stack, &valid).await.is_ok());
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn with_redis_down_a_revoked_admin_token_is_refused_and_a_valid_one_is_served(
    pool: sqlx::PgPool,
) {
    let mut redis = ThrowawayRedis::start().await;
    let mut stack = spawn_stack_on(pool, redis.url.clone()).await;
    let revoked = stack.admin_token.clone();
    stack
        .activity
        .logout(authorized(LogoutRequest::default(), &revoked))
        .await
        .unwrap();
    let valid = stack.login("admintest1").await.access_token;

    redis.stop();

    let status = list_with(&mut stack, &revoked).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let degraded = list_with(&mut stack, &valid).await.unwrap();
    assert!(degraded, "the listing comes from PostgreSQL alone");
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn with_redis_and_postgresql_both_down_an_admin_call_is_unavailable(pool: sqlx::PgPool) {
    let mut redis = ThrowawayRedis::start().await;
    let mut stack = spawn_stack_on(pool.clone(), redis.url.clone()).await;
    let token = stack.admin_token.clone();

    redis.stop();
    pool.close().await;

    let status = list_with(&mut stack, &token).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_disabled_admin_is_refused_within_seconds_and_may_sign_in_again_once_enabled(
    pool: sqlx::PgPool,
) {
    let mut stack = spawn_stack(pool).await;
    let old_token = stack.admin_token.clone();
    let accounts = activity_service::store::Accounts::new(stack.pool.clone());
    let upsert = |disabled: bool| {
        let accounts = accounts.clone();
        async move {
            // What `activity-service user upsert --disabled` does.
            accounts
                .upsert_user("admintest1", PASSWORD, Role::Admin, "Admin", disabled)
                .await
                .unwrap();
        }
    };

    upsert(true).await;
    wait_until_refused(&mut stack, &old_token, "a disabled admin's token").await;

    // Tokens issued in the second of the disabling go too; sign in afresh after it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    upsert(false).await;
    let new_token = stack.login("admintest1").await.access_token;
    assert!(list_with(&mut stack, &new_token).await.is_ok());
    let old = list_with(&mut stack, &old_token).await.unwrap_err();
    assert_eq!(
        old.code(),
        Code::Unauthenticated,
        "re-enabling revives no old token"
    );
}
