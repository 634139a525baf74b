//! A rolling restart of every replica under load: two activity and two
//! admin replicas, each behind its Service proxy; one at a time, a replica
//! leaves its Service (as Kubernetes removes a terminating pod's endpoint
//! while its preStop hook sleeps), gets SIGTERM, must exit cleanly, and its
//! replacement joins. The promises: not one ping fails; a replica told to
//! stop says GOAWAY on its connections (so the gateway opens new ones
//! elsewhere) and finishes the calls it had taken (one is held in flight on
//! purpose, waiting on a lock of the users table, across the SIGTERM); an
//! admin's open status stream ends with UNAVAILABLE, which the web app
//! reconnects on, and the new stream brings a fresh snapshot and the changes
//! after it.

use std::net::SocketAddr;
use std::time::Duration;

use presence_core::token::Role;
use presence_proto::activity::LoginRequest;
use presence_proto::activity::activity_service_client::ActivityServiceClient;
use presence_proto::admin::ListUserStatusesRequest;
use presence_proto::admin::admin_service_client::AdminServiceClient;
use presence_system_tests::eventually;
use presence_system_tests::goaway::IdleConnection;
use presence_system_tests::load;
use presence_system_tests::stack::{Options, PASSWORD, Stack, Tier};
use presence_system_tests::watcher::Watcher;
use presence_testkit::authorized;
use sqlx::{PgPool, Postgres, Transaction};
use tokio::time::Instant;

use crate::{PING_PERIOD, RECOVERY_WITHIN, assert_outcomes_within, outcomes_line, seconds};

/// Every replica is replaced this many times.
const ROUNDS: usize = 2;
/// What each service logs once it has taken SIGTERM in.
const ACTIVITY_STOPPING: &str = "shutdown requested";
const ADMIN_STOPPING: &str = "stopping: status streams end";
/// A fragment of the query a sign-in and a listing wait on while the users are locked.
const SIGN_IN_QUERY: &str = "FROM users WHERE username";
const LISTING_QUERY: &str = "WITH page AS";

/// Holds an exclusive lock on the users table until rolled back: a call
/// that reads it waits (within the statement timeout), so it is surely in
/// flight when its replica is told to stop.
async fn lock_users(pool: &PgPool) -> Transaction<'static, Postgres> {
    let mut lock = pool.begin().await.expect("a transaction");
    sqlx::query("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .expect("the users locked");
    lock
}

/// Waits until a query containing `fragment` waits on a lock.
async fn waiting_on_the_lock(pool: &PgPool, fragment: &str) {
    eventually(
        Duration::from_secs(10),
        "a call waiting on the lock",
        || async {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'
               AND strpos(query, $1) > 0",
            )
            .bind(fragment)
            .fetch_one(pool)
            .await
            .ok()?;
            (waiting > 0).then_some(())
        },
    )
    .await;
}

async fn channel(address: SocketAddr) -> tonic::transport::Channel {
    tonic::transport::Channel::from_shared(format!("http://{address}"))
        .expect("a valid URI")
        .connect()
        .await
        .expect("the replica accepts connections")
}

/// Asserts the connection ended with a GOAWAY, not a bare close.
fn assert_said_goaway(ended: &h2::Error, replica: &str) {
    assert!(
        ended.is_go_away() && ended.is_remote() && ended.reason() == Some(h2::Reason::NO_ERROR),
        "{replica} ended its connections without a GOAWAY: {ended:?}"
    );
}

/// Rolls activity replica `index` with a sign-in in flight on it across the SIGTERM.
async fn roll_activity_with_a_call_in_flight(stack: &mut Stack, index: usize) {
    let address = stack.activity[index].address;
    let idle = IdleConnection::open(address).await;
    let lock = lock_users(&stack.pool).await;
    let mut client = ActivityServiceClient::new(channel(address).await);
    let in_flight = tokio::spawn(async move {
        client
            .login(LoginRequest {
                username: "signer".to_owned(),
                password: PASSWORD.to_owned(),
            })
            .await
    });
    waiting_on_the_lock(&stack.pool, SIGN_IN_QUERY).await;
    stack.retire(Tier::Activity, index);
    stack.activity[index]
        .wait_for_log(ACTIVITY_STOPPING, Duration::from_secs(10))
        .await;
    lock.rollback().await.expect("the users unlocked");
    let signed_in = in_flight.await.expect("the call ran");
    assert!(
        signed_in.is_ok(),
        "a sign-in in flight at SIGTERM: {signed_in:?}"
    );
    let ended = idle.ended(Duration::from_secs(10)).await;
    assert_said_goaway(&ended, &stack.activity[index].name);
    stack.replace(Tier::Activity, index).await;
}

/// Rolls admin replica `index` with a listing in flight on it across the SIGTERM.
async fn roll_admin_with_a_call_in_flight(stack: &mut Stack, index: usize) {
    let address = stack.admin[index].address;
    let idle = IdleConnection::open(address).await;
    let lock = lock_users(&stack.pool).await;
    let mut client = AdminServiceClient::new(channel(address).await);
    let token = stack.admin_token.clone();
    let in_flight = tokio::spawn(async move {
        client
            .list_user_statuses(authorized(ListUserStatusesRequest::default(), &token))
            .await
    });
    waiting_on_the_lock(&stack.pool, LISTING_QUERY).await;
    stack.retire(Tier::Admin, index);
    stack.admin[index]
        .wait_for_log(ADMIN_STOPPING, Duration::from_secs(10))
        .await;
    lock.rollback().await.expect("the users unlocked");
    let listed = in_flight.await.expect("the call ran");
    assert!(listed.is_ok(), "a listing in flight at SIGTERM: {listed:?}");
    let ended = idle.ended(Duration::from_secs(10)).await;
    assert_said_goaway(&ended, &stack.admin[index].name);
    stack.replace(Tier::Admin, index).await;
}

#[tokio::test]
async fn rolling_restart_of_every_replica_under_load_fails_no_ping_and_watchers_resume() {
    let mut stack = Stack::start(Options {
        activity_replicas: 2,
        admin_replicas: 2,
        ..Options::default()
    })
    .await;
    stack.create_user("signer", Role::User).await;
    stack.create_user("leaver", Role::User).await;
    let leaver = stack.login("leaver").await.expect("leaver signs in");
    let watcher = Watcher::start(stack.gateway_address(), stack.admin_token.clone());
    let first = watcher.wait_until_live(RECOVERY_WITHIN).await;
    assert!(first.online.contains("leaver"), "{:?}", first.online);
    let load = stack.start_load(PING_PERIOD);
    load.wait_for_every_user(load.started, RECOVERY_WITHIN)
        .await;

    let rolling = Instant::now();
    let mut steps = Vec::new();
    for round in 1..=ROUNDS {
        for index in 0..stack.activity.len() {
            let step = Instant::now();
            roll_activity_with_a_call_in_flight(&mut stack, index).await;
            steps.push(format!("activity {index}: {}", seconds(step.elapsed())));
            // Every user's pings get through before the next replica goes.
            load.wait_for_every_user(Instant::now(), RECOVERY_WITHIN)
                .await;
        }
        for index in 0..stack.admin.len() {
            let step = Instant::now();
            roll_admin_with_a_call_in_flight(&mut stack, index).await;
            steps.push(format!("admin {index}: {}", seconds(step.elapsed())));
        }
        steps.push(format!("(round {round} done)"));
    }
    let rolled = rolling.elapsed();

    // The stream open at the start ended; a later one is live again.
    let resumed = eventually(RECOVERY_WITHIN, "a status stream resumed", || async {
        let streams = watcher.streams();
        let live = watcher.live()?;
        (streams.len() > 1).then_some(live)
    })
    .await;
    assert!(
        resumed.online.contains("leaver"),
        "the fresh snapshot shows who is online: {:?}",
        resumed.online
    );
    // ... and changes follow it.
    let signed_out = Instant::now();
    stack
        .logout(&leaver.access_token)
        .await
        .expect("leaver signs out");
    let sign_out_seen = eventually(
        Duration::from_secs(10),
        "the sign-out on the live stream",
        || async {
            let live = watcher.live()?;
            live.changes
                .contains(&("leaver".to_owned(), false))
                .then(|| signed_out.elapsed())
        },
    )
    .await;

    let records = load.stop().await;
    assert_outcomes_within(&records, &["OK"], rolling);
    let streams = watcher.streams();
    let ends: Vec<&str> = streams
        .iter()
        .filter_map(|stream| stream.ended.as_deref())
        .collect();
    assert!(
        !ends.is_empty(),
        "no status stream ended during the restart"
    );
    assert!(
        ends.iter().all(|end| *end == "Unavailable"),
        "streams must end with UNAVAILABLE, which the web app reconnects on: {ends:?}"
    );
    let spread: Vec<String> = stack
        .activity
        .iter()
        .map(|replica| {
            format!(
                "{} {}",
                replica.name,
                stack.activity_service.open_connections_to(replica.address)
            )
        })
        .collect();
    stack.report(
        "rolling_restart",
        &format!(
            "pings: {} ({:.0}/s), {}\n\
             every replica replaced {ROUNDS} times, each with a call in flight across its SIGTERM, \
             in {} ({})\n\
             a sign-out reached the resumed stream in {}\n\
             status streams: {} opened, ended with {ends:?}\n\
             the gateway's connections to the activity replicas afterwards: {}",
            records.len(),
            load::rate(&records),
            outcomes_line(&records),
            seconds(rolled),
            steps.join(", "),
            seconds(sign_out_seen),
            streams.len(),
            spread.join(", "),
        ),
    );
}
