//! GetUserPresence: one user's status with the evidence it was judged on
//! (the same rule and stores as the listings) and their last login events.

use std::time::Duration;

use presence_core::token::Role;
use presence_proto::activity::LogoutRequest;
use presence_proto::admin::{
    GetUserPresenceRequest, LoginEventKind, StatusSource, UpdateActivitySettingsRequest,
    UserPresence,
};
use presence_testkit::{ThrowawayRedis, authorized, eventually};
use tonic::Code;
use uuid::Uuid;

use crate::helpers::{Stack, now, spawn_stack, spawn_stack_on};

async fn presence_with(
    stack: &mut Stack,
    user_id: &str,
    token: &str,
) -> Result<UserPresence, tonic::Status> {
    let request = GetUserPresenceRequest {
        user_id: user_id.to_owned(),
    };
    stack
        .admin
        .get_user_presence(authorized(request, token))
        .await
        .map(tonic::Response::into_inner)
}

async fn presence(stack: &mut Stack, user_id: Uuid) -> UserPresence {
    let token = stack.admin_token.clone();
    presence_with(stack, &user_id.to_string(), &token)
        .await
        .expect("the admin reads the presence")
}

fn seconds(time: Option<prost_types::Timestamp>) -> Option<i64> {
    time.map(|time| time.seconds)
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_recent_ping_makes_the_user_online_by_activity_with_its_age(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool).await;
    let user_id = stack.create_user("usertest1", Role::User).await;
    let pinged_at = now() - 30;
    stack.place_activity(user_id, pinged_at).await;

    let answer = presence(&mut stack, user_id).await;

    let status = answer.status.clone().unwrap();
    assert_eq!(status.user_id, user_id.to_string());
    assert_eq!(status.username, "usertest1");
    assert!(status.online);
    assert_eq!(status.source, StatusSource::Activity as i32);
    assert_eq!(seconds(status.last_activity_at), Some(pinged_at));
    assert_eq!(answer.threshold_minutes, 15);
    assert!(!answer.degraded);
    assert!(!answer.disabled);
    let generated_at = answer.generated_at.unwrap().seconds;
    let age = answer
        .last_activity_age_seconds
        .expect("an age with a ping");
    assert_eq!(age as i64, generated_at - pinged_at);
    // About 30 s: the call itself takes far less than a minute.
    assert!((30..90).contains(&age), "age {age}");
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_recent_login_without_a_ping_is_online_by_login_history_without_an_age(
    pool: sqlx::PgPool,
) {
    let mut stack = spawn_stack(pool).await;
    let user_id = stack.create_user("usertest1", Role::User).await;
    let login_at = now() - 60;
    stack
        .place_history(user_id, "login_success", login_at)
        .await;

    let answer = presence(&mut stack, user_id).await;

    let status = answer.status.unwrap();
    assert!(status.online);
    assert_eq!(status.source, StatusSource::LoginHistory as i32);
    assert_eq!(seconds(status.last_login_at), Some(login_at));
    assert_eq!(status.last_activity_at, None);
    assert_eq!(answer.last_activity_age_seconds, None);
    assert_eq!(answer.last_logout_at, None);
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn after_a_logout_the_user_is_offline_and_the_logout_is_shown(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool).await;
    let user_id = stack.create_user("usertest1", Role::User).await;
    let token = stack.login("usertest1").await.access_token;
    stack
        .activity
        .logout(authorized(LogoutRequest::default(), &token))
        .await
        .unwrap();

    let answer = presence(&mut stack, user_id).await;

    let status = answer.status.unwrap();
    assert!(!status.online);
    assert_eq!(status.source, StatusSource::None as i32);
    assert!(status.last_login_at.is_some());
    let logout = &answer.recent_events[0];
    assert_eq!(logout.kind, LoginEventKind::Logout as i32);
    assert_eq!(
        seconds(answer.last_logout_at),
        seconds(logout.occurred_at),
        "last_logout_at is that logout"
    );
    assert_eq!(
        answer.recent_events[1].kind,
        LoginEventKind::LoginSuccess as i32
    );
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn the_last_logout_is_the_later_of_the_row_and_the_activity_store_marker(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool).await;
    let user_id = stack.create_user("usertest1", Role::User).await;
    let now = now();
    stack
        .place_history(user_id, "login_success", now - 600)
        .await;
    stack.place_history(user_id, "logout", now - 500).await;
    stack
        .place_history(user_id, "login_success", now - 120)
        .await;
    // The logout of the last session reached Redis only.
    stack.place_logout_marker(user_id, now - 60).await;

    let answer = presence(&mut stack, user_id).await;

    assert!(!answer.status.unwrap().online);
    assert_eq!(seconds(answer.last_logout_at), Some(now - 60));
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_ping_older_than_the_threshold_is_offline_and_the_threshold_is_returned(
    pool: sqlx::PgPool,
) {
    let mut stack = spawn_stack(pool).await;
    let user_id = stack.create_user("usertest1", Role::User).await;
    let request = UpdateActivitySettingsRequest {
        threshold_minutes: Some(5),
        ..Default::default()
    };
    stack
        .admin
        .update_activity_settings(authorized(request, &stack.admin_token))
        .await
        .unwrap();
    let pinged_at = now() - 6 * 60;
    stack.place_activity(user_id, pinged_at).await;

    let (admin, token) = (stack.admin.clone(), stack.admin_token.clone());
    let answer = eventually(Duration::from_secs(10), "the new threshold applies", || {
        let (mut admin, token) = (admin.clone(), token.clone());
        async move {
            let request = GetUserPresenceRequest {
                user_id: user_id.to_string(),
            };
            let answer = admin
                .get_user_presence(authorized(request, &token))
                .await
                .expect("the admin reads the presence")
                .into_inner();
            (answer.threshold_minutes == 5).then_some(answer)
        }
    })
    .await;

    let status = answer.status.unwrap();
    assert!(!status.online);
    assert_eq!(status.source, StatusSource::None as i32);
    assert_eq!(seconds(status.last_activity_at), Some(pinged_at));
    let age = answer.last_activity_age_seconds.unwrap();
    assert!(age >= 6 * 60, "age {age}");
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn the_last_twenty_events_come_newest_first_with_their_details(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool).await;
    let user_id = stack.create_user("usertest1", Role::User).await;
    let start = now() - 3600;
    // 23 events a minute apart, oldest first: success, failure, logout, ...
    // The newest carries a 300-character User-Agent of two-byte characters.
    let kinds = ["login_success", "login_failure", "logout"];
    for n in 0..23 {
        let event = kinds[n % 3];
        let user_agent = if n == 22 {
            "é".repeat(300)
        } else {
            format!("agent {n}")
        };
        sqlx::query(
            "INSERT INTO login_history
                 (user_id, username, event, failure_reason, client_ip, user_agent, occurred_at)
             VALUES ($1, 'usertest1', $2, $3, $4::inet, $5, to_timestamp($6))",
        )
        .bind(user_id)
        .bind(event)
        .bind((event == "login_failure").then_some("bad_password"))
        .bind(format!("192.0.2.{n}"))
        .bind(user_agent)
        .bind((start + 60 * n as i64) as f64)
        .execute(&stack.pool)
        .await
        .unwrap();
    }
    // Another user's events are not shown.
    let other = stack.create_user("usertest2", Role::User).await;
    stack.place_history(other, "login_success", now()).await;

    let events = presence(&mut stack, user_id).await.recent_events;

    assert_eq!(events.len(), 20);
    let times: Vec<i64> = events
        .iter()
        .map(|event| event.occurred_at.unwrap().seconds)
        .collect();
    let expected: Vec<i64> = (3..23).rev().map(|n| start + 60 * n).collect();
    assert_eq!(times, expected, "the newest 20, newest first");
    let newest = &events[0];
    // Row 22: 22 % 3 == 1, a failure.
    assert_eq!(newest.kind, LoginEventKind::LoginFailure as i32);
    assert_eq!(newest.failure_reason, "bad_password");
    assert_eq!(newest.client_address, "192.0.2.22");
    assert_eq!(newest.user_agent, "é".repeat(256));
    let success = &events[1];
    assert_eq!(success.kind, LoginEventKind::LoginSuccess as i32);
    assert_eq!(success.failure_reason, "");
    assert_eq!(success.user_agent, "agent 21");
    let logout = &events[2];
    assert_eq!(logout.kind, LoginEventKind::Logout as i32);
    assert_eq!(logout.client_address, "192.0.2.20");
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_logout_in_the_second_of_its_login_is_shown_as_the_newer(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool).await;
    let user_id = stack.create_user("usertest1", Role::User).await;
    let second = now() - 10;
    // As the activity service writes them: the login at the instant of the
    // insert, the logout (written after it) at the whole second it took effect.
    for (event, at) in [
        ("login_success", second as f64 + 0.4),
        ("logout", second as f64),
    ] {
        sqlx::query(
            "INSERT INTO login_history (user_id, username, event, occurred_at)
             VALUES ($1, 'usertest1', $2, to_timestamp($3))",
        )
        .bind(user_id)
        .bind(event)
        .bind(at)
        .execute(&stack.pool)
        .await
        .unwrap();
    }

    let answer = presence(&mut stack, user_id).await;

    assert!(!answer.status.unwrap().online);
    let kinds: Vec<i32> = answer
        .recent_events
        .iter()
        .map(|event| event.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            LoginEventKind::Logout as i32,
            LoginEventKind::LoginSuccess as i32
        ]
    );
    // No address or User-Agent recorded: empty.
    assert_eq!(answer.recent_events[0].client_address, "");
    assert_eq!(answer.recent_events[0].user_agent, "");
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_disabled_user_is_offline_and_said_to_be_disabled(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool).await;
    let user_id = stack.create_user("usertest1", Role::User).await;
    let at = now() - 20;
    stack.place_history(user_id, "login_success", at).await;
    stack.place_activity(user_id, at + 10).await;
    sqlx::query("UPDATE users SET disabled = true WHERE id = $1")
        .bind(user_id)
        .execute(&stack.pool)
        .await
        .unwrap();

    let answer = presence(&mut stack, user_id).await;

    assert!(answer.disabled);
    let status = answer.status.unwrap();
    assert!(!status.online);
    assert_eq!(status.source, StatusSource::None as i32);
    // The evidence is still shown.
    assert_eq!(seconds(status.last_login_at), Some(at));
    assert_eq!(seconds(status.last_activity_at), Some(at + 10));
    assert_eq!(answer.recent_events.len(), 1);
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn without_redis_the_presence_comes_from_login_history_and_says_degraded(pool: sqlx::PgPool) {
    let mut redis = ThrowawayRedis::start().await;
    let mut stack = spawn_stack_on(pool, redis.url.clone()).await;
    let user_id = stack.create_user("usertest1", Role::User).await;
    let token = stack.login("usertest1").await.access_token;
    stack.ping(&token).await;

    redis.stop();
    let answer = presence(&mut stack, user_id).await;

    assert!(answer.degraded);
    let status = answer.status.unwrap();
    assert!(status.online);
    assert_eq!(status.source, StatusSource::LoginHistory as i32);
    assert_eq!(status.last_activity_at, None);
    assert_eq!(answer.last_activity_age_seconds, None);
    assert_eq!(
        answer.recent_events[0].kind,
        LoginEventKind::LoginSuccess as i32
    );
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn only_an_admin_may_read_a_presence(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool).await;
    let user_id = stack.create_user("usertest1", Role::User).await;
    let user_token = stack.login("usertest1").await.access_token;
    let service = stack.create_user("billing", Role::Service).await;
    let service_token = presence_testkit::test_token(service, Role::Service);
    let id = user_id.to_string();

    let as_user = presence_with(&mut stack, &id, &user_token).await;
    let as_service = presence_with(&mut stack, &id, &service_token).await;
    let anonymous = stack
        .admin
        .get_user_presence(tonic::Request::new(GetUserPresenceRequest {
            user_id: id.clone(),
        }))
        .await;
    let admin_token = stack.admin_token.clone();
    stack
        .activity
        .logout(authorized(LogoutRequest::default(), &admin_token))
        .await
        .unwrap();
    let revoked = presence_with(&mut stack, &id, &admin_token).await;

    assert_eq!(as_user.unwrap_err().code(), Code::PermissionDenied);
    assert_eq!(as_service.unwrap_err().code(), Code::PermissionDenied);
    assert_eq!(anonymous.unwrap_err().code(), Code::Unauthenticated);
    assert_eq!(revoked.unwrap_err().code(), Code::Unauthenticated);
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_malformed_id_is_invalid_and_an_unknown_one_not_found(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool).await;
    let token = stack.admin_token.clone();

    let malformed = presence_with(&mut stack, "not-a-uuid", &token).await;
    let empty = presence_with(&mut stack, "", &token).await;
    let unknown = presence_with(&mut stack, &Uuid::new_v4().to_string(), &token).await;

    let malformed = malformed.unwrap_err();
    assert_eq!(malformed.code(), Code::InvalidArgument);
    assert_eq!(malformed.message(), "user_id must be a UUID");
    assert_eq!(empty.unwrap_err().code(), Code::InvalidArgument);
    assert_eq!(unknown.unwrap_err().code(), Code::NotFound);
}
