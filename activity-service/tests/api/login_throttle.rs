//! The sign-in throttle: parallel guesses are counted before any is checked,
//! a stranger's failures never lock the owner out, an address spraying many
//! usernames is stopped, and the per-username backoff grows.

use std::time::Duration;

use presence_core::token::Role;
use tonic::Code;

use crate::helpers::{
    PASSWORD, TestApp, credentials, from_address, options_trusting_forwarded_for, spawn_app_with,
};

const STRANGER: &str = "198.51.100.7";
const OWNER: &str = "203.0.113.5";
/// Generous, so a slow machine shows up as a slow test, not a failure.
const CLIENT_DEADLINE: Duration = Duration::from_secs(60);
/// Room for every parallel attempt to wait for its password check.
const ROOMY_QUEUE: [&str; 3] = [
    "--login-concurrency=2",
    "--login-queue=64",
    "--login-queue-wait-ms=10000",
];

async fn attempt(app: &TestApp, ip: &str, username: &str, password: &str) -> Code {
    let mut request = from_address(credentials(username, password), ip);
    request.set_timeout(CLIENT_DEADLINE);
    match app.client.clone().login(request).await {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

/// Sends every attempt at once; their answers, in no particular order.
async fn all_at_once(app: &TestApp, attempts: Vec<(&str, String, &str)>) -> Vec<Code> {
    let mut running = tokio::task::JoinSet::new();
    for (ip, username, password) in attempts {
        let mut client = app.client.clone();
        let mut request = from_address(credentials(&username, password), ip);
        request.set_timeout(CLIENT_DEADLINE);
        running.spawn(async move {
            match client.login(request).await {
                Ok(_) => Code::Ok,
                Err(status) => status.code(),
            }
        });
    }
    running.join_all().await
}

fn count(codes: &[Code], code: Code) -> usize {
    codes.iter().filter(|answer| **answer == code).count()
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn parallel_wrong_passwords_for_one_user_are_checked_at_most_five_times(pool: sqlx::PgPool) {
    let app = spawn_app_with(pool, options_trusting_forwarded_for(&ROOMY_QUEUE)).await;
    app.create_user("usertest1", Role::User).await;

    let codes = all_at_once(
        &app,
        (0..30)
            .map(|_| (STRANGER, "usertest1".to_owned(), "guess"))
            .collect(),
    )
    .await;

    let checked = app.failures("wrong_password").await;
    assert!(checked <= 5, "{checked} guesses were checked");
    assert_eq!(count(&codes, Code::Unauthenticated) as i64, checked);
    let refused = count(&codes, Code::ResourceExhausted);
    assert_eq!(refused as i64 + checked, 30, "{codes:?}");
    assert_eq!(app.failures("throttled").await, refused as i64);
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn the_owner_signs_in_from_their_address_right_after_a_strangers_failures(
    pool: sqlx::PgPool,
) {
    let app = spawn_app_with(pool, options_trusting_forwarded_for(&[])).await;
    app.create_user("admintest1", Role::Admin).await;

    let mut stranger = Vec::new();
    for _ in 0..12 {
        stranger.push(attempt(&app, STRANGER, "admintest1", "guess").await);
    }
    let owner = attempt(&app, OWNER, "admintest1", PASSWORD).await;
    let stranger_with_the_password = attempt(&app, STRANGER, "admintest1", PASSWORD).await;

    assert_eq!(count(&stranger, Code::Unauthenticated), 5, "{stranger:?}");
    assert_eq!(count(&stranger, Code::ResourceExhausted), 7, "{stranger:?}");
    assert_eq!(owner, Code::Ok);
    assert_eq!(stranger_with_the_password, Code::ResourceExhausted);
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn an_address_guessing_many_usernames_is_stopped_at_its_limit_for_every_username(
    pool: sqlx::PgPool,
) {
    let mut flags = vec!["--login-max-failures-per-client=10"];
    flags.extend(ROOMY_QUEUE);
    let app = spawn_app_with(pool, options_trusting_forwarded_for(&flags)).await;
    app.create_user("usertest1", Role::User).await;

    let codes = all_at_once(
        &app,
        (0..25)
            .map(|n| (STRANGER, format!("nobody{n}"), "guess"))
            .collect(),
    )
    .await;
    let real_user_from_there = attempt(&app, STRANGER, "usertest1", PASSWORD).await;
    let real_user_elsewhere = attempt(&app, OWNER, "usertest1", PASSWORD).await;

    let checked = app.failures("unknown_user").await;
    assert!(checked <= 10, "{checked} guesses were checked");
    assert_eq!(count(&codes, Code::Unauthenticated) as i64, checked);
    assert_eq!(count(&codes, Code::ResourceExhausted) as i64, 25 - checked);
    assert_eq!(real_user_from_there, Code::ResourceExhausted);
    assert_eq!(real_user_elsewhere, Code::Ok);
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn the_backoff_wait_doubles_with_each_further_failure_and_never_holds_the_owner_back(
    pool: sqlx::PgPool,
) {
    // Only the backoff limits here: 3 failures, then 60 s, 120 s, ...
    let flags = [
        "--login-max-failures-per-user-and-client=100",
        "--login-backoff-after-failures=3",
        "--login-backoff-base-ms=60000",
        "--login-backoff-max-seconds=3600",
        "--login-throttle-window-seconds=3600",
    ];
    let app = spawn_app_with(pool, options_trusting_forwarded_for(&flags)).await;
    app.create_user("usertest1", Role::User).await;
    let guess = || attempt(&app, STRANGER, "usertest1", "guess");

    for _ in 0..3 {
        assert_eq!(guess().await, Code::Unauthenticated);
    }
    assert_eq!(guess().await, Code::ResourceExhausted, "in backoff");
    assert_eq!(attempt(&app, OWNER, "usertest1", PASSWORD).await, Code::Ok);
    // The owner's success reset the backoff: three more guesses, then 60 s.
    for _ in 0..3 {
        assert_eq!(guess().await, Code::Unauthenticated);
    }
    assert_eq!(guess().await, Code::ResourceExhausted);
    app.let_throttle_time_pass(Duration::from_secs(59)).await;
    assert_eq!(guess().await, Code::ResourceExhausted, "59 s < 60 s");
    app.let_throttle_time_pass(Duration::from_secs(2)).await;
    assert_eq!(guess().await, Code::Unauthenticated, "61 s ≥ 60 s");

    // The next wait is twice as long, and the refusals meanwhile extend nothing.
    assert_eq!(guess().await, Code::ResourceExhausted);
    app.let_throttle_time_pass(Duration::from_secs(61)).await;
    assert_eq!(guess().await, Code::ResourceExhausted, "61 s < 120 s");
    app.let_throttle_time_pass(Duration::from_secs(60)).await;
    assert_eq!(guess().await, Code::Unauthenticated, "121 s ≥ 120 s");
    assert_eq!(guess().await, Code::ResourceExhausted);

    // A new address is never held back by the backoff.
    assert_eq!(
        attempt(&app, "192.0.2.1", "usertest1", "guess").await,
        Code::Unauthenticated
    );
    assert_eq!(attempt(&app, OWNER, "usertest1", PASSWORD).await, Code::Ok);
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_success_from_an_address_forgets_its_earlier_typos(pool: sqlx::PgPool) {
    let app = spawn_app_with(pool, options_trusting_forwarded_for(&[])).await;
    app.create_user("usertest1", Role::User).await;

    let mut codes = Vec::new();
    for _ in 0..4 {
        codes.push(attempt(&app, OWNER, "usertest1", "typo").await);
    }
    codes.push(attempt(&app, OWNER, "usertest1", PASSWORD).await);
    for _ in 0..4 {
        codes.push(attempt(&app, OWNER, "usertest1", "typo").await);
    }
    codes.push(attempt(&app, OWNER, "usertest1", PASSWORD).await);

    let typo = Code::Unauthenticated;
    assert_eq!(
        codes,
        [
            typo,
            typo,
            typo,
            typo,
            Code::Ok,
            typo,
            typo,
            typo,
            typo,
            Code::Ok
        ]
    );
}
