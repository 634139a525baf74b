//! The edge rules every call meets, whichever way it came (`Forwarder::admit`:
//! the method allowlist, the client's address, rate limits, a deadline and
//! the size of the headers), and the general forwarding path: a gRPC call
//! (translated from gRPC-Web by `tonic_web::GrpcWebLayer`, or native) routed
//! by its service name to an upstream. Adding a method to a browser-facing
//! service needs no code here: the methods and which of them stream are read
//! from the contract's descriptors (`contract`); internal methods, and paths
//! that are no method of the contract, are refused before they reach upstream.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use http_body_util::BodyExt;
use presence_core::forwarded::{ForwardedHeader, TrustedProxies};
use presence_core::token::TokenVerifier;
use tokio::sync::watch;
use tonic::body::Body;
use tonic::{Code, Status};
use tower::{Service, ServiceExt};
use uuid::Uuid;

use crate::contract::{self, KnownMethod};
use crate::error::GatewayError;
use crate::grpc_timeout;
use crate::metrics::{CallRecord, Metrics, ObservedBody, RequestId, UNKNOWN_METHOD, grpc_status};
use crate::rate_limit::{KnownTokens, RateLimiter, address_key};
use crate::upstream::{Upstream, UpstreamBody, WholeAnswer};

pub const ACTIVITY_SERVICE: &str = "presence.activity.v1.ActivityService";
pub const ADMIN_SERVICE: &str = "presence.admin.v1.AdminService";
pub const HEALTH_SERVICE: &str = "grpc.health.v1.Health";

/// Methods for back-end callers only: never forwarded from the edge.
const INTERNAL_METHODS: [&str; 2] = [
    "/presence.activity.v1.ActivityService/RecordActivity",
    "/presence.admin.v1.AdminService/BatchGetUserStatuses",
];
/// The largest unary answer the gateway reads whole before passing it on.
const MAX_UNARY_ANSWER_BYTES: usize = 16 * 1024 * 1024;
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");
const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");
const PING: &str = "/presence.activity.v1.ActivityService/Ping";
const LOGIN: &str = "/presence.activity.v1.ActivityService/Login";

/// The gateway's own gRPC health service.
pub type HealthService =
    tower::util::BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>;

/// The services behind the gateway.
pub struct Upstreams {
    pub activity: Upstream,
    pub admin: Upstream,
}

pub struct Limits {
    pub ping_per_user: RateLimiter<Uuid>,
    pub ping_per_ip: RateLimiter<IpAddr>,
    pub login_per_ip: RateLimiter<IpAddr>,
}

/// The rules of a call that come from the settings.
pub struct CallRules {
    /// The deadline of a call whose client sets none (or a longer one).
    pub default_deadline: Duration,
    /// The proxies whose forwarding header names the client.
    pub trusted_proxies: TrustedProxies,
    /// The header they write it in.
    pub forwarded_header: ForwardedHeader,
}

struct State {
    activity: Upstream,
    admin: Upstream,
    health: HealthService,
    callers: KnownTokens,
    limits: Limits,
    metrics: Metrics,
    default_deadline: Duration,
    /// `grpc-timeout` for the default deadline, made once.
    default_timeout_header: HeaderValue,
    trusted_proxies: TrustedProxies,
    forwarded_header: ForwardedHeader,
    /// Becomes true when the shutdown's drain is over: open streams end.
    drain_over: watch::Receiver<bool>,
}

#[derive(Clone)]
pub struct Forwarder {
    state: Arc<State>,
}

/// The TCP peer of a connection, made once per connection and handed to each
/// of its requests. It is the client unless it is a trusted proxy; then each
/// request names its client in the forwarding header (`Forwarder::admit`).
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

/// What the edge rules decided for one call.
pub enum Admission<'a> {
    /// On its way upstream; its headers were rewritten for the upstream.
    Forward(Admitted<'a>),
    /// For the gateway's own health service (`streaming` for a watch, and
    /// `stream_ends` when the client bounded it).
    Health {
        record: CallRecord,
        streaming: bool,
        stream_ends: Option<tokio::time::Instant>,
    },
    /// Refused with this answer (already recorded).
    Refused(Status),
}

/// A call admitted by the edge rules.
pub struct Admitted<'a> {
    upstream: &'a Upstream,
    pub record: CallRecord,
    /// The bound on the wait for the answer's headers.
    deadline: Duration,
    /// When a stream the client bounded must end.
    pub stream_ends: Option<tokio::time::Instant>,
    /// Whether the answer is a stream.
    pub streaming: bool,
}

impl Forwarder {
    pub fn new(
        Upstreams { activity, admin }: Upstreams,
        health: HealthService,
        verifier: TokenVerifier,
        limits: Limits,
        metrics: Metrics,
        rules: CallRules,
        drain_over: watch::Receiver<bool>,
    ) -> Self {
        Self {
            state: Arc::new(State {
                activity,
                admin,
                health,
                callers: KnownTokens::new(verifier),
                limits,
                metrics,
                default_deadline: rules.default_deadline,
                default_timeout_header: grpc_timeout::header(rules.default_deadline),
                trusted_proxies: rules.trusted_proxies,
                forwarded_header: rules.forwarded_header,
                drain_over,
            }),
        }
    }

    /// Whether the answer of `path` is a stream (its deadline covers only
    /// the start, and it cannot be read whole).
    pub fn is_streaming(&self, path: &str) -> bool {
        contract::method(path).is_some_and(|method| method.streaming)
    }

    /// Asks the gateway's own gRPC health service, within the default
    /// deadline (a client that never finishes its request waits no longer).
    pub async fn ask_health(&self, request: Request<Body>) -> Result<Response<Body>, Status> {
        let asking = self.state.health.clone().oneshot(request);
        match tokio::time::timeout(self.state.default_deadline, asking).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(never)) => match never {},
            Err(_) => Err(Status::deadline_exceeded(
                "the health check did not complete in time",
            )),
        }
    }

    /// Applies the edge rules to a call of `path` with `headers`: the
    /// allowlist, the client's address, the rate limits, the deadline and
    /// the size of the headers. An admitted call's headers are rewritten for
    /// the upstream: the client's address (one `x-forwarded-for`) and the
    /// deadline in `grpc-timeout`. A client's `x-request-id` goes on with the
    /// call and names it in the access log; a call without one is numbered
    /// by the gateway for its own log.
    pub fn admit(&self, path: &str, headers: &mut HeaderMap, client: &Client) -> Admission<'_> {
        let state = &*self.state;
        let request_id = match headers
            .get(&X_REQUEST_ID)
            .filter(|id| !id.is_empty() && id.len() <= 128 && id.to_str().is_ok())
        {
            Some(id) => RequestId::Client(id.clone()),
            None => RequestId::numbered(),
        };
        let method = contract::method(path);
        let (ip, client_text, forwarded_for) = state.client_of(client, headers);
        let record = CallRecord::start(
            state.metrics.clone(),
            method.map_or(UNKNOWN_METHOD, |method| method.path),
            request_id,
            client_text,
        );
        let streaming = method.is_some_and(|method| method.streaming);
        let client_deadline = match requested_deadline(headers) {
            Ok(deadline) => deadline,
            Err(status) => return Admission::Refused(refuse(status, record)),
        };
        let upstream = match state.route(path, method) {
            Route::Upstream(upstream) => upstream,
            Route::Health => {
                return Admission::Health {
                    record,
                    streaming,
                    stream_ends: stream_ends(streaming, client_deadline),
                };
            }
            Route::Refused(status) => return Admission::Refused(refuse(status, record)),
        };
        if let Err(status) = state.check_rate(path, headers, ip) {
            return Admission::Refused(refuse(status, record));
        }

        let deadline = match client_deadline {
            Some(requested) if streaming => requested,
            Some(requested) => requested.min(state.default_deadline),
            None => state.default_deadline,
        };
        headers.remove(FORWARDED);
        headers.insert(X_FORWARDED_FOR, forwarded_for);
        if client_deadline.is_none() && !streaming {
            headers.insert(GRPC_TIMEOUT, state.default_timeout_header.clone());
        } else if client_deadline.is_some() {
            headers.insert(GRPC_TIMEOUT, grpc_timeout::header(deadline));
        }
        // Headers the upstream would refuse would reset the HTTP/2
        // connection every user's calls share: refused here instead.
        if !upstream.accepts_headers(path, headers) {
            return Admission::Refused(refuse(
                Status::resource_exhausted("request headers too large"),
                record,
            ));
        }
        Admission::Forward(Admitted {
            upstream,
            record,
            deadline,
            stream_ends: stream_ends(streaming, client_deadline),
            streaming,
        })
    }
}

impl Admitted<'_> {
    /// Sends the call upstream and waits, within its deadline, for the
    /// answer's headers; the body follows. A failure is answered (and
    /// recorded) as a status.
    pub async fn send<B>(
        self,
        request: Request<B>,
    ) -> Result<(Response<UpstreamBody>, CallRecord), Status>
    where
        B: http_body::Body<Data = bytes::Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let upstream = self.upstream;
        self.within_deadline(upstream.call(request)).await
    }

    /// Sends a unary call upstream and reads its whole answer, all within
    /// its deadline.
    pub async fn exchange<B>(self, request: Request<B>) -> Result<(WholeAnswer, CallRecord), Status>
    where
        B: http_body::Body<Data = bytes::Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let upstream = self.upstream;
        self.within_deadline(async {
            let response = upstream.call(request).await?;
            WholeAnswer::read(response, MAX_UNARY_ANSWER_BYTES).await
        })
        .await
    }

    async fn within_deadline<T>(
        self,
        work: impl Future<Output = Result<T, GatewayError>>,
    ) -> Result<(T, CallRecord), Status> {
        let record = self.record;
        match tokio::time::timeout(self.deadline, work).await {
            Ok(Ok(answer)) => Ok((answer, record)),
            Ok(Err(error)) => {
                tracing::warn!(%error, method = %record.method, "upstream call failed");
                Err(refuse(error.status(), record))
            }
            Err(_) => Err(refuse(
                Status::new(Code::DeadlineExceeded, "the service did not answer in time"),
                record,
            )),
        }
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

/// Records a call that ends with `status` before any answer came.
fn refuse(status: Status, record: CallRecord) -> Status {
    record.finish(status.code() as i32);
    status
}

/// Where a path goes.
enum Route<'a> {
    Upstream(&'a Upstream),
    Health,
    Refused(Status),
}

impl State {
    fn route(&self, path: &str, method: Option<&KnownMethod>) -> Route<'_> {
        if INTERNAL_METHODS.contains(&path) {
            return Route::Refused(Status::permission_denied(
                "this method is not available through the gateway",
            ));
        }
        let Some(method) = method else {
            return Route::Refused(Status::unimplemented("no such method behind the gateway"));
        };
        let service = method
            .path
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or_default();
        match service {
            ACTIVITY_SERVICE => Route::Upstream(&self.activity),
            ADMIN_SERVICE => Route::Upstream(&self.admin),
            HEALTH_SERVICE => Route::Health,
            _ => Route::Refused(Status::unimplemented("no such service behind the gateway")),
        }
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

/// The general path: a gRPC call (translated from gRPC-Web by tonic-web, or
/// native gRPC over HTTP/2), with the client in the request's extensions.
impl Service<Request<Body>> for Forwarder {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let forwarder = self.clone();
        Box::pin(async move {
            // `entrance` gives every request its client.
            let Some(client) = request.extensions().get::<Client>().cloned() else {
                tracing::error!("a request reached the forwarder without its client");
                return Ok(Status::internal("the gateway is misconfigured").into_http());
            };
            let path = request.uri().path().to_owned();
            let admitted = match forwarder.admit(&path, request.headers_mut(), &client) {
                Admission::Forward(admitted) => admitted,
                Admission::Refused(status) => return Ok(status.into_http()),
                Admission::Health {
                    record,
                    streaming,
                    stream_ends,
                } => {
                    return Ok(match forwarder.ask_health(request).await {
                        Ok(response) => forwarder.pass_on(
                            response,
                            record,
                            stream_ends,
                            streaming,
                            |status: Status| status,
                        ),
                        Err(status) => refuse(status, record).into_http(),
                    });
                }
            };
            let (stream_ends, streaming) = (admitted.stream_ends, admitted.streaming);
            let (response, record) = match admitted.send(request).await {
                Ok(answer) => answer,
                Err(status) => return Ok(status.into_http()),
            };
            Ok(
                forwarder.pass_on(response, record, stream_ends, streaming, |error| {
                    GatewayError::from(error).status()
                }),
            )
        })
    }
}

impl Forwarder {
    /// An answer on its way back: recorded when it ends, and a stream ended
    /// at the client's deadline or when the gateway's drain is over.
    fn pass_on<B>(
        &self,
        response: Response<B>,
        record: CallRecord,
        stream_ends: Option<tokio::time::Instant>,
        streaming: bool,
        map_error: fn(B::Error) -> Status,
    ) -> Response<Body>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
    {
        if let Some(code) = grpc_status(response.headers()) {
            // A trailers-only answer: the call is over.
            record.finish(code);
            return response.map(|body| Body::new(body.map_err(map_error)));
        }
        let drain_over = streaming.then(|| self.state.drain_over.clone());
        response.map(|body| {
            let body = DeadlineBody::new(body, stream_ends, drain_over, map_error);
            Body::new(ObservedBody::new(body, record))
        })
    }
}

/// A response body that ends early with trailers: DEADLINE_EXCEEDED at the
/// client's deadline, or UNAVAILABLE when the gateway's drain is over (the
/// browser then reconnects, to another replica). An upstream that fails
/// mid-answer (its connection died with its process) ends it with trailers
/// too, carrying the failure's status: HTTP/1.1 has no stream reset, so a
/// browser would otherwise see only a broken connection, not a status it
/// can act on.
struct DeadlineBody<B: http_body::Body> {
    inner: B,
    map_error: fn(B::Error) -> Status,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    drain_over: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    expired: bool,
}

impl<B: http_body::Body> DeadlineBody<B> {
    fn new(
        inner: B,
        deadline: Option<tokio::time::Instant>,
        drain_over: Option<watch::Receiver<bool>>,
        map_error: fn(B::Error) -> Status,
    ) -> Self {
        Self {
            inner,
            map_error,
            deadline: deadline.map(|at| Box::pin(tokio::time::sleep_until(at))),
            drain_over: drain_over.map(|mut over| -> Pin<Box<dyn Future<Output = ()> + Send>> {
                Box::pin(async move {
                    // A dropped sender means the gateway is gone: end too.
                    let _ = over.wait_for(|over| *over).await;
                })
            }),
            expired: false,
        }
    }

    fn end(&mut self, status: &Status) -> http_body::Frame<bytes::Bytes> {
        self.expired = true;
        let mut trailers = http::HeaderMap::new();
        if status.add_header(&mut trailers).is_err() {
            trailers.insert(Status::GRPC_STATUS, HeaderValue::from(status.code() as i32));
        }
        http_body::Frame::trailers(trailers)
    }
}

impl<B> http_body::Body for DeadlineBody<B>
where
    B: http_body::Body<Data = bytes::Bytes> + Unpin,
{
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
            let trailers = self.end(&Status::deadline_exceeded("deadline exceeded"));
            return Poll::Ready(Some(Ok(trailers)));
        }
        if let Some(drain_over) = self.drain_over.as_mut()
            && drain_over.as_mut().poll(cx).is_ready()
        {
            let trailers = self.end(&Status::unavailable(
                "the gateway is shutting down; reconnect",
            ));
            return Poll::Ready(Some(Ok(trailers)));
        }
        match ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
            Some(Err(error)) => {
                let status = (self.map_error)(error);
                tracing::warn!(code = ?status.code(), "the upstream failed mid-answer; ending it with a status");
                Poll::Ready(Some(Ok(self.end(&status))))
            }
            Some(Ok(frame)) => Poll::Ready(Some(Ok(frame))),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.expired || self.inner.is_end_stream()
    }
}
