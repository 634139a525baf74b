//! `spawn_stack()`: both services on one database and key prefix, an admin
//! signed in, and direct access to the stores for placing facts; on the shared
//! Redis, or on another one (`spawn_stack_on`: a throwaway Redis or Redis
//! Cluster). The admin service's and the gateway's tests use it.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use presence_core::token::Role;
use presence_proto::activity::activity_service_client::ActivityServiceClient;
use presence_proto::activity::{LoginResponse, LogoutRequest, PingRequest};
use presence_proto::admin::admin_service_client::AdminServiceClient;
use presence_proto::admin::{
    ListUserStatusesRequest, ListUserStatusesResponse, StatusFilter, UserStatus, UserStatusEvent,
    WatchUserStatusesRequest,
};
use presence_store::keys::RedisKeys;
use presence_store::redis_client::RedisConnection;
use redis::AsyncCommands;
use sqlx::PgPool;
use tonic::Streaming;
use tonic::transport::Channel;
use uuid::Uuid;

pub use crate::{PASSWORD, SECRET};
use crate::{TestRedis, authorized, redis_url, unique_prefix};

#[derive(Parser)]
struct ActivityOnly {
    #[command(flatten)]
    config: activity_service::config::ActivityConfig,
}

#[derive(Parser)]
struct AdminOnly {
    #[command(flatten)]
    config: admin_service::config::AdminConfig,
}

fn shared_args(name: &str, redis: &TestRedis, prefix: &str) -> Vec<String> {
    vec![
        name.to_owned(),
        "--listen-addr=127.0.0.1:0".into(),
        redis.flag(),
        format!("--redis-key-prefix={prefix}"),
        format!("--jwt-secret={SECRET}"),
        "--redis-timeout-ms=300".into(),
    ]
}

/// `shared_args` and then `extra` (flags of the JWT set-up, say).
fn args_with(name: &str, redis: &TestRedis, prefix: &str, extra: &[String]) -> Vec<String> {
    let mut args = shared_args(name, redis, prefix);
    args.extend(extra.iter().cloned());
    args
}

pub async fn connect(address: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .expect("the service accepts connections")
}

#[derive(Debug)]
pub struct Stack {
    pub activity_address: SocketAddr,
    pub admin_address: SocketAddr,
    pub activity: ActivityServiceClient<Channel>,
    pub admin: AdminServiceClient<Channel>,
    pub admin_token: String,
    pub pool: PgPool,
    pub redis: RedisConnection,
    pub redis_target: TestRedis,
    pub prefix: String,
    pub keys: RedisKeys,
    /// Flags both services were started with beyond `shared_args`.
    pub extra_args: Vec<String>,
    stops: Vec<tokio::sync::oneshot::Sender<()>>,
}

pub async fn spawn_stack(pool: PgPool) -> Stack {
    spawn_stack_on(pool, redis_url()).await
}

pub async fn spawn_stack_on(pool: PgPool, redis_target: impl Into<TestRedis>) -> Stack {
    spawn_stack_with(pool, redis_target, &[]).await
}

/// A stack whose two services get `extra` flags too.
pub async fn spawn_stack_with(
    pool: PgPool,
    redis_target: impl Into<TestRedis>,
    extra: &[String],
) -> Stack {
    let redis_target = redis_target.into();
    let prefix = unique_prefix();
    let redis = redis_target.connect().await;
    let config =
        ActivityOnly::parse_from(args_with("activity-service", &redis_target, &prefix, extra))
            .config;
    let activity = activity_service::startup::Application::build_with_pool(config, pool.clone())
        .await
        .unwrap();
    let activity_address = activity.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(activity.run_until(async {
        let _ = stopped.await;
    }));
    let (admin_address, admin_stop) = spawn_admin(&pool, &redis_target, &prefix, extra).await;
    let mut stack = Stack {
        activity_address,
        admin_address,
        activity: ActivityServiceClient::new(connect(activity_address).await),
        admin: AdminServiceClient::new(connect(admin_address).await),
        admin_token: String::new(),
        pool,
        redis,
        keys: redis_target.keys(&prefix),
        redis_target,
        prefix,
        extra_args: extra.to_vec(),
        stops: vec![stop, admin_stop],
    };
    stack.create_user("admintest1", Role::Admin).await;
    stack.admin_token = stack.login("admintest1").await.access_token;
    stack
}

async fn spawn_admin(
    pool: &PgPool,
    redis: &TestRedis,
    prefix: &str,
    extra: &[String],
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let admin = spawn_admin_with(pool, redis, prefix, &extra).await;
    (admin.address, admin.stop)
}

/// An admin-service process started with `extra` flags, that stops when
/// told to; `stopped` ends when it has.
#[derive(Debug)]
pub struct AdminProcess {
    pub address: SocketAddr,
    pub stop: tokio::sync::oneshot::Sender<()>,
    pub stopped: tokio::task::JoinHandle<Result<(), admin_service::startup::StartupError>>,
}

pub async fn spawn_admin_with(
    pool: &PgPool,
    redis: &TestRedis,
    prefix: &str,
    extra: &[&str],
) -> AdminProcess {
    let extra: Vec<String> = extra.iter().map(|flag| flag.to_string()).collect();
    let config = AdminOnly::parse_from(args_with("admin-service", redis, prefix, &extra)).config;
    let admin = admin_service::startup::Application::build_with_pool(config, pool.clone())
        .await
        .unwrap();
    let address = admin.local_addr();
    let (stop, stop_asked) = tokio::sync::oneshot::channel::<()>();
    let stopped = tokio::spawn(admin.run_until(async {
        let _ = stop_asked.await;
    }));
    AdminProcess {
        address,
        stop,
        stopped,
    }
}

impl Stack {
    /// Another activity-service process on the same stores, listening on
    /// `address`; it stops when the sender is dropped or sent to, and the
    /// handle ends once it has stopped.
    pub async fn spawn_activity_at(
        &self,
        address: SocketAddr,
    ) -> (
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    ) {
        let mut args = args_with(
            "activity-service",
            &self.redis_target,
            &self.prefix,
            &self.extra_args,
        );
        args[1] = format!("--listen-addr={address}");
        let config = ActivityOnly::parse_from(args).config;
        let activity =
            activity_service::startup::Application::build_with_pool(config, self.pool.clone())
                .await
                .unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(async move {
            let _ = activity
                .run_until(async {
                    let _ = stopped.await;
                })
                .await;
        });
        (stop, running)
    }

    /// Another admin-service process on the same stores, as a second replica.
    pub async fn spawn_admin_replica(&mut self) -> AdminServiceClient<Channel> {
        let (address, stop) = spawn_admin(
            &self.pool,
            &self.redis_target,
            &self.prefix,
            &self.extra_args,
        )
        .await;
        self.stops.push(stop);
        AdminServiceClient::new(connect(address).await)
    }

    pub async fn create_user(&self, username: &str, role: Role) -> Uuid {
        crate::create_account(&self.pool, username, role, false).await
    }

    pub async fn login(&mut self, username: &str) -> LoginResponse {
        crate::login(&mut self.activity, username).await
    }

    pub async fn ping(&mut self, token: &str) {
        self.activity
            .ping(authorized(PingRequest::default(), token))
            .await
            .expect("ping succeeds");
    }

    /// A ping from the browser `browser_id` (see `PingRequest::browser_id`).
    pub async fn ping_from(&mut self, browser_id: &str, token: &str) {
        let request = PingRequest {
            browser_id: browser_id.to_owned(),
            idle: None,
        };
        self.activity
            .ping(authorized(request, token))
            .await
            .expect("ping succeeds");
    }

    /// A ping from `browser_id` saying whether it saw no input for the idle
    /// delay; returns the response (which tells the delay in force).
    pub async fn ping_reporting(
        &mut self,
        browser_id: &str,
        idle: bool,
        token: &str,
    ) -> presence_proto::activity::PingResponse {
        let request = PingRequest {
            browser_id: browser_id.to_owned(),
            idle: Some(idle),
        };
        self.activity
            .ping(authorized(request, token))
            .await
            .expect("ping succeeds")
            .into_inner()
    }

    /// Signs the browser `browser_id` out.
    pub async fn logout_from(&mut self, browser_id: &str, token: &str) {
        let request = LogoutRequest {
            browser_id: browser_id.to_owned(),
        };
        self.activity
            .logout(authorized(request, token))
            .await
            .expect("logout succeeds");
    }

    /// Adds enabled users straight to PostgreSQL (no password to hash: fast
    /// for many), returning their ids in the order of `names`.
    pub async fn insert_users(&self, names: &[String]) -> Vec<Uuid> {
        let ids: Vec<Uuid> = names.iter().map(|_| Uuid::new_v4()).collect();
        sqlx::query(
            "INSERT INTO users (id, username, password_hash, role, display_name)
             SELECT id, name, 'unused', 'user', name FROM unnest($1::uuid[], $2::text[]) AS t(id, name)",
        )
        .bind(&ids)
        .bind(names)
        .execute(&self.pool)
        .await
        .unwrap();
        ids
    }

    /// The admin's live status stream.
    pub async fn watch(&mut self) -> Streaming<UserStatusEvent> {
        self.admin
            .watch_user_statuses(authorized(WatchUserStatusesRequest {}, &self.admin_token))
            .await
            .expect("the stream opens")
            .into_inner()
    }

    /// Places a ping at `at` (Unix seconds) as the activity service would.
    pub async fn place_activity(&mut self, user_id: Uuid, at: i64) {
        let key = self.keys.last_activity(user_id);
        let index = self.keys.presence_index_for(user_id);
        let _: () = self.redis.set_ex(key, at, 3600).await.unwrap();
        let _: () = self
            .redis
            .zadd(index, user_id.to_string(), at)
            .await
            .unwrap();
    }

    pub async fn place_logout_marker(&mut self, user_id: Uuid, at: i64) {
        let key = self.keys.last_logout(user_id);
        let _: () = self.redis.set_ex(key, at, 3600).await.unwrap();
    }

    /// Adds a login_history row at `at` (Unix seconds).
    pub async fn place_history(&self, user_id: Uuid, event: &str, at: i64) {
        sqlx::query(
            "INSERT INTO login_history (user_id, username, event, failure_reason, occurred_at)
             SELECT id, username, $2, CASE WHEN $2 = 'login_failure' THEN 'wrong_password' END, to_timestamp($3)
             FROM users WHERE id = $1",
        )
        .bind(user_id)
        .bind(event)
        .bind(at as f64)
        .execute(&self.pool)
        .await
        .unwrap();
    }

    pub async fn list(
        &mut self,
        filter: StatusFilter,
        page_size: u32,
        page_token: &str,
    ) -> ListUserStatusesResponse {
        let request = ListUserStatusesRequest {
            page_size,
            page_token: page_token.into(),
            filter: filter as i32,
            ..Default::default()
        };
        self.admin
            .list_user_statuses(authorized(request, &self.admin_token))
            .await
            .expect("listing succeeds")
            .into_inner()
    }

    /// The first page once its online count is `expected`; what the index
    /// learns from login_history (not from the services) takes a moment.
    pub async fn wait_for_online_count(&mut self, expected: u64) -> ListUserStatusesResponse {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let page = self.list(StatusFilter::All, 10, "").await;
            if page.online_count == expected || tokio::time::Instant::now() > deadline {
                assert_eq!(page.online_count, expected, "online count never reached");
                return page;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every status, walking all pages.
    pub async fn list_all(&mut self, filter: StatusFilter, page_size: u32) -> Vec<UserStatus> {
        let mut statuses = Vec::new();
        let mut token = String::new();
        loop {
            let page = self.list(filter, page_size, &token).await;
            statuses.extend(page.statuses);
            if page.next_page_token.is_empty() {
                return statuses;
            }
            token = page.next_page_token;
        }
    }

    pub async fn status_of(&mut self, username: &str) -> UserStatus {
        self.list_all(StatusFilter::All, 500)
            .await
            .into_iter()
            .find(|status| status.username == username)
            .unwrap_or_else(|| panic!("{username} is listed"))
    }
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}
