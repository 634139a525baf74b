//! Builds the activity service from its configuration: connections (lazy, so
//! the process starts while Redis or PostgreSQL are still coming up), the
//! threshold watch, the keeper of the revocations in Redis, the gRPC server
//! with health and reflection, bound to its address (port 0 in tests), and the
//! login_history purge that runs beside it.
//!
//! What stops it from starting (or ends its serving) is a `StartupError`,
//! apart from the errors of calls: each names what failed and keeps the cause
//! as its source, and `Report` prints the whole chain.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use presence_core::serving;
use presence_proto::activity::activity_service_server::ActivityServiceServer;
use presence_store::db;
use presence_store::redis_client::Redis;
use presence_store::settings::ThresholdWatch;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tonic::transport::Server;

use crate::config::ActivityConfig;
use crate::error::ActivityError;
use crate::grpc::{ActivityHandler, MAX_PENDING_LOGOUT_ROWS};
use crate::retention::Purge;
use crate::revocations::RevocationKeeper;
use crate::store::{Accounts, ActivityStore};
use crate::throttle::LoginThrottle;

/// No call may run longer than this, whatever its client asked.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// At shutdown, the purge is given this long to finish its current batch.
const PURGE_STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the service did not start, stopped serving, or a command failed.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// A setting is missing, malformed or unsafe (the message says which).
    #[error(transparent)]
    Config(presence_core::Error),
    /// A PostgreSQL or Redis setting is refused (the message says which).
    #[error(transparent)]
    Store(presence_store::Error),
    #[error("database migrations failed")]
    Migrations(#[source] presence_store::Error),
    #[error("cannot set up the Redis client (REDIS_URL)")]
    Redis(#[source] presence_store::Error),
    #[error("cannot listen on {address}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("serving failed")]
    Serve(#[source] tonic::transport::Error),
    #[error("cannot read the password from standard input")]
    ReadPassword(#[source] std::io::Error),
    #[error("no enabled service account named {0:?}")]
    NoServiceAccount(String),
    /// A command's work failed the way a call can (a refused password, an
    /// unreachable database, ...).
    #[error(transparent)]
    Command(#[from] ActivityError),
}

impl From<presence_store::Error> for StartupError {
    fn from(error: presence_store::Error) -> Self {
        StartupError::Store(error)
    }
}

impl From<presence_core::Error> for StartupError {
    fn from(error: presence_core::Error) -> Self {
        StartupError::Config(error)
    }
}

#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    handler: ActivityHandler,
    purge: Purge,
}

impl Application {
    pub async fn build(config: ActivityConfig) -> Result<Self, StartupError> {
        let pool = db::connect_lazy(&config.database)?;
        Self::build_with_pool(config, pool).await
    }

    /// Builds on an existing pool (tests hand in a fresh database per test).
    pub async fn build_with_pool(
        config: ActivityConfig,
        pool: PgPool,
    ) -> Result<Self, StartupError> {
        config.warn_about_replaced_settings();
        let environment = config.common.environment;
        config.jwt.check_key_files(true)?;
        let verifier = config.jwt.verifier(environment)?;
        if config.token_ttl_seconds > config.jwt.jwt_max_lifetime_seconds {
            return Err(presence_core::Error::InvalidConfig(format!(
                "PRESENCE_TOKEN_TTL_SECONDS ({}) exceeds PRESENCE_JWT_MAX_LIFETIME_SECONDS ({})",
                config.token_ttl_seconds, config.jwt.jwt_max_lifetime_seconds
            ))
            .into());
        }
        let issuer = config.jwt.issuer(environment, config.token_ttl_seconds)?;
        if config.migrate_on_start {
            db::check_reachable(&pool).await?;
            db::migrate(&pool).await.map_err(StartupError::Migrations)?;
        }
        let redis = Redis::connect_lazy(&config.redis).map_err(StartupError::Redis)?;
        let threshold = ThresholdWatch::start(pool.clone()).await;
        let throttle = LoginThrottle::new(pool.clone(), config.throttle());
        let purge = Purge::new(pool.clone(), throttle.clone(), config.retention());
        let longest_lifetime = config
            .jwt
            .jwt_max_lifetime_seconds
            .max(config.jwt.jwt_max_service_lifetime_seconds);
        RevocationKeeper::start(pool.clone(), redis.clone(), longest_lifetime).await;
        let handler = ActivityHandler {
            store: ActivityStore::new(redis),
            accounts: Accounts::new(pool),
            verifier,
            issuer,
            threshold,
            ping_interval_seconds: config.ping.ping_interval_seconds,
            throttle,
            password_checks: config.password_checks(),
            trusted_proxies: config.trusted_proxies.clone(),
            pending_logout_rows: Arc::new(Semaphore::new(MAX_PENDING_LOGOUT_ROWS)),
            login_history_retention_days: config.login_history_retention_days,
        };
        let listener = TcpListener::bind(config.listen_addr)
            .await
            .map_err(|source| StartupError::Bind {
                address: config.listen_addr,
                source,
            })?;
        Ok(Self {
            listener,
            handler,
            purge,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` completes, then stops accepting, lets
    /// in-flight calls finish and stops the purge.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> Result<(), StartupError> {
        let (_health, health_service) =
            serving::health::<ActivityServiceServer<ActivityHandler>>().await;
        let reflection = serving::reflection()?;
        tracing::info!(address = %self.local_addr(), "activity-service listening");
        let purge = self.purge.start();
        let served = Server::builder()
            .timeout(CALL_TIMEOUT)
            .add_service(health_service)
            .add_service(reflection)
            .add_service(ActivityServiceServer::new(self.handler))
            .serve_with_incoming_shutdown(serving::incoming(self.listener), shutdown)
            .await
            .map_err(StartupError::Serve);
        purge.stop(PURGE_STOP_TIMEOUT).await;
        served?;
        tracing::info!("activity-service stopped");
        Ok(())
    }
}
