//! The Redis connection both services use: multiplexed, reconnecting on its
//! own, and bounded in time, so a dead Redis turns into a prompt error rather
//! than a hanging call.

use std::future::Future;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::Error;
use crate::config::RedisArgs;
use crate::keys::RedisKeys;

#[derive(Clone)]
pub struct Redis {
    client: redis::Client,
    manager: ConnectionManager,
    keys: RedisKeys,
    timeout: Duration,
}

impl Redis {
    /// Connects on first use, so a service starts while Redis is down and
    /// recovers by itself when it comes back.
    pub fn connect_lazy(args: &RedisArgs) -> Result<Self, Error> {
        let client = redis::Client::open(args.redis_url.as_str())
            .map_err(|error| Error::InvalidConfig(format!("REDIS_URL: {error}")))?;
        let timeout = args.timeout();
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2));
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        Ok(Self {
            client,
            manager,
            keys: args.keys()?,
            timeout,
        })
    }

    pub fn keys(&self) -> &RedisKeys {
        &self.keys
    }

    /// The underlying client, for connections that cannot be shared (pub/sub).
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs `operation` on the shared connection, failing with
    /// `RedisUnavailable` if it errs or outlives the configured timeout.
    pub async fn run<T, F, Fut>(&self, operation: F) -> Result<T, Error>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        match tokio::time::timeout(self.timeout, operation(self.manager.clone())).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(Error::RedisUnavailable(format!(
                "no answer within {} ms",
                self.timeout.as_millis()
            ))),
        }
    }
}
