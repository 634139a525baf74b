//! `spawn_app()` and what the tests need around it.

use std::time::Duration;

use activity_service::config::ActivityConfig;
use activity_service::startup::Application;
use clap::Parser;
use presence_core::token::Role;
use presence_proto::activity::activity_service_client::ActivityServiceClient;
use presence_proto::activity::{LoginRequest, LoginResponse};
use presence_store::keys::RedisKeys;
use presence_testkit::{redis_url, unique_prefix};
use redis::AsyncCommands;
use sqlx::PgPool;
use tonic::Request;
use tonic::transport::Channel;
use uuid::Uuid;

pub use presence_testkit::{PASSWORD, SECRET};

#[derive(Parser)]
struct ConfigOnly {
    #[command(flatten)]
    config: ActivityConfig,
}

pub struct TestApp {
    pub client: ActivityServiceClient<Channel>,
    pub pool: PgPool,
    pub redis: redis::aio::MultiplexedConnection,
    pub prefix: String,
    /// The key schema of `prefix`, the one the service uses.
    pub keys: RedisKeys,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

pub struct Options {
    pub redis_url: String,
    /// The key prefix, to share another instance's keys; a fresh one if `None`.
    pub prefix: Option<String>,
    pub extra_args: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            redis_url: redis_url(),
            prefix: None,
            extra_args: Vec::new(),
        }
    }
}

/// Options for a service that takes the client address from
/// `x-forwarded-for`, so a test can play clients at different addresses
/// (with `from_address`); `extra_args` are added after. The one place that
/// names that setting.
pub fn options_trusting_forwarded_for(extra_args: &[&str]) -> Options {
    let mut options = Options::default();
    options
        .extra_args
        .push("--trusted-proxies=127.0.0.1/32".into());
    options
        .extra_args
        .extend(extra_args.iter().map(|arg| arg.to_string()));
    options
}

/// A request that a service started with `options_trusting_forwarded_for`
/// takes as coming from `ip`.
pub fn from_address<T>(message: T, ip: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "x-forwarded-for",
        ip.parse().expect("an address is valid metadata"),
    );
    request
}

pub fn credentials(username: &str, password: &str) -> LoginRequest {
    LoginRequest {
        username: username.into(),
        password: password.into(),
    }
}

pub async fn spawn_app(pool: PgPool) -> TestApp {
    spawn_app_with(pool, Options::default()).await
}

pub async fn spawn_app_with(pool: PgPool, options: Options) -> TestApp {
    let prefix = options.prefix.unwrap_or_else(unique_prefix);
    let mut args = vec![
        "activity-service".to_owned(),
        "--listen-addr=127.0.0.1:0".into(),
        format!("--redis-url={}", options.redis_url),
        format!("--redis-key-prefix={prefix}"),
        format!("--jwt-secret={SECRET}"),
        "--environment=development".into(),
    ];
    args.extend(options.extra_args);
    let config = ConfigOnly::parse_from(args).config;
    let application = Application::build_with_pool(config, pool.clone())
        .await
        .expect("the service builds");
    let address = application.local_addr();
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(application.run_until(async {
        let _ = stopped.await;
    }));
    let channel = Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .expect("the service accepts connections");
    let redis = redis::Client::open(options.redis_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("the test Redis is reachable");
    TestApp {
        client: ActivityServiceClient::new(channel),
        pool,
        redis,
        keys: RedisKeys::new(prefix.clone()).expect("a test prefix is valid"),
        prefix,
        _shutdown: shutdown,
    }
}

impl TestApp {
    /// Deletes every key of this test's prefix, as a Redis that lost its data.
    pub async fn lose_redis_data(&mut self) {
        presence_testkit::delete_keys_under(&mut self.redis, &self.prefix).await;
    }

    /// Pings with `token` until the answer is not UNAVAILABLE (Redis cannot
    /// vouch for tokens until the revocations are back), for up to 15 s.
    pub async fn ping_once_vouched(&mut self, token: &str) -> Result<(), tonic::Status> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let answer = self
                .client
                .ping(presence_testkit::authorized(
                    presence_proto::activity::PingRequest::default(),
                    token,
                ))
                .await;
            match answer {
                Err(status)
                    if status.code() == tonic::Code::Unavailable
                        && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                answer => return answer.map(|_| ()),
            }
        }
    }

    /// Creates an account through the same code path as the CLI.
    pub async fn create_user(&self, username: &str, role: Role) -> Uuid {
        self.create_account(username, role, false).await
    }

    pub async fn create_account(&self, username: &str, role: Role, disabled: bool) -> Uuid {
        presence_testkit::create_account(&self.pool, username, role, disabled).await
    }

    /// Moves the sign-in throttle's clock back by `elapsed`, as if that much
    /// time had passed since every failure it counted.
    pub async fn let_throttle_time_pass(&self, elapsed: Duration) {
        sqlx::query(
            "UPDATE login_throttle
                SET last_failure_at = last_failure_at - make_interval(secs => $1),
                    expires_at = expires_at - make_interval(secs => $1)",
        )
        .bind(elapsed.as_secs_f64())
        .execute(&self.pool)
        .await
        .unwrap();
    }

    /// How many login_history failures have this reason, whatever the username.
    pub async fn failures(&self, reason: &str) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM login_history WHERE failure_reason = $1")
            .bind(reason)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    pub async fn login(&mut self, username: &str) -> LoginResponse {
        presence_testkit::login(&mut self.client, username).await
    }

    pub fn last_activity_key(&self, user_id: &str) -> String {
        self.keys.last_activity(user_id.parse().expect("a user id"))
    }

    pub fn last_logout_key(&self, user_id: &str) -> String {
        self.keys.last_logout(user_id.parse().expect("a user id"))
    }

    pub async fn last_activity(&mut self, user_id: &str) -> Option<i64> {
        let key = self.last_activity_key(user_id);
        self.redis.get(key).await.unwrap()
    }

    pub async fn ttl(&mut self, key: &str) -> i64 {
        self.redis.ttl(key).await.unwrap()
    }

    /// The presence index: (user id, score), lowest score first.
    pub async fn presence_index(&mut self) -> Vec<(String, i64)> {
        let index = self.keys.presence_index();
        self.redis.zrange_withscores(index, 0, -1).await.unwrap()
    }

    /// Every key this test's calls wrote, for "nothing was written" checks
    /// (the marker the revocation keeper sets at start aside).
    pub async fn written_keys(&mut self) -> Vec<String> {
        let marker = self.keys.revocations_complete();
        let keys: Vec<String> = self.redis.keys(format!("{}*", self.prefix)).await.unwrap();
        keys.into_iter().filter(|key| *key != marker).collect()
    }

    /// The login_history events of a username, oldest first.
    pub async fn events(&self, username: &str) -> Vec<String> {
        self.history(username)
            .await
            .into_iter()
            .map(|(event, _)| event)
            .collect()
    }

    /// Serves from a throwaway Redis that the test may stop.
    pub async fn on_throwaway_redis(pool: PgPool) -> (TestApp, presence_testkit::ThrowawayRedis) {
        let redis = presence_testkit::ThrowawayRedis::start().await;
        let options = Options {
            redis_url: redis.url.clone(),
            extra_args: vec!["--redis-timeout-ms=300".into()],
            ..Options::default()
        };
        (spawn_app_with(pool, options).await, redis)
    }

    /// The login_history rows of a username, oldest first: (event, failure_reason).
    pub async fn history(&self, username: &str) -> Vec<(String, Option<String>)> {
        sqlx::query_as(
            "SELECT event, failure_reason FROM login_history WHERE username = $1 ORDER BY id",
        )
        .bind(username)
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }
}

/// `count` accounts `<prefix>0`, `<prefix>1`, ... with the test password,
/// hashed once (hashing each would take longer than the test).
pub async fn create_users_sharing_the_password(
    pool: &PgPool,
    prefix: &str,
    count: i32,
) -> Vec<String> {
    let hash = activity_service::password::hash(PASSWORD.into())
        .await
        .unwrap();
    sqlx::query_scalar(
        "INSERT INTO users (id, username, password_hash, role, display_name)
         SELECT gen_random_uuid(), $1 || n, $2, 'user', $1 || n
           FROM generate_series(0, $3 - 1) AS n
         RETURNING username",
    )
    .bind(prefix)
    .bind(hash)
    .bind(count)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Signs arbitrary claims with `secret`, under the header a real token has
/// (`typ: at+jwt`, the `kid` of that secret).
pub fn forge_token(
    claims: serde_json::Value,
    algorithm: jsonwebtoken::Algorithm,
    secret: &str,
) -> String {
    let kid =
        presence_core::token::key_id(&jsonwebtoken::DecodingKey::from_secret(secret.as_bytes()));
    forge_token_with(claims, algorithm, secret, Some("at+jwt"), Some(&kid))
}

/// Signs arbitrary claims with `secret` under a chosen `typ` and `kid`.
pub fn forge_token_with(
    claims: serde_json::Value,
    algorithm: jsonwebtoken::Algorithm,
    secret: &str,
    typ: Option<&str>,
    kid: Option<&str>,
) -> String {
    let mut header = jsonwebtoken::Header::new(algorithm);
    header.typ = typ.map(str::to_owned);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// The claims of a valid user token, for tests that break one rule at a time.
pub fn valid_claims(user_id: Uuid) -> serde_json::Value {
    serde_json::json!({
        "sub": user_id, "role": "user", "jti": Uuid::new_v4().simple().to_string(),
        "iat": now(), "nbf": now(), "exp": now() + 600,
        "iss": "presence", "aud": presence_core::token::DEFAULT_AUDIENCE,
    })
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}
