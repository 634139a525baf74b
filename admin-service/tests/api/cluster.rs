//! Every feature on a real three-master Redis Cluster, started by the test on
//! free loopback ports (`ThrowawayCluster`), and the services riding out one
//! master's crash and restart without being restarted themselves.

use std::future::Future;
use std::time::Duration;

use presence_core::token::Role;
use presence_proto::activity::{LoginRequest, LogoutRequest, PingRequest};
use presence_proto::admin::{
    BatchGetUserStatusesRequest, ListUserStatusesRequest, ListUserStatusesResponse, StatusFilter,
    StatusSource, UpdateActivitySettingsRequest,
};
use presence_testkit::{ThrowawayCluster, authorized, eventually};
use redis::AsyncCommands;
use tonic::Code;
use uuid::Uuid;

use crate::helpers::{PASSWORD, Stack, now, spawn_stack_on};
use crate::watch::{about, next_matching};

/// Enough users that every master holds some of their keys.
const USERS: usize = 60;
/// Users of the crowd who ping; the others stay offline.
const PINGING: usize = 50;
/// The longest any call may take while a master is down.
const DEADLINE: Duration = Duration::from_secs(3);
const SOON: Duration = Duration::from_secs(10);

/// Users created directly in PostgreSQL, with tokens signed as Login would.
struct Crowd {
    ids: Vec<Uuid>,
    tokens: Vec<String>,
}

async fn add_crowd(stack: &Stack) -> Crowd {
    let names: Vec<String> = (0..USERS).map(|n| format!("crowd{n:02}")).collect();
    let ids = stack.insert_users(&names).await;
    let issuer = presence_testkit::test_issuer(3600);
    let tokens = ids
        .iter()
        .map(|id| issuer.issue(*id, Role::User, now()).unwrap().token)
        .collect();
    Crowd { ids, tokens }
}

/// The keys matching `pattern` that one node holds (KEYS is node-local).
async fn keys_on(cluster: &ThrowawayCluster, node: usize, pattern: String) -> Vec<String> {
    cluster.node(node).await.keys(pattern).await.unwrap()
}

/// Subscribers of `channel` on one node (PUBSUB NUMSUB is node-local too).
async fn subscribers_on(cluster: &ThrowawayCluster, node: usize, channel: &str) -> i64 {
    let (_, count): (String, i64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(channel)
        .query_async(&mut cluster.node(node).await)
        .await
        .unwrap();
    count
}

/// Waits (at most `SOON`) for a first page of statuses that passes `check`.
async fn eventually_listed(
    stack: &Stack,
    what: &str,
    check: impl Fn(&ListUserStatusesResponse) -> bool,
) {
    let check = &check;
    eventually(SOON, what, || {
        let mut admin = stack.admin.clone();
        let request = authorized(ListUserStatusesRequest::default(), &stack.admin_token);
        async move {
            admin
                .list_user_statuses(request)
                .await
                .is_ok_and(|listing| check(listing.get_ref()))
        }
    })
    .await;
}

/// Awaits a call, failing the test if it outlives `DEADLINE`: an outage must
/// give a prompt answer, never a hang.
async fn promptly<T>(call: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, call)
        .await
        .expect("the call answered within its deadline")
}

fn with_deadline<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = authorized(message, token);
    request.set_timeout(DEADLINE);
    request
}

async fn ping_with_deadline(stack: &mut Stack, token: &str) -> Result<(), tonic::Status> {
    promptly(
        stack
            .activity
            .ping(with_deadline(PingRequest::default(), token)),
    )
    .await
    .map(drop)
}

async fn list_with_deadline(stack: &mut Stack) -> Result<ListUserStatusesResponse, tonic::Status> {
    let request = with_deadline(ListUserStatusesRequest::default(), &stack.admin_token);
    promptly(stack.admin.list_user_statuses(request))
        .await
        .map(tonic::Response::into_inner)
}

async fn logout_rows(stack: &Stack, user_id: Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM login_history WHERE user_id = $1 AND event = 'logout'")
        .bind(user_id)
        .fetch_one(&stack.pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn every_feature_works_on_a_three_master_cluster(pool: sqlx::PgPool) {
    let cluster = ThrowawayCluster::start().await;
    let mut stack = spawn_stack_on(pool, cluster.redis()).await;
    let crowd = add_crowd(&stack).await;
    let mut stream = stack.watch().await;
    next_matching(&mut stream, SOON, |event| event.snapshot_complete).await;

    // A login is announced on the status channel, which any node relays.
    stack.create_user("usertest1", Role::User).await;
    stack.login("usertest1").await;
    let signed_in = next_matching(&mut stream, SOON, about("usertest1", true)).await;
    assert_eq!(
        signed_in.status.unwrap().source,
        StatusSource::LoginHistory as i32
    );

    // Pings: the per-user keys and the index shards spread over every master.
    for token in &crowd.tokens[..PINGING] {
        stack.ping(token).await;
    }
    let activity_keys = stack.keys.last_activity_pattern();
    let index_shards = stack.keys.presence_index_shards_pattern();
    let mut total = 0;
    for node in 0..3 {
        let held = keys_on(&cluster, node, activity_keys.clone()).await;
        assert!(!held.is_empty(), "master {node} holds no activity key");
        assert!(
            !keys_on(&cluster, node, index_shards.clone())
                .await
                .is_empty(),
            "master {node} holds no presence index shard"
        );
        total += held.len();
    }
    assert_eq!(total, PINGING);
    next_matching(&mut stream, SOON, about("crowd00", true)).await;

    // Counts and online-only pages read every shard. Online: the pinging
    // crowd, and the stack's admin and usertest1, signed in a moment ago.
    let first = stack.list(StatusFilter::All, 10, "").await;
    assert!(!first.degraded);
    assert_eq!(first.total_count, USERS as u64 + 2);
    assert_eq!(first.online_count, PINGING as u64 + 2);
    assert_eq!(first.offline_count, (USERS - PINGING) as u64);
    let online = stack.list_all(StatusFilter::Online, 7).await;
    assert_eq!(online.len(), PINGING + 2);
    assert!(online.iter().all(|status| status.online));
    let offline = stack.list_all(StatusFilter::Offline, 7).await;
    assert_eq!(offline.len(), USERS - PINGING);
    assert!(offline.iter().all(|status| !status.online));

    // Batch lookups read keys across slots.
    let batch = stack
        .admin
        .batch_get_user_statuses(authorized(
            BatchGetUserStatusesRequest {
                user_ids: crowd.ids.iter().map(Uuid::to_string).collect(),
            },
            &stack.admin_token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!batch.degraded);
    let online_by_activity = batch
        .statuses
        .iter()
        .filter(|status| status.online && status.source == StatusSource::Activity as i32)
        .count();
    assert_eq!(online_by_activity, PINGING);

    // Logout: the key goes, the token is revoked, watchers hear of it; a
    // second logout with the token changes nothing and writes no second row.
    let (leaver, leaver_token) = (crowd.ids[0], crowd.tokens[0].clone());
    stack
        .activity
        .logout(authorized(LogoutRequest::default(), &leaver_token))
        .await
        .unwrap();
    next_matching(&mut stream, SOON, about("crowd00", false)).await;
    let key = stack.keys.last_activity(leaver);
    let left: Option<i64> = stack.redis.get(&key).await.unwrap();
    assert_eq!(left, None);
    let refused = stack
        .activity
        .ping(authorized(PingRequest::default(), &leaver_token))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    let written: Option<i64> = stack.redis.get(&key).await.unwrap();
    assert_eq!(written, None, "a revoked token wrote the activity key");
    stack
        .activity
        .logout(authorized(LogoutRequest::default(), &leaver_token))
        .await
        .unwrap();
    assert_eq!(logout_rows(&stack, leaver).await, 1);
    assert_eq!(
        stack.list(StatusFilter::All, 10, "").await.online_count,
        PINGING as u64 + 1
    );

    // A threshold change reaches the activity service: the next ping's key
    // lives 2 × 3 minutes.
    stack
        .admin
        .update_activity_settings(authorized(
            UpdateActivitySettingsRequest {
                threshold_minutes: Some(3),
                ..Default::default()
            },
            &stack.admin_token,
        ))
        .await
        .unwrap();
    let (user, token) = (crowd.ids[1], crowd.tokens[1].clone());
    let activity = stack.activity.clone();
    eventually(Duration::from_secs(2), "the new threshold", || {
        let mut activity = activity.clone();
        let token = token.clone();
        async move {
            activity
                .ping(authorized(PingRequest::default(), &token))
                .await
                .is_ok_and(|ping| ping.into_inner().threshold_minutes == 3)
        }
    })
    .await;
    let ttl: i64 = stack
        .redis
        .ttl(stack.keys.last_activity(user))
        .await
        .unwrap();
    assert!((350..=360).contains(&ttl), "TTL {ttl} is not 2 × 3 min");
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_restarted_master_rejoins_and_the_services_recover_without_a_restart(pool: sqlx::PgPool) {
    let mut cluster = ThrowawayCluster::start().await;
    let mut stack = spawn_stack_on(pool, cluster.redis()).await;
    let crowd = add_crowd(&stack).await;
    stack.create_user("usertest1", Role::User).await;
    for token in &crowd.tokens {
        stack.ping(token).await;
    }
    // The status hub listens through the first seed node: the one to crash.
    let channel = &stack.keys.status_channel();
    let seeds = &cluster;
    eventually(SOON, "the hub subscribed through seed 0", || async move {
        subscribers_on(seeds, 0, channel).await == 1
    })
    .await;

    cluster.stop_node(0);

    // It moves to another seed node while the first is down.
    let seeds = &cluster;
    eventually(
        SOON,
        "the hub subscribed through another seed",
        || async move {
            subscribers_on(seeds, 1, channel).await + subscribers_on(seeds, 2, channel).await == 1
        },
    )
    .await;
    // Until the others declare it failed, calls touching its slots fail and
    // the rest succeed; afterwards the whole cluster refuses. Either way each
    // answer is prompt and says what a client can act on.
    let mut refused = 0;
    for token in &crowd.tokens[..10] {
        match ping_with_deadline(&mut stack, token).await {
            Ok(()) => {}
            Err(status) => {
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                refused += 1;
            }
        }
    }
    assert!(refused > 0, "every ping succeeded with a master down");
    // Signing in needs PostgreSQL only (the announcement is best effort).
    let login = LoginRequest {
        username: "usertest1".into(),
        password: PASSWORD.into(),
    };
    let mut request = tonic::Request::new(login);
    request.set_timeout(DEADLINE);
    promptly(stack.activity.login(request)).await.unwrap();
    let listing = list_with_deadline(&mut stack).await.unwrap();
    assert!(listing.degraded, "statuses read all masters with one down");
    // The admin and usertest1, online by login_history alone.
    assert_eq!(listing.online_count, 2);

    cluster.restart_node(0).await;

    // No service restart: pings and statuses come back by themselves. The
    // restarted master lost its keys (nothing is persisted), so everyone pings again.
    eventually(SOON, "pings accepted again", || {
        let mut activity = stack.activity.clone();
        let token = crowd.tokens[0].clone();
        async move {
            activity
                .ping(authorized(PingRequest::default(), &token))
                .await
                .is_ok()
        }
    })
    .await;
    for token in &crowd.tokens {
        ping_with_deadline(&mut stack, token).await.unwrap();
    }
    let activity_keys = stack.keys.last_activity_pattern();
    assert!(!keys_on(&cluster, 0, activity_keys).await.is_empty());
    eventually_listed(&stack, "statuses read from Redis again", |listing| {
        !listing.degraded
    })
    .await;
    // The restarted master lost its part of the presence index too: the
    // logins of the admin and usertest1 are put back from login_history.
    eventually_listed(&stack, "everyone counted again", |listing| {
        listing.online_count == USERS as u64 + 2
    })
    .await;

    // The watch stream still hears of logouts, through whichever node it now listens to.
    let mut stream = stack.watch().await;
    next_matching(&mut stream, SOON, about("crowd05", true)).await;
    stack
        .activity
        .logout(authorized(LogoutRequest::default(), &crowd.tokens[5]))
        .await
        .unwrap();
    let offline = next_matching(&mut stream, SOON, about("crowd05", false)).await;
    assert!(!offline.snapshot);
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn get_my_presence_reads_the_callers_keys_across_slots_on_a_cluster(pool: sqlx::PgPool) {
    use presence_proto::activity::GetMyPresenceRequest;
    let cluster = ThrowawayCluster::start().await;
    let mut stack = spawn_stack_on(pool, cluster.redis()).await;
    let user_id = stack.create_user("usertest1", Role::User).await;
    let token = stack.login("usertest1").await.access_token;
    stack.ping(&token).await;
    // Pings may not write it yet: placed as they will, id scored by the last ping.
    let _: () = stack
        .redis
        .zadd(stack.keys.browsers(user_id), "0123456789abcdef", now())
        .await
        .unwrap();

    let presence = stack
        .activity
        .get_my_presence(authorized(GetMyPresenceRequest {}, &token))
        .await
        .unwrap()
        .into_inner();

    assert!(!presence.degraded);
    assert_eq!(presence.user_id, user_id.to_string());
    assert!(presence.last_activity.is_some());
    let labels: Vec<&str> = presence.browsers.iter().map(|b| b.label.as_str()).collect();
    assert_eq!(labels, ["01234567"]);
    assert_eq!(presence.recent_events.len(), 1);
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn browsers_and_away_work_across_slots_on_a_cluster(pool: sqlx::PgPool) {
    use presence_proto::admin::{PresenceState, UpdateActivitySettingsRequest};
    let cluster = ThrowawayCluster::start().await;
    let mut stack = spawn_stack_on(pool, cluster.redis()).await;
    stack.create_user("usertest1", Role::User).await;
    let laptop = stack.login("usertest1").await.access_token;
    let phone = stack.login("usertest1").await.access_token;
    stack.ping_from("laptop-browser-0001", &laptop).await;
    stack.ping_from("phone-browser-00002", &phone).await;
    assert_eq!(stack.status_of("usertest1").await.active_browsers, 2);

    stack.logout_from("laptop-browser-0001", &laptop).await;
    let status = stack.status_of("usertest1").await;
    assert!(status.online, "the phone keeps the user online: {status:?}");
    assert_eq!(status.active_browsers, 1);

    let request = UpdateActivitySettingsRequest {
        idle_detection_enabled: Some(true),
        ..Default::default()
    };
    stack
        .admin
        .update_activity_settings(authorized(request, &stack.admin_token))
        .await
        .unwrap();
    // Both services follow the setting within a second; the phone then reports idle.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let response = stack
            .ping_reporting("phone-browser-00002", true, &phone)
            .await;
        if response.idle_after_minutes > 0
            && stack.status_of("usertest1").await.state == PresenceState::Away as i32
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the user never showed away on the cluster"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    stack.logout_from("phone-browser-00002", &phone).await;
    let status = stack.status_of("usertest1").await;
    assert!(!status.online, "the last browser signed out: {status:?}");
}
