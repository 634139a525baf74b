//! The status rules, end to end: facts placed in Redis and login_history,
//! statuses read through ListUserStatuses and BatchGetUserStatuses.

use presence_core::token::Role;
use presence_proto::activity::LogoutRequest;
use presence_proto::admin::{BatchGetUserStatusesRequest, StatusFilter, StatusSource};
use std::time::Duration;

use presence_testkit::{authorized, eventually};
use tonic::Code;
use uuid::Uuid;

use crate::helpers::{now, spawn_stack};

const T: i64 = 15 * 60;

/// Facts placed for one user (Unix seconds) and the status they must give.
struct Case {
    username: &'static str,
    activity: Option<i64>,
    login: Option<i64>,
    logout_row: Option<i64>,
    logout_marker: Option<i64>,
    online: bool,
    source: StatusSource,
}

fn cases(now: i64) -> Vec<Case> {
    let case = |username, activity, login, logout_row, logout_marker, online, source| Case {
        username,
        activity,
        login,
        logout_row,
        logout_marker,
        online,
        source,
    };
    use StatusSource::{Activity, LoginHistory, None as NoSource};
    vec![
        case(
            "fresh_activity",
            Some(now - 60),
            None,
            None,
            None,
            true,
            Activity,
        ),
        case(
            "stale_activity_recent_login",
            Some(now - T - 120),
            Some(now - 60),
            None,
            None,
            true,
            LoginHistory,
        ),
        case(
            "login_then_logout",
            None,
            Some(now - 120),
            Some(now - 60),
            None,
            false,
            NoSource,
        ),
        case(
            "login_then_logout_marker",
            None,
            Some(now - 120),
            None,
            Some(now - 60),
            false,
            NoSource,
        ),
        case(
            "logout_then_login",
            None,
            Some(now - 60),
            Some(now - 120),
            None,
            true,
            LoginHistory,
        ),
        case("no_data", None, None, None, None, false, NoSource),
        // The threshold boundary, with a few seconds' margin for the call itself.
        case(
            "activity_just_inside",
            Some(now - T + 5),
            None,
            None,
            None,
            true,
            Activity,
        ),
        case(
            "activity_just_outside",
            Some(now - T - 1),
            None,
            None,
            None,
            false,
            NoSource,
        ),
        case(
            "login_just_inside",
            None,
            Some(now - T + 5),
            None,
            None,
            true,
            LoginHistory,
        ),
        case(
            "login_just_outside",
            None,
            Some(now - T - 1),
            None,
            None,
            false,
            NoSource,
        ),
    ]
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn each_rule_gives_the_documented_status(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool).await;
    let cases = cases(now());
    for case in &cases {
        let id = stack.create_user(case.username, Role::User).await;
        if let Some(at) = case.activity {
            stack.place_activity(id, at).await;
        }
        if let Some(at) = case.login {
            stack.place_history(id, "login_success", at).await;
        }
        if let Some(at) = case.logout_row {
            stack.place_history(id, "logout", at).await;
        }
        if let Some(at) = case.logout_marker {
            stack.place_logout_marker(id, at).await;
        }
    }

    let statuses = stack.list_all(StatusFilter::All, 100).await;

    for case in &cases {
        let name = case.username;
        let status = statuses.iter().find(|s| s.username == name).unwrap();
        assert_eq!(
            (status.online, status.source),
            (case.online, case.source as i32),
            "{name}"
        );
        let seconds = |t: &Option<prost_types::Timestamp>| t.as_ref().map(|t| t.seconds);
        assert_eq!(seconds(&status.last_activity_at), case.activity, "{name}");
        assert_eq!(seconds(&status.last_login_at), case.login, "{name}");
        assert_eq!(
            seconds(&status.last_seen_at),
            case.activity.max(case.login),
            "{name}"
        );
        assert_eq!(status.display_name, format!("{name} display"));
    }
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_signed_in_user_who_pings_is_online_and_offline_after_logout(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool).await;
    stack.create_user("usertest1", Role::User).await;
    let token = stack.login("usertest1").await.access_token;
    stack.ping(&token).await;

    let online = stack.status_of("usertest1").await;
    stack
        .activity
        .logout(authorized(LogoutRequest::default(), &token))
        .await
        .unwrap();
    let offline = stack.status_of("usertest1").await;

    assert!(online.online);
    assert_eq!(online.source, StatusSource::Activity as i32);
    assert!(!offline.online);
    assert_eq!(offline.source, StatusSource::None as i32);
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn batch_lookup_reports_unknown_ids_without_failing(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool).await;
    let active = stack.create_user("active", Role::User).await;
    stack.place_activity(active, now() - 10).await;
    let idle = stack.create_user("idle", Role::User).await;
    let stranger = Uuid::new_v4();

    let request = BatchGetUserStatusesRequest {
        user_ids: vec![
            active.to_string(),
            stranger.to_string(),
            idle.to_string(),
            active.to_string(),
        ],
    };
    let batch = stack
        .admin
        .batch_get_user_statuses(authorized(request, &stack.admin_token))
        .await
        .unwrap()
        .into_inner();

    let summary: Vec<(String, bool)> = batch
        .statuses
        .iter()
        .map(|s| (s.username.clone(), s.online))
        .collect();
    assert_eq!(
        summary,
        [("active".to_owned(), true), ("idle".to_owned(), false)]
    );
    assert_eq!(batch.not_found, [stranger.to_string()]);
    assert!(!batch.degraded);
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn batch_lookup_refuses_malformed_or_too_many_ids(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool).await;
    for user_ids in [
        vec!["42".to_owned()],
        vec![],
        vec![Uuid::new_v4().to_string(); 1001],
    ] {
        let request = BatchGetUserStatusesRequest { user_ids };
        let status = stack
            .admin
            .batch_get_user_statuses(authorized(request, &stack.admin_token))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
    }
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_user_disabled_while_online_is_offline_and_out_of_the_counts_within_seconds(
    pool: sqlx::PgPool,
) {
    let mut stack = spawn_stack(pool).await;
    let user = stack.create_user("usertest1", Role::User).await;
    let token = stack.login("usertest1").await.access_token;
    stack.ping(&token).await;
    // admintest1 (signed in by the stack) and usertest1.
    stack.wait_for_online_count(2).await;

    sqlx::query("UPDATE users SET disabled = true WHERE id = $1")
        .bind(user)
        .execute(&stack.pool)
        .await
        .unwrap();

    let batch = stack
        .admin
        .batch_get_user_statuses(authorized(
            BatchGetUserStatusesRequest {
                user_ids: vec![user.to_string()],
            },
            &stack.admin_token,
        ))
        .await
        .unwrap()
        .into_inner();
    let status = &batch.statuses[0];
    assert!(
        !status.online,
        "a disabled account is offline for other services at once"
    );
    assert_eq!(status.source, StatusSource::None as i32);
    // Its ping and login no longer count: the activity service signs it out
    // of Redis (as a logout would) within seconds of the disabling.
    let (activity_key, index_key) = (
        stack.keys.last_activity(user),
        stack.keys.presence_index_for(user),
    );
    let mut redis = stack.redis.clone();
    eventually(
        Duration::from_secs(15),
        "the disabled account signed out of Redis",
        || {
            let mut redis = redis.clone();
            let (activity_key, index_key) = (activity_key.clone(), index_key.clone());
            async move {
                let activity: Option<i64> = redis::cmd("GET")
                    .arg(&activity_key)
                    .query_async(&mut redis)
                    .await
                    .unwrap();
                let indexed: Option<f64> = redis::cmd("ZSCORE")
                    .arg(&index_key)
                    .arg(user.to_string())
                    .query_async(&mut redis)
                    .await
                    .unwrap();
                activity.is_none() && indexed.is_none()
            }
        },
    )
    .await;
    let marker: Option<i64> = redis::cmd("GET")
        .arg(stack.keys.last_logout(user))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(marker.is_some(), "a logout marker at the disabling");
    let page = stack.wait_for_online_count(1).await;
    assert_eq!(page.total_count, 1);
}
