//! The gateway's client to one upstream service: its host name resolved
//! every few seconds (`PRESENCE_UPSTREAM_RESOLVE_SECONDS`) to one endpoint
//! per address (a pod, behind a headless Service), each with a few HTTP/2
//! connections of its own, spoken with `h2` directly. Calls take the
//! endpoints in turn, and an endpoint's connections in turn. A call goes
//! from the browser's connection task straight onto an upstream connection
//! and its response wakes that task directly: no request queue, no task per
//! call in between (the hops a general-purpose client adds are a measured
//! share of a ping's CPU through the gateway; see docs/benchmarks.md).
//!
//! An address that stops resolving is dropped: no new call goes there, calls
//! in flight on it finish. A failed or empty resolution keeps the last known
//! endpoints, so a DNS hiccup never leaves the gateway with none. A
//! connection that died is re-opened by the next call that needs it, within
//! the connect timeout; an endpoint that cannot be connected to is skipped
//! for a short while, and the call, which was never sent, goes to another.
//! A call the upstream provably never processed (it went away before the
//! call's stream, as a replica that is stopping does, or refused the stream)
//! is sent once more, to another endpoint when there is one; any other
//! failure is the caller's, since the call may have taken effect.
//!
//! Request bodies are read whole (they are bounded by the edge's size limit)
//! and sent in one frame: every method of the contract takes a single
//! message. Answers stream back as they arrive, so server streams pass
//! through unchanged.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use parking_lot::{Mutex, RwLock};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use h2::client::SendRequest;
use http::uri::{Authority, Scheme};
use http::{HeaderMap, Request, Response, Uri, header};
use http_body::Frame;
use http_body_util::BodyExt;
use prometheus_client::metrics::gauge::Gauge;
use tokio::net::TcpStream;

use crate::error::GatewayError;

/// How long a new connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long an endpoint that could not be connected to is passed over
/// while others exist (then the next call that reaches it tries again).
const CONNECT_BACKOFF: Duration = Duration::from_secs(2);
/// Idle connections are probed this often, by TCP keep-alive and an HTTP/2 ping.
const KEEPALIVE_EVERY: Duration = Duration::from_secs(30);
/// A connection whose peer does not answer a ping within this time is closed.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one resolution of the host may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);
/// A failing resolution is logged as a warning at most this often.
const RESOLVE_WARNING_EVERY: Duration = Duration::from_secs(60);
/// Endpoints kept per upstream, at most: the lowest addresses of a larger
/// answer (each endpoint has its own connections and their buffers).
pub const MAX_ENDPOINTS: usize = 256;
/// Attempts of one call, at most: a call that was never sent (its endpoint
/// could not be connected to) tries other endpoints, and one the upstream
/// did not process is sent once more.
const MAX_ATTEMPTS: usize = 3;
/// The largest header list sent upstream, counted as HTTP/2 counts it (each
/// header's name and value plus 32 bytes). The services' servers (hyper's
/// default) accept 16 KiB and answer more by resetting the stream or the
/// connection every user's calls share; this leaves room for what HPACK
/// and the pseudo-headers add.
pub const MAX_UPSTREAM_HEADER_BYTES: usize = 8 * 1024;
/// What HTTP/2 adds to each header's name and value when it counts a list.
const HEADER_OVERHEAD: usize = 32;

/// Whether a request header stays at the edge: it describes only the
/// browser's hop (HTTP/2 forbids the connection-level ones), or only
/// concerns the browser (cookies, fetch metadata, client hints) and would
/// cost every forwarded call its encoding for nothing.
fn stays_at_the_edge(name: &header::HeaderName) -> bool {
    let name = name.as_str();
    matches!(
        name,
        "connection"
            | "host"
            | "transfer-encoding"
            | "upgrade"
            | "keep-alive"
            | "proxy-connection"
            | "content-length"
            | "cookie"
            | "origin"
            | "referer"
            | "accept-language"
            | "accept-encoding"
            | "cache-control"
            | "pragma"
            | "priority"
            | "dnt"
            | "x-grpc-web"
    ) || name.starts_with("sec-")
}

/// Finds the addresses an upstream's host name stands for.
pub trait Resolve: Send + Sync + std::fmt::Debug + 'static {
    fn resolve(&self, host: &str, port: u16) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>>;
}

/// The system's resolver (`getaddrinfo`: /etc/hosts, then DNS), which
/// answers a headless Service's name with the addresses of its ready pods.
#[derive(Debug)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, host: &str, port: u16) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>> {
        let target = format!("{host}:{port}");
        Box::pin(async move { Ok(tokio::net::lookup_host(target).await?.collect()) })
    }
}

/// How an upstream is reached.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    /// HTTP/2 connections per endpoint.
    pub connections: usize,
    /// The largest request body sent on, in bytes.
    pub max_request_bytes: usize,
    /// How often the host name is resolved again.
    pub resolve_every: Duration,
    /// Set to the number of endpoints.
    pub endpoints_gauge: Gauge,
}

#[derive(Debug, Clone)]
pub struct Upstream {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// `host:port`, for error messages and logs.
    name: String,
    host: String,
    port: u16,
    authority: Authority,
    settings: UpstreamSettings,
    resolver: Arc<dyn Resolve>,
    /// One per address the host resolved to, sorted by address. Replaced
    /// whole by a resolution; a call holds on to the endpoint it took.
    endpoints: RwLock<Arc<[Arc<Endpoint>]>>,
    next: AtomicUsize,
    /// Held while resolving, so calls that find no endpoint resolve once.
    resolving: tokio::sync::Mutex<()>,
    /// Whether the task that resolves again every `resolve_every` runs.
    refreshing: AtomicBool,
    last_warning: Mutex<Option<Instant>>,
    /// What the endpoints' back-off deadlines count from.
    epoch: Instant,
}

/// One address of the upstream and its connections.
#[derive(Debug)]
struct Endpoint {
    address: SocketAddr,
    connections: Vec<Connection>,
    next: AtomicUsize,
    /// Milliseconds after `Inner::epoch` until which the endpoint is passed
    /// over, after a failed connect; 0 when it is not.
    down_until: AtomicU64,
}

#[derive(Debug, Default)]
struct Connection {
    /// The open connection's sender, cloned for each call.
    sender: Mutex<Option<SendRequest<Bytes>>>,
    /// Held while (re)opening, so a dead connection is re-opened once.
    opening: tokio::sync::Mutex<()>,
}

impl Endpoint {
    fn new(address: SocketAddr, connections: usize) -> Self {
        Self {
            address,
            connections: (0..connections.max(1))
                .map(|_| Connection::default())
                .collect(),
            next: AtomicUsize::new(0),
            down_until: AtomicU64::new(0),
        }
    }

    fn connection(&self) -> &Connection {
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        &self.connections[turn % self.connections.len()]
    }

    /// Passes the endpoint over for `CONNECT_BACKOFF`, while others exist.
    fn back_off(&self, epoch: Instant) {
        let until = millis_since(epoch).saturating_add(CONNECT_BACKOFF.as_millis() as u64);
        self.down_until.store(until.max(1), Ordering::Relaxed);
    }

    /// Whether a connect failed lately (the clock is read only then).
    fn backing_off(&self, epoch: Instant) -> bool {
        let until = self.down_until.load(Ordering::Relaxed);
        until != 0 && millis_since(epoch) < until
    }
}

fn millis_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Why an attempt of a call failed, as far as sending it again goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    /// Not sent: no connection to the endpoint could be opened.
    Never,
    /// Sent, and provably not processed by the upstream.
    NotProcessed,
    /// It may have taken effect.
    Maybe,
}

impl Upstream {
    /// An upstream at `url` (`http://host:port`), its host resolved by the
    /// system's resolver (an IP address is its only endpoint).
    pub fn new(url: &str, settings: UpstreamSettings) -> Result<Self, String> {
        Self::with_resolver(url, settings, Arc::new(SystemResolver))
    }

    /// An upstream at `url` whose host `resolver` resolves; connections are
    /// opened when first needed, the host resolved when first called.
    pub fn with_resolver(
        url: &str,
        settings: UpstreamSettings,
        resolver: Arc<dyn Resolve>,
    ) -> Result<Self, String> {
        let uri: Uri = url
            .parse()
            .map_err(|error| format!("{url:?} is not a URL: {error}"))?;
        if uri.scheme() != Some(&Scheme::HTTP) {
            return Err(format!(
                "{url:?}: only http:// upstreams are supported (TLS between pods belongs to the mesh)"
            ));
        }
        let authority = uri
            .authority()
            .filter(|authority| authority.port_u16().is_some())
            .ok_or_else(|| format!("{url:?}: the upstream needs a host and a port"))?
            .clone();
        let port = authority.port_u16().expect("checked above");
        let host = authority.host().to_owned();
        // An address needs no resolving: it is the one endpoint, for good.
        let literal = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .ok();
        let endpoints: Vec<Arc<Endpoint>> = literal
            .map(|ip| {
                Arc::new(Endpoint::new(
                    SocketAddr::new(ip, port),
                    settings.connections,
                ))
            })
            .into_iter()
            .collect();
        settings.endpoints_gauge.set(endpoints.len() as i64);
        Ok(Self {
            inner: Arc::new(Inner {
                name: authority.as_str().to_owned(),
                host,
                port,
                authority,
                settings,
                resolver,
                endpoints: RwLock::new(endpoints.into()),
                next: AtomicUsize::new(0),
                resolving: tokio::sync::Mutex::new(()),
                refreshing: AtomicBool::new(literal.is_some()),
                last_warning: Mutex::new(None),
                epoch: Instant::now(),
            }),
        })
    }

    /// Sends `request` (its body read whole first) and returns the response
    /// once its headers arrive; the body follows as the upstream sends it.
    pub async fn call<B>(&self, request: Request<B>) -> Result<Response<UpstreamBody>, GatewayError>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (mut head, body) = request.into_parts();
        let body = read_whole(body, self.inner.settings.max_request_bytes).await?;
        let path = head.uri.path_and_query().cloned();
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(Scheme::HTTP);
        uri.authority = Some(self.inner.authority.clone());
        uri.path_and_query = path;
        head.uri = Uri::from_parts(uri).map_err(|_| GatewayError::MalformedRequest {
            reason: "bad path".to_owned(),
        })?;
        head.version = http::Version::HTTP_2;
        let staying: Vec<header::HeaderName> = head
            .headers
            .keys()
            .filter(|name| stays_at_the_edge(name))
            .cloned()
            .collect();
        for name in staying {
            head.headers.remove(name);
        }

        let mut endpoint = match self.pick(&[]) {
            Some(endpoint) => endpoint,
            None => Box::pin(self.first_endpoint()).await?,
        };
        // Copied before the first attempt, which consumes the request: a
        // call that was never sent, or provably never processed, is sent
        // again as a copy of this one.
        let mut request = Request::from_parts(head, ());
        let spare = copy_request(&request);
        let mut tried = [None; MAX_ATTEMPTS];
        let mut sent_again = false;
        for attempt in 0.. {
            let failure = match self.send(&endpoint, request, body.clone()).await {
                Ok(response) => {
                    return Ok(response.map(|receive| UpstreamBody {
                        receive,
                        data_done: false,
                        finished: false,
                    }));
                }
                Err(failure) => failure,
            };
            tried[attempt] = Some(endpoint.address);
            let last = attempt + 1 == MAX_ATTEMPTS;
            let next = match failure.sent {
                Sent::Never if !last => self.pick(&tried),
                // To another endpoint if there is one; on this one's new
                // connection otherwise.
                Sent::NotProcessed if !last && !sent_again => {
                    sent_again = true;
                    self.pick(&tried).or_else(|| self.pick(&[]))
                }
                _ => None,
            };
            let Some(next) = next else {
                return Err(failure.error);
            };
            tracing::debug!(upstream = %self.inner.name, from = %endpoint.address, to = %next.address, error = %failure.error, "the call did not reach the upstream; sending it again");
            endpoint = next;
            request = copy_request(&spare);
        }
        unreachable!("the attempts end by returning")
    }

    /// The next endpoint in turn, passing over those in `tried` and those
    /// that could not be connected to lately (unless only they are left).
    ///
    /// In turn rather than by fewest calls in flight: every replica is
    /// equal and the calls are alike (mostly pings), the counts one gateway
    /// sees leave out the other gateways' calls, and a turn costs one atomic
    /// add where counting calls in flight would cost two per call more.
    fn pick(&self, tried: &[Option<SocketAddr>]) -> Option<Arc<Endpoint>> {
        let endpoints = self.inner.endpoints.read();
        let count = endpoints.len();
        if count == 0 {
            return None;
        }
        let turn = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let mut backing_off = None;
        for step in 0..count {
            let endpoint = &endpoints[(turn + step) % count];
            if tried.contains(&Some(endpoint.address)) {
                continue;
            }
            if endpoint.backing_off(self.inner.epoch) {
                backing_off.get_or_insert(endpoint);
                continue;
            }
            return Some(endpoint.clone());
        }
        backing_off.cloned()
    }

    /// An endpoint for a call that found none: the host resolved now.
    async fn first_endpoint(&self) -> Result<Arc<Endpoint>, GatewayError> {
        self.resolve(true).await;
        self.pick(&[]).ok_or_else(|| GatewayError::Unreachable {
            address: self.inner.name.clone(),
            reason: "its host name resolves to no address".to_owned(),
        })
    }

    /// Resolves the host and keeps one endpoint per address (at most
    /// `MAX_ENDPOINTS`); a failed or empty answer keeps those known. With
    /// `unless_known`, does nothing if there are endpoints already (another
    /// call resolved meanwhile).
    async fn resolve(&self, unless_known: bool) {
        let _resolving = self.inner.resolving.lock().await;
        if unless_known && !self.inner.endpoints.read().is_empty() {
            return;
        }
        let inner = &self.inner;
        let answer = tokio::time::timeout(
            RESOLVE_TIMEOUT,
            inner.resolver.resolve(&inner.host, inner.port),
        )
        .await;
        match answer {
            Ok(Ok(addresses)) if !addresses.is_empty() => self.keep(addresses),
            Ok(Ok(_)) => self.warn_unresolved("no address"),
            Ok(Err(error)) => self.warn_unresolved(&error.to_string()),
            Err(_) => self.warn_unresolved(&format!("no answer within {RESOLVE_TIMEOUT:?}")),
        }
        self.start_refreshing();
    }

    /// Makes `addresses` the endpoints, keeping those already known (and
    /// their connections).
    fn keep(&self, mut addresses: Vec<SocketAddr>) {
        addresses.sort_unstable();
        addresses.dedup();
        if addresses.len() > MAX_ENDPOINTS {
            tracing::warn!(upstream = %self.inner.name, addresses = addresses.len(), "the upstream resolves to more addresses than the gateway keeps; using the first {MAX_ENDPOINTS}");
            addresses.truncate(MAX_ENDPOINTS);
        }
        let known = self.inner.endpoints.read().clone();
        if known
            .iter()
            .map(|endpoint| endpoint.address)
            .eq(addresses.iter().copied())
        {
            return;
        }
        let endpoints: Vec<Arc<Endpoint>> = addresses
            .iter()
            .map(|address| {
                known
                    .iter()
                    .find(|endpoint| endpoint.address == *address)
                    .cloned()
                    .unwrap_or_else(|| {
                        Arc::new(Endpoint::new(*address, self.inner.settings.connections))
                    })
            })
            .collect();
        let added = addresses
            .iter()
            .filter(|address| !known.iter().any(|endpoint| endpoint.address == **address))
            .count();
        let dropped = known.len() + added - addresses.len();
        tracing::info!(upstream = %self.inner.name, endpoints = endpoints.len(), added, dropped, "upstream endpoints changed");
        self.inner
            .settings
            .endpoints_gauge
            .set(endpoints.len() as i64);
        *self.inner.endpoints.write() = endpoints.into();
    }

    fn warn_unresolved(&self, reason: &str) {
        let mut last = self.inner.last_warning.lock();
        let kept = self.inner.endpoints.read().len();
        if last.is_none_or(|at| at.elapsed() >= RESOLVE_WARNING_EVERY) {
            *last = Some(Instant::now());
            tracing::warn!(upstream = %self.inner.name, reason, kept, "cannot resolve the upstream's host; keeping the endpoints known");
        } else {
            tracing::debug!(upstream = %self.inner.name, reason, kept, "cannot resolve the upstream's host");
        }
    }

    /// Starts resolving the host every `resolve_every`, for as long as the
    /// upstream is in use (the task holds it only while resolving).
    fn start_refreshing(&self) {
        if self.inner.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let upstream = Arc::downgrade(&self.inner);
        let every = self.inner.settings.resolve_every;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick is now, and the host was just resolved.
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(inner) = upstream.upgrade() else {
                    return;
                };
                Upstream { inner }.resolve(false).await;
            }
        });
    }

    /// One attempt of a call on `endpoint`'s next connection: the request
    /// sent and its response's head awaited.
    async fn send(
        &self,
        endpoint: &Endpoint,
        request: Request<()>,
        body: Bytes,
    ) -> Result<Response<h2::RecvStream>, Failure> {
        let connection = endpoint.connection();
        // A connection found dead before the request leaves is re-opened;
        // if it cannot be, the request was never sent. Once it left, it is
        // sent again only if the upstream provably did not process it: it
        // may have taken effect.
        let open = connection.sender.lock().clone();
        let mut sender = match open {
            Some(sender) => match sender.ready().await {
                Ok(sender) => sender,
                Err(_) => Box::pin(self.reopen(endpoint, connection))
                    .await
                    .map_err(Failure::never_sent)?,
            },
            None => Box::pin(self.reopen(endpoint, connection))
                .await
                .map_err(Failure::never_sent)?,
        };
        // Refused before anything was sent (the connection went away
        // since `ready`): nothing reached the upstream.
        let (response, mut stream) =
            sender
                .send_request(request, body.is_empty())
                .map_err(|error| Failure {
                    error: error.into(),
                    sent: Sent::NotProcessed,
                })?;
        if !body.is_empty() {
            stream
                .send_data(body, true)
                .map_err(|error| Failure::processed(error.into()))?;
        }
        response.await.map_err(|error| Failure {
            sent: if never_processed(&error) {
                Sent::NotProcessed
            } else {
                Sent::Maybe
            },
            error: error.into(),
        })
    }

    /// Whether the upstream accepts a request for `path` with `headers` (as
    /// they will be sent: without those that stay at the edge).
    pub fn accepts_headers(&self, path: &str, headers: &HeaderMap) -> bool {
        let pseudo = [
            ":method".len() + "POST".len(),
            ":scheme".len() + "http".len(),
            ":authority".len() + self.inner.authority.as_str().len(),
            ":path".len() + path.len(),
        ];
        let mut size: usize = pseudo.iter().map(|bytes| bytes + HEADER_OVERHEAD).sum();
        for (name, value) in headers {
            if !stays_at_the_edge(name) {
                size = size.saturating_add(name.as_str().len() + value.len() + HEADER_OVERHEAD);
            }
        }
        size <= MAX_UPSTREAM_HEADER_BYTES
    }

    /// Opens the connection again unless another call just did. (Callers
    /// box this rare, large future so that every call's own stays small.)
    async fn reopen(
        &self,
        endpoint: &Endpoint,
        connection: &Connection,
    ) -> Result<SendRequest<Bytes>, GatewayError> {
        let address = endpoint.address;
        let failed_before = endpoint.down_until.load(Ordering::Relaxed);
        let _opening = connection.opening.lock().await;
        let current = connection.sender.lock().clone();
        if let Some(sender) = current
            && let Ok(sender) = sender.ready().await
        {
            return Ok(sender);
        }
        // A connect failed while this call waited: it goes elsewhere now
        // rather than wait out another connect timeout here.
        let failed_now = endpoint.down_until.load(Ordering::Relaxed);
        if failed_now != 0 && failed_now != failed_before {
            return Err(GatewayError::Unreachable {
                address: format!("{} ({address})", self.inner.name),
                reason: "a connection failed to open just now".to_owned(),
            });
        }
        let opened = tokio::time::timeout(CONNECT_TIMEOUT, self.open(address))
            .await
            .map_err(|_| GatewayError::Unreachable {
                address: format!("{} ({address})", self.inner.name),
                reason: format!("no connection within {CONNECT_TIMEOUT:?}"),
            })
            .and_then(|opened| opened);
        // Marked before the lock is let go, so the calls waiting on it see it.
        let sender = opened.inspect_err(|_| endpoint.back_off(self.inner.epoch))?;
        *connection.sender.lock() = Some(sender.clone());
        // Connected again: no clock read on its turns any more.
        if endpoint.down_until.load(Ordering::Relaxed) != 0 {
            endpoint.down_until.store(0, Ordering::Relaxed);
        }
        Ok(sender.ready().await?)
    }

    async fn open(&self, address: SocketAddr) -> Result<SendRequest<Bytes>, GatewayError> {
        let unreachable = |error: std::io::Error| GatewayError::Unreachable {
            address: format!("{} ({address})", self.inner.name),
            reason: error.to_string(),
        };
        let socket = TcpStream::connect(address).await.map_err(unreachable)?;
        // Small responses must not wait for a delayed acknowledgement.
        socket.set_nodelay(true).map_err(unreachable)?;
        socket2::SockRef::from(&socket)
            .set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(KEEPALIVE_EVERY))
            .map_err(unreachable)?;
        let (sender, mut connection) = h2::client::Builder::new()
            .initial_window_size(1 << 20)
            .initial_connection_window_size(4 << 20)
            .handshake::<_, Bytes>(socket)
            .await?;
        let ping_pong = connection.ping_pong();
        let upstream = self.inner.name.clone();
        tokio::spawn(async move {
            tokio::select! {
                ended = &mut connection => {
                    if let Err(error) = ended {
                        tracing::warn!(%upstream, %address, %error, "upstream connection closed");
                    }
                }
                () = keep_alive(ping_pong) => {
                    tracing::warn!(%upstream, %address, "upstream did not answer a ping; closing the connection");
                }
            }
        });
        Ok(sender)
    }
}

/// A failed attempt at a call, and whether it may be sent again.
struct Failure {
    error: GatewayError,
    sent: Sent,
}

impl Failure {
    /// A failure after which the call may have taken effect.
    fn processed(error: GatewayError) -> Self {
        Self {
            error,
            sent: Sent::Maybe,
        }
    }

    /// A failure before the call left: no connection to its endpoint.
    fn never_sent(error: GatewayError) -> Self {
        Self {
            error,
            sent: Sent::Never,
        }
    }
}

/// Whether the upstream's response to a stream proves it never processed it:
/// a GOAWAY that named a last stream below this one (`h2` fails exactly
/// those streams with the peer's GOAWAY; streams it had taken finish, or end
/// with another error if the connection dies), or the stream refused with
/// REFUSED_STREAM, which means "not processed" (RFC 9113, section 8.7).
fn never_processed(error: &h2::Error) -> bool {
    error.is_remote()
        && (error.is_go_away()
            || (error.is_reset() && error.reason() == Some(h2::Reason::REFUSED_STREAM)))
}

/// The request line and headers of `request`, for sending the call again.
fn copy_request(request: &Request<()>) -> Request<()> {
    let mut copy = Request::new(());
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    copy
}

/// A request body, read whole; refused beyond `limit` bytes.
async fn read_whole<B>(body: B, limit: usize) -> Result<Bytes, GatewayError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match read_to_end(body, limit).await {
        Ok((data, _)) => Ok(data),
        Err(Unread::OverLimit) => Err(GatewayError::TooLarge),
        Err(Unread::Broken(error)) => Err(GatewayError::MalformedRequest {
            reason: error.to_string(),
        }),
    }
}

/// Why a body could not be read to its end.
enum Unread {
    OverLimit,
    Broken(Box<dyn std::error::Error + Send + Sync>),
}

/// Reads a body to its end: its data, joined, and its trailers.
async fn read_to_end<B>(body: B, limit: usize) -> Result<(Bytes, HeaderMap), Unread>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut body = std::pin::pin!(body);
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut size = 0;
    let mut trailers = HeaderMap::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| Unread::Broken(error.into()))?;
        match frame.into_data() {
            Ok(data) => {
                size += data.len();
                if size > limit {
                    return Err(Unread::OverLimit);
                }
                chunks.push(data);
            }
            Err(frame) => {
                if let Ok(more) = frame.into_trailers() {
                    trailers.extend(more);
                }
            }
        }
    }
    let data = match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.pop().expect("one chunk"),
        _ => chunks.concat().into(),
    };
    Ok((data, trailers))
}

/// Pings the peer now and then; returns when it stops answering.
async fn keep_alive(ping_pong: Option<h2::PingPong>) {
    let Some(mut ping_pong) = ping_pong else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(KEEPALIVE_EVERY).await;
        if ping_pong.send_ping(h2::Ping::opaque()).is_err() {
            return;
        }
        let pong = std::future::poll_fn(|cx| ping_pong.poll_pong(cx));
        if !matches!(
            tokio::time::timeout(KEEPALIVE_TIMEOUT, pong).await,
            Ok(Ok(_))
        ) {
            return;
        }
    }
}

/// A unary response read whole: its head, its framed message(s) and its trailers.
#[derive(Debug)]
pub struct WholeResponse {
    pub head: http::response::Parts,
    pub messages: Bytes,
    pub trailers: HeaderMap,
}

impl WholeResponse {
    /// Reads `response` to its end, refusing responses over `limit` bytes.
    pub async fn read<B>(response: Response<B>, limit: usize) -> Result<Self, GatewayError>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (head, body) = response.into_parts();
        let (messages, trailers) =
            read_to_end(body, limit)
                .await
                .map_err(|unread| match unread {
                    Unread::OverLimit => GatewayError::BrokenResponse {
                        reason: format!("a response over {limit} bytes"),
                    },
                    Unread::Broken(error) => match error.downcast::<h2::Error>() {
                        Ok(error) => GatewayError::Upstream(*error),
                        Err(error) => GatewayError::BrokenResponse {
                            reason: error.to_string(),
                        },
                    },
                })?;
        Ok(Self {
            head,
            messages,
            trailers,
        })
    }
}

/// A response's body as the upstream sends it: messages, then trailers.
#[derive(Debug)]
pub struct UpstreamBody {
    receive: h2::RecvStream,
    data_done: bool,
    finished: bool,
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        if self.finished {
            return Poll::Ready(None);
        }
        if !self.data_done {
            match ready!(self.receive.poll_data(cx)) {
                Some(Ok(data)) => {
                    // Consumed: let the upstream send more.
                    let _ = self.receive.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(error)) => {
                    self.finished = true;
                    return Poll::Ready(Some(Err(error)));
                }
                None => self.data_done = true,
            }
        }
        let trailers: Result<Option<HeaderMap>, h2::Error> = ready!(self.receive.poll_trailers(cx));
        self.finished = true;
        Poll::Ready(
            trailers
                .transpose()
                .map(|trailers| trailers.map(Frame::trailers)),
        )
    }

    fn is_end_stream(&self) -> bool {
        self.finished || self.receive.is_end_stream()
    }
}

/// The upstream as a gRPC client transport, for the gateway's own calls
/// (health checks).
impl tower::Service<Request<tonic::body::Body>> for Upstream {
    type Response = Response<UpstreamBody>;
    type Error = GatewayError;
    type Future =
        Pin<Box<dyn Future<Output = Result<Response<UpstreamBody>, GatewayError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<tonic::body::Body>) -> Self::Future {
        let upstream = self.clone();
        Box::pin(async move { upstream.call(request).await })
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http_body_util::StreamBody;
    use proptest::prelude::*;

    use super::*;

    type Frames = futures::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>;

    /// A body sent as `chunks`, then `trailers` if any.
    fn body_of(chunks: &[Vec<u8>], trailers: Option<HeaderMap>) -> StreamBody<Frames> {
        let mut frames: Vec<Result<Frame<Bytes>, Infallible>> = chunks
            .iter()
            .map(|chunk| Ok(Frame::data(Bytes::from(chunk.clone()))))
            .collect();
        if let Some(trailers) = trailers {
            frames.push(Ok(Frame::trailers(trailers)));
        }
        StreamBody::new(futures::stream::iter(frames))
    }

    fn status_trailers(code: u16) -> HeaderMap {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", code.into());
        trailers
    }

    proptest! {
        #[test]
        fn a_body_is_read_whole_within_its_limit_and_refused_beyond(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..16),
            limit in 0usize..512,
            code in 0u16..17,
        ) {
            let whole: Vec<u8> = chunks.concat();
            let read = futures::executor::block_on(read_to_end(
                body_of(&chunks, Some(status_trailers(code))),
                limit,
            ));
            match read {
                Ok((data, trailers)) => {
                    prop_assert!(whole.len() <= limit);
                    prop_assert_eq!(&data[..], &whole[..]);
                    prop_assert_eq!(trailers, status_trailers(code));
                }
                Err(Unread::OverLimit) => prop_assert!(whole.len() > limit),
                Err(Unread::Broken(error)) => prop_assert!(false, "{error}"),
            }
        }

        #[test]
        fn a_whole_response_keeps_its_messages_and_trailers_or_names_the_limit(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..16),
            limit in 0usize..512,
        ) {
            let whole: Vec<u8> = chunks.concat();
            let response = Response::new(body_of(&chunks, Some(status_trailers(0))));
            let read = futures::executor::block_on(WholeResponse::read(response, limit));
            match read {
                Ok(read) => {
                    prop_assert_eq!(&read.messages[..], &whole[..]);
                    prop_assert_eq!(read.trailers, status_trailers(0));
                }
                Err(GatewayError::BrokenResponse { reason }) => {
                    prop_assert!(whole.len() > limit);
                    prop_assert!(reason.contains(&limit.to_string()));
                }
                Err(error) => prop_assert!(false, "{error}"),
            }
        }
    }

    /// The number of requests `serve` has received, and its address.
    struct TestUpstream {
        url: String,
        requests: Arc<AtomicUsize>,
    }

    /// How a test upstream serves one connection, counting the requests it takes.
    type Serve = fn(TcpStream, Arc<AtomicUsize>) -> futures::future::BoxFuture<'static, ()>;

    /// An upstream whose connections are served, in turn, by `servers`
    /// (the last one for every connection after).
    async fn test_upstream(servers: Vec<Serve>) -> TestUpstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicUsize::new(0));
        let counted = requests.clone();
        tokio::spawn(async move {
            let mut turn = 0;
            while let Ok((socket, _)) = listener.accept().await {
                let server = &servers[turn.min(servers.len() - 1)];
                turn += 1;
                tokio::spawn(server(socket, counted.clone()));
            }
        });
        TestUpstream { url, requests }
    }

    /// Answers every request with an empty OK gRPC response.
    async fn answer_ok(socket: TcpStream, requests: Arc<AtomicUsize>) {
        let mut connection = h2::server::handshake(socket).await.unwrap();
        while let Some(Ok((_, mut respond))) = connection.accept().await {
            requests.fetch_add(1, Ordering::SeqCst);
            let head = Response::builder().status(200).body(()).unwrap();
            let mut body = respond.send_response(head, false).unwrap();
            body.send_trailers(status_trailers(0)).unwrap();
        }
    }

    /// Reads the client's frames until a request's HEADERS arrive, then says
    /// GOAWAY with 0 as the last stream processed (so that request was not),
    /// as a server that is going away before it took the call.
    async fn go_away_before_the_request(mut socket: TcpStream, _: Arc<AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        const PREFACE: usize = 24;
        const HEADERS: u8 = 0x1;
        let mut read = Vec::new();
        let mut buffer = [0u8; 4096];
        'frames: loop {
            let n = socket.read(&mut buffer).await.unwrap();
            assert!(n > 0, "the client closed before sending a request");
            read.extend_from_slice(&buffer[..n]);
            let mut at = PREFACE;
            while read.len() >= at + 9 {
                let length = u32::from_be_bytes([0, read[at], read[at + 1], read[at + 2]]) as usize;
                if read[at + 3] == HEADERS {
                    break 'frames;
                }
                at += 9 + length;
            }
        }
        let settings = [0, 0, 0, 0x4, 0, 0, 0, 0, 0];
        let go_away = [0, 0, 8, 0x7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        socket.write_all(&settings).await.unwrap();
        socket.write_all(&go_away).await.unwrap();
        // Held open until the client lets go, as a draining server would.
        while socket.read(&mut buffer).await.is_ok_and(|n| n > 0) {}
    }

    /// Refuses the first request with REFUSED_STREAM, answers the others.
    async fn refuse_the_first_stream(socket: TcpStream, requests: Arc<AtomicUsize>) {
        let mut connection = h2::server::handshake(socket).await.unwrap();
        while let Some(Ok((_, mut respond))) = connection.accept().await {
            if requests.fetch_add(1, Ordering::SeqCst) == 0 {
                respond.send_reset(h2::Reason::REFUSED_STREAM);
                continue;
            }
            let head = Response::builder().status(200).body(()).unwrap();
            let mut body = respond.send_response(head, false).unwrap();
            body.send_trailers(status_trailers(0)).unwrap();
        }
    }

    /// Takes each request, then drops the connection without answering, as
    /// a server that crashed mid-call.
    async fn take_the_request_then_die(socket: TcpStream, requests: Arc<AtomicUsize>) {
        let mut connection = h2::server::handshake(socket).await.unwrap();
        if let Some(Ok(_)) = connection.accept().await {
            requests.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn settings(connections: usize) -> UpstreamSettings {
        UpstreamSettings {
            connections,
            max_request_bytes: 1024,
            // The tests resolve again themselves (`Upstream::resolve`).
            resolve_every: Duration::from_secs(3600),
            endpoints_gauge: Gauge::default(),
        }
    }

    fn ping_request() -> Request<http_body_util::Full<Bytes>> {
        Request::post("/presence.activity.v1.ActivityService/Ping")
            .header("content-type", "application/grpc")
            .body(http_body_util::Full::new(Bytes::from_static(&[
                0, 0, 0, 0, 0,
            ])))
            .unwrap()
    }

    async fn answered(upstream: &Upstream) -> Result<HeaderMap, GatewayError> {
        let response = upstream.call(ping_request()).await?;
        Ok(WholeResponse::read(response, 1024).await?.trailers)
    }

    #[tokio::test]
    async fn a_call_sent_as_the_upstream_went_away_is_sent_again_on_a_new_connection() {
        let test = test_upstream(vec![
            |socket, requests| Box::pin(go_away_before_the_request(socket, requests)),
            |socket, requests| Box::pin(answer_ok(socket, requests)),
        ])
        .await;
        let upstream = Upstream::new(&test.url, settings(1)).unwrap();
        let trailers = answered(&upstream)
            .await
            .expect("answered on the new connection");
        assert_eq!(trailers, status_trailers(0));
        assert_eq!(test.requests.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_refused_stream_is_sent_again() {
        let test = test_upstream(vec![|socket, requests| {
            Box::pin(refuse_the_first_stream(socket, requests))
        }])
        .await;
        let upstream = Upstream::new(&test.url, settings(1)).unwrap();
        let trailers = answered(&upstream).await.expect("answered the second time");
        assert_eq!(trailers, status_trailers(0));
        assert_eq!(test.requests.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_call_the_upstream_took_is_not_sent_again_when_it_dies() {
        let test = test_upstream(vec![|socket, requests| {
            Box::pin(take_the_request_then_die(socket, requests))
        }])
        .await;
        let upstream = Upstream::new(&test.url, settings(1)).unwrap();
        let failed = answered(&upstream).await.expect_err("no response");
        assert_eq!(failed.status().code(), tonic::Code::Unavailable, "{failed}");
        assert_eq!(test.requests.load(Ordering::SeqCst), 1, "sent once only");
    }

    #[test]
    fn header_lists_beyond_what_the_upstream_accepts_are_refused() {
        let upstream = Upstream::new("http://127.0.0.1:50051", settings(1)).unwrap();
        let path = "/presence.activity.v1.ActivityService/Ping";
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Bearer token".parse().unwrap());
        assert!(upstream.accepts_headers(path, &headers));
        headers.insert(
            "x-padding",
            "a".repeat(MAX_UPSTREAM_HEADER_BYTES).parse().unwrap(),
        );
        assert!(!upstream.accepts_headers(path, &headers));
        // What stays at the edge does not count.
        headers.remove("x-padding");
        headers.insert(
            "cookie",
            "a".repeat(MAX_UPSTREAM_HEADER_BYTES).parse().unwrap(),
        );
        assert!(upstream.accepts_headers(path, &headers));
    }

    /// A resolver whose answer the test sets: addresses, or `None` for a failure.
    #[derive(Debug, Default)]
    struct TestResolver {
        answer: Mutex<Option<Vec<SocketAddr>>>,
        asked: AtomicUsize,
    }

    impl TestResolver {
        fn answer(&self, upstreams: &[&TestUpstream]) {
            *self.answer.lock() = Some(upstreams.iter().map(|test| test.address()).collect());
        }

        fn fail(&self) {
            *self.answer.lock() = None;
        }
    }

    impl Resolve for TestResolver {
        fn resolve(&self, _: &str, _: u16) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>> {
            self.asked.fetch_add(1, Ordering::SeqCst);
            let answer = self.answer.lock().clone();
            Box::pin(async move {
                answer.ok_or_else(|| io::Error::other("no answer from the name server"))
            })
        }
    }

    impl TestUpstream {
        fn address(&self) -> SocketAddr {
            self.url.trim_start_matches("http://").parse().unwrap()
        }

        fn requests(&self) -> usize {
            self.requests.load(Ordering::SeqCst)
        }
    }

    async fn answering_ok() -> TestUpstream {
        test_upstream(vec![|socket, requests| {
            Box::pin(answer_ok(socket, requests))
        }])
        .await
    }

    /// An upstream named `pods.test`, resolved by `resolver`.
    fn named_upstream(resolver: &Arc<TestResolver>, connections: usize) -> Upstream {
        Upstream::with_resolver(
            "http://pods.test:50051",
            settings(connections),
            resolver.clone(),
        )
        .unwrap()
    }

    async fn answer_calls(upstream: &Upstream, calls: usize) {
        for call in 0..calls {
            let trailers = answered(upstream)
                .await
                .unwrap_or_else(|error| panic!("call {call}: {error}"));
            assert_eq!(trailers, status_trailers(0));
        }
    }

    /// An address nothing listens on: connecting is refused.
    async fn refusing_address() -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    }

    #[tokio::test]
    async fn calls_spread_evenly_over_every_resolved_endpoint() {
        let pods = [
            answering_ok().await,
            answering_ok().await,
            answering_ok().await,
        ];
        let resolver = Arc::new(TestResolver::default());
        resolver.answer(&[&pods[0], &pods[1], &pods[2]]);
        let upstream = named_upstream(&resolver, 2);
        answer_calls(&upstream, 30).await;
        let counts: Vec<usize> = pods.iter().map(TestUpstream::requests).collect();
        assert_eq!(counts, [10, 10, 10]);
    }

    #[tokio::test]
    async fn a_newly_resolved_endpoint_gets_its_share_of_calls() {
        let pods = [
            answering_ok().await,
            answering_ok().await,
            answering_ok().await,
        ];
        let resolver = Arc::new(TestResolver::default());
        resolver.answer(&[&pods[0], &pods[1]]);
        let upstream = named_upstream(&resolver, 1);
        answer_calls(&upstream, 10).await;
        assert_eq!(pods[2].requests(), 0);
        resolver.answer(&[&pods[0], &pods[1], &pods[2]]);
        upstream.resolve(false).await;
        answer_calls(&upstream, 30).await;
        assert_eq!(pods[2].requests(), 10);
        assert_eq!(pods[0].requests() + pods[1].requests(), 30);
    }

    #[tokio::test]
    async fn an_endpoint_no_longer_resolved_gets_no_new_calls() {
        let pods = [answering_ok().await, answering_ok().await];
        let resolver = Arc::new(TestResolver::default());
        resolver.answer(&[&pods[0], &pods[1]]);
        let upstream = named_upstream(&resolver, 1);
        answer_calls(&upstream, 10).await;
        let before = pods[1].requests();
        assert!(before > 0);
        resolver.answer(&[&pods[0]]);
        upstream.resolve(false).await;
        answer_calls(&upstream, 20).await;
        assert_eq!(
            pods[1].requests(),
            before,
            "the dropped endpoint took calls"
        );
        assert_eq!(pods[0].requests() + before, 30);
    }

    #[tokio::test]
    async fn a_call_whose_endpoint_refuses_connections_goes_to_another() {
        let pod = answering_ok().await;
        let refusing = refusing_address().await;
        let resolver = Arc::new(TestResolver::default());
        *resolver.answer.lock() = Some(vec![refusing, pod.address()]);
        let upstream = named_upstream(&resolver, 1);
        // Every call, whichever endpoint its turn names, is answered.
        answer_calls(&upstream, 10).await;
        assert_eq!(pod.requests(), 10);
    }

    #[tokio::test]
    async fn a_call_the_upstream_went_away_before_is_sent_again_to_another_endpoint() {
        let leaving = test_upstream(vec![|socket, requests| {
            Box::pin(go_away_before_the_request(socket, requests))
        }])
        .await;
        let staying = answering_ok().await;
        let resolver = Arc::new(TestResolver::default());
        resolver.answer(&[&leaving, &staying]);
        let upstream = named_upstream(&resolver, 1);
        answer_calls(&upstream, 4).await;
        assert_eq!(staying.requests(), 4);
    }

    #[tokio::test]
    async fn a_failed_or_empty_resolution_keeps_the_endpoints_known() {
        let pods = [answering_ok().await, answering_ok().await];
        let resolver = Arc::new(TestResolver::default());
        resolver.answer(&[&pods[0], &pods[1]]);
        let upstream = named_upstream(&resolver, 1);
        answer_calls(&upstream, 2).await;
        resolver.fail();
        upstream.resolve(false).await;
        *resolver.answer.lock() = Some(Vec::new());
        upstream.resolve(false).await;
        assert_eq!(resolver.asked.load(Ordering::SeqCst), 3);
        answer_calls(&upstream, 10).await;
        let counts: Vec<usize> = pods.iter().map(TestUpstream::requests).collect();
        assert_eq!(counts, [6, 6]);
    }

    #[tokio::test]
    async fn a_host_that_never_resolved_fails_the_call_as_unreachable() {
        let resolver = Arc::new(TestResolver::default());
        let upstream = named_upstream(&resolver, 1);
        let failed = answered(&upstream).await.expect_err("no endpoint");
        assert!(
            matches!(failed, GatewayError::Unreachable { .. }),
            "{failed}"
        );
        assert_eq!(failed.status().code(), tonic::Code::Unavailable);
    }

    #[tokio::test]
    async fn the_endpoints_gauge_counts_the_resolved_addresses() {
        let pods = [answering_ok().await, answering_ok().await];
        let resolver = Arc::new(TestResolver::default());
        resolver.answer(&[&pods[0], &pods[1]]);
        let gauge = Gauge::default();
        let upstream = Upstream::with_resolver(
            "http://pods.test:50051",
            UpstreamSettings {
                endpoints_gauge: gauge.clone(),
                ..settings(1)
            },
            resolver.clone(),
        )
        .unwrap();
        assert_eq!(gauge.get(), 0);
        answer_calls(&upstream, 1).await;
        assert_eq!(gauge.get(), 2);
        resolver.answer(&[&pods[1]]);
        upstream.resolve(false).await;
        assert_eq!(gauge.get(), 1);
    }
}
