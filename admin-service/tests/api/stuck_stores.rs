//! Background loops under a store that hangs: each call has a deadline, so
//! the loop goes on (and catches up once the store answers again) instead of
//! waiting forever.

use std::time::Duration;

use presence_core::token::Role;
use presence_proto::admin::StatusSource;

use crate::helpers::{now, spawn_stack};
use crate::watch::{about, next_matching};

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn the_stream_keeps_reporting_while_a_database_read_hangs_and_catches_up_after(
    pool: sqlx::PgPool,
) {
    let mut stack = spawn_stack(pool).await;
    let admin: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM users WHERE username = 'admintest1'")
            .fetch_one(&stack.pool)
            .await
            .unwrap();
    let newcomer = stack.create_user("newcomer", Role::User).await;
    let mut stream = stack.watch().await;
    next_matching(&mut stream, Duration::from_secs(10), |event| {
        event.snapshot_complete
    })
    .await;

    // Reads of the users now wait behind this lock until it is released.
    let mut lock = stack.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    // The hub has never met the newcomer: it must read their name, and hangs.
    stack.place_activity(newcomer, now()).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'
               AND query LIKE '%FROM users u WHERE u.id = ANY%'",
        )
        .fetch_one(&stack.pool)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the hub never read the newcomer's name"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A ping of a user it knows (online by login until now) needs no read of
    // the users: it is reported once the hung read has given up.
    stack.place_activity(admin, now()).await;
    let pinged = next_matching(&mut stream, Duration::from_secs(40), |event| {
        about("admintest1", true)(event)
            && event.status.as_ref().unwrap().source == StatusSource::Activity as i32
    })
    .await;
    assert!(!pinged.snapshot);

    lock.rollback().await.unwrap();
    next_matching(
        &mut stream,
        Duration::from_secs(40),
        about("newcomer", true),
    )
    .await;
}
