//! What the gateway checks before translating gRPC-Web: the caller's origin
//! and the request's size. Refusals are gRPC-Web responses (HTTP 200 with
//! `grpc-status` in the headers), so a browser client reads them like any
//! other gRPC error rather than as a network failure.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::{HeaderMap, HeaderValue, Uri, header};
use tonic::{Code, Status};

#[derive(Debug)]
pub struct EdgeRules {
    /// Origins other than the gateway's own that may call gRPC-Web.
    pub allowed_origins: Vec<String>,
    pub max_request_bytes: usize,
}

impl EdgeRules {
    /// Same-origin calls (the origin names the host the request was sent to)
    /// are always allowed; others only when listed.
    fn origin_allowed(&self, request: &Request) -> bool {
        self.same_origin(request.headers(), request.uri())
            || request
                .headers()
                .get(header::ORIGIN)
                .is_some_and(|origin| self.allowed_origins.iter().any(|allowed| allowed == origin))
    }

    /// Whether a request comes from the gateway's own origin, or from no
    /// browser origin at all (so needs no CORS).
    pub fn same_origin(&self, headers: &HeaderMap, uri: &Uri) -> bool {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return true;
        };
        let host = headers
            .get(header::HOST)
            .map(HeaderValue::as_bytes)
            .or_else(|| {
                uri.authority()
                    .map(|authority| authority.as_str().as_bytes())
            });
        let origin = origin.as_bytes();
        let origin_host = origin
            .windows(3)
            .position(|window| window == b"://")
            .map(|at| &origin[at + 3..]);
        host.is_some() && origin_host == host
    }

    /// Whether the declared length of a request is over the limit (gRPC-Web
    /// text is base64: four bytes on the wire per three of message).
    pub fn declares_too_large(&self, headers: &HeaderMap) -> bool {
        let limit = self.max_request_bytes * 4 / 3 + 8;
        headers
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<usize>().ok())
            .is_some_and(|length| length > limit)
    }
}

pub fn is_grpc(request: &Request) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|content_type| content_type.starts_with("application/grpc"))
}

/// A trailers-only gRPC(-Web) response: `status` in the headers (its message
/// percent-encoded, as gRPC clients expect), with `content_type`.
pub fn trailers_only<B: Default>(status: Status, content_type: HeaderValue) -> http::Response<B> {
    let mut response = status.into_http::<B>();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    response
}

/// A refusal of the edge, in the content type the request was sent in.
fn grpc_error(request: &Request, code: Code, message: &'static str) -> Response {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("application/grpc-web+proto"));
    trailers_only(Status::new(code, message), content_type)
}

pub async fn guard(State(rules): State<Arc<EdgeRules>>, request: Request, next: Next) -> Response {
    if !is_grpc(&request) {
        return next.run(request).await;
    }
    if !rules.origin_allowed(&request) {
        return grpc_error(
            &request,
            Code::PermissionDenied,
            "this origin may not call the gateway",
        );
    }
    if rules.declares_too_large(request.headers()) {
        return grpc_error(&request, Code::ResourceExhausted, "request too large");
    }
    // A body without a declared length is cut at the limit as it is read
    // (`upstream::Upstream::call`).
    next.run(request).await
}
