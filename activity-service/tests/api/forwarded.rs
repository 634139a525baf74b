//! Which address a sign-in is recorded from: the forwarded client's only when
//! the call came from a trusted proxy (the gateway), the caller's own
//! otherwise, whatever header it sends.

use presence_core::token::Role;
use presence_proto::activity::LoginRequest;
use sqlx::PgPool;

use crate::helpers::{Options, PASSWORD, TestApp, spawn_app_with};

async fn sign_in_claiming(app: &mut TestApp, username: &str, forwarded_for: &str) {
    let mut request = tonic::Request::new(LoginRequest {
        username: username.into(),
        password: PASSWORD.into(),
    });
    request
        .metadata_mut()
        .insert("x-forwarded-for", forwarded_for.parse().unwrap());
    app.client
        .login(request)
        .await
        .expect("the sign-in succeeds");
}

async fn recorded_address(app: &TestApp, username: &str) -> String {
    sqlx::query_scalar("SELECT host(client_ip) FROM login_history WHERE username = $1")
        .bind(username)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

fn trusting(proxies: &str) -> Options {
    Options {
        extra_args: vec![format!("--trusted-proxies={proxies}")],
        ..Options::default()
    }
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_sign_in_through_a_trusted_proxy_is_recorded_from_the_forwarded_address(pool: PgPool) {
    let mut app = spawn_app_with(pool, trusting("127.0.0.1/32")).await;
    app.create_user("usertest1", Role::User).await;

    sign_in_claiming(&mut app, "usertest1", "203.0.113.5").await;

    assert_eq!(recorded_address(&app, "usertest1").await, "203.0.113.5");
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_forwarded_address_from_an_untrusted_caller_is_ignored(pool: PgPool) {
    let mut app = spawn_app_with(pool, trusting("10.0.0.0/8")).await;
    app.create_user("usertest1", Role::User).await;

    sign_in_claiming(&mut app, "usertest1", "203.0.113.5").await;

    assert_eq!(recorded_address(&app, "usertest1").await, "127.0.0.1");
}

#[test]
fn a_bad_trusted_proxy_range_is_refused_with_its_name() {
    use clap::Parser;
    #[derive(Parser)]
    struct ConfigOnly {
        #[command(flatten)]
        config: activity_service::config::ActivityConfig,
    }
    let error = ConfigOnly::try_parse_from(["activity-service", "--trusted-proxies=10.0.0.0/33"])
        .err()
        .expect("refused");
    assert!(error.to_string().contains("10.0.0.0/33"), "{error}");
}
