//! What each request meets first. Binary unary gRPC-Web from the gateway's
//! own origin takes the direct way (`grpc_web`); everything else — text
//! mode, streams, CORS preflights and cross-origin calls, native gRPC, the
//! web app — goes through the router (CORS, the edge guard, tonic-web,
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
use crate::forward::Forwarder;
use crate::grpc_web;

/// Makes one [`Entrance`] per accepted connection.
#[derive(Clone)]
pub struct Entrances {
    pub forwarder: Forwarder,
    pub rules: Arc<EdgeRules>,
    pub router: Router,
}

/// The requests of one connection.
#[derive(Clone)]
pub struct Entrance {
    client: Client,
    entrances: Entrances,
}

impl Entrances {
    /// The entrance of a connection from `peer`.
    pub fn connection(&self, peer: SocketAddr) -> Entrance {
        Entrance {
            client: Client::new(peer),
            entrances: self.clone(),
        }
    }
}

impl Service<Request> for Entrance {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        if grpc_web::takes(&request, &self.entrances.forwarder, &self.entrances.rules) {
            let entrance = self.clone();
            return Box::pin(async move {
                let forwarder = &entrance.entrances.forwarder;
                let response = grpc_web::unary(forwarder, request, &entrance.client).await;
                Ok(response.map(Body::new))
            });
        }
        request.extensions_mut().insert(self.client.clone());
        Box::pin(self.entrances.router.clone().oneshot(request))
    }
}
