//! What the gateway checks before translating gRPC-Web: the caller's origin
//! and the request's size. Refusals are gRPC-Web responses (HTTP 200 with
//! `grpc-status` in the headers), so a browser client reads them like any
//! other gRPC error rather than as a network failure.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::uri::{Authority, InvalidUri, Scheme};
use http::{HeaderMap, HeaderValue, Uri, header};
use tonic::{Code, Status};

/// A web origin as a browser sends it (`https://app.example.com:8443`): a
/// scheme and an authority, nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    scheme: Scheme,
    authority: Authority,
}

#[derive(Debug, thiserror::Error)]
pub enum OriginError {
    #[error("not a URI")]
    NotAUri(#[from] InvalidUri),
    #[error("the scheme must be http or https")]
    Scheme,
    #[error("no host")]
    NoHost,
    #[error("an origin has no user name or password")]
    UserInfo,
    #[error("an origin has no path, query or fragment")]
    Path,
}

impl Origin {
    pub fn parse(text: &[u8]) -> Result<Self, OriginError> {
        let parts = Uri::try_from(text)?.into_parts();
        let scheme = parts
            .scheme
            .filter(|scheme| *scheme == Scheme::HTTP || *scheme == Scheme::HTTPS)
            .ok_or(OriginError::Scheme)?;
        let authority = parts
            .authority
            .filter(|authority| !authority.host().is_empty())
            .ok_or(OriginError::NoHost)?;
        if authority.as_str().contains('@') {
            return Err(OriginError::UserInfo);
        }
        // `http` reads "https://a.example" with the path "/" and drops a
        // fragment: a path, query or fragment actually written is refused.
        if parts
            .path_and_query
            .is_some_and(|path| path.as_str() != "/")
            || text.ends_with(b"/")
            || text.contains(&b'#')
        {
            return Err(OriginError::Path);
        }
        Ok(Self { scheme, authority })
    }

    /// Whether this origin names `host` (a Host header or a request's authority).
    fn is_host(&self, host: &[u8]) -> bool {
        Authority::try_from(host).is_ok_and(|host| host == self.authority)
    }
}

#[derive(Debug)]
pub struct EdgeRules {
    /// Origins other than the gateway's own that may call gRPC-Web.
    pub allowed_origins: Vec<Origin>,
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
                .is_some_and(|origin| self.allows(origin))
    }

    /// Whether `origin` (an Origin header) is one of the allowed others.
    pub fn allows(&self, origin: &HeaderValue) -> bool {
        Origin::parse(origin.as_bytes()).is_ok_and(|origin| self.allowed_origins.contains(&origin))
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
        host.is_some_and(|host| {
            Origin::parse(origin.as_bytes()).is_ok_and(|origin| origin.is_host(host))
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(allowed: &[&str]) -> EdgeRules {
        EdgeRules {
            allowed_origins: allowed
                .iter()
                .map(|origin| Origin::parse(origin.as_bytes()).unwrap())
                .collect(),
            max_request_bytes: 1024,
        }
    }

    fn headers(origin: &str, host: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
        headers.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        headers
    }

    #[test]
    fn an_origin_is_a_scheme_and_an_authority_only() {
        assert!(Origin::parse(b"https://app.example.com").is_ok());
        assert!(Origin::parse(b"http://127.0.0.1:8080").is_ok());
        let refused = |text: &str| match Origin::parse(text.as_bytes()) {
            Ok(origin) => panic!("{text:?} read as {origin:?}"),
            Err(error) => error.to_string(),
        };
        for hostile in [
            "https://app.example.com/",
            "https://app.example.com/path",
            "https://app.example.com?x=1",
            "https://app.example.com#x",
            "https://evil@app.example.com",
            "https://app.example.com:443@evil.example",
            "ftp://app.example.com",
            "javascript://app.example.com",
            "app.example.com",
            "null",
            "https://",
            "",
        ] {
            refused(hostile);
        }
        assert_eq!(
            refused("https://evil@app.example.com"),
            "an origin has no user name or password"
        );
    }

    #[test]
    fn only_the_listed_origins_are_allowed_whatever_they_hide() {
        let rules = rules(&["https://app.example.com"]);
        let allows = |origin: &str| rules.allows(&HeaderValue::from_str(origin).unwrap());
        assert!(allows("https://app.example.com"));
        assert!(
            allows("https://APP.example.com"),
            "hosts are case-insensitive"
        );
        for hostile in [
            "http://app.example.com",
            "https://app.example.com.evil.example",
            "https://app.example.com:8443",
            "https://app.example.com/",
            "https://evil@app.example.com",
            "https://app.example.com@evil.example",
        ] {
            assert!(!allows(hostile), "{hostile}");
        }
    }

    #[test]
    fn same_origin_means_the_origin_names_the_host_called() {
        let rules = rules(&[]);
        let uri = Uri::from_static("/presence.v1.ActivityService/Ping");
        let same = |origin: &str, host: &str| rules.same_origin(&headers(origin, host), &uri);
        assert!(same("https://gateway.example", "gateway.example"));
        assert!(same("http://127.0.0.1:8080", "127.0.0.1:8080"));
        assert!(!same("https://evil.example", "gateway.example"));
        assert!(!same("https://gateway.example:8443", "gateway.example"));
        assert!(!same("https://gateway.example/x", "gateway.example"));
        assert!(!same("https://user@gateway.example", "gateway.example"));
        assert!(!same("evil://gateway.example", "gateway.example"));
        assert!(!same("gateway.example", "gateway.example"));
    }
}
