//! What the gateway checks before translating gRPC-Web: the caller's origin
//! and the request's size. Refusals are gRPC-Web answers (HTTP 200 with
//! `grpc-status` in the headers), so a browser client reads them like any
//! other gRPC error rather than as a network failure.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::{HeaderValue, header};
use tonic::Code;

#[derive(Clone)]
pub struct EdgeRules {
    /// Origins other than the gateway's own that may call gRPC-Web.
    pub allowed_origins: Vec<String>,
    pub max_request_bytes: usize,
}

impl EdgeRules {
    /// Same-origin calls (the origin names the host the request was sent to)
    /// are always allowed; others only when listed.
    fn origin_allowed(&self, request: &Request) -> bool {
        let Some(origin) = request
            .headers()
            .get(header::ORIGIN)
            .and_then(|o| o.to_str().ok())
        else {
            return true;
        };
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|host| host.to_str().ok())
            .or_else(|| {
                request
                    .uri()
                    .authority()
                    .map(|authority| authority.as_str())
            });
        let same_origin = host.is_some_and(|host| {
            origin
                .split_once("://")
                .is_some_and(|(_, origin_host)| origin_host == host)
        });
        same_origin || self.allowed_origins.iter().any(|allowed| allowed == origin)
    }
}

pub fn is_grpc(request: &Request) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|content_type| content_type.starts_with("application/grpc"))
}

/// A trailers-only gRPC(-Web) error answer.
pub fn grpc_error(request: &Request, code: Code, message: &str) -> Response {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("application/grpc-web+proto"));
    let mut response = Response::new(Body::empty());
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, content_type);
    headers.insert("grpc-status", HeaderValue::from(code as i32));
    if let Ok(message) = HeaderValue::from_str(message) {
        headers.insert("grpc-message", message);
    }
    response
}

pub async fn guard(State(rules): State<EdgeRules>, request: Request, next: Next) -> Response {
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
    // gRPC-Web text is base64: four bytes on the wire per three of message.
    let limit = rules.max_request_bytes * 4 / 3 + 8;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return grpc_error(&request, Code::ResourceExhausted, "request too large");
    }
    // Without a declared length, the body is cut at the limit while it streams.
    let text = request
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/grpc-web-text"));
    let request = request.map(|body| {
        let limited = http_body_util::Limited::new(body, limit);
        if text {
            Body::new(UnsizedBody(limited))
        } else {
            Body::new(limited)
        }
    });
    next.run(request).await
}

/// A body that does not announce its size. gRPC-Web text is decoded from
/// base64 on the way through, so the size the client declared is not the
/// size sent upstream; announcing it would make the HTTP/2 client declare a
/// wrong content-length and the service reset the stream.
struct UnsizedBody<B>(B);

impl<B> http_body::Body for UnsizedBody<B>
where
    B: http_body::Body + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        std::pin::Pin::new(&mut self.0).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }
}
