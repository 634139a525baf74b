//! Whose address the per-client limits and the sign-in records use: behind
//! a trusted proxy, the client its forwarding header names; otherwise the
//! TCP peer, whatever headers it sends.

use clap::Parser;
use presence_core::token::Role;
use presence_proto::activity::{LoginRequest, PingRequest};

use crate::helpers::{
    BINARY, Gateway, SOON, frame, grpc_status, http, spawn_gateway, spawn_gateway_to,
};
use crate::stack::{PASSWORD, SECRET, spawn_stack};

const PING: &str = "/presence.activity.v1.ActivityService/Ping";
const LOGIN: &str = "/presence.activity.v1.ActivityService/Login";

/// A failed sign-in (a made-up account) sent with `header: value`.
async fn sign_in_failing(gateway: &Gateway, header: (&str, &str), attempt: usize) -> i32 {
    let request = LoginRequest {
        username: format!("nobody{attempt}"),
        password: "wrong".into(),
    };
    let headers = [("Content-Type", BINARY), ("X-Grpc-Web", "1"), header];
    grpc_status(
        &http(
            gateway.address,
            "POST",
            LOGIN,
            &headers,
            &frame(&request),
            SOON,
        )
        .await,
    )
}

async fn ping_without_token(gateway: &Gateway, header: (&str, &str)) -> i32 {
    let headers = [("Content-Type", BINARY), ("X-Grpc-Web", "1"), header];
    grpc_status(
        &http(
            gateway.address,
            "POST",
            PING,
            &headers,
            &frame(&PingRequest::default()),
            SOON,
        )
        .await,
    )
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_allowances(pool: sqlx::PgPool) {
    let stack = spawn_stack(pool).await;
    let gateway = spawn_gateway(
        &stack,
        &[
            "--trusted-proxies=127.0.0.1/32",
            "--rate-login-per-ip=2",
            "--rate-ping-per-ip=2",
            "--rate-window-seconds=3600",
        ],
    )
    .await;
    let first = ("X-Forwarded-For", "198.51.100.1");
    let second = ("X-Forwarded-For", "198.51.100.2");

    let mut first_logins = Vec::new();
    for attempt in 0..3 {
        first_logins.push(sign_in_failing(&gateway, first, attempt).await);
    }
    let second_login = sign_in_failing(&gateway, second, 3).await;
    let mut first_pings = Vec::new();
    for _ in 0..3 {
        first_pings.push(ping_without_token(&gateway, first).await);
    }
    let second_ping = ping_without_token(&gateway, second).await;

    assert_eq!(
        first_logins,
        [16, 16, 8],
        "the first client spent its allowance"
    );
    assert_eq!(second_login, 16, "the second client still has its own");
    assert_eq!(first_pings, [16, 16, 8]);
    assert_eq!(second_ping, 16);
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_forged_forwarding_header_from_an_untrusted_peer_changes_nothing(pool: sqlx::PgPool) {
    let stack = spawn_stack(pool).await;
    let gateway = spawn_gateway(
        &stack,
        &[
            "--trusted-proxies=10.0.0.0/8",
            "--rate-login-per-ip=2",
            "--rate-window-seconds=3600",
        ],
    )
    .await;

    let forged = [
        sign_in_failing(&gateway, ("X-Forwarded-For", "198.51.100.1"), 0).await,
        sign_in_failing(&gateway, ("X-Forwarded-For", "198.51.100.2"), 1).await,
        sign_in_failing(&gateway, ("Forwarded", "for=198.51.100.3"), 2).await,
    ];

    assert_eq!(forged, [16, 16, 8], "one peer, one allowance");
}

#[derive(Parser)]
struct ActivityOnly {
    #[command(flatten)]
    config: activity_service::config::ActivityConfig,
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_sign_in_through_a_trusted_proxy_is_recorded_from_the_browsers_address(
    pool: sqlx::PgPool,
) {
    let stack = spawn_stack(pool).await;
    stack.create_user("usertest1", Role::User).await;
    // An activity service that trusts the gateway in front of it.
    let config = ActivityOnly::parse_from([
        "activity-service".to_owned(),
        "--listen-addr=127.0.0.1:0".to_owned(),
        stack.redis_target.flag(),
        format!("--redis-key-prefix={}", stack.prefix),
        format!("--jwt-secret={SECRET}"),
        "--trusted-proxies=127.0.0.1/32".to_owned(),
    ])
    .config;
    let activity =
        activity_service::startup::Application::build_with_pool(config, stack.pool.clone())
            .await
            .unwrap();
    let activity_url = format!("http://{}", activity.local_addr());
    tokio::spawn(activity.run_until(std::future::pending()));
    let gateway = spawn_gateway_to(
        &activity_url,
        &format!("http://{}", stack.admin_address),
        &["--trusted-proxies=127.0.0.1/32"],
    )
    .await;

    // The browser claims an address; the proxy appended the one it saw.
    let request = LoginRequest {
        username: "usertest1".into(),
        password: PASSWORD.into(),
    };
    let headers = [
        ("Content-Type", BINARY),
        ("X-Grpc-Web", "1"),
        ("X-Forwarded-For", "192.0.2.66, 203.0.113.7"),
    ];
    let response = http(
        gateway.address,
        "POST",
        LOGIN,
        &headers,
        &frame(&request),
        SOON,
    )
    .await;
    let recorded: String = sqlx::query_scalar(
        "SELECT host(client_ip) FROM login_history WHERE username = 'usertest1'",
    )
    .fetch_one(&stack.pool)
    .await
    .unwrap();

    assert_eq!(grpc_status(&response), 0);
    assert_eq!(recorded, "203.0.113.7");
}
