//! The forwarder: the slow path's tower `Service` (a gRPC call translated
//! from gRPC-Web by `tonic_web::GrpcWebLayer`, or native gRPC over HTTP/2),
//! and the forwarding both paths share. Each call is admitted by the edge
//! rules (`admission`), sent where its route says (`routing`) within its
//! deadline, and its response recorded when it ends; a response stream also
//! ends at the client's deadline or the drain's end (`deadline`).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use http_body_util::BodyExt;
use presence_core::token::TokenVerifier;
use tokio::sync::watch;
use tonic::body::Body;
use tonic::{Code, Status};
use tower::{Service, ServiceExt};

use crate::admission::{Admission, Admitted, CallRules, Client, Limits, refuse};
use crate::contract;
use crate::deadline::DeadlineBody;
use crate::error::GatewayError;
use crate::metrics::{CallRecord, Metrics, ObservedBody, grpc_status};
use crate::routing::{HealthService, Route, Routes, Upstreams};
use crate::upstream::WholeResponse;

/// The largest unary response the gateway reads whole before sending it on.
const MAX_UNARY_RESPONSE_BYTES: usize = 16 * 1024 * 1024;
/// The largest response of the gateway's own health service.
const MAX_HEALTH_RESPONSE_BYTES: usize = 64 * 1024;

#[derive(Debug)]
struct State {
    admission: Admission,
    routes: Routes,
    /// Becomes true when the shutdown's drain is over: open streams end.
    drain_over: watch::Receiver<bool>,
}

#[derive(Debug, Clone)]
pub struct Forwarder {
    state: Arc<State>,
}

impl Forwarder {
    pub fn new(
        upstreams: Upstreams,
        health: HealthService,
        verifier: TokenVerifier,
        limits: Limits,
        metrics: Metrics,
        rules: CallRules,
        drain_over: watch::Receiver<bool>,
    ) -> Self {
        Self {
            state: Arc::new(State {
                admission: Admission::new(verifier, limits, metrics, rules),
                routes: Routes { upstreams, health },
                drain_over,
            }),
        }
    }

    /// Whether the response of `path` is a stream (its deadline covers only
    /// the start, and it cannot be read whole).
    pub fn is_streaming(&self, path: &str) -> bool {
        contract::method(path).is_some_and(|method| method.streaming)
    }

    /// Applies the edge rules to a call of `path` (`Admission::admit`).
    pub fn admit(
        &self,
        path: &str,
        headers: &mut http::HeaderMap,
        client: &Client,
    ) -> Result<Admitted<'_>, Status> {
        self.state
            .admission
            .admit(path, headers, client, &self.state.routes)
    }

    /// One call on the slow path, from its request to its response.
    async fn slow_path(self, mut request: Request<Body>) -> Response<Body> {
        // `service::GatewayService` gives every request its client.
        let Some(client) = request.extensions().get::<Client>().cloned() else {
            tracing::error!("a request reached the forwarder without its client");
            return Status::internal("the gateway is misconfigured").into_http();
        };
        let path = request.uri().path().to_owned();
        let admitted = match self.admit(&path, request.headers_mut(), &client) {
            Ok(admitted) => admitted,
            Err(status) => return status.into_http(),
        };
        let (stream_ends, streaming) = (admitted.stream_ends, admitted.streaming);
        let route = admitted.route;
        match within_deadline(admitted, send(route, request)).await {
            Ok((response, record)) => self.wrap_response(response, record, stream_ends, streaming),
            Err(status) => status.into_http(),
        }
    }

    /// A response on its way back: recorded when it ends, and a stream ended
    /// at the client's deadline or when the gateway's drain is over.
    fn wrap_response(
        &self,
        response: Response<Body>,
        record: CallRecord,
        stream_ends: Option<tokio::time::Instant>,
        streaming: bool,
    ) -> Response<Body> {
        if let Some(code) = grpc_status(response.headers()) {
            // A trailers-only response: the call is over.
            record.finish(code);
            return response;
        }
        let drain_over = streaming.then(|| self.state.drain_over.clone());
        response.map(|body| {
            let body = DeadlineBody::new(body, stream_ends, drain_over);
            Body::new(ObservedBody::new(body, record))
        })
    }
}

impl Service<Request<Body>> for Forwarder {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let forwarder = self.clone();
        Box::pin(async move { Ok(forwarder.slow_path(request).await) })
    }
}

/// Sends a call where `route` says; the response's body follows, its errors
/// as the status each becomes.
async fn send(route: Route<'_>, request: Request<Body>) -> Result<Response<Body>, GatewayError> {
    match route {
        Route::Upstream(upstream) => {
            let response = upstream.call(request).await?;
            Ok(response
                .map(|body| Body::new(body.map_err(|error| GatewayError::from(error).status()))))
        }
        Route::Health(health) => match health.clone().oneshot(request).await {
            Ok(response) => Ok(response),
            Err(never) => match never {},
        },
    }
}

/// Sends a unary call where its route says and reads its whole response,
/// all within its deadline (the fast path).
pub async fn exchange<B>(
    admitted: Admitted<'_>,
    request: Request<B>,
) -> Result<(WholeResponse, CallRecord), Status>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let route = admitted.route;
    within_deadline(admitted, async move {
        match route {
            Route::Upstream(upstream) => {
                let response = upstream.call(request).await?;
                WholeResponse::read(response, MAX_UNARY_RESPONSE_BYTES).await
            }
            // Rare here: boxed, so that the upstream call's future stays small.
            Route::Health(_) => {
                let response = Box::pin(send(route, request.map(Body::new))).await?;
                WholeResponse::read(response, MAX_HEALTH_RESPONSE_BYTES).await
            }
        }
    })
    .await
}

/// Runs `work` (the call, up to its response's headers at least) within the
/// call's deadline; a failure is recorded and becomes a status.
async fn within_deadline<T>(
    admitted: Admitted<'_>,
    work: impl Future<Output = Result<T, GatewayError>>,
) -> Result<(T, CallRecord), Status> {
    let Admitted {
        route,
        record,
        deadline,
        ..
    } = admitted;
    match tokio::time::timeout(deadline, work).await {
        Ok(Ok(response)) => Ok((response, record)),
        Ok(Err(error)) => {
            tracing::warn!(%error, method = %record.method, "upstream call failed");
            Err(refuse(error.status(), record))
        }
        Err(_) => {
            let status = match route {
                Route::Upstream(_) => {
                    Status::new(Code::DeadlineExceeded, "the service did not answer in time")
                }
                Route::Health(_) => {
                    Status::deadline_exceeded("the health check did not complete in time")
                }
            };
            Err(refuse(status, record))
        }
    }
}
