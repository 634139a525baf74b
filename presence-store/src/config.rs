//! The store settings both services read from the environment (clap `env`).
//! URLs may carry passwords, so they are `SecretString`s: `Debug` (and so
//! every log line and test failure) prints them redacted.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use secrecy::{ExposeSecret, SecretString};

use crate::Error;
use crate::keys::RedisKeys;

#[derive(Args, Clone, Debug)]
pub struct DatabaseArgs {
    /// PostgreSQL URL (users, login_history, settings).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/presence",
        hide_env_values = true
    )]
    pub database_url: SecretString,
    /// Maximum pooled PostgreSQL connections per process.
    #[arg(long, env = "PRESENCE_DATABASE_MAX_CONNECTIONS", default_value_t = 10)]
    pub database_max_connections: u32,
    /// Milliseconds a query waits for a connection before the call fails with UNAVAILABLE.
    #[arg(long, env = "PRESENCE_DATABASE_TIMEOUT_MS", default_value_t = 2000)]
    pub database_timeout_ms: u64,
    /// Milliseconds PostgreSQL lets one statement run (waiting for locks
    /// included) before cancelling it; the call then fails with UNAVAILABLE.
    /// Set on every pooled connection; migrations run without it.
    #[arg(long, env = "PRESENCE_DATABASE_STATEMENT_TIMEOUT_MS", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub database_statement_timeout_ms: u64,
}

#[derive(Args, Clone, Debug)]
pub struct RedisArgs {
    /// Redis URL (activity timestamps, logout markers, revoked tokens).
    #[arg(
        long,
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        hide_env_values = true
    )]
    pub redis_url: SecretString,
    /// Redis Cluster seed nodes, comma-separated `redis://` URLs (a few masters
    /// suffice; the rest of the cluster is discovered). When set, Redis Cluster
    /// is used instead of REDIS_URL.
    #[arg(
        long,
        env = "PRESENCE_REDIS_CLUSTER_NODES",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub redis_cluster_nodes: Vec<SecretString>,
    /// Prefix put before every Redis key (no braces), to share one Redis between deployments.
    #[arg(long, env = "PRESENCE_REDIS_KEY_PREFIX", default_value = "")]
    pub redis_key_prefix: String,
    /// Milliseconds a Redis connection attempt or command may take before the call fails.
    #[arg(long, env = "PRESENCE_REDIS_TIMEOUT_MS", default_value_t = 500)]
    pub redis_timeout_ms: u64,
    /// PEM file of the certificate authorities trusted for `rediss://` (TLS)
    /// URLs, instead of the system's; for a Redis whose certificate a private
    /// CA signed. Without it, `rediss://` trusts the system's CAs.
    #[arg(long, env = "PRESENCE_REDIS_CA_FILE")]
    pub redis_ca_file: Option<PathBuf>,
}

impl RedisArgs {
    /// The cluster seed nodes, if Redis Cluster is configured (blank entries,
    /// such as a trailing comma's, are ignored).
    pub fn cluster_nodes(&self) -> Vec<&str> {
        self.redis_cluster_nodes
            .iter()
            .map(|node| node.expose_secret().trim())
            .filter(|node| !node.is_empty())
            .collect()
    }

    pub fn is_cluster(&self) -> bool {
        !self.cluster_nodes().is_empty()
    }

    pub fn keys(&self) -> Result<RedisKeys, Error> {
        let prefix = self.redis_key_prefix.clone();
        Ok(if self.is_cluster() {
            RedisKeys::for_cluster(prefix)
        } else {
            RedisKeys::new(prefix)
        }?)
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.redis_timeout_ms)
    }

    /// The certificate authorities of `PRESENCE_REDIS_CA_FILE`, if set.
    pub fn ca_certificates(&self) -> Result<Option<Vec<u8>>, Error> {
        let Some(path) = &self.redis_ca_file else {
            return Ok(None);
        };
        std::fs::read(path)
            .map(Some)
            .map_err(|source| Error::UnreadableCaFile {
                path: path.clone(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct StoreOnly {
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        redis: RedisArgs,
    }

    fn store_args(flags: &[&str]) -> StoreOnly {
        StoreOnly::parse_from(std::iter::once("test").chain(flags.iter().copied()))
    }

    fn redis_args(flags: &[&str]) -> RedisArgs {
        store_args(flags).redis
    }

    #[test]
    fn cluster_nodes_select_redis_cluster_and_its_sharded_index() {
        let single = redis_args(&[]);
        assert!(!single.is_cluster());
        assert_eq!(single.keys().unwrap().presence_index_shards().len(), 1);

        let cluster = redis_args(&["--redis-cluster-nodes=redis://a:7000, redis://b:7001,"]);
        assert_eq!(
            cluster.cluster_nodes(),
            ["redis://a:7000", "redis://b:7001"]
        );
        assert_eq!(
            cluster.keys().unwrap().presence_index_shards().len(),
            usize::from(crate::keys::CLUSTER_INDEX_SHARDS)
        );
    }

    #[test]
    fn cluster_node_passwords_never_reach_the_log() {
        let args =
            redis_args(&["--redis-cluster-nodes=redis://:s3cret@a:7000,redis://u:s3cret@b:7001"]);
        let printed = format!("{args:?}");
        assert!(!printed.contains("s3cret"), "{printed}");
        assert!(printed.contains("REDACTED"), "{printed}");
    }

    #[test]
    fn passwords_with_at_signs_or_in_the_query_never_reach_the_log() {
        for (url, secret) in [
            ("postgres://app:hunter2@db:5432/presence", "hunter2"),
            ("postgres://app:p@ss@db:5432/presence", "ss"),
            ("postgres://app:p%40ss:w%2Frd@db/presence", "ss"),
            (
                "postgres://db/presence?user=app&password=hunter2",
                "hunter2",
            ),
            (
                "postgres://db/presence?sslmode=require&sslpassword=hunter2",
                "hunter2",
            ),
        ] {
            let printed = format!("{:?}", store_args(&[&format!("--database-url={url}")]));
            assert!(!printed.contains(secret), "{url} printed as {printed}");
        }
        for (url, secret) in [
            ("rediss://:hunter2@cache:6380/0", "hunter2"),
            ("redis://cache:6379/?token=hunter2", "hunter2"),
        ] {
            let printed = format!("{:?}", store_args(&[&format!("--redis-url={url}")]));
            assert!(!printed.contains(secret), "{url} printed as {printed}");
        }
    }
}
