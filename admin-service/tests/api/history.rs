//! The online count over time: one writer across replicas (and a takeover
//! when it stops), the retention purge, and the buckets `GetOnlineHistory`
//! returns (bounded in number, gaps kept as gaps).

use std::time::Duration;

use admin_service::online_history::WRITER_NAME;
use presence_core::token::Role;
use presence_proto::admin::GetOnlineHistoryRequest;
use presence_proto::timestamp;
use presence_testkit::{authorized, eventually, online_history};
use tonic::Code;

use crate::helpers::{AdminProcess, Stack, connect, spawn_admin_with, spawn_stack};

const SOON: Duration = Duration::from_secs(20);
/// Replicas that sample every second (the stack's own admin samples every
/// minute, so it stays out of the way of these tests).
const FAST: &[&str] = &["--online-sample-seconds=1"];
const DAY: i64 = 86_400;
/// 2026-01-01T00:00:00Z, for ranges that read nothing.
const JAN_1: i64 = 1_767_225_600;

/// Midnight (UTC) 35 days ago: a month of samples placed from there is
/// within retention and ends before now.
fn month_start() -> i64 {
    let then = now() - 35 * DAY;
    then - then.rem_euclid(DAY)
}

async fn replica(stack: &Stack, extra: &[&str]) -> AdminProcess {
    spawn_admin_with(&stack.pool, &stack.redis_target, &stack.prefix, extra).await
}

async fn writers(stack: &Stack) -> Vec<String> {
    online_history::writers(&stack.pool).await
}

async fn samples_since(stack: &Stack, since: i64) -> i64 {
    online_history::samples_since(&stack.pool, since).await
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn one_replica_writes_and_another_takes_over_when_it_stops(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool).await;
    let user = stack.create_user("usertest1", Role::User).await;
    let token = stack.login("usertest1").await.access_token;
    stack.ping(&token).await;
    let first = replica(&stack, FAST).await;
    let second = replica(&stack, FAST).await;

    let writer = eventually(SOON, "one replica holds the writer lock", || async {
        match writers(&stack).await.as_slice() {
            [one] => Some(one.clone()),
            _ => None,
        }
    })
    .await;
    let started = now();
    eventually(SOON, "samples every second", || async {
        samples_since(&stack, started).await >= 2
    })
    .await;
    // Never two writers, and the samples count the users online.
    assert_eq!(writers(&stack).await.len(), 1);
    let online: i64 =
        sqlx::query_scalar("SELECT online FROM online_counts ORDER BY sampled_at DESC LIMIT 1")
            .fetch_one(&stack.pool)
            .await
            .unwrap();
    assert!(online >= 1, "{user} pinged, yet {online} online");

    let (stopped, kept) = if writer == format!("{WRITER_NAME} {}", first.address) {
        (first, second)
    } else {
        assert_eq!(writer, format!("{WRITER_NAME} {}", second.address));
        (second, first)
    };
    stopped.stop.send(()).unwrap();
    stopped.stopped.await.unwrap().unwrap();
    let kept_name = format!("{WRITER_NAME} {}", kept.address);
    eventually(SOON, "the other replica takes the lock", || async {
        writers(&stack).await == [kept_name.clone()]
    })
    .await;
    let handed_over = now();
    eventually(SOON, "samples go on after the takeover", || async {
        samples_since(&stack, handed_over).await >= 2
    })
    .await;
    drop(kept);
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn samples_past_retention_are_purged_in_batches_and_recent_ones_kept(pool: sqlx::PgPool) {
    let stack = spawn_stack(pool).await;
    let recent = now() - 2 * DAY;
    // 100 days ago: 2,500 samples, more than one purge batch; and 2 days ago: 10.
    sqlx::query(
        "INSERT INTO online_counts (sampled_at, online, total)
         SELECT to_timestamp($1::float8 + 60 * n), n % 7, 10 FROM generate_series(0, 2499) n
         UNION ALL
         SELECT to_timestamp($2::float8 + 60 * n), 1, 10 FROM generate_series(0, 9) n",
    )
    .bind((now() - 100 * DAY) as f64)
    .bind(recent as f64)
    .execute(&stack.pool)
    .await
    .unwrap();

    let _writer = replica(
        &stack,
        &[
            "--online-sample-seconds=1",
            "--online-history-retention-days=90",
        ],
    )
    .await;
    eventually(SOON, "every sample older than 90 days purged", || async {
        samples_since(&stack, 0).await - samples_since(&stack, now() - 90 * DAY).await == 0
    })
    .await;
    let kept: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM online_counts
         WHERE sampled_at BETWEEN to_timestamp($1::float8) AND to_timestamp($1::float8 + 540)",
    )
    .bind(recent as f64)
    .fetch_one(&stack.pool)
    .await
    .unwrap();
    assert_eq!(kept, 10, "samples within retention are kept");
}

/// 30 days of one sample a minute from `start` (online = minute % 100),
/// except day 10, when nothing was recorded.
async fn thirty_days_with_a_gap(stack: &Stack, start: i64) {
    sqlx::query(
        "INSERT INTO online_counts (sampled_at, online, total)
         SELECT to_timestamp($1::float8 + 60 * n), n % 100, 1000
         FROM generate_series(0, 30 * 1440 - 1) n
         WHERE n / 1440 <> 10",
    )
    .bind(start as f64)
    .execute(&stack.pool)
    .await
    .unwrap();
}

fn range(from: i64, to: i64, step_seconds: u32) -> GetOnlineHistoryRequest {
    GetOnlineHistoryRequest {
        from: Some(timestamp(from)),
        to: Some(timestamp(to)),
        step_seconds,
    }
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_long_range_is_down_sampled_within_the_bound_and_keeps_its_gaps(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool).await;
    let start = month_start();
    thirty_days_with_a_gap(&stack, start).await;

    let month = stack
        .admin
        .get_online_history(authorized(
            range(start, start + 30 * DAY, 0),
            &stack.admin_token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(month.step_seconds, 1800);
    assert!(month.points.len() <= 1440);
    // 48 half-hours a day, none on day 10: a gap, not zeros.
    assert_eq!(month.points.len(), 29 * 48);
    let day_10 = start + 10 * DAY..start + 11 * DAY;
    assert!(
        month
            .points
            .iter()
            .all(|point| !day_10.contains(&point.at.unwrap().seconds))
    );
    let first = &month.points[0];
    assert_eq!(first.at.unwrap().seconds, start);
    assert_eq!((first.samples, first.max_online), (30, 29));
    assert!((first.mean_online - 14.5).abs() < 1e-9);
    assert!(
        month
            .points
            .windows(2)
            .all(|pair| pair[0].at.unwrap().seconds < pair[1].at.unwrap().seconds)
    );

    // A day: one point a minute; a step asked for is kept.
    let day = stack
        .admin
        .get_online_history(authorized(range(start, start + DAY, 0), &stack.admin_token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((day.step_seconds, day.points.len()), (60, 1440));
    let hourly = stack
        .admin
        .get_online_history(authorized(
            range(start, start + DAY, 3600),
            &stack.admin_token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((hourly.step_seconds, hourly.points.len()), (3600, 24));
    assert_eq!(hourly.points[0].max_online, 59);
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn bad_ranges_are_invalid_and_a_user_token_is_refused(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool).await;
    stack.create_user("usertest1", Role::User).await;
    let user_token = stack.login("usertest1").await.access_token;
    let mut admin = presence_proto::admin::admin_service_client::AdminServiceClient::new(
        connect(stack.admin_address).await,
    );
    let bad = [
        GetOnlineHistoryRequest::default(),
        range(JAN_1, JAN_1, 0),
        range(JAN_1 + DAY, JAN_1, 0),
        range(JAN_1, JAN_1 + 401 * DAY, 0),
    ];
    for request in bad {
        let status = admin
            .get_online_history(authorized(request, &stack.admin_token))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{request:?}");
    }
    let status = admin
        .get_online_history(authorized(range(JAN_1, JAN_1 + DAY, 0), &user_token))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
}
