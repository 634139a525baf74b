//! The Redis connection both services use, on a single Redis or on Redis
//! Cluster: multiplexed, reconnecting on its own, and bounded in time, so a
//! dead Redis turns into a prompt error rather than a hanging call.
//!
//! Callers write their commands once, against `RedisConnection`, which routes
//! each command to the right node on a cluster. Two things differ on a cluster
//! and are handled here rather than in every caller:
//! - a pipeline must stay within one hash slot there (the redis crate refuses a
//!   cross-slot pipeline), so `batch` sends independent commands as one
//!   pipeline to a single Redis, and concurrently (each to its slot's master,
//!   still about one round trip) to a cluster;
//! - pub/sub is per node: a message published on any node reaches subscribers
//!   on every node, so a subscriber picks one of `pubsub_nodes` and moves to
//!   the next when that node dies.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::{BoxFuture, join_all};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::Error;
use crate::config::RedisArgs;
use crate::keys::RedisKeys;
use secrecy::ExposeSecret;

/// Retries the client makes inside one call before giving up (each bounded
/// by the timeout, the whole call too).
const RETRIES: u32 = 2;
/// A cluster connection that has failed every call for this long is replaced
/// by a fresh one from the seed nodes. The client repairs node connections
/// itself, but after a master's restart it can wedge (every command times out
/// while the cluster is healthy); a new connection does not.
const CLUSTER_RECREATE_AFTER: Duration = Duration::from_secs(1);
/// After a failed attempt to open the cluster connection, calls fail at once
/// for this long instead of each trying again.
const CLUSTER_CONNECT_BACKOFF: Duration = Duration::from_millis(200);

#[derive(Debug, Clone)]
pub struct Redis {
    connector: Connector,
    keys: RedisKeys,
    timeout: Duration,
    /// Where status watchers subscribe: the single Redis, or each seed node in turn.
    pubsub_nodes: Arc<[redis::Client]>,
}

#[derive(Clone)]
enum Connector {
    Single(ConnectionManager),
    Cluster(Arc<LazyCluster>),
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Connector::Single(_) => f.write_str("Connector::Single"),
            Connector::Cluster(_) => f.write_str("Connector::Cluster"),
        }
    }
}

/// A connection to the configured Redis, single or cluster. Cheap to clone:
/// clones share the underlying multiplexed connections.
#[derive(Clone)]
pub enum RedisConnection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

// The cluster connection has no `Debug`; which kind it is says enough.
impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RedisConnection::Single(_) => f.write_str("RedisConnection::Single"),
            RedisConnection::Cluster(_) => f.write_str("RedisConnection::Cluster"),
        }
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConnection::Single(connection) => connection.req_packed_command(cmd),
            RedisConnection::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConnection::Single(connection) => {
                connection.req_packed_commands(pipeline, offset, count)
            }
            RedisConnection::Cluster(connection) => {
                connection.req_packed_commands(pipeline, offset, count)
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConnection::Single(connection) => connection.get_db(),
            RedisConnection::Cluster(connection) => connection.get_db(),
        }
    }
}

/// The cluster connection, opened on first use (so a service starts while
/// the cluster is down), opened again after a failed attempt, and replaced
/// when it has done nothing but fail for `CLUSTER_RECREATE_AFTER`.
struct LazyCluster {
    client: ClusterClient,
    /// Held while connecting, so concurrent first calls open one connection,
    /// not many; each caller's timeout still bounds its wait.
    state: Mutex<ClusterState>,
    /// When calls started failing without a success since (std mutex: held
    /// for a few instructions, never across an await).
    failing_since: parking_lot::Mutex<Option<Instant>>,
}

#[derive(Default)]
struct ClusterState {
    connection: Option<ClusterConnection>,
    last_failed_connect: Option<Instant>,
}

impl LazyCluster {
    async fn get(&self) -> RedisResult<ClusterConnection> {
        let mut state = self.state.lock().await;
        if let Some(connection) = &state.connection {
            return Ok(connection.clone());
        }
        if state
            .last_failed_connect
            .is_some_and(|at| at.elapsed() < CLUSTER_CONNECT_BACKOFF)
        {
            return Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "no Redis Cluster seed node answered; retrying shortly",
            )));
        }
        match self.client.get_async_connection().await {
            Ok(connection) => {
                state.connection = Some(connection.clone());
                state.last_failed_connect = None;
                Ok(connection)
            }
            Err(error) => {
                state.last_failed_connect = Some(Instant::now());
                Err(error)
            }
        }
    }

    /// Notes how a call went; replaces the connection once calls have failed
    /// for `CLUSTER_RECREATE_AFTER` without a single success.
    fn note(&self, succeeded: bool) {
        let mut failing_since = self.failing_since.lock();
        let Some(since) = *failing_since else {
            if !succeeded {
                *failing_since = Some(Instant::now());
            }
            return;
        };
        if succeeded {
            *failing_since = None;
        } else if since.elapsed() >= CLUSTER_RECREATE_AFTER {
            // A caller holding the lock is connecting: a fresh connection is coming.
            if let Ok(mut state) = self.state.try_lock()
                && state.connection.take().is_some()
            {
                tracing::warn!("Redis Cluster calls keep failing; opening a new connection");
            }
            *failing_since = None;
        }
    }
}

impl Redis {
    /// Connects on first use, so a service starts while Redis is down and
    /// recovers by itself when it comes back.
    pub fn connect_lazy(args: &RedisArgs) -> Result<Self, Error> {
        let timeout = args.timeout();
        let keys = args.keys()?;
        let seeds = args.cluster_nodes();
        let ca = args.ca_certificates()?;
        if ca.is_some()
            || [args.redis_url.expose_secret()]
                .into_iter()
                .chain(seeds.iter().copied())
                .any(is_tls)
        {
            install_tls_provider();
        }
        if seeds.is_empty() {
            let client = open_client(args.redis_url.expose_secret(), "REDIS_URL", ca.as_deref())?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout))
                .set_number_of_retries(RETRIES as usize)
                .set_max_delay(Duration::from_secs(2));
            let manager = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
            return Ok(Self {
                connector: Connector::Single(manager),
                keys,
                timeout,
                pubsub_nodes: Arc::new([client]),
            });
        }
        let mut builder = ClusterClient::builder(seeds.iter().copied())
            .connection_timeout(timeout)
            .response_timeout(timeout)
            .retries(RETRIES)
            .max_retry_wait(timeout.as_millis() as u64);
        if let Some(ca) = &ca {
            builder = builder.certs(certificates(ca));
        }
        let client = builder.build().map_err(|source| Error::InvalidRedisUrl {
            variable: "PRESENCE_REDIS_CLUSTER_NODES",
            source,
        })?;
        let pubsub_nodes = seeds
            .iter()
            .map(|seed| open_client(seed, "PRESENCE_REDIS_CLUSTER_NODES", ca.as_deref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            connector: Connector::Cluster(Arc::new(LazyCluster {
                client,
                state: Mutex::default(),
                failing_since: parking_lot::Mutex::default(),
            })),
            keys,
            timeout,
            pubsub_nodes: pubsub_nodes.into(),
        })
    }

    pub fn keys(&self) -> &RedisKeys {
        &self.keys
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self.connector, Connector::Cluster(_))
    }

    /// Nodes a subscriber may use, in order of preference: the single Redis,
    /// or the cluster's seed nodes (any node relays every published message).
    pub fn pubsub_nodes(&self) -> &[redis::Client] {
        &self.pubsub_nodes
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The shared connection, opening it if needed (without the call timeout:
    /// callers other than `run` bring their own).
    pub async fn connection(&self) -> Result<RedisConnection, Error> {
        Ok(self.open().await?)
    }

    async fn open(&self) -> RedisResult<RedisConnection> {
        Ok(match &self.connector {
            Connector::Single(manager) => RedisConnection::Single(manager.clone()),
            Connector::Cluster(cluster) => RedisConnection::Cluster(cluster.get().await?),
        })
    }

    /// Runs `operation` on the shared connection, failing with
    /// `Redis` if it errs (`RedisTimedOut` if it or outlives the configured timeout
    /// (opening the connection included).
    pub async fn run<T, F, Fut>(&self, operation: F) -> Result<T, Error>
    where
        F: FnOnce(RedisConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let attempt = async { operation(self.open().await?).await };
        let outcome = match tokio::time::timeout(self.timeout, attempt).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(error.into()),
            Err(_) => Err(Error::RedisTimedOut(self.timeout)),
        };
        if let Connector::Cluster(cluster) = &self.connector {
            cluster.note(outcome.is_ok());
        }
        outcome
    }

    /// Sends independent commands together and returns each one's result, in
    /// order: one pipeline on a single Redis; on a cluster, where a pipeline
    /// may not span slots, every command at once, each to its own node. Not a
    /// transaction: on a cluster some may succeed while others fail (if all
    /// fail, the batch fails).
    pub async fn batch(&self, commands: Vec<Cmd>) -> Result<Vec<RedisResult<Value>>, Error> {
        self.run(|connection| -> BoxFuture<'static, RedisResult<_>> {
            match connection {
                RedisConnection::Single(mut connection) => Box::pin(async move {
                    let mut pipeline = redis::pipe();
                    // Per-command errors come back as values, as on a cluster.
                    pipeline.ignore_errors();
                    for command in commands {
                        pipeline.add_command(command);
                    }
                    let values: Vec<Value> = pipeline.query_async(&mut connection).await?;
                    Ok(values.into_iter().map(Value::extract_error).collect())
                }),
                RedisConnection::Cluster(connection) => Box::pin(async move {
                    let sends = commands.into_iter().map(|command| {
                        let mut connection = connection.clone();
                        async move { command.query_async::<Value>(&mut connection).await }
                    });
                    let results = join_all(sends).await;
                    // Nothing went through: a failed call, as far as the
                    // connection's health is concerned.
                    if results.iter().all(Result::is_err)
                        && let Some(Err(error)) = results.first()
                    {
                        return Err(error.clone());
                    }
                    Ok(results)
                }),
            }
        })
        .await
    }

    /// `batch`, failing as a whole if any command failed.
    pub async fn batch_all(&self, commands: Vec<Cmd>) -> Result<Vec<Value>, Error> {
        Ok(self
            .batch(commands)
            .await?
            .into_iter()
            .collect::<RedisResult<Vec<_>>>()?)
    }
}

/// A client for `url`: `rediss://` speaks TLS, verifying the server's
/// certificate against `ca` (PEM) when given, else the system's CAs.
fn open_client(
    url: &str,
    variable: &'static str,
    ca: Option<&[u8]>,
) -> Result<redis::Client, Error> {
    let invalid = |source| Error::InvalidRedisUrl { variable, source };
    match ca {
        Some(ca) if is_tls(url) => redis::Client::build_with_tls(url, certificates(ca)),
        Some(_) => {
            return Err(Error::InvalidConfig(format!(
                "{variable}: PRESENCE_REDIS_CA_FILE is set but the URL is not rediss:// (TLS)"
            )));
        }
        None => redis::Client::open(url),
    }
    .map_err(invalid)
}

fn is_tls(url: &str) -> bool {
    url.starts_with("rediss://")
}

fn certificates(ca: &[u8]) -> redis::TlsCertificates {
    redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(ca.to_vec()),
    }
}

/// rustls needs one process-wide cryptography provider; sqlx and redis both
/// use ring's. Installing it twice is harmless (the second call is refused).
fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};

    use futures::StreamExt;

    use super::*;

    /// A throwaway `redis-server` that speaks only TLS, with a certificate
    /// (for `127.0.0.1` and `localhost`) signed by a CA made for it.
    struct TlsRedis {
        dir: PathBuf,
        port: u16,
        child: Child,
    }

    fn openssl(dir: &Path, args: &[&str]) {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl is installed");
        assert!(status.success(), "openssl {args:?} failed");
    }

    fn make_ca(dir: &Path, name: &str) {
        let key = format!("{name}.key");
        let crt = format!("{name}.crt");
        openssl(
            dir,
            &[
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ]
            .into_iter()
            .chain([
                "-keyout",
                &key,
                "-out",
                &crt,
                "-subj",
                &format!("/CN={name}"),
            ])
            .collect::<Vec<_>>(),
        );
    }

    impl TlsRedis {
        async fn start() -> Self {
            let dir = std::env::temp_dir().join(format!("presence-tls-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&dir).unwrap();
            make_ca(&dir, "ca");
            make_ca(&dir, "other-ca");
            openssl(
                &dir,
                &[
                    "req",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-keyout",
                    "server.key",
                    "-out",
                    "server.csr",
                    "-subj",
                    "/CN=localhost",
                ],
            );
            std::fs::write(dir.join("san"), "subjectAltName=DNS:localhost,IP:127.0.0.1").unwrap();
            openssl(
                &dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    "server.csr",
                    "-CA",
                    "ca.crt",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-out",
                    "server.crt",
                    "-days",
                    "1",
                    "-extfile",
                    "san",
                ],
            );
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let child = Command::new("redis-server")
                .args([
                    "--port",
                    "0",
                    "--tls-port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                ])
                .args([
                    "--tls-cert-file",
                    "server.crt",
                    "--tls-key-file",
                    "server.key",
                ])
                .args(["--tls-ca-cert-file", "ca.crt", "--tls-auth-clients", "no"])
                .args(["--save", "", "--appendonly", "no"])
                .current_dir(&dir)
                .stdout(Stdio::null())
                .spawn()
                .expect("redis-server is installed");
            let server = Self { dir, port, child };
            for _ in 0..100 {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return server;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("the TLS redis-server did not start");
        }

        fn args(&self, ca: &str) -> RedisArgs {
            RedisArgs {
                redis_url: format!("rediss://127.0.0.1:{}", self.port).into(),
                redis_cluster_nodes: Vec::new(),
                redis_key_prefix: String::new(),
                redis_timeout_ms: 2000,
                redis_ca_file: Some(self.dir.join(ca)),
            }
        }
    }

    impl Drop for TlsRedis {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    #[tokio::test]
    async fn rediss_urls_speak_tls_and_verify_the_server_against_the_configured_ca() {
        let server = TlsRedis::start().await;
        let redis = Redis::connect_lazy(&server.args("ca.crt")).unwrap();
        redis
            .run(|mut connection| async move {
                Cmd::set("greeting", "hello")
                    .query_async::<()>(&mut connection)
                    .await
            })
            .await
            .expect("a command over TLS succeeds");
        let read: String =
            redis
                .run(|mut connection| async move {
                    Cmd::get("greeting").query_async(&mut connection).await
                })
                .await
                .unwrap();
        assert_eq!(read, "hello");

        // Pub/sub (the status stream's) goes over TLS too.
        let mut subscription = redis.pubsub_nodes()[0].get_async_pubsub().await.unwrap();
        subscription.subscribe("events").await.unwrap();
        redis
            .run(|mut connection| async move {
                Cmd::publish("events", "login")
                    .query_async::<i64>(&mut connection)
                    .await
            })
            .await
            .unwrap();
        let message =
            tokio::time::timeout(Duration::from_secs(5), subscription.on_message().next())
                .await
                .expect("the message arrives")
                .unwrap();
        assert_eq!(message.get_payload::<String>().unwrap(), "login");

        // A certificate that the configured CA did not sign is refused.
        let untrusting = Redis::connect_lazy(&server.args("other-ca.crt")).unwrap();
        let refused = untrusting
            .run(|mut connection| async move {
                Cmd::get("greeting")
                    .query_async::<String>(&mut connection)
                    .await
            })
            .await;
        assert!(
            refused.is_err(),
            "a server the CA did not sign must be refused"
        );
    }

    #[test]
    fn a_ca_file_with_a_plaintext_url_is_refused_at_start() {
        let args = RedisArgs {
            redis_url: "redis://127.0.0.1:6379".into(),
            redis_cluster_nodes: Vec::new(),
            redis_key_prefix: String::new(),
            redis_timeout_ms: 500,
            redis_ca_file: Some("/dev/null".into()),
        };
        let error = Redis::connect_lazy(&args).expect_err("refused");
        assert!(error.to_string().contains("rediss://"), "{error}");
    }
}
