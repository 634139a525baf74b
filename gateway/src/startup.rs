//! Builds the gateway from its configuration and serves it: gRPC-Web and the
//! web app on one listener (HTTP/1.1 and HTTP/2), metrics on another, health
//! with a `readiness` service that follows the upstreams, and a shutdown that
//! stops accepting, lets calls and streams finish, and at the drain deadline
//! ends the streams still open with UNAVAILABLE (their browsers reconnect).
//!
//! What stops it from starting is a `StartupError`, apart from the errors of
//! calls: each names what failed and keeps the cause as its source, and
//! `Report` prints the whole chain.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use http::{HeaderName, Method};
use presence_core::config::Environment;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic_health::ServingStatus;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::server::HealthReporter;
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, ServiceExt};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::admission::{CallRules, Limits};
use crate::config::GatewayConfig;
use crate::edge::{self, EdgeRules};
use crate::forward::Forwarder;
use crate::metrics::{self, Metrics};
use crate::rate_limit::RateLimiter;
use crate::routing::{HealthService, Upstreams};
use crate::server::{self, ConnectionGauges, ConnectionLimits};
use crate::service::MakeGatewayService;
use crate::static_files;
use crate::upstream::{Upstream, UpstreamSettings};

/// The health service name whose status says whether both upstreams answer
/// (the Kubernetes readiness probe asks for it; the empty name is liveness).
pub const READINESS: &str = "readiness";
const READINESS_EVERY: Duration = Duration::from_secs(2);
/// How long the streams ended at the drain deadline get to send their last frames.
const STREAMS_END_WITHIN: Duration = Duration::from_secs(2);

/// Why the gateway did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// A shared setting is missing, malformed or unsafe (the message says which).
    #[error(transparent)]
    Config(#[from] presence_core::Error),
    #[error("invalid configuration: {variable}: {reason}")]
    Setting {
        variable: &'static str,
        reason: String,
    },
    #[error("invalid configuration: PRESENCE_CORS_ORIGINS: {origin:?}")]
    Origin {
        origin: String,
        #[source]
        source: edge::OriginError,
    },
    #[error("cannot listen on {address}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the runtime")]
    Runtime(#[source] std::io::Error),
}

#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    metrics_listener: TcpListener,
    make_service: MakeGatewayService,
    metrics: Metrics,
    health: HealthReporter,
    connection_limits: ConnectionLimits,
    drain: Duration,
    /// Told when the drain is over, so the streams still open end.
    drain_over: watch::Sender<bool>,
}

impl Application {
    /// Builds the gateway from `config`: everything is checked and both
    /// listeners are bound before it serves (`run_until`).
    pub async fn build(config: GatewayConfig) -> Result<Self, StartupError> {
        config.jwt.check_key_files(false)?;
        let verifier = config.jwt.verifier(config.common.environment)?;
        check_trusted_proxies(&config)?;
        let metrics = Metrics::default();
        let upstreams = upstreams(&config, &metrics)?;
        let (health, health_service) = health_following(&upstreams).await;
        let (drain_over, drain_over_seen) = watch::channel(false);
        let forwarder = Forwarder::new(
            upstreams,
            health_service,
            verifier,
            limits(&config),
            metrics.clone(),
            call_rules(&config),
            drain_over_seen,
        );
        let rules = Arc::new(EdgeRules {
            allowed_origins: allowed_origins(&config.cors_origins)?,
            max_request_bytes: config.max_request_bytes,
        });
        let router = router(&config, forwarder.clone(), rules.clone())?;
        Ok(Self {
            listener: bind(config.listen_addr).await?,
            metrics_listener: bind(config.metrics_addr).await?,
            make_service: MakeGatewayService {
                forwarder,
                rules,
                router,
            },
            metrics,
            health,
            connection_limits: ConnectionLimits {
                header_read_timeout: config.header_read_timeout(),
                idle_timeout: config.idle_timeout(),
                max_connections: config.max_connections as usize,
            },
            drain: Duration::from_secs(config.drain_seconds),
            drain_over,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` completes, then drains for at most the drain deadline.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartupError> {
        tracing::info!(address = %self.local_addr(), metrics = %self.metrics_addr(), "gateway listening");
        let limits = self.connection_limits;
        let metrics = metrics_router(self.metrics.clone());
        tokio::spawn(server::serve(
            self.metrics_listener,
            move |_| metrics.clone(),
            limits,
            ConnectionGauges::default(),
            std::future::pending(),
        ));

        let stopping = std::sync::Arc::new(tokio::sync::Notify::new());
        let notify = stopping.clone();
        let health = self.health.clone();
        let signal = async move {
            shutdown.await;
            // Tell load balancers first, then stop accepting.
            health
                .set_service_status(READINESS, ServingStatus::NotServing)
                .await;
            notify.notify_one();
        };
        let make_service = self.make_service;
        let server = server::serve(
            self.listener,
            move |peer| make_service.for_connection(peer),
            limits,
            self.metrics.connections(),
            signal,
        );
        let mut server = std::pin::pin!(server);
        let drain = self.drain;
        tokio::select! {
            () = &mut server => {}
            () = async { stopping.notified().await; tokio::time::sleep(drain).await } => {
                tracing::warn!(seconds = drain.as_secs(), "drain deadline reached; ending the streams still open");
                self.drain_over.send_replace(true);
                // Their last frames leave, then their connections close.
                if tokio::time::timeout(STREAMS_END_WITHIN, &mut server).await.is_err() {
                    tracing::warn!("connections still open after the drain; closing them");
                }
            }
        }
        tracing::info!("gateway stopped");
        Ok(())
    }
}

/// The metrics listener's one route: `/metrics`, in Prometheus text.
fn metrics_router(metrics: Metrics) -> Router {
    Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = metrics.clone();
            async move {
                (
                    [(http::header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
                    metrics.render(),
                )
            }
        }),
    )
}

/// In production, trusting every address as a proxy would let any client
/// choose its own address (and so its rate-limit bucket): refused.
fn check_trusted_proxies(config: &GatewayConfig) -> Result<(), StartupError> {
    if config.common.environment == Environment::Production
        && config.trusted_proxies.trusts_everyone()
    {
        return Err(StartupError::Setting {
            variable: "PRESENCE_TRUSTED_PROXIES",
            reason: "a range of every address lets any client choose its own address; name \
                     the proxies' ranges"
                .to_owned(),
        });
    }
    Ok(())
}

/// The clients to the activity and admin services.
fn upstreams(config: &GatewayConfig, metrics: &Metrics) -> Result<Upstreams, StartupError> {
    let upstream = |url: &str, variable: &'static str, name: &'static str| {
        let settings = UpstreamSettings {
            connections: usize::from(config.upstream_connections),
            max_request_bytes: config.max_request_bytes,
            resolve_every: config.upstream_resolve_every(),
            endpoints_gauge: metrics.upstream_endpoints(name),
        };
        Upstream::new(url, settings).map_err(|reason| StartupError::Setting { variable, reason })
    };
    Ok(Upstreams {
        activity: upstream(&config.activity_url, "PRESENCE_ACTIVITY_URL", "activity")?,
        admin: upstream(&config.admin_url, "PRESENCE_ADMIN_URL", "admin")?,
    })
}

/// The gateway's own health service, its `readiness` not serving until a
/// background task has seen both upstreams serving (`follow_upstreams`).
async fn health_following(upstreams: &Upstreams) -> (HealthReporter, HealthService) {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status(READINESS, ServingStatus::NotServing)
        .await;
    tokio::spawn(follow_upstreams(
        health.clone(),
        upstreams.activity.clone(),
        upstreams.admin.clone(),
    ));
    (health, BoxCloneSyncService::new(health_service))
}

fn limits(config: &GatewayConfig) -> Limits {
    let window = Duration::from_secs(config.rate_window_seconds.max(1));
    Limits {
        ping_per_user: RateLimiter::new(config.rate_ping_per_user, window),
        ping_per_ip: RateLimiter::new(config.rate_ping_per_ip, window),
        login_per_ip: RateLimiter::new(config.rate_login_per_ip, window),
    }
}

fn call_rules(config: &GatewayConfig) -> CallRules {
    CallRules {
        default_deadline: config.upstream_timeout(),
        trusted_proxies: config.trusted_proxies.clone(),
        forwarded_header: config.forwarded_header,
    }
}

/// The slow path: CORS, then the edge guard, then gRPC (tonic-web in front
/// of the forwarder) or the web app, by content type.
fn router(
    config: &GatewayConfig,
    forwarder: Forwarder,
    rules: Arc<EdgeRules>,
) -> Result<Router, StartupError> {
    let grpc = ServiceBuilder::new()
        .map_response(|response: Response<tonic::body::Body>| response.map(Body::new))
        .layer(tonic_web::GrpcWebLayer::new())
        .service(forwarder);
    let grpc: BoxCloneSyncService<Request, Response, Infallible> = BoxCloneSyncService::new(grpc);
    let web = static_files::service(&config.web_dir);
    let dispatch = tower::service_fn(move |request: Request| {
        let (grpc, web) = (grpc.clone(), web.clone());
        async move {
            if edge::is_grpc(&request) {
                grpc.oneshot(request).await
            } else {
                web.oneshot(request).await
            }
        }
    });
    Ok(Router::new()
        .fallback_service(dispatch)
        .layer(axum::middleware::from_fn_with_state(
            rules.clone(),
            edge::guard,
        ))
        .layer(cors(rules)))
}

/// The origins of PRESENCE_CORS_ORIGINS (empty entries skipped).
fn allowed_origins(origins: &[String]) -> Result<Vec<edge::Origin>, StartupError> {
    origins
        .iter()
        .filter(|origin| !origin.is_empty())
        .map(|origin| {
            edge::Origin::parse(origin.as_bytes()).map_err(|source| StartupError::Origin {
                origin: origin.clone(),
                source,
            })
        })
        .collect()
}

/// CORS for the allowed origins, read as the edge guard reads them.
fn cors(rules: Arc<EdgeRules>) -> CorsLayer {
    let header = HeaderName::from_static;
    CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |origin, _| {
            rules.allows(origin)
        }))
        .allow_methods([Method::POST, Method::GET, Method::OPTIONS])
        .allow_headers([
            header("content-type"),
            header("authorization"),
            header("x-grpc-web"),
            header("x-user-agent"),
            header("grpc-timeout"),
            header("x-request-id"),
        ])
        .expose_headers([
            header("grpc-status"),
            header("grpc-message"),
            header("grpc-status-details-bin"),
            header("x-request-id"),
        ])
        .max_age(Duration::from_secs(3600))
}

async fn bind(address: SocketAddr) -> Result<TcpListener, StartupError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| StartupError::Bind { address, source })
}

/// Keeps the `readiness` health status in step with the upstreams.
async fn follow_upstreams(health: HealthReporter, activity: Upstream, admin: Upstream) {
    let mut tick = tokio::time::interval(READINESS_EVERY);
    loop {
        tick.tick().await;
        let (activity_ok, admin_ok) =
            tokio::join!(is_serving(activity.clone()), is_serving(admin.clone()));
        let status = if activity_ok && admin_ok {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        health.set_service_status(READINESS, status).await;
    }
}

/// Whether `upstream` reports itself serving, asked within a second.
async fn is_serving(upstream: Upstream) -> bool {
    let mut client = HealthClient::new(upstream);
    let check = client.check(HealthCheckRequest {
        service: String::new(),
    });
    matches!(
        tokio::time::timeout(Duration::from_secs(1), check).await,
        Ok(Ok(response)) if response.get_ref().status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    )
}
