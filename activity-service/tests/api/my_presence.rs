//! `GetMyPresence`: what presence records about the caller, and only them.

use presence_core::token::Role;
use presence_proto::activity::{
    GetMyPresenceRequest, LoginEventKind, LogoutRequest, MyPresence, PingRequest, PingResponse,
};
use redis::AsyncCommands;
use tonic::Code;
use uuid::Uuid;

use presence_testkit::authorized;

use crate::helpers::{Options, TestApp, credentials, now, spawn_app, spawn_app_with};

impl TestApp {
    async fn my_presence(&mut self, token: &str) -> Result<MyPresence, tonic::Status> {
        self.client
            .get_my_presence(authorized(GetMyPresenceRequest {}, token))
            .await
            .map(tonic::Response::into_inner)
    }

    async fn ping(&mut self, token: &str) -> PingResponse {
        self.client
            .ping(authorized(PingRequest::default(), token))
            .await
            .expect("the ping is recorded")
            .into_inner()
    }

    /// Writes the user's browsers as pings write them: id scored by its last
    /// ping (Unix seconds).
    async fn seen_browsers(&mut self, user_id: &str, browsers: &[(&str, i64)]) {
        let key = self.keys.browsers(user_id.parse().expect("a user id"));
        for (browser, at) in browsers {
            let _: () = self.redis.zadd(&key, *browser, *at).await.unwrap();
        }
    }

    /// The login_history rows of a user id, newest first: (event, failure reason).
    async fn rows_of(&self, user_id: &str) -> Vec<(String, Option<String>)> {
        sqlx::query_as(
            "SELECT event, failure_reason FROM login_history WHERE user_id = $1
             ORDER BY id DESC",
        )
        .bind(user_id.parse::<Uuid>().unwrap())
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }
}

fn kinds(presence: &MyPresence) -> Vec<LoginEventKind> {
    presence
        .recent_events
        .iter()
        .map(|event| event.kind())
        .collect()
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn my_presence_shows_my_last_ping_browsers_and_events_and_how_long_each_is_kept(
    pool: sqlx::PgPool,
) {
    let options = Options {
        extra_args: vec!["--login-history-retention-days=30".into()],
        ..Options::default()
    };
    let mut app = spawn_app_with(pool, options).await;
    let user_id = app.create_user("usertest1", Role::User).await.to_string();
    let first = app.login("usertest1").await.access_token;
    app.client
        .logout(authorized(LogoutRequest::default(), &first))
        .await
        .unwrap();
    let refused = app
        .client
        .login(credentials("usertest1", "not-the-password"))
        .await;
    assert_eq!(refused.unwrap_err().code(), Code::Unauthenticated);
    let token = app.login("usertest1").await.access_token;
    let pong = app.ping(&token).await;
    let now = now();
    app.seen_browsers(
        &user_id,
        &[
            ("0123456789abcdef-laptop", now - 5),
            ("fedcba9876543210-phone", now - 60),
            // Older than the threshold (15 min): no longer "seen lately".
            ("5555555555555555-old", now - 16 * 60),
        ],
    )
    .await;

    let presence = app.my_presence(&token).await.unwrap();

    assert_eq!(presence.user_id, user_id);
    assert!(!presence.degraded);
    assert_eq!(presence.last_activity, pong.server_time);
    let browsers: Vec<(&str, i64)> = presence
        .browsers
        .iter()
        .map(|browser| {
            (
                browser.label.as_str(),
                browser.last_activity.unwrap().seconds,
            )
        })
        .collect();
    assert_eq!(browsers, [("01234567", now - 5), ("fedcba98", now - 60)]);
    assert_eq!(
        kinds(&presence),
        [
            LoginEventKind::LoginSuccess,
            LoginEventKind::LoginFailure,
            LoginEventKind::Logout,
            LoginEventKind::LoginSuccess,
        ]
    );
    assert_eq!(presence.recent_events[1].failure_reason, "wrong_password");
    assert!(
        !presence.recent_events[0].client_address.is_empty(),
        "{presence:?}"
    );
    let retention = presence.retention.unwrap();
    assert_eq!(retention.activity_seconds, 1800, "2 × 15 minutes");
    assert_eq!(retention.threshold_minutes, 15);
    assert_eq!(retention.login_history_days, 30);
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn my_presence_shows_at_most_my_last_twenty_events(pool: sqlx::PgPool) {
    let mut app = spawn_app(pool).await;
    let user_id = app.create_user("usertest1", Role::User).await;
    sqlx::query(
        "INSERT INTO login_history (user_id, username, event, occurred_at)
         SELECT $1, 'usertest1', 'login_success', now() - make_interval(hours => n)
           FROM generate_series(1, 30) AS n",
    )
    .bind(user_id)
    .execute(&app.pool)
    .await
    .unwrap();
    let token = app.login("usertest1").await.access_token;

    let presence = app.my_presence(&token).await.unwrap();

    assert_eq!(presence.recent_events.len(), 20);
    let times: Vec<i64> = presence
        .recent_events
        .iter()
        .map(|event| event.occurred_at.unwrap().seconds)
        .collect();
    assert!(times.is_sorted_by(|a, b| a >= b), "newest first: {times:?}");
    assert!(
        times[0] >= now() - 60,
        "the sign-in just made comes first: {times:?}"
    );
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn my_presence_never_shows_another_users_records(pool: sqlx::PgPool) {
    let mut app = spawn_app(pool).await;
    let alice = app.create_user("usertest1", Role::User).await.to_string();
    let bob = app.create_user("usertest2", Role::User).await.to_string();
    let alice_token = app.login("usertest1").await.access_token;
    let alice_ping = app.ping(&alice_token).await;
    app.seen_browsers(&alice, &[("aaaaaaaa-alice", now())])
        .await;
    // Bob is busier, and later: his ping, his browsers, his sign-ins.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let bob_first = app.login("usertest2").await.access_token;
    app.ping(&bob_first).await;
    app.client
        .logout(authorized(LogoutRequest::default(), &bob_first))
        .await
        .unwrap();
    let bob_token = app.login("usertest2").await.access_token;
    app.ping(&bob_token).await;
    app.seen_browsers(&bob, &[("bbbbbbbb-bob", now()), ("cccccccc-bob", now())])
        .await;

    let mine = app.my_presence(&alice_token).await.unwrap();
    let bobs = app.my_presence(&bob_token).await.unwrap();

    assert_eq!(mine.user_id, alice);
    assert_eq!(mine.last_activity, alice_ping.server_time);
    let labels: Vec<&str> = mine.browsers.iter().map(|b| b.label.as_str()).collect();
    assert_eq!(labels, ["aaaaaaaa"]);
    assert_eq!(kinds(&mine), [LoginEventKind::LoginSuccess]);
    assert_eq!(app.rows_of(&alice).await.len(), 1);
    let everything = format!("{mine:?}");
    for theirs in [bob.as_str(), "bbbbbbbb", "cccccccc"] {
        assert!(!everything.contains(theirs), "{theirs} in {everything}");
    }
    // And Bob sees his own, not Alice's.
    assert_eq!(bobs.user_id, bob);
    assert_eq!(bobs.recent_events.len(), app.rows_of(&bob).await.len());
    assert_eq!(bobs.recent_events.len(), 3);
    assert!(!format!("{bobs:?}").contains("aaaaaaaa"));
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn an_admin_sees_their_own_presence_too(pool: sqlx::PgPool) {
    let mut app = spawn_app(pool).await;
    let admin = app.create_user("admintest", Role::Admin).await.to_string();
    let token = app.login("admintest").await.access_token;

    let presence = app.my_presence(&token).await.unwrap();

    assert_eq!(presence.user_id, admin);
    assert_eq!(kinds(&presence), [LoginEventKind::LoginSuccess]);
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_service_token_has_no_presence_of_its_own(pool: sqlx::PgPool) {
    let mut app = spawn_app(pool).await;
    let service = app.create_user("billing", Role::Service).await;
    let token = presence_testkit::test_token(service, Role::Service);

    let status = app.my_presence(&token).await.unwrap_err();

    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn my_presence_needs_a_valid_unrevoked_token(pool: sqlx::PgPool) {
    let mut app = spawn_app(pool).await;
    app.create_user("usertest1", Role::User).await;
    let token = app.login("usertest1").await.access_token;
    app.client
        .logout(authorized(LogoutRequest::default(), &token))
        .await
        .unwrap();

    let anonymous = app
        .client
        .get_my_presence(tonic::Request::new(GetMyPresenceRequest {}))
        .await
        .unwrap_err();
    let forged = app.my_presence("not-a-jwt").await.unwrap_err();
    let signed_out = app.my_presence(&token).await.unwrap_err();

    assert_eq!(anonymous.code(), Code::Unauthenticated, "{anonymous:?}");
    assert_eq!(forged.code(), Code::Unauthenticated, "{forged:?}");
    assert_eq!(signed_out.code(), Code::Unauthenticated, "{signed_out:?}");
}
