//! The PostgreSQL pool the services use: every statement has a deadline.

use std::time::Duration;

use clap::Parser;
use presence_store::config::DatabaseArgs;

#[derive(Parser)]
struct DatabaseOnly {
    #[command(flatten)]
    database: DatabaseArgs,
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_statement_longer_than_the_statement_timeout_is_cancelled(pool: sqlx::PgPool) {
    let options = pool.connect_options();
    let url = format!(
        "postgres://{}@{}:{}/{}",
        options.get_username(),
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap()
    );
    let args = DatabaseOnly::parse_from([
        "test".to_owned(),
        format!("--database-url={url}"),
        "--database-statement-timeout-ms=300".into(),
    ])
    .database;
    let service_pool = presence_store::db::connect_lazy(&args).unwrap();

    let sleep = sqlx::query("SELECT pg_sleep(30)").execute(&service_pool);
    let error = tokio::time::timeout(Duration::from_secs(20), sleep)
        .await
        .expect("cancelled long before the 30 s sleep ends")
        .unwrap_err();

    let cancelled = error
        .as_database_error()
        .map(|error| error.message().to_owned());
    assert_eq!(
        cancelled.as_deref(),
        Some("canceling statement due to statement timeout"),
        "{error:?}"
    );
    assert!(presence_store::db::is_unreachable(&error), "retryable");
}
