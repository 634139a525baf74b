//! What operators and browsers get besides gRPC-Web: health, metrics and the
//! web app.

use std::time::Duration;

use prost::Message;

use presence_core::proto::activity::PingRequest;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::helpers::{
    GrpcWebAnswer, SOON, call, grpc_status, http, spawn_gateway, spawn_gateway_to,
};
use crate::stack::{connect, spawn_stack};

async fn health(address: std::net::SocketAddr, service: &str) -> i32 {
    HealthClient::new(connect(address).await)
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
}

#[sqlx::test(migrator = "presence_core::db::MIGRATOR")]
async fn readiness_follows_the_upstreams(pool: sqlx::PgPool) {
    let stack = spawn_stack(pool).await;
    let gateway = spawn_gateway(&stack, &[]).await;
    let closed = format!("http://127.0.0.1:{}", presence_core::testing::free_port());
    let cut_off = spawn_gateway_to(&closed, &closed, &[]).await;

    let mut ready = false;
    for _ in 0..50 {
        if health(gateway.address, "readiness").await == ServingStatus::Serving as i32 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;

    assert!(
        ready,
        "the gateway never became ready with both services up"
    );
    assert_eq!(
        health(gateway.address, "").await,
        ServingStatus::Serving as i32
    );
    assert_eq!(
        health(cut_off.address, "readiness").await,
        ServingStatus::NotServing as i32
    );
    // Alive all the same: restarting it would not bring the services back.
    assert_eq!(
        health(cut_off.address, "").await,
        ServingStatus::Serving as i32
    );
}

#[sqlx::test(migrator = "presence_core::db::MIGRATOR")]
async fn a_browser_can_ask_the_gateways_health_in_grpc_web(pool: sqlx::PgPool) {
    let stack = spawn_stack(pool).await;
    let gateway = spawn_gateway(&stack, &[]).await;

    let answer = call(
        &gateway,
        "/grpc.health.v1.Health/Check",
        None,
        &HealthCheckRequest {
            service: String::new(),
        },
    )
    .await;

    assert_eq!(grpc_status(&answer), 0);
    let message = &GrpcWebAnswer::parse(&answer.body).messages[0];
    let health = tonic_health::pb::HealthCheckResponse::decode(message.as_slice()).unwrap();
    assert_eq!(health.status, ServingStatus::Serving as i32);
}

#[sqlx::test(migrator = "presence_core::db::MIGRATOR")]
async fn metrics_count_calls_by_method_and_status(pool: sqlx::PgPool) {
    let stack = spawn_stack(pool).await;
    let gateway = spawn_gateway(&stack, &[]).await;
    call(
        &gateway,
        "/presence.activity.v1.ActivityService/Ping",
        None,
        &PingRequest {},
    )
    .await;

    let metrics = http(gateway.metrics, "GET", "/metrics", &[], b"", SOON).await;
    let text = String::from_utf8(metrics.body).unwrap();

    assert!(
        text.contains(r#"presence_gateway_requests_total{method="/presence.activity.v1.ActivityService/Ping",code="UNAUTHENTICATED"} 1"#),
        "{text}"
    );
    assert!(text.contains("presence_gateway_request_duration_seconds_count"));
}

#[sqlx::test(migrator = "presence_core::db::MIGRATOR")]
async fn the_web_app_is_served_with_a_fallback_to_its_page(pool: sqlx::PgPool) {
    let stack = spawn_stack(pool).await;
    let gateway = spawn_gateway(&stack, &[]).await;

    let deep_link = http(gateway.address, "GET", "/admin/users", &[], b"", SOON).await;
    let asset = http(
        gateway.address,
        "GET",
        "/assets/app-1234.js",
        &[("Accept-Encoding", "gzip")],
        b"",
        SOON,
    )
    .await;

    assert_eq!(deep_link.status, 200);
    assert!(String::from_utf8_lossy(&deep_link.body).contains("<title>presence</title>"));
    assert_eq!(deep_link.header("cache-control"), Some("no-cache"));
    assert_eq!(asset.status, 200);
    assert_eq!(asset.header("content-encoding"), Some("gzip"));
    assert!(asset.header("cache-control").unwrap().contains("immutable"));
}
