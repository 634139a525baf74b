//! The gateway's own connections: a slow sender is disconnected, a kept-alive
//! connection outlives the header deadline and closes when idle, and the
//! number of connections open at once is bounded.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tonic_health::pb::HealthCheckRequest;

use crate::helpers::{KeepAlive, SOON, call, grpc_status, spawn_gateway, wait_for_metric};
use crate::stack::spawn_stack;

const CHECK: &str = "/grpc.health.v1.Health/Check";

fn check() -> HealthCheckRequest {
    HealthCheckRequest {
        service: String::new(),
    }
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_slow_sender_is_disconnected_while_other_clients_are_served(pool: sqlx::PgPool) {
    let stack = spawn_stack(pool).await;
    let gateway = spawn_gateway(&stack, &["--header-read-timeout-ms=1000"]).await;

    // Headers one byte at a time, for up to 30 s: far beyond the deadline.
    let mut slow = TcpStream::connect(gateway.address).await.unwrap();
    slow.write_all(format!("POST {CHECK} HTTP/1.1\r\nHost: gateway\r\n").as_bytes())
        .await
        .unwrap();
    let trickle = tokio::spawn(async move {
        for _ in 0..30 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if slow.write_all(b"X").await.is_err() {
                return true;
            }
        }
        false
    });
    let meanwhile = call(&gateway, CHECK, None, &check()).await;

    assert_eq!(grpc_status(&meanwhile), 0, "other clients are served");
    assert!(
        trickle.await.unwrap(),
        "the slow sender was disconnected before it finished"
    );
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_kept_alive_connection_outlives_the_header_deadline_and_closes_when_idle(
    pool: sqlx::PgPool,
) {
    let stack = spawn_stack(pool).await;
    let gateway = spawn_gateway(
        &stack,
        &["--header-read-timeout-ms=500", "--idle-timeout-seconds=3"],
    )
    .await;
    let mut browser = KeepAlive::open(gateway.address).await;

    let first = browser.call(CHECK, &check()).await.expect("answered");
    // Longer than the header deadline between two requests, as between pings.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let second = browser
        .call(CHECK, &check())
        .await
        .expect("the same connection is still open");

    assert_eq!(grpc_status(&first), 0);
    assert_eq!(grpc_status(&second), 0);
    assert!(
        browser.closed_within(SOON).await,
        "an idle connection is closed"
    );
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_connection_that_never_finishes_its_first_bytes_is_dropped_at_the_header_deadline(
    pool: sqlx::PgPool,
) {
    let stack = spawn_stack(pool).await;
    let gateway = spawn_gateway(&stack, &["--header-read-timeout-ms=1000"]).await;
    // Silent, and the start of HTTP/2's preface, which leaves the protocol undecided.
    let mut silent = KeepAlive::open(gateway.address).await;
    let mut undecided = KeepAlive::open(gateway.address).await;
    undecided.send(b"PRI * HTTP/2").await.unwrap();

    let meanwhile = call(&gateway, CHECK, None, &check()).await;

    assert_eq!(grpc_status(&meanwhile), 0, "other clients are served");
    assert!(
        silent.closed_within(SOON).await,
        "a silent connection is dropped"
    );
    assert!(
        undecided.closed_within(SOON).await,
        "a connection stalled in the preface is dropped"
    );
}

const PARKED: &str = "presence_gateway_connections_parked";
const OPEN: &str = "presence_gateway_connections_open";

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn an_idle_connection_is_parked_and_serves_its_next_requests_within_the_same_deadlines(
    pool: sqlx::PgPool,
) {
    let stack = spawn_stack(pool).await;
    let gateway = spawn_gateway(&stack, &["--header-read-timeout-ms=1000"]).await;
    let mut browser = KeepAlive::open(gateway.address).await;

    let first = browser.call(CHECK, &check()).await.expect("answered");
    assert_eq!(grpc_status(&first), 0);
    // Idle, it lets go of hyper's state and keeps the socket.
    wait_for_metric(&gateway, PARKED, |parked| parked == 1.0).await;
    assert_eq!(wait_for_metric(&gateway, OPEN, |_| true).await, 1.0);

    // Woken by two requests in one write: both answered, in order.
    let both = browser.pipelined(CHECK, &check(), 2).await;
    assert!(
        both.iter()
            .all(|response| response.as_ref().is_some_and(|r| grpc_status(r) == 0)),
        "both pipelined calls answered on the parked connection: {both:?}"
    );

    // Parked again, a request that starts and stalls still meets the header deadline.
    wait_for_metric(&gateway, PARKED, |parked| parked == 1.0).await;
    let request = browser.request(CHECK, &check());
    browser.send(&request[..20]).await.unwrap();
    assert!(
        browser.closed_within(SOON).await,
        "a stalled request on a parked connection is dropped"
    );
    wait_for_metric(&gateway, OPEN, |open| open == 0.0).await;
    assert_eq!(wait_for_metric(&gateway, PARKED, |_| true).await, 0.0);
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn connections_beyond_the_limit_are_refused_and_accepted_again_after_some_close(
    pool: sqlx::PgPool,
) {
    let stack = spawn_stack(pool).await;
    let gateway = spawn_gateway(&stack, &["--max-connections=3"]).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut connection = KeepAlive::open(gateway.address).await;
        let response = connection.call(CHECK, &check()).await.expect("answered");
        assert_eq!(grpc_status(&response), 0);
        open.push(connection);
    }

    let mut one_too_many = KeepAlive::open(gateway.address).await;
    let refused = one_too_many.call(CHECK, &check()).await;
    let still_served = open[0].call(CHECK, &check()).await.expect("answered");

    assert!(
        refused.is_none(),
        "a fourth connection is closed unanswered"
    );
    assert_eq!(
        grpc_status(&still_served),
        0,
        "open connections keep working"
    );

    drop(open.pop());
    let mut accepted = false;
    for _ in 0..50 {
        let mut again = KeepAlive::open(gateway.address).await;
        if let Some(response) = again.call(CHECK, &check()).await {
            assert_eq!(grpc_status(&response), 0);
            accepted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(accepted, "a new connection is accepted once one closed");
}
