//! Admission: the edge rules every call meets, on the fast path and the slow
//! path alike, before anything is sent upstream. In order: the `grpc-timeout`
//! the client asked for, the method allowlist (internal methods, and paths
//! that are no method of the contract, are refused), the route, the rate
//! limits, then the call's headers rewritten for the upstream (the client's
//! address and the deadline) and their size checked. Adding a method to a
//! browser-facing service needs no code here: the methods and which of them
//! stream are read from the contract's descriptors (`contract`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use presence_core::forwarded::{ForwardedHeader, TrustedProxies};
use presence_core::token::TokenVerifier;
use tonic::Status;
use uuid::Uuid;

use crate::contract::{self, KnownMethod};
use crate::grpc_timeout;
use crate::metrics::{CallRecord, Metrics, RequestId, UNKNOWN_METHOD};
use crate::rate_limit::{KnownTokens, RateLimiter, address_key};
use crate::routing::{Route, Routes};

/// Methods for back-end callers only: never forwarded from the edge.
const INTERNAL_METHODS: [&str; 2] = [
    "/presence.activity.v1.ActivityService/RecordActivity",
    "/presence.admin.v1.AdminService/BatchGetUserStatuses",
];
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");
const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");
const PING: &str = "/presence.activity.v1.ActivityService/Ping";
const LOGIN: &str = "/presence.activity.v1.ActivityService/Login";

#[derive(Debug)]
pub struct Limits {
    pub ping_per_user: RateLimiter<Uuid>,
    pub ping_per_ip: RateLimiter<IpAddr>,
    pub login_per_ip: RateLimiter<IpAddr>,
}

/// The rules of a call that come from the settings.
#[derive(Debug)]
pub struct CallRules {
    /// The deadline of a call whose client sets none (or a longer one).
    pub default_deadline: Duration,
    /// The proxies whose forwarding header names the client.
    pub trusted_proxies: TrustedProxies,
    /// The header they write it in.
    pub forwarded_header: ForwardedHeader,
}

/// The edge rules, with the state they keep (rate limits, known tokens).
#[derive(Debug)]
pub struct Admission {
    callers: KnownTokens,
    limits: Limits,
    metrics: Metrics,
    default_deadline: Duration,
    /// `grpc-timeout` for the default deadline, made once.
    default_timeout_header: HeaderValue,
    trusted_proxies: TrustedProxies,
    forwarded_header: ForwardedHeader,
}

/// The TCP peer of a connection, made once per connection and handed to each
/// of its requests. It is the client unless it is a trusted proxy; then each
/// request names its client in the forwarding header (`Admission::admit`).
#[derive(Clone, Debug)]
pub struct Client {
    peer: IpAddr,
    /// The peer as text, for the access log.
    peer_text: Arc<str>,
    /// The peer as the `x-forwarded-for` value sent upstream.
    peer_forwarded_for: HeaderValue,
}

impl Client {
    pub fn new(address: SocketAddr) -> Self {
        let peer = address.ip().to_canonical();
        let text = peer.to_string();
        Self {
            peer,
            peer_forwarded_for: HeaderValue::from_str(&text)
                .expect("an IP address is a header value"),
            peer_text: text.into(),
        }
    }
}

/// A call admitted by the edge rules, and where it goes.
#[derive(Debug)]
pub struct Admitted<'a> {
    pub route: Route<'a>,
    pub record: CallRecord,
    /// The bound on the wait for the response's headers.
    pub deadline: Duration,
    /// When a stream the client bounded must end.
    pub stream_ends: Option<tokio::time::Instant>,
    /// Whether the response is a stream.
    pub streaming: bool,
}

impl Admission {
    pub fn new(
        verifier: TokenVerifier,
        limits: Limits,
        metrics: Metrics,
        rules: CallRules,
    ) -> Self {
        Self {
            callers: KnownTokens::new(verifier),
            limits,
            metrics,
            default_deadline: rules.default_deadline,
            default_timeout_header: grpc_timeout::header(rules.default_deadline),
            trusted_proxies: rules.trusted_proxies,
            forwarded_header: rules.forwarded_header,
        }
    }

    /// Applies the edge rules to a call of `path` with `headers`, routed by
    /// `routes`. A call to the upstream services has its headers rewritten
    /// for the upstream: the client's address (one `x-forwarded-for`) and the
    /// deadline in `grpc-timeout`. A client's `x-request-id` goes on with the
    /// call and names it in the access log; a call without one is numbered
    /// by the gateway for its own log. A refusal is already recorded.
    pub fn admit<'a>(
        &self,
        path: &str,
        headers: &mut HeaderMap,
        client: &Client,
        routes: &'a Routes,
    ) -> Result<Admitted<'a>, Status> {
        let request_id = match headers
            .get(&X_REQUEST_ID)
            .filter(|id| !id.is_empty() && id.len() <= 128 && id.to_str().is_ok())
        {
            Some(id) => RequestId::Client(id.clone()),
            None => RequestId::numbered(),
        };
        let method = contract::method(path);
        let (ip, client_text, forwarded_for) = self.client_of(client, headers);
        let record = CallRecord::start(
            self.metrics.clone(),
            method.map_or(UNKNOWN_METHOD, |method| method.path),
            request_id,
            client_text,
        );
        let streaming = method.is_some_and(|method| method.streaming);
        let client_deadline = match requested_deadline(headers) {
            Ok(deadline) => deadline,
            Err(status) => return Err(refuse(status, record)),
        };
        let route = match allowed(path, method).and_then(|method| routes.route(method)) {
            Ok(route) => route,
            Err(status) => return Err(refuse(status, record)),
        };
        if let Route::Health(_) = route {
            // The gateway's own health service: no rate limit, no header
            // rewrite, and always the default deadline (it answers at once).
            return Ok(Admitted {
                route,
                record,
                deadline: self.default_deadline,
                stream_ends: stream_ends(streaming, client_deadline),
                streaming,
            });
        }
        if let Err(status) = self.check_rate(path, headers, ip) {
            return Err(refuse(status, record));
        }

        let CallDeadline {
            deadline,
            upstream_timeout,
        } = call_deadline(streaming, client_deadline, self.default_deadline);
        headers.remove(FORWARDED);
        headers.insert(X_FORWARDED_FOR, forwarded_for);
        match upstream_timeout {
            Some(UpstreamTimeout::Default) => {
                headers.insert(GRPC_TIMEOUT, self.default_timeout_header.clone());
            }
            Some(UpstreamTimeout::Client) => {
                headers.insert(GRPC_TIMEOUT, grpc_timeout::header(deadline));
            }
            None => {}
        }
        // Headers the upstream would refuse would reset the HTTP/2
        // connection every user's calls share: refused here instead.
        if let Route::Upstream(upstream) = route
            && !upstream.accepts_headers(path, headers)
        {
            return Err(refuse(
                Status::resource_exhausted("request headers too large"),
                record,
            ));
        }
        Ok(Admitted {
            route,
            record,
            deadline,
            stream_ends: stream_ends(streaming, client_deadline),
            streaming,
        })
    }

    /// The client of a call from `client`'s connection: its address, as
    /// text for the access log, and as the `x-forwarded-for` sent upstream.
    fn client_of(&self, client: &Client, headers: &HeaderMap) -> (IpAddr, Arc<str>, HeaderValue) {
        let unchanged = || {
            (
                client.peer,
                client.peer_text.clone(),
                client.peer_forwarded_for.clone(),
            )
        };
        if !self.trusted_proxies.trusts(client.peer) {
            return unchanged();
        }
        let values = headers
            .get_all(self.forwarded_header.name())
            .iter()
            .map(HeaderValue::as_bytes);
        let ip = self
            .trusted_proxies
            .client(client.peer, self.forwarded_header, values);
        if ip == client.peer {
            return unchanged();
        }
        let text = ip.to_string();
        let forwarded_for = HeaderValue::from_str(&text).expect("an IP address is a header value");
        (ip, text.into(), forwarded_for)
    }

    /// The rate limits of `path` for this caller; an error when one is spent.
    fn check_rate(&self, path: &str, headers: &HeaderMap, ip: IpAddr) -> Result<(), Status> {
        let ip = address_key(ip);
        let exhausted =
            || Status::resource_exhausted("too many requests; slow down and retry shortly");
        match path {
            PING => {
                if !self.limits.ping_per_ip.allow(ip) {
                    return Err(exhausted());
                }
                // Keyed by the verified user; an unverifiable token is refused
                // upstream anyway and only spends its address's allowance.
                let caller = headers
                    .get(http::header::AUTHORIZATION)
                    .and_then(|value| value.to_str().ok())
                    .and_then(presence_core::auth::bearer_token)
                    .and_then(|token| self.callers.user_of(token));
                if let Some(user_id) = caller
                    && !self.limits.ping_per_user.allow(user_id)
                {
                    return Err(exhausted());
                }
                Ok(())
            }
            LOGIN if !self.limits.login_per_ip.allow(ip) => Err(exhausted()),
            _ => Ok(()),
        }
    }
}

/// The allowlist: a method of the contract that is not internal.
fn allowed<'m>(path: &str, method: Option<&'m KnownMethod>) -> Result<&'m KnownMethod, Status> {
    if INTERNAL_METHODS.contains(&path) {
        return Err(Status::permission_denied(
            "this method is not available through the gateway",
        ));
    }
    method.ok_or_else(|| Status::unimplemented("no such method behind the gateway"))
}

/// The deadline a client asked for in `grpc-timeout`, if any; a value that
/// is no valid `grpc-timeout` is refused.
fn requested_deadline(headers: &HeaderMap) -> Result<Option<Duration>, Status> {
    let Some(value) = headers.get(&GRPC_TIMEOUT) else {
        return Ok(None);
    };
    grpc_timeout::parse(value.as_bytes())
        .map(Some)
        .map_err(Status::invalid_argument)
}

/// The deadline of a call to the upstream services, and the `grpc-timeout`
/// sent with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct CallDeadline {
    /// The bound on the wait for the response's headers.
    deadline: Duration,
    /// `None`: none is sent (a stream the client did not bound).
    upstream_timeout: Option<UpstreamTimeout>,
}

/// Which `grpc-timeout` goes upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum UpstreamTimeout {
    /// The gateway's default deadline.
    Default,
    /// The call's deadline, as the client bounded it.
    Client,
}

/// The deadline rule: a stream keeps the client's deadline (already capped
/// by `grpc_timeout::parse`), a unary call gets the client's or the default
/// one, whichever is sooner, and the default when the client sets none.
fn call_deadline(streaming: bool, requested: Option<Duration>, default: Duration) -> CallDeadline {
    match requested {
        Some(requested) => CallDeadline {
            deadline: if streaming {
                requested
            } else {
                requested.min(default)
            },
            upstream_timeout: Some(UpstreamTimeout::Client),
        },
        None => CallDeadline {
            deadline: default,
            upstream_timeout: (!streaming).then_some(UpstreamTimeout::Default),
        },
    }
}

/// When a stream must end: the services bound only its start, so the
/// client's deadline, if it set one, is kept here. (The deadline is capped,
/// so this cannot overflow.)
fn stream_ends(streaming: bool, client_deadline: Option<Duration>) -> Option<tokio::time::Instant> {
    client_deadline
        .filter(|_| streaming)
        .map(|deadline| tokio::time::Instant::now() + deadline)
}

/// Records a call that ends with `status` before any response came.
pub fn refuse(status: Status, record: CallRecord) -> Status {
    record.finish(status.code() as i32);
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grpc_timeout::MAX_CLIENT_DEADLINE;

    const DEFAULT: Duration = Duration::from_secs(10);

    /// What a call of `path` with this `grpc-timeout` is bounded by, and the
    /// `grpc-timeout` sent upstream for it.
    fn bounded(path: &str, grpc_timeout: Option<&str>) -> (Duration, Option<String>, bool) {
        let mut headers = HeaderMap::new();
        if let Some(value) = grpc_timeout {
            headers.insert(GRPC_TIMEOUT, HeaderValue::from_str(value).unwrap());
        }
        let streaming = contract::method(path)
            .unwrap_or_else(|| panic!("{path} is a method of the contract"))
            .streaming;
        let requested = requested_deadline(&headers).unwrap();
        let CallDeadline {
            deadline,
            upstream_timeout,
        } = call_deadline(streaming, requested, DEFAULT);
        let sent = upstream_timeout.map(|timeout| {
            let value = match timeout {
                UpstreamTimeout::Default => grpc_timeout::header(DEFAULT),
                UpstreamTimeout::Client => grpc_timeout::header(deadline),
            };
            value.to_str().unwrap().to_owned()
        });
        (deadline, sent, stream_ends(streaming, requested).is_some())
    }

    #[test]
    fn deadlines_by_method_and_grpc_timeout() {
        const WATCH: &str = "/presence.admin.v1.AdminService/WatchUserStatuses";
        const LIST: &str = "/presence.admin.v1.AdminService/ListUserStatuses";
        let table = [
            // Unary: the default when unbounded, the client's when sooner,
            // the default again when later.
            (PING, None, DEFAULT, Some("10000m"), false),
            (
                PING,
                Some("2S"),
                Duration::from_secs(2),
                Some("2000m"),
                false,
            ),
            (
                PING,
                Some("150m"),
                Duration::from_millis(150),
                Some("150m"),
                false,
            ),
            (PING, Some("10S"), DEFAULT, Some("10000m"), false),
            (PING, Some("1M"), DEFAULT, Some("10000m"), false),
            (LOGIN, None, DEFAULT, Some("10000m"), false),
            (LOGIN, Some("1H"), DEFAULT, Some("10000m"), false),
            (
                LIST,
                Some("3S"),
                Duration::from_secs(3),
                Some("3000m"),
                false,
            ),
            // Streams: the client's deadline, however long (up to the cap),
            // and no grpc-timeout when the client sets none.
            (WATCH, None, DEFAULT, None, false),
            (
                WATCH,
                Some("1M"),
                Duration::from_secs(60),
                Some("60000m"),
                true,
            ),
            (
                WATCH,
                Some("5m"),
                Duration::from_millis(5),
                Some("5m"),
                true,
            ),
            // Capped at a day: 86,400,000 ms.
            (
                WATCH,
                Some("30H"),
                MAX_CLIENT_DEADLINE,
                Some("86400000m"),
                true,
            ),
        ];
        for (path, asked, deadline, sent, ends) in table {
            assert_eq!(
                bounded(path, asked),
                (deadline, sent.map(str::to_owned), ends),
                "{path} with grpc-timeout {asked:?}"
            );
        }
    }

    #[test]
    fn a_malformed_grpc_timeout_is_refused_as_invalid() {
        let mut headers = HeaderMap::new();
        headers.insert(GRPC_TIMEOUT, HeaderValue::from_static("soon"));
        let refused = requested_deadline(&headers).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    }
}
