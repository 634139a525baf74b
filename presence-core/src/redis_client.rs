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

#[derive(Clone)]
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

/// A connection to the configured Redis, single or cluster. Cheap to clone:
/// clones share the underlying multiplexed connections.
#[derive(Clone)]
pub enum RedisConnection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
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
    failing_since: std::sync::Mutex<Option<Instant>>,
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
        let mut failing_since = self
            .failing_since
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
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
        if seeds.is_empty() {
            let client = open_client(&args.redis_url, "REDIS_URL")?;
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
        let client = ClusterClient::builder(seeds.iter().copied())
            .connection_timeout(timeout)
            .response_timeout(timeout)
            .retries(RETRIES)
            .max_retry_wait(timeout.as_millis() as u64)
            .build()
            .map_err(|error| {
                Error::InvalidConfig(format!("PRESENCE_REDIS_CLUSTER_NODES: {error}"))
            })?;
        let pubsub_nodes = seeds
            .iter()
            .map(|seed| open_client(seed, "PRESENCE_REDIS_CLUSTER_NODES"))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            connector: Connector::Cluster(Arc::new(LazyCluster {
                client,
                state: Mutex::default(),
                failing_since: std::sync::Mutex::default(),
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
    /// `RedisUnavailable` if it errs or outlives the configured timeout
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
            Err(_) => Err(Error::RedisUnavailable(format!(
                "no answer within {} ms",
                self.timeout.as_millis()
            ))),
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

fn open_client(url: &str, variable: &str) -> Result<redis::Client, Error> {
    redis::Client::open(url).map_err(|error| Error::InvalidConfig(format!("{variable}: {error}")))
}
