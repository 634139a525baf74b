//! The presence tests' one kit (a dev-dependency only, so no binary links
//! it): a key prefix per test (`unique_prefix`; `#[sqlx::test]` gives each a
//! database), the shared secrets, accounts made as the CLI makes them, a
//! throwaway Redis and a throwaway Redis Cluster for tests that stop them,
//! the flags and direct connection for either, authorised requests,
//! `eventually`, and `stack`: both services started in-process in front of
//! one database and key prefix.

pub mod stack;

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use presence_core::token::Role;
use presence_proto::activity::activity_service_client::ActivityServiceClient;
use presence_proto::activity::{LoginRequest, LoginResponse};
use presence_store::config::RedisArgs;
use presence_store::keys::RedisKeys;
use presence_store::redis_client::{Redis, RedisConnection};
use sqlx::PgPool;
use uuid::Uuid;

/// The HS256 secret every in-process test service signs with.
pub const SECRET: &str = "test-secret-test-secret-test-secret-0123";
/// The password of every account the tests create.
pub const PASSWORD: &str = "Test1234!";

/// An issuer of tokens the test services accept (signed with `SECRET`),
/// valid `lifetime_seconds`.
pub fn test_issuer(lifetime_seconds: i64) -> presence_core::token::TokenIssuer {
    presence_core::token::TokenIssuer::new(
        jsonwebtoken::Algorithm::HS256,
        jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        "presence",
        lifetime_seconds,
    )
}

/// A ten-minute token of `user` with `role`, without signing in (the only
/// way to have a `service` token: service accounts cannot sign in).
pub fn test_token(user: Uuid, role: Role) -> String {
    test_issuer(600)
        .issue(user, role, chrono::Utc::now().timestamp())
        .expect("a test token")
        .token
}

/// The online count history as PostgreSQL holds it, for the tests of its
/// single writer.
pub mod online_history {
    use sqlx::PgPool;

    /// The `application_name`s of the sessions holding the writer lock in
    /// this database (one, when all is well).
    pub async fn writers(pool: &PgPool) -> Vec<String> {
        sqlx::query_scalar(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE l.locktype = 'advisory' AND l.granted
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .fetch_all(pool)
        .await
        .expect("the writers of the online count")
    }

    /// How many samples were taken at or after `since` (Unix seconds).
    pub async fn samples_since(pool: &PgPool, since: i64) -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM online_counts WHERE sampled_at >= to_timestamp($1::float8)",
        )
        .bind(since as f64)
        .fetch_one(pool)
        .await
        .expect("the online count samples")
    }
}

/// Creates (or updates) an account through the same code path as the CLI,
/// with `PASSWORD`.
pub async fn create_account(pool: &PgPool, username: &str, role: Role, disabled: bool) -> Uuid {
    activity_service::store::Accounts::new(pool.clone())
        .upsert_user(
            username,
            PASSWORD,
            role,
            &format!("{username} display"),
            disabled,
        )
        .await
        .expect("account created")
}

/// Signs `username` in with `PASSWORD`.
pub async fn login(
    client: &mut ActivityServiceClient<tonic::transport::Channel>,
    username: &str,
) -> LoginResponse {
    client
        .login(LoginRequest {
            username: username.into(),
            password: PASSWORD.into(),
        })
        .await
        .expect("login succeeds")
        .into_inner()
}

/// What a check of `eventually` reports: `bool` (holds or not) or
/// `Option<T>` (the value once there).
pub trait Settled {
    type Value;
    fn settled(self) -> Option<Self::Value>;
}

impl Settled for bool {
    type Value = ();
    fn settled(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Settled for Option<T> {
    type Value = T;
    fn settled(self) -> Option<T> {
        self
    }
}

/// Polls `check` every 100 ms until it holds (or gives a value, returned),
/// panicking with `what` after `within`. Tests wait for an outcome this
/// way, never for a fixed time.
pub async fn eventually<S, F, Fut>(within: Duration, what: &str, mut check: F) -> S::Value
where
    S: Settled,
    F: FnMut() -> Fut,
    Fut: Future<Output = S>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = check().await.settled() {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The Redis the tests share (each test under its own key prefix).
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A key prefix no other test uses.
pub fn unique_prefix() -> String {
    format!("test:{}:", uuid::Uuid::new_v4().simple())
}

/// A `Request` carrying `authorization: Bearer <token>`.
pub fn authorized<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}")
            .parse()
            .expect("a token is valid metadata"),
    );
    request
}

/// A free loopback port (free when asked; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free loopback port")
}

/// A throwaway `redis-server` on a free loopback port, killed on drop. Tests
/// that stop Redis use one of these, never the machine's shared server.
#[derive(Debug)]
pub struct ThrowawayRedis {
    pub url: String,
    child: Child,
}

impl ThrowawayRedis {
    pub async fn start() -> Self {
        Self::start_on(&free_port().to_string()).await
    }

    /// Starts one on a given port (to bring a stopped one back at the same address).
    pub async fn start_on(port: &str) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", port, "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (make test installs it)");
        // Owned from here on, so a failed start still kills the process (Drop).
        let server = Self {
            url: format!("redis://127.0.0.1:{port}"),
            child,
        };
        let client = redis::Client::open(server.url.as_str()).expect("a valid URL");
        for _ in 0..100 {
            if client.get_multiplexed_async_connection().await.is_ok() {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("throwaway redis-server did not start on port {port}");
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ThrowawayRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The Redis a test stack runs on: a single server, or a cluster's seed nodes.
#[derive(Clone, Debug)]
pub enum TestRedis {
    Single(String),
    Cluster(Vec<String>),
}

impl From<String> for TestRedis {
    fn from(url: String) -> Self {
        TestRedis::Single(url)
    }
}

impl TestRedis {
    /// The command-line flag that points a service at it.
    pub fn flag(&self) -> String {
        match self {
            TestRedis::Single(url) => format!("--redis-url={url}"),
            TestRedis::Cluster(nodes) => format!("--redis-cluster-nodes={}", nodes.join(",")),
        }
    }

    /// The key schema the services use on it, under `prefix`.
    pub fn keys(&self, prefix: &str) -> RedisKeys {
        self.args(prefix).keys().expect("a test prefix is valid")
    }

    /// A direct connection, for placing and inspecting keys, patient enough
    /// for the tests' bulk writes.
    pub async fn connect(&self) -> RedisConnection {
        Redis::connect_lazy(&self.args(""))
            .expect("a valid test Redis")
            .connection()
            .await
            .expect("the test Redis is reachable")
    }

    fn args(&self, prefix: &str) -> RedisArgs {
        let (redis_url, redis_cluster_nodes) = match self {
            TestRedis::Single(url) => (url.clone(), Vec::new()),
            TestRedis::Cluster(nodes) => (redis_url(), nodes.clone()),
        };
        RedisArgs {
            redis_url: redis_url.into(),
            redis_cluster_nodes: redis_cluster_nodes.into_iter().map(Into::into).collect(),
            redis_key_prefix: prefix.to_owned(),
            redis_timeout_ms: 5000,
            redis_ca_file: None,
        }
    }
}

/// A throwaway three-master Redis Cluster (no replicas) on free loopback
/// ports, in its own temporary directory; killed and removed on drop.
#[derive(Debug)]
pub struct ThrowawayCluster {
    dir: PathBuf,
    nodes: Vec<ClusterNode>,
}

#[derive(Debug)]
struct ClusterNode {
    port: u16,
    process: Option<Child>,
}

/// A free loopback port whose cluster bus port (always the port + 10000,
/// whatever the Redis version) is free too.
fn free_cluster_port() -> u16 {
    use rand::Rng;
    let free = |port: u16| TcpListener::bind(("127.0.0.1", port)).is_ok();
    for _ in 0..1000 {
        let port = rand::thread_rng().gen_range(20_000..55_000);
        if free(port) && free(port + 10_000) {
            return port;
        }
    }
    panic!("no free pair of loopback ports for a cluster node");
}

const CLUSTER_SIZE: usize = 3;
/// How long the nodes wait before declaring a silent peer failed.
const CLUSTER_NODE_TIMEOUT_MS: u32 = 2000;

impl ThrowawayCluster {
    /// Starts the nodes, assigns the slots with `redis-cli --cluster create`,
    /// and returns once every node reports `cluster_state:ok`.
    pub async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("presence-cluster-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let nodes = (0..CLUSTER_SIZE)
            .map(|_| ClusterNode {
                port: free_cluster_port(),
                process: None,
            })
            .collect();
        // Owned from here on, so a failed start still cleans up (Drop).
        let mut cluster = Self { dir, nodes };
        for index in 0..CLUSTER_SIZE {
            cluster.spawn_node(index);
        }
        for index in 0..CLUSTER_SIZE {
            cluster.wait_for_node(index).await;
        }
        let addresses: Vec<String> = cluster
            .nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect();
        let created = tokio::task::spawn_blocking(move || {
            Command::new("redis-cli")
                .arg("--cluster")
                .arg("create")
                .args(&addresses)
                .args(["--cluster-replicas", "0", "--cluster-yes"])
                .output()
        })
        .await
        .expect("redis-cli ran")
        .expect("redis-cli is installed (make test installs it)");
        assert!(
            created.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&created.stdout)
        );
        cluster.wait_until_ok().await;
        cluster
    }

    /// The seed nodes, as `PRESENCE_REDIS_CLUSTER_NODES` lists them.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|node| node.url()).collect()
    }

    pub fn redis(&self) -> TestRedis {
        TestRedis::Cluster(self.urls())
    }

    /// A plain connection to one node, to see what that node holds.
    pub async fn node(&self, index: usize) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.nodes[index].url())
            .expect("a valid URL")
            .get_multiplexed_async_connection()
            .await
            .expect("the node is up")
    }

    /// Kills one master, as a crash would.
    pub fn stop_node(&mut self, index: usize) {
        if let Some(mut process) = self.nodes[index].process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }

    /// Starts a stopped master again on its port with its nodes file: it
    /// rejoins with its slots (and no data: nothing is persisted). Returns
    /// once the whole cluster is ok again.
    pub async fn restart_node(&mut self, index: usize) {
        self.spawn_node(index);
        self.wait_for_node(index).await;
        self.wait_until_ok().await;
    }

    /// Waits until every running node reports `cluster_state:ok`.
    pub async fn wait_until_ok(&self) {
        for _ in 0..300 {
            let mut all_ok = true;
            for node in self.nodes.iter().filter(|node| node.process.is_some()) {
                all_ok &= node.state_is_ok().await;
            }
            if all_ok {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the throwaway cluster did not reach cluster_state:ok in 30 s");
    }

    fn spawn_node(&mut self, index: usize) {
        let node = &mut self.nodes[index];
        let dir = self.dir.display().to_string();
        let process = Command::new("redis-server")
            .args(["--port", &node.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--cluster-enabled", "yes"])
            .arg("--cluster-config-file")
            .arg(format!("{dir}/nodes-{}.conf", node.port))
            .args([
                "--cluster-node-timeout",
                &CLUSTER_NODE_TIMEOUT_MS.to_string(),
            ])
            .args(["--save", "", "--appendonly", "no", "--dir", &dir])
            .arg("--logfile")
            .arg(format!("{dir}/redis-{}.log", node.port))
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (make test installs it)");
        node.process = Some(process);
    }

    async fn wait_for_node(&self, index: usize) {
        let client = redis::Client::open(self.nodes[index].url()).expect("a valid URL");
        for _ in 0..100 {
            if client.get_multiplexed_async_connection().await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("cluster node {index} did not start");
    }
}

impl ClusterNode {
    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn state_is_ok(&self) -> bool {
        let Ok(client) = redis::Client::open(self.url()) else {
            return false;
        };
        let Ok(mut connection) = client.get_multiplexed_async_connection().await else {
            return false;
        };
        let info: redis::RedisResult<String> = redis::cmd("CLUSTER")
            .arg("INFO")
            .query_async(&mut connection)
            .await;
        info.is_ok_and(|info| info.contains("cluster_state:ok"))
    }
}

impl Drop for ThrowawayCluster {
    fn drop(&mut self) {
        for index in 0..self.nodes.len() {
            self.stop_node(index);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An Ed25519 key pair for tests of EdDSA set-ups (test use only: the
/// private key is public).
pub const TEST_ED25519_PRIVATE_KEY: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIK84CZlLdXefx9Cf64b4B7SQOZb3rNtNywLIv1KFIRqf
-----END PRIVATE KEY-----
";
pub const TEST_ED25519_PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAOZQFrlNwxFINQNtHFMUVr5ydj44irTSXREtQDIBBKPc=
-----END PUBLIC KEY-----
";

/// Writes `contents` to a fresh file under the temporary directory and
/// returns its path (for key files a service reads at start).
pub fn temporary_file(name: &str, contents: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("presence-test-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("a temporary file");
    path
}

/// Deletes every key under `prefix` (SCAN + DEL), as a Redis that lost its
/// data would look to that deployment; never touches another prefix. On a
/// single Redis (SCAN is per node).
pub async fn delete_keys_under(
    connection: &mut (impl redis::aio::ConnectionLike + Send),
    prefix: &str,
) {
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(connection)
            .await
            .expect("SCAN answers");
        if !keys.is_empty() {
            let _: () = redis::cmd("DEL")
                .arg(&keys)
                .query_async(connection)
                .await
                .expect("DEL answers");
        }
        if next == 0 {
            return;
        }
        cursor = next;
    }
}

/// Runs the binary at `program` with `args` (and nothing from this process's
/// environment) until it exits; its standard error. Panics if it is still
/// running after a minute, or exits successfully.
pub fn start_failure(program: &str, args: &[&str]) -> String {
    let mut child = Command::new(program)
        .args(args)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("still running with {args:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!status.success(), "exited successfully: {stderr}");
    stderr
}

/// An address nothing listens on (bound, then released).
pub fn closed_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Runs the binary at `program` with `args` and checks what a user reads:
/// `<program>: <failure>` on the first line, then `caused by: <cause>` among
/// the lines after it.
pub fn assert_start_failure(program: &str, args: &[&str], failure: &str, cause: &str) {
    let stderr = start_failure(program, args);
    let name = std::path::Path::new(program)
        .file_name()
        .and_then(|name| name.to_str())
        .expect("the binary has a name");
    assert!(
        stderr.starts_with(&format!("{name}: {failure}\n")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("  caused by: {cause}")),
        "{stderr}"
    );
}

/// The start-up failures every service names the same way, each checked
/// against the real binary at `program`; `extra` are the flags that binary
/// needs besides (the gateway's metrics address, the activity service's
/// private key).
pub mod start_failures {
    use std::net::TcpListener;

    use super::{assert_start_failure, closed_port};

    fn unreachable_database() -> String {
        format!(
            "--database-url=postgres://postgres@{}/presence",
            closed_port()
        )
    }

    /// A listen address already taken: named, with the system's reason.
    pub fn port_already_bound(program: &str) {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = taken.local_addr().unwrap();
        assert_start_failure(
            program,
            &[&format!("--listen-addr={address}"), &unreachable_database()],
            &format!("cannot listen on {address}"),
            "Address already in use",
        );
    }

    /// PostgreSQL not reachable when migrating at start: named, with the connect error.
    pub fn database_unreachable(program: &str) {
        assert_start_failure(
            program,
            &[
                "--listen-addr=127.0.0.1:0",
                "--migrate-on-start",
                &unreachable_database(),
            ],
            "cannot connect to PostgreSQL (DATABASE_URL)",
            "error communicating with database: Connection refused",
        );
    }

    /// A key file that does not exist: the setting and the path, with the system's reason.
    pub fn key_file_missing(program: &str, extra: &[&str]) {
        let mut args = vec![
            "--jwt-algorithm=EdDSA",
            "--jwt-public-key-file=/nonexistent/presence/jwt/public.pem",
        ];
        args.extend_from_slice(extra);
        assert_start_failure(
            program,
            &args,
            "cannot read PRESENCE_JWT_PUBLIC_KEY_FILE /nonexistent/presence/jwt/public.pem",
            "No such file or directory",
        );
    }
}
