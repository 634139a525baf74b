//! Bounded waits at the edge: a unary call is cut at the call timeout, a
//! watcher that never reads loses its stream (and its place), and a shutdown
//! ends within its drain deadline even while a watcher never reads (its
//! connection is closed at the deadline).

use std::time::Duration;

use presence_proto::admin::admin_service_client::AdminServiceClient;
use presence_proto::admin::{ListUserStatusesRequest, WatchUserStatusesRequest};
use presence_testkit::authorized;
use tonic::Code;
use uuid::Uuid;

use crate::helpers::{AdminProcess, Stack, connect, now, spawn_admin_with, spawn_stack};

/// Users online with long display names: a snapshot of them is several
/// megabytes, far more than a connection buffers for a stream nobody reads.
const CROWD: usize = 4000;

/// Puts `CROWD` users online, starts an admin service with `flags`, and
/// returns once its hub knows them all.
async fn crowd_online(stack: &mut Stack, flags: &[&str]) -> AdminProcess {
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "INSERT INTO users (id, username, password_hash, role, display_name)
         SELECT gen_random_uuid(), 'crowd' || lpad(i::text, 5, '0'), 'unused', 'user', repeat('x', 1000)
         FROM generate_series(1, $1) AS i
         RETURNING id",
    )
    .bind(CROWD as i32)
    .fetch_all(&stack.pool)
    .await
    .unwrap();
    let mut pings = redis::pipe();
    for id in &ids {
        pings
            .set_ex(stack.keys.last_activity(*id), now(), 3600)
            .zadd(stack.keys.presence_index_for(*id), id.to_string(), now());
    }
    let _: () = pings.query_async(&mut stack.redis).await.unwrap();
    let admin = spawn_admin_with(&stack.pool, &stack.redis_target, &stack.prefix, flags).await;
    let mut client = AdminServiceClient::new(connect(admin.address).await);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the crowd never came online"
        );
        // The place of the last look may not be free yet.
        let Ok(reading) = client
            .watch_user_statuses(authorized(WatchUserStatusesRequest {}, &stack.admin_token))
            .await
        else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let mut reading = reading.into_inner();
        let mut snapshot = 0;
        while let Some(event) = reading.message().await.unwrap() {
            if event.snapshot_complete {
                break;
            }
            snapshot += 1;
        }
        if snapshot > CROWD {
            return admin;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn shutdown_completes_within_the_drain_deadline_by_closing_a_connection_that_never_reads(
    pool: sqlx::PgPool,
) {
    let mut stack = spawn_stack(pool).await;
    let admin = crowd_online(&mut stack, &["--drain-seconds=2"]).await;
    let mut client = AdminServiceClient::new(connect(admin.address).await);

    // ...a watcher opens its stream and never reads it.
    let never_read = client
        .watch_user_statuses(authorized(WatchUserStatusesRequest {}, &stack.admin_token))
        .await
        .unwrap();
    // The scenario: time for the server to fill the unread stream's
    // flow-control window, so the shutdown meets a stream that is stuck.
    tokio::time::sleep(Duration::from_secs(1)).await;
    admin.stop.send(()).unwrap();

    let stopped = tokio::time::timeout(Duration::from_secs(20), admin.stopped)
        .await
        .expect("the server stopped though a watcher never read its stream");
    stopped.unwrap().expect("the server stopped cleanly");
    // Its connection was closed at the deadline: the client's stream ends
    // broken, before the rest of the snapshot and before the UNAVAILABLE
    // that a connection kept open would still deliver once read.
    let mut stream = never_read.into_inner();
    let end = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match stream.message().await {
                Ok(Some(event)) => assert!(!event.snapshot_complete, "the connection stayed open"),
                Ok(None) => panic!("the stream ended cleanly: the connection stayed open"),
                Err(status) => return status,
            }
        }
    })
    .await
    .expect("the stream ended");
    assert_eq!(end.code(), Code::Unknown, "{end:?}");
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_unary_call_stuck_on_the_database_is_cut_at_the_call_timeout(pool: sqlx::PgPool) {
    let stack = spawn_stack(pool).await;
    let admin = spawn_admin_with(
        &stack.pool,
        &stack.redis_target,
        &stack.prefix,
        &["--call-timeout-seconds=1"],
    )
    .await;
    let mut client = AdminServiceClient::new(connect(admin.address).await);
    // Every read of the users waits behind this lock until the transaction ends.
    let mut lock = stack.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();

    let call = client.list_user_statuses(authorized(
        ListUserStatusesRequest::default(),
        &stack.admin_token,
    ));
    let outcome = tokio::time::timeout(Duration::from_secs(15), call)
        .await
        .expect("the server answered while the database was stuck");
    lock.rollback().await.unwrap();

    let status = outcome.expect_err("a listing that cannot finish");
    assert_eq!(status.code(), Code::Cancelled, "{status:?}");
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_watcher_that_never_reads_loses_its_stream_and_its_place(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool).await;
    let admin = crowd_online(&mut stack, &["--max-watchers-per-user=1"]).await;
    let mut client = AdminServiceClient::new(connect(admin.address).await);
    let _never_read = client
        .watch_user_statuses(authorized(WatchUserStatusesRequest {}, &stack.admin_token))
        .await
        .unwrap();

    // Its place is taken until its feed gives up on it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        let opened = client
            .watch_user_statuses(authorized(WatchUserStatusesRequest {}, &stack.admin_token))
            .await;
        match opened {
            Ok(_) => break,
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the unread stream kept its place"
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}
