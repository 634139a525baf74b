//! Builds the admin service from its configuration: lazy connections (it
//! starts while Redis or PostgreSQL are still coming up, and answers degraded
//! without Redis), the threshold watch, the presence index keeper, the status
//! hub, the revocation check, and the gRPC server with health and reflection.

use std::future::Future;
use std::net::SocketAddr;

use presence_core::proto::admin::admin_service_server::AdminServiceServer;
use presence_core::redis_client::Redis;
use presence_core::revocation::RevocationCheck;
use presence_core::settings::ThresholdWatch;
use presence_core::{db, serving};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::transport::Server;

use crate::config::AdminConfig;
use crate::error::AdminError;
use crate::grpc::AdminHandler;
use crate::index_keeper::IndexKeeper;
use crate::listing::StatusReader;
use crate::page_token::PageTokens;
use crate::store::{ActivityReader, Directory};
use crate::watch::StatusHub;

pub struct Application {
    listener: TcpListener,
    handler: AdminHandler,
    stopping: watch::Sender<bool>,
}

impl Application {
    pub async fn build(config: AdminConfig) -> Result<Self, AdminError> {
        let pool = db::connect_lazy(&config.database)?;
        Self::build_with_pool(config, pool).await
    }

    /// Builds on an existing pool (tests hand in a fresh database per test).
    pub async fn build_with_pool(config: AdminConfig, pool: PgPool) -> Result<Self, AdminError> {
        let environment = config.common.environment;
        let verifier = config.jwt.verifier(environment)?;
        let page_token_key = config.page_token_key()?;
        if config.migrate_on_start {
            db::migrate(&pool).await?;
        }
        let redis = Redis::connect_lazy(&config.redis)?;
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
        let handler = AdminHandler {
            reader: StatusReader::new(directory, ActivityReader::new(redis), threshold),
            verifier,
            revocations,
            page_tokens: PageTokens::new(&page_token_key),
            hub,
            ping: config.ping,
            watch_buffer,
            stopping: stopping_receiver,
        };
        let listener = TcpListener::bind(config.listen_addr)
            .await
            .map_err(|error| {
                AdminError::Internal(format!("cannot listen on {}: {error}", config.listen_addr))
            })?;
        Ok(Self {
            listener,
            handler,
            stopping,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` completes; then open status streams end, new
    /// connections are refused, and in-flight calls finish.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> Result<(), AdminError> {
        let (_health, health_service) = serving::health::<AdminServiceServer<AdminHandler>>().await;
        let reflection = serving::reflection()?;
        tracing::info!(address = %self.local_addr(), "admin-service listening");
        let stopping = self.stopping;
        let shutdown = async move {
            shutdown.await;
            let _ = stopping.send(true);
        };
        Server::builder()
            .add_service(health_service)
            .add_service(reflection)
            .add_service(AdminServiceServer::new(self.handler))
            .serve_with_incoming_shutdown(serving::incoming(self.listener), shutdown)
            .await
            .map_err(|error| AdminError::Internal(error.to_string()))?;
        tracing::info!("admin-service stopped");
        Ok(())
    }
}
