use presence_core::token::Role;
use tonic::Code;

use crate::helpers::{
    PASSWORD, credentials, from_address, options_trusting_forwarded_for, spawn_app, spawn_app_with,
};

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn login_returns_a_token_and_records_a_success_row(pool: sqlx::PgPool) {
    let mut app = spawn_app(pool).await;
    let user_id = app.create_user("usertest1", Role::User).await;

    let response = app.login("usertest1").await;

    assert_eq!(response.user_id, user_id.to_string());
    assert_eq!(response.role, "user");
    assert_eq!(response.display_name, "usertest1 display");
    assert!(response.expires_at.unwrap().seconds > crate::helpers::now());
    assert_eq!(
        app.history("usertest1").await,
        vec![("login_success".to_owned(), None)]
    );
    // Online before any ping: the presence index holds the login.
    let indexed = app.presence_index().await;
    assert_eq!(indexed.len(), 1);
    assert_eq!(indexed[0].0, user_id.to_string());
    assert!(crate::helpers::now() - indexed[0].1 <= 5, "{indexed:?}");
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn wrong_password_and_unknown_user_get_the_same_answer_but_different_rows(
    pool: sqlx::PgPool,
) {
    let mut app = spawn_app(pool).await;
    app.create_user("usertest1", Role::User).await;

    let wrong = app
        .client
        .login(credentials("usertest1", "not-the-password"))
        .await
        .unwrap_err();
    let unknown = app
        .client
        .login(credentials("nobody", PASSWORD))
        .await
        .unwrap_err();

    assert_eq!(wrong.code(), Code::Unauthenticated);
    assert_eq!(unknown.code(), Code::Unauthenticated);
    assert_eq!(wrong.message(), unknown.message());
    assert_eq!(
        app.history("usertest1").await,
        vec![(
            "login_failure".to_owned(),
            Some("wrong_password".to_owned())
        )]
    );
    assert_eq!(
        app.history("nobody").await,
        vec![("login_failure".to_owned(), Some("unknown_user".to_owned()))]
    );
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_disabled_account_cannot_sign_in(pool: sqlx::PgPool) {
    let mut app = spawn_app(pool).await;
    app.create_account("gone", Role::User, true).await;

    let refused = app
        .client
        .login(credentials("gone", PASSWORD))
        .await
        .unwrap_err();

    assert_eq!(refused.code(), Code::Unauthenticated);
    assert_eq!(
        app.history("gone").await,
        vec![(
            "login_failure".to_owned(),
            Some("account_disabled".to_owned())
        )]
    );
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn repeated_failures_from_one_address_are_throttled_there_even_with_the_right_password(
    pool: sqlx::PgPool,
) {
    let mut app = spawn_app_with(pool, options_trusting_forwarded_for(&[])).await;
    app.create_user("usertest1", Role::User).await;
    let guesser = "198.51.100.7";

    for _ in 0..5 {
        let status = app
            .client
            .login(from_address(credentials("usertest1", "bad"), guesser))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
    }
    let throttled = app
        .client
        .login(from_address(credentials("usertest1", PASSWORD), guesser))
        .await
        .unwrap_err();
    let elsewhere = app
        .client
        .login(from_address(
            credentials("usertest1", PASSWORD),
            "203.0.113.5",
        ))
        .await;

    assert_eq!(throttled.code(), Code::ResourceExhausted);
    assert!(elsewhere.is_ok(), "{elsewhere:?}");
    let rows = app.history("usertest1").await;
    assert_eq!(rows[5].1.as_deref(), Some("throttled"));
    assert_eq!(rows.last().unwrap().0, "login_success");
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn empty_or_oversized_credentials_are_invalid_arguments(pool: sqlx::PgPool) {
    let mut app = spawn_app(pool).await;

    for request in [
        credentials("", PASSWORD),
        credentials(&"x".repeat(65), PASSWORD),
        credentials("usertest1", ""),
        credentials("usertest1", &"p".repeat(1025)),
    ] {
        let status = app.client.login(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    }
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_service_account_cannot_sign_in_with_a_password(pool: sqlx::PgPool) {
    let mut app = spawn_app(pool).await;
    app.create_user("billing", Role::Service).await;

    let refused = app
        .client
        .login(credentials("billing", PASSWORD))
        .await
        .unwrap_err();

    assert_eq!(refused.code(), Code::Unauthenticated);
}
