//! A user's browsers: each pings with its own id, the admin sees how many keep
//! the user online, and signing out in one leaves the others' presence alone.

use std::time::Duration;

use presence_core::token::Role;
use presence_proto::activity::PingRequest;
use presence_testkit::authorized;
use redis::AsyncCommands;
use tonic::Code;

use crate::helpers::spawn_stack;
use crate::watch::next_matching;

const LAPTOP: &str = "laptop-browser-0001";
const PHONE: &str = "phone-browser-00002";
const SOON: Duration = Duration::from_secs(10);

fn browsers_of(
    username: &'static str,
    online: bool,
    count: u32,
) -> impl Fn(&presence_proto::admin::UserStatusEvent) -> bool {
    move |event| {
        event.status.as_ref().is_some_and(|status| {
            status.username == username
                && status.online == online
                && status.active_browsers == count
        })
    }
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn two_browsers_are_counted_and_the_user_stays_online_until_the_last_signs_out(
    pool: sqlx::PgPool,
) {
    let mut stack = spawn_stack(pool).await;
    let user = stack.create_user("usertest1", Role::User).await;
    let mut watcher = stack.watch().await;
    let laptop = stack.login("usertest1").await.access_token;
    let phone = stack.login("usertest1").await.access_token;

    stack.ping_from(LAPTOP, &laptop).await;
    stack.ping_from(PHONE, &phone).await;
    // Tabs of one browser share its id: a second ping of the laptop is not a third browser.
    stack.ping_from(LAPTOP, &laptop).await;

    let status = stack.status_of("usertest1").await;
    assert!(status.online);
    assert_eq!(status.active_browsers, 2, "{status:?}");
    next_matching(&mut watcher, SOON, browsers_of("usertest1", true, 2)).await;

    stack.logout_from(LAPTOP, &laptop).await;
    let status = stack.status_of("usertest1").await;
    assert!(status.online, "the phone keeps the user online: {status:?}");
    assert_eq!(status.active_browsers, 1, "{status:?}");
    next_matching(&mut watcher, SOON, browsers_of("usertest1", true, 1)).await;
    // The laptop's token is revoked all the same.
    let refused = stack
        .activity
        .ping(authorized(PingRequest::default(), &laptop))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);

    stack.logout_from(PHONE, &phone).await;
    let status = stack.status_of("usertest1").await;
    assert!(
        !status.online,
        "the last browser signed out: offline at once"
    );
    assert_eq!(status.active_browsers, 0);
    next_matching(&mut watcher, SOON, browsers_of("usertest1", false, 0)).await;
    let left: bool = stack.redis.exists(stack.keys.browsers(user)).await.unwrap();
    assert!(
        !left,
        "nothing is kept of the browsers of a user who signed out"
    );
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_client_inventing_browser_ids_keeps_at_most_32_and_the_newest(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool).await;
    let user = stack.create_user("usertest1", Role::User).await;
    let token = stack.login("usertest1").await.access_token;

    for n in 0..40 {
        stack
            .ping_from(&format!("invented-browser-{n:04}"), &token)
            .await;
    }

    let key = stack.keys.browsers(user);
    let kept: Vec<String> = stack.redis.zrange(&key, 0, -1).await.unwrap();
    assert_eq!(kept.len(), 32, "{kept:?}");
    assert!(kept.contains(&"invented-browser-0039".to_owned()));
    let ttl: i64 = stack.redis.ttl(&key).await.unwrap();
    assert!(
        (1790..=1800).contains(&ttl),
        "lives as the activity key does: {ttl}"
    );
    assert_eq!(stack.status_of("usertest1").await.active_browsers, 32);
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_malformed_browser_id_is_refused_and_writes_nothing(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool).await;
    let user = stack.create_user("usertest1", Role::User).await;
    let token = stack.login("usertest1").await.access_token;

    for browser_id in ["short", "with spaces in it, see", &"x".repeat(65)] {
        let request = PingRequest {
            browser_id: browser_id.to_owned(),
            idle: None,
        };
        let refused = stack
            .activity
            .ping(authorized(request, &token))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{browser_id}");
        assert!(refused.message().contains("browser_id"), "{refused:?}");
    }
    let activity: Option<i64> = stack
        .redis
        .get(stack.keys.last_activity(user))
        .await
        .unwrap();
    assert_eq!(activity, None, "no ping was recorded");
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_logout_without_browser_id_leaves_a_user_online_whose_other_browser_pings(
    pool: sqlx::PgPool,
) {
    let mut stack = spawn_stack(pool).await;
    stack.create_user("usertest1", Role::User).await;
    let old_client = stack.login("usertest1").await.access_token;
    let phone = stack.login("usertest1").await.access_token;
    stack.ping(&old_client).await;
    stack.ping_from(PHONE, &phone).await;

    stack.logout_from("", &old_client).await;

    let status = stack.status_of("usertest1").await;
    assert!(status.online, "{status:?}");
    assert_eq!(status.active_browsers, 1);
}
