//! Builds the admin service from its configuration: lazy connections (it
//! starts while Redis or PostgreSQL are still coming up, and answers degraded
//! without Redis), the threshold watch, the presence index keeper, the status
//! hub, the revocation check, and the gRPC server with health and reflection.
//!
//! The server cuts unary calls at the call timeout (streams run on) and
//! drops connections whose client vanished (HTTP/2 keepalive). Its shutdown
//! is bounded: status streams end at once, in-flight calls get the drain
//! deadline, and then the connections still open are cut.
//!
//! What stops it from starting (or ends its serving) is a `StartupError`,
//! apart from the errors of calls: each names what failed and keeps the cause
//! as its source, and `Report` prints the whole chain.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use presence_core::serving;
use presence_proto::admin::admin_service_server::AdminServiceServer;
use presence_store::db;
use presence_store::redis_client::Redis;
use presence_store::revocation::RevocationCheck;
use presence_store::settings::ThresholdWatch;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;

use crate::config::AdminConfig;
use crate::connections;
use crate::grpc::AdminHandler;
use crate::index_keeper::IndexKeeper;
use crate::listing::StatusReader;
use crate::online_history::{self, RecorderSettings};
use crate::page_token::PageTokens;
use crate::store::{ActivityReader, Directory};
use crate::watch::{StatusHub, WatcherSlots};

/// How often an idle connection is pinged, and how long the answer may take:
/// a client that vanished without closing its connection (and its streams'
/// places) is dropped within about a minute.
const KEEPALIVE_EVERY: Duration = Duration::from_secs(30);
const KEEPALIVE_ANSWER_WITHIN: Duration = Duration::from_secs(20);
/// How long the connections cut at the drain deadline get to close.
const CLOSE_WITHIN: Duration = Duration::from_secs(2);

/// Why the service did not start, stopped serving, or `migrate` failed.
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
    handler: AdminHandler,
    stopping: watch::Sender<bool>,
    call_timeout: Duration,
    drain: Duration,
}

impl Application {
    pub async fn build(config: AdminConfig) -> Result<Self, StartupError> {
        let pool = db::connect_lazy(&config.database)?;
        Self::build_with_pool(config, pool).await
    }

    /// Builds on an existing pool (tests hand in a fresh database per test).
    pub async fn build_with_pool(config: AdminConfig, pool: PgPool) -> Result<Self, StartupError> {
        let environment = config.common.environment;
        config.jwt.check_key_files(false)?;
        let verifier = config.jwt.verifier(environment)?;
        let page_token_key = config.page_token_key()?;
        if config.migrate_on_start {
            db::check_reachable(&pool).await?;
            db::migrate(&pool).await.map_err(StartupError::Migrations)?;
        }
        let redis = Redis::connect_lazy(&config.redis).map_err(StartupError::Redis)?;
        let threshold = ThresholdWatch::start(pool.clone()).await;
        let revocations = RevocationCheck::new(redis.clone(), pool.clone());
        let directory = Directory::new(pool);
        IndexKeeper::start(
            directory.clone(),
            ActivityReader::new(redis.clone()),
            threshold.clone(),
        );
        let watch_buffer = config.watch_buffer as usize;
        let hub = StatusHub::start(
            redis.clone(),
            directory.clone(),
            threshold.clone(),
            watch_buffer,
        );
        let (stopping, stopping_receiver) = watch::channel(false);
        let (call_timeout, drain) = (config.call_timeout(), config.drain());
        let reader = StatusReader::new(directory, ActivityReader::new(redis), threshold);
        let handler = AdminHandler {
            reader,
            verifier,
            revocations,
            page_tokens: PageTokens::new(&page_token_key),
            hub,
            ping: config.ping,
            watch_buffer,
            stopping: stopping_receiver,
            watchers: WatcherSlots::new(
                config.max_watchers as usize,
                config.max_watchers_per_user as usize,
            ),
        };
        let listener = TcpListener::bind(config.listen_addr)
            .await
            .map_err(|source| StartupError::Bind {
                address: config.listen_addr,
                source,
            })?;
        online_history::start_recorder(
            handler.reader.directory.pool().clone(),
            handler.reader.clone(),
            RecorderSettings {
                every: Duration::from_secs(config.online_sample_seconds),
                retention: Duration::from_secs(
                    u64::from(config.online_history_retention_days) * 86_400,
                ),
            },
            listener.local_addr().map_err(|source| StartupError::Bind {
                address: config.listen_addr,
                source,
            })?,
            handler.stopping.clone(),
        );
        Ok(Self {
            listener,
            handler,
            stopping,
            call_timeout,
            drain,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` completes; then open status streams end, new
    /// connections are refused, and in-flight calls finish within the drain
    /// deadline, after which the connections still open are cut.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> Result<(), StartupError> {
        let (_health, health_service) = serving::health::<AdminServiceServer<AdminHandler>>().await;
        let reflection = serving::reflection()?;
        tracing::info!(address = %self.local_addr(), "admin-service listening");
        let cut = CancellationToken::new();
        // Cancels when dropped with this function, so the connections left
        // are cut even if the server future is abandoned.
        let _cut_on_return = cut.clone().drop_guard();
        let incoming = connections::severable(serving::incoming(self.listener), cut.clone());
        let (begin_drain, drain_begun) = oneshot::channel::<()>();
        let server = Server::builder()
            .timeout(self.call_timeout)
            .http2_keepalive_interval(Some(KEEPALIVE_EVERY))
            .http2_keepalive_timeout(Some(KEEPALIVE_ANSWER_WITHIN))
            .add_service(health_service)
            .add_service(reflection)
            .add_service(AdminServiceServer::new(self.handler))
            .serve_with_incoming_shutdown(incoming, async {
                let _ = drain_begun.await;
            });
        tokio::pin!(server);
        tokio::pin!(shutdown);
        let served = tokio::select! {
            served = &mut server => served,
            () = &mut shutdown => {
                tracing::info!(drain_seconds = self.drain.as_secs(), "stopping: status streams end, in-flight calls may finish");
                let _ = self.stopping.send(true);
                let _ = begin_drain.send(());
                match tokio::time::timeout(self.drain, &mut server).await {
                    Ok(served) => served,
                    Err(_) => {
                        tracing::warn!("drain deadline reached; closing the connections still open");
                        cut.cancel();
                        tokio::time::timeout(CLOSE_WITHIN, &mut server)
                            .await
                            .unwrap_or(Ok(()))
                    }
                }
            }
        };
        served.map_err(StartupError::Serve)?;
        tracing::info!("admin-service stopped");
        Ok(())
    }
}
