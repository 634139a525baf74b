//! The login_history retention: old rows are purged in the background, in
//! batches, and newer ones kept; expired throttle counters go with them.

use std::time::Duration;

use presence_core::token::Role;

use crate::helpers::{Options, spawn_app_with};
use presence_testkit::eventually;

/// More than two batches' worth, so the purge must go on after a full batch.
const OLD_ROWS: i64 = 2500;

async fn count(pool: &sqlx::PgPool, query: &str) -> i64 {
    sqlx::query_scalar(query).fetch_one(pool).await.unwrap()
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn login_history_rows_older_than_the_retention_are_purged_and_newer_ones_kept(
    pool: sqlx::PgPool,
) {
    let options = Options {
        extra_args: vec![
            "--login-history-retention-days=1".into(),
            "--login-history-purge-interval-seconds=1".into(),
        ],
        ..Default::default()
    };
    let mut app = spawn_app_with(pool.clone(), options).await;
    app.create_user("usertest1", Role::User).await;
    app.login("usertest1").await;
    sqlx::query(
        "INSERT INTO login_history (username, event, failure_reason, occurred_at)
         SELECT 'old', 'login_failure', 'unknown_user', now() - interval '2 days' - n * interval '1 s'
           FROM generate_series(1, $1) AS n
         UNION ALL
         SELECT 'recent', 'login_failure', 'unknown_user', now() - interval '23 hours'",
    )
    .bind(OLD_ROWS)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO login_throttle (scope, username, client, failures, last_failure_at, expires_at)
         VALUES ('pair', 'old', '192.0.2.1', 5, now() - interval '1 hour', now() - interval '1 s'),
                ('pair', 'recent', '192.0.2.1', 5, now(), now() + interval '1 hour')",
    )
    .execute(&pool)
    .await
    .unwrap();

    eventually(Duration::from_secs(60), "old rows purged", || async {
        count(
            &pool,
            "SELECT count(*) FROM login_history WHERE username = 'old'",
        )
        .await
            == 0
            && count(
                &pool,
                "SELECT count(*) FROM login_throttle WHERE username = 'old'",
            )
            .await
                == 0
    })
    .await;

    assert_eq!(app.events("recent").await, ["login_failure"]);
    assert_eq!(app.events("usertest1").await, ["login_success"]);
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM login_throttle WHERE username = 'recent'"
        )
        .await,
        1
    );
}
