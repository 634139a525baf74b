//! The generic forwarding path: every gRPC call (already translated from
//! gRPC-Web by `tonic_web::GrpcWebLayer`) is routed by its service name to an
//! upstream channel, after the edge rules: the method allowlist, rate limits
//! and a deadline. Adding a method to a browser-facing service needs no code
//! here; internal methods are refused before they reach upstream.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use http::{HeaderValue, Request, Response};
use presence_core::token::TokenVerifier;
use tonic::body::Body;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tower::{Service, ServiceExt};

use crate::metrics::{CallRecord, Metrics, ObservedBody, grpc_status};
use crate::rate_limit::RateLimiter;

pub const ACTIVITY_SERVICE: &str = "presence.activity.v1.ActivityService";
pub const ADMIN_SERVICE: &str = "presence.admin.v1.AdminService";
pub const HEALTH_SERVICE: &str = "grpc.health.v1.Health";

/// Methods for back-end callers only: never forwarded from the edge.
const INTERNAL_METHODS: [&str; 2] = [
    "/presence.activity.v1.ActivityService/RecordActivity",
    "/presence.admin.v1.AdminService/BatchGetUserStatuses",
];
/// Methods whose answer is a stream: their deadline covers only the start.
const STREAMING_METHODS: [&str; 1] = ["/presence.admin.v1.AdminService/WatchUserStatuses"];
const PING: &str = "/presence.activity.v1.ActivityService/Ping";
const LOGIN: &str = "/presence.activity.v1.ActivityService/Login";

/// The gateway's own gRPC health service.
pub type HealthService =
    tower::util::BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>;

pub struct Limits {
    pub ping_per_user: RateLimiter,
    pub ping_per_ip: RateLimiter,
    pub login_per_ip: RateLimiter,
}

/// Several HTTP/2 connections to one upstream, used in turn, so one
/// connection's single writer does not cap the gateway's throughput.
pub struct Upstream {
    channels: Vec<Channel>,
    next: AtomicUsize,
}

impl Upstream {
    pub fn new(channels: Vec<Channel>) -> Self {
        assert!(
            !channels.is_empty(),
            "an upstream needs at least one connection"
        );
        Self {
            channels,
            next: AtomicUsize::new(0),
        }
    }

    fn pick(&self) -> Channel {
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        self.channels[turn % self.channels.len()].clone()
    }

    /// One of the connections, for health checks.
    pub fn any(&self) -> Channel {
        self.channels[0].clone()
    }
}

struct State {
    activity: Upstream,
    admin: Upstream,
    health: HealthService,
    verifier: TokenVerifier,
    limits: Limits,
    metrics: Metrics,
    default_deadline: Duration,
}

#[derive(Clone)]
pub struct Forwarder {
    state: Arc<State>,
}

impl Forwarder {
    pub fn new(
        activity: Upstream,
        admin: Upstream,
        health: HealthService,
        verifier: TokenVerifier,
        limits: Limits,
        metrics: Metrics,
        default_deadline: Duration,
    ) -> Self {
        Self {
            state: Arc::new(State {
                activity,
                admin,
                health,
                verifier,
                limits,
                metrics,
                default_deadline,
            }),
        }
    }
}

/// Where a path goes.
enum Route {
    Upstream(Channel),
    Health,
    Refused(Status),
}

impl State {
    fn route(&self, path: &str) -> Route {
        let service = path
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or_default();
        if INTERNAL_METHODS.contains(&path) {
            return Route::Refused(Status::permission_denied(
                "this method is not available through the gateway",
            ));
        }
        match service {
            ACTIVITY_SERVICE => Route::Upstream(self.activity.pick()),
            ADMIN_SERVICE => Route::Upstream(self.admin.pick()),
            HEALTH_SERVICE => Route::Health,
            _ => Route::Refused(Status::unimplemented("no such service behind the gateway")),
        }
    }

    /// The rate limits of `path` for this caller; an error when one is spent.
    fn check_rate<B>(
        &self,
        path: &str,
        request: &Request<B>,
        client: Option<IpAddr>,
    ) -> Result<(), Status> {
        let ip = client.map(|ip| ip.to_string()).unwrap_or_default();
        let exhausted =
            || Status::resource_exhausted("too many requests; slow down and retry shortly");
        match path {
            PING => {
                if !self.limits.ping_per_ip.allow(&ip) {
                    return Err(exhausted());
                }
                // Keyed by the verified user; an unverifiable token is refused
                // upstream anyway and only spends its address's allowance.
                let caller = request
                    .headers()
                    .get(http::header::AUTHORIZATION)
                    .and_then(|value| value.to_str().ok())
                    .and_then(presence_core::auth::bearer_token)
                    .and_then(|token| self.verifier.verify(token).ok());
                if let Some(caller) = caller
                    && !self.limits.ping_per_user.allow(&caller.user_id.to_string())
                {
                    return Err(exhausted());
                }
                Ok(())
            }
            LOGIN if !self.limits.login_per_ip.allow(&ip) => Err(exhausted()),
            _ => Ok(()),
        }
    }
}

/// The deadline a client asked for in `grpc-timeout`, if any.
fn requested_deadline(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
    let (amount, unit) = value.split_at(value.len().checked_sub(1)?);
    let amount: u64 = amount.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

fn status_response(status: Status, record: CallRecord) -> Response<Body> {
    record.finish(status.code() as i32);
    status.into_http()
}

impl Service<Request<Body>> for Forwarder {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let state = self.state.clone();
        Box::pin(async move {
            let path = request.uri().path().to_owned();
            let client = request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0.ip());
            let request_id = request
                .headers()
                .get("x-request-id")
                .and_then(|value| value.to_str().ok())
                .filter(|id| id.len() <= 128)
                .map(str::to_owned)
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            let record = CallRecord {
                metrics: state.metrics.clone(),
                method: path.clone(),
                request_id: request_id.clone(),
                client: client.map(|ip| ip.to_string()).unwrap_or_default(),
                started: Instant::now(),
            };

            let channel = match state.route(&path) {
                Route::Refused(status) => return Ok(status_response(status, record)),
                Route::Health => {
                    let response = state.health.clone().oneshot(request).await?;
                    record.finish(grpc_status(response.headers()).unwrap_or(0));
                    return Ok(response);
                }
                Route::Upstream(channel) => channel,
            };
            if let Err(status) = state.check_rate(&path, &request, client) {
                return Ok(status_response(status, record));
            }

            let streaming = STREAMING_METHODS.contains(&path.as_str());
            let call_started = tokio::time::Instant::now();
            let client_deadline = requested_deadline(request.headers());
            let deadline = match client_deadline {
                Some(requested) if streaming => requested,
                Some(requested) => requested.min(state.default_deadline),
                None => state.default_deadline,
            };
            let headers = request.headers_mut();
            // The client's address as the gateway saw it; whatever the client
            // claimed is dropped.
            headers.remove("x-forwarded-for");
            if let Some(ip) = client
                && let Ok(value) = HeaderValue::from_str(&ip.to_string())
            {
                headers.insert("x-forwarded-for", value);
            }
            if let Ok(value) = HeaderValue::from_str(&request_id) {
                headers.insert("x-request-id", value);
            }
            if !streaming || headers.contains_key("grpc-timeout") {
                let millis = deadline.as_millis().clamp(1, 99_999_999);
                if let Ok(value) = HeaderValue::from_str(&format!("{millis}m")) {
                    headers.insert("grpc-timeout", value);
                }
            }

            let upstream = channel.oneshot(request);
            let response = match tokio::time::timeout(deadline, upstream).await {
                Ok(Ok(response)) => response,
                Ok(Err(error)) => {
                    tracing::warn!(error = ?error, method = %path, "upstream unreachable");
                    return Ok(status_response(
                        Status::unavailable("the service is unreachable; retry shortly"),
                        record,
                    ));
                }
                Err(_) => {
                    return Ok(status_response(
                        Status::new(Code::DeadlineExceeded, "the service did not answer in time"),
                        record,
                    ));
                }
            };
            if let Some(code) = grpc_status(response.headers()) {
                // A trailers-only answer: the call is over.
                record.finish(code);
                return Ok(response);
            }
            // Upstream bounds only the start of a stream; the client's
            // deadline ends it here.
            let stream_deadline =
                (streaming && client_deadline.is_some()).then(|| call_started + deadline);
            Ok(response.map(|body| {
                let body = DeadlineBody::new(body, stream_deadline);
                Body::new(ObservedBody::new(body, record))
            }))
        })
    }
}

/// A response body that ends with DEADLINE_EXCEEDED trailers at `deadline`.
struct DeadlineBody {
    inner: Body,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    expired: bool,
}

impl DeadlineBody {
    fn new(inner: Body, deadline: Option<tokio::time::Instant>) -> Self {
        Self {
            inner,
            deadline: deadline.map(|at| Box::pin(tokio::time::sleep_until(at))),
            expired: false,
        }
    }
}

impl http_body::Body for DeadlineBody {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, Status>>> {
        if self.expired {
            return Poll::Ready(None);
        }
        if let Some(deadline) = self.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            self.expired = true;
            let mut trailers = http::HeaderMap::new();
            trailers.insert(
                "grpc-status",
                HeaderValue::from(Code::DeadlineExceeded as i32),
            );
            trailers.insert(
                "grpc-message",
                HeaderValue::from_static("deadline exceeded"),
            );
            return Poll::Ready(Some(Ok(http_body::Frame::trailers(trailers))));
        }
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.expired || self.inner.is_end_stream()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_are_read_in_every_unit() {
        let parse = |value: &str| {
            let mut headers = http::HeaderMap::new();
            headers.insert("grpc-timeout", value.parse().unwrap());
            requested_deadline(&headers)
        };
        assert_eq!(parse("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse("150m"), Some(Duration::from_millis(150)));
        assert_eq!(parse("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse("x"), None);
        assert_eq!(parse("S"), None);
    }
}
