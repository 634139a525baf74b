//! The gateway's service: what each request meets first. Binary unary
//! gRPC-Web from the gateway's own origin takes the fast path (`fast_path`,
//! measured in docs/benchmarks.md); everything else — text mode, streams,
//! CORS preflights and cross-origin calls, native gRPC, the web app — takes
//! the slow path through the router (CORS, the edge guard, tonic-web,
//! `forward`, the static files).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use tower::{Service, ServiceExt};

use crate::admission::Client;
use crate::edge::EdgeRules;
use crate::fast_path;
use crate::forward::Forwarder;

/// Makes one [`GatewayService`] per accepted connection.
#[derive(Debug, Clone)]
pub struct MakeGatewayService {
    pub forwarder: Forwarder,
    pub rules: Arc<EdgeRules>,
    pub router: Router,
}

/// The service of one connection: its requests, with their client.
#[derive(Debug, Clone)]
pub struct GatewayService {
    client: Client,
    shared: MakeGatewayService,
}

impl MakeGatewayService {
    /// The service of a connection from `peer`.
    pub fn for_connection(&self, peer: SocketAddr) -> GatewayService {
        GatewayService {
            client: Client::new(peer),
            shared: self.clone(),
        }
    }
}

impl Service<Request> for GatewayService {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        if fast_path::accepts(&request, &self.shared.forwarder, &self.shared.rules) {
            let service = self.clone();
            return Box::pin(async move {
                let forwarder = &service.shared.forwarder;
                let response = fast_path::unary(forwarder, request, &service.client).await;
                Ok(response.map(Body::new))
            });
        }
        request.extensions_mut().insert(self.client.clone());
        Box::pin(self.shared.router.clone().oneshot(request))
    }
}
