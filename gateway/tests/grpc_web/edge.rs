//! The edge rules: CORS, the method allowlist, size limits, malformed frames,
//! deadlines and rate limits.

use std::time::Duration;

use presence_core::token::Role;
use presence_proto::activity::{LoginRequest, PingRequest, RecordActivityRequest};
use presence_proto::admin::BatchGetUserStatusesRequest;

use crate::helpers::{
    BINARY, SOON, call, check_health, grpc_status, http, spawn_gateway, spawn_gateway_to,
};
use crate::stack::spawn_stack;

const PING: &str = "/presence.activity.v1.ActivityService/Ping";
const LOGIN: &str = "/presence.activity.v1.ActivityService/Login";

async fn preflight(
    gateway: &crate::helpers::Gateway,
    origin: &str,
) -> crate::helpers::HttpResponse {
    http(
        gateway.address,
        "OPTIONS",
        PING,
        &[
            ("Origin", origin),
            ("Access-Control-Request-Method", "POST"),
            (
                "Access-Control-Request-Headers",
                "content-type,x-grpc-web,authorization",
            ),
        ],
        b"",
        SOON,
    )
    .await
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_preflight_from_an_allowed_origin_passes_and_from_another_is_refused(pool: sqlx::PgPool) {
    let stack = spawn_stack(pool).await;
    let gateway = spawn_gateway(&stack, &[]).await;
    let allowed = preflight(&gateway, "https://allowed.example").await;
    let other = preflight(&gateway, "https://evil.example").await;

    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://allowed.example")
    );
    assert!(
        allowed
            .header("access-control-allow-headers")
            .unwrap()
            .contains("authorization")
    );
    assert_eq!(other.header("access-control-allow-origin"), None);

    // And a call from that other origin is refused outright.
    let call = http(
        gateway.address,
        "POST",
        PING,
        &[("Content-Type", BINARY), ("Origin", "https://evil.example")],
        &crate::helpers::frame(&PingRequest::default()),
        SOON,
    )
    .await;
    assert_eq!(grpc_status(&call), 7);

    // While a call from the allowed one is answered, with what a browser
    // needs to read its status.
    let allowed_call = http(
        gateway.address,
        "POST",
        PING,
        &[
            ("Content-Type", BINARY),
            ("Origin", "https://allowed.example"),
        ],
        &crate::helpers::frame(&PingRequest::default()),
        SOON,
    )
    .await;
    assert_eq!(grpc_status(&allowed_call), 16, "no token: refused upstream");
    assert_eq!(
        allowed_call.header("access-control-allow-origin"),
        Some("https://allowed.example")
    );
    assert!(
        allowed_call
            .header("access-control-expose-headers")
            .unwrap()
            .contains("grpc-status")
    );
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn internal_methods_are_refused_at_the_edge(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool).await;
    let user = stack.create_user("usertest1", Role::User).await;
    let gateway = spawn_gateway(&stack, &[]).await;
    let token = stack.admin_token.clone();

    let record = call(
        &gateway,
        "/presence.activity.v1.ActivityService/RecordActivity",
        Some(&token),
        &RecordActivityRequest {
            user_id: user.to_string(),
        },
    )
    .await;
    let batch = call(
        &gateway,
        "/presence.admin.v1.AdminService/BatchGetUserStatuses",
        Some(&token),
        &BatchGetUserStatusesRequest {
            user_ids: vec![user.to_string()],
        },
    )
    .await;
    let reflection = call(
        &gateway,
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        None,
        &PingRequest::default(),
    )
    .await;

    assert_eq!(grpc_status(&record), 7);
    assert_eq!(grpc_status(&batch), 7);
    assert_eq!(grpc_status(&reflection), 12);
    let written: Vec<String> =
        redis::AsyncCommands::keys(&mut stack.redis, format!("{}*", stack.prefix))
            .await
            .unwrap();
    assert!(
        written.iter().all(|key| !key.contains("last_activity")),
        "{written:?}"
    );
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn oversized_and_truncated_frames_get_clean_errors(pool: sqlx::PgPool) {
    let stack = spawn_stack(pool).await;
    let gateway = spawn_gateway(&stack, &["--max-request-bytes=1024"]).await;
    let oversized = crate::helpers::frame(&LoginRequest {
        username: "u".repeat(4000),
        password: "p".into(),
    });
    let mut truncated = crate::helpers::frame(&LoginRequest {
        username: "usertest1".into(),
        password: "Test1234!".into(),
    });
    truncated.truncate(truncated.len() - 4);
    let garbage = b"\x00\x00\x00\x00\x03\xff\xff\xff";

    let headers = [("Content-Type", BINARY), ("X-Grpc-Web", "1")];
    let too_big = http(gateway.address, "POST", LOGIN, &headers, &oversized, SOON).await;
    let cut = http(gateway.address, "POST", LOGIN, &headers, &truncated, SOON).await;
    let nonsense = http(gateway.address, "POST", LOGIN, &headers, garbage, SOON).await;

    assert_eq!(grpc_status(&too_big), 8);
    assert_ne!(grpc_status(&cut), 0);
    assert_ne!(grpc_status(&nonsense), 0);
}

#[tokio::test]
async fn an_unreachable_service_is_unavailable() {
    let closed = format!("http://127.0.0.1:{}", presence_testkit::free_port());
    let gateway = spawn_gateway_to(&closed, &closed, &["--upstream-timeout-ms=2000"]).await;

    // `call` gives up (and fails the test) if no answer comes at all.
    let ping = call(&gateway, PING, None, &PingRequest::default()).await;

    assert_eq!(grpc_status(&ping), 14);
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn the_ping_rate_limit_trips_and_recovers(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool).await;
    stack.create_user("usertest1", Role::User).await;
    let token = stack.login("usertest1").await.access_token;
    let gateway = spawn_gateway(
        &stack,
        &["--rate-ping-per-user=3", "--rate-window-seconds=1"],
    )
    .await;

    let mut codes = Vec::new();
    for _ in 0..4 {
        codes.push(grpc_status(
            &call(&gateway, PING, Some(&token), &PingRequest::default()).await,
        ));
    }
    assert_eq!(codes, [0, 0, 0, 8]);

    // The scenario, not a synchronisation: the one-second window passes.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        grpc_status(&call(&gateway, PING, Some(&token), &PingRequest::default()).await),
        0
    );
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn an_absurd_grpc_timeout_is_refused_cleanly_and_the_gateway_keeps_serving(
    pool: sqlx::PgPool,
) {
    use tonic_health::pb::HealthCheckRequest;
    let stack = spawn_stack(pool).await;
    let gateway = spawn_gateway(&stack, &[]).await;
    let check = crate::helpers::frame(&HealthCheckRequest {
        service: String::new(),
    });

    for path in [
        "/grpc.health.v1.Health/Watch",
        "/grpc.health.v1.Health/Check",
    ] {
        for timeout in [
            "9999999999999999H",
            "18446744073709551615S",
            "99999999999999999999999n",
            "123456789m",
            "10x",
            "S",
        ] {
            let headers = [("Content-Type", BINARY), ("grpc-timeout", timeout)];
            let response = http(gateway.address, "POST", path, &headers, &check, SOON).await;
            assert_eq!(grpc_status(&response), 3, "{path} with {timeout}");
            assert!(
                response
                    .header("grpc-message")
                    .unwrap()
                    .contains("grpc-timeout"),
                "the message names the header: {response:?}"
            );
        }
    }
    // The longest valid timeout is capped, not refused.
    let headers = [("Content-Type", BINARY), ("grpc-timeout", "99999999H")];
    let longest = http(
        gateway.address,
        "POST",
        "/grpc.health.v1.Health/Check",
        &headers,
        &check,
        SOON,
    )
    .await;
    let afterwards = check_health(&gateway).await;

    assert_eq!(grpc_status(&longest), 0);
    assert_eq!(grpc_status(&afterwards), 0, "the gateway still serves");
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn oversized_headers_are_refused_at_the_edge_and_other_users_calls_pass(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool).await;
    stack.create_user("usertest1", Role::User).await;
    stack.create_user("usertest2", Role::User).await;
    let heavy_token = stack.login("usertest1").await.access_token;
    let token = stack.login("usertest2").await.access_token;
    // One upstream connection: every call shares it.
    let gateway = spawn_gateway(&stack, &["--upstream-connections=1"]).await;
    let padding = "a".repeat(64 * 1024);
    let heavy_bearer = format!("Bearer {heavy_token}");
    let heavy_headers = [
        ("Content-Type", BINARY),
        ("Authorization", heavy_bearer.as_str()),
        ("X-Padding", padding.as_str()),
    ];
    let body = crate::helpers::frame(&PingRequest::default());

    let ping = PingRequest::default();
    let (heavy, concurrent) = tokio::join!(
        http(gateway.address, "POST", PING, &heavy_headers, &body, SOON),
        call(&gateway, PING, Some(&token), &ping),
    );
    let following = call(&gateway, PING, Some(&token), &PingRequest::default()).await;

    assert_eq!(grpc_status(&heavy), 8, "{heavy:?}");
    assert_eq!(
        heavy.header("grpc-message"),
        Some("request%20headers%20too%20large")
    );
    assert_eq!(grpc_status(&concurrent), 0);
    assert_eq!(grpc_status(&following), 0);
}
