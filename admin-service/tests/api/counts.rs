//! The counts of every listing against a brute-force recount over a
//! generated user base.

use presence_proto::admin::StatusFilter;
use uuid::Uuid;

use crate::helpers::{now, spawn_stack};

const USERS: usize = 10_000;
const T: i64 = 15 * 60;

/// What a generated user has done, and whether that makes them online.
#[derive(Clone, Copy)]
enum Story {
    FreshPing,
    StalePing,
    RecentLogin,
    LoginThenLogout,
    LogoutThenLogin,
    OldLogin,
    Nothing,
}

impl Story {
    fn of(n: usize) -> Self {
        // A fixed spread, so a failure replays identically.
        match (n * 7919) % 10 {
            0 | 1 => Story::FreshPing,
            2 => Story::StalePing,
            3 => Story::RecentLogin,
            4 => Story::LoginThenLogout,
            5 => Story::LogoutThenLogin,
            6 => Story::OldLogin,
            _ => Story::Nothing,
        }
    }

    fn online(self) -> bool {
        matches!(
            self,
            Story::FreshPing | Story::RecentLogin | Story::LogoutThenLogin
        )
    }
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn counts_agree_with_a_brute_force_recount(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool.clone()).await;
    let names: Vec<String> = (0..USERS).map(|n| format!("gen{n:05}")).collect();
    let ids = stack.insert_users(&names).await;

    let now = now();
    let mut history: (Vec<Uuid>, Vec<&str>, Vec<f64>) = Default::default();
    let mut pipeline = redis::pipe();
    for (n, id) in ids.iter().enumerate() {
        let jitter = (n as i64 * 31) % 300;
        let mut event = |event: &'static str, at: i64| {
            history.0.push(*id);
            history.1.push(event);
            history.2.push(at as f64);
        };
        match Story::of(n) {
            Story::FreshPing => {
                pipeline.set_ex(stack.keys.last_activity(*id), now - jitter, 3600);
                pipeline.zadd(stack.keys.presence_index(), id.to_string(), now - jitter);
            }
            Story::StalePing => {
                pipeline.set_ex(stack.keys.last_activity(*id), now - T - 60 - jitter, 3600);
                pipeline.zadd(
                    stack.keys.presence_index(),
                    id.to_string(),
                    now - T - 60 - jitter,
                );
            }
            Story::RecentLogin => event("login_success", now - jitter),
            Story::LoginThenLogout => {
                event("login_success", now - 400 - jitter);
                event("logout", now - jitter);
            }
            Story::LogoutThenLogin => {
                event("logout", now - 400 - jitter);
                event("login_success", now - jitter);
            }
            Story::OldLogin => event("login_success", now - T - 60 - jitter),
            Story::Nothing => {}
        }
    }
    let _: () = pipeline.query_async(&mut stack.redis).await.unwrap();
    sqlx::query(
        "INSERT INTO login_history (user_id, username, event, occurred_at)
         SELECT h.id, u.username, h.event, to_timestamp(h.at)
         FROM unnest($1::uuid[], $2::text[], $3::float8[]) AS h(id, event, at) JOIN users u ON u.id = h.id",
    )
    .bind(&history.0)
    .bind(&history.1)
    .bind(&history.2)
    .execute(&pool)
    .await
    .unwrap();

    // The stack's admin signed in a moment ago: one more user, online by login.
    let expected_online = (0..USERS).filter(|n| Story::of(*n).online()).count() as u64 + 1;
    // The rows went straight into login_history, as another system's would:
    // the admin service finds them at its next look (every second).
    let first = stack.wait_for_online_count(expected_online).await;
    let everyone = stack.list_all(StatusFilter::All, 500).await;
    let online_walk = stack.list_all(StatusFilter::Online, 500).await;
    let offline_walk = stack.list_all(StatusFilter::Offline, 500).await;

    assert_eq!(first.total_count, USERS as u64 + 1);
    assert_eq!(first.online_count, expected_online);
    assert_eq!(first.offline_count, first.total_count - expected_online);
    assert_eq!(everyone.len() as u64, first.total_count);
    assert_eq!(
        everyone.iter().filter(|s| s.online).count() as u64,
        expected_online
    );
    assert_eq!(online_walk.len() as u64, expected_online);
    assert_eq!(offline_walk.len() as u64, first.offline_count);
    // Filtered pages (chosen among the online ids, or by scanning) keep the
    // order, repeat no one and hold only what they promise.
    for (walk, online) in [(&online_walk, true), (&offline_walk, false)] {
        assert!(walk.iter().all(|status| status.online == online));
        assert!(
            walk.windows(2)
                .all(|pair| pair[0].username < pair[1].username)
        );
    }
    for status in &everyone {
        if let Some(n) = status.username.strip_prefix("gen") {
            let n: usize = n.parse().unwrap();
            assert_eq!(status.online, Story::of(n).online(), "{}", status.username);
        }
    }
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn counts_recover_when_redis_loses_its_data(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool.clone()).await;
    let names: Vec<String> = (0..100).map(|n| format!("lost{n:03}")).collect();
    let ids = stack.insert_users(&names).await;
    let now = now();
    for id in &ids[..30] {
        stack.place_activity(*id, now - 10).await;
    }
    for id in &ids[30..50] {
        stack.place_history(*id, "login_success", now - 60).await;
    }
    // 30 pinging, 20 signed in without a ping, and the stack's admin.
    stack.wait_for_online_count(51).await;

    // Redis restarts empty: the pings are gone for good, the logins are not
    // (login_history keeps them), and the counts must say so.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}*", stack.prefix))
        .query_async(&mut stack.redis)
        .await
        .unwrap();
    let _: () = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut stack.redis)
        .await
        .unwrap();
    let listing = stack.wait_for_online_count(21).await;
    let everyone = stack.list_all(StatusFilter::All, 500).await;
    assert_eq!(
        everyone.iter().filter(|s| s.online).count() as u64,
        listing.online_count
    );
    assert!(!listing.degraded);
}
