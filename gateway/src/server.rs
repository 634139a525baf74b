//! The gateway's listeners: an accept loop with a bound on the connections
//! open at once, each connection served by hyper (HTTP/1.1 or HTTP/2, chosen
//! by the client's first bytes: HTTP/2's preface or not) with two deadlines
//! of its own:
//!
//! - the *header* deadline: a request's headers must arrive within
//!   `header_read_timeout` of its first byte (and a connection's first
//!   request within that time of the accept), or the connection is dropped.
//!   A slow sender (slowloris) holds a socket that long at most.
//! - the *idle* deadline: a connection with no request in flight for
//!   `idle_timeout` is closed gracefully.
//!
//! hyper's own `header_read_timeout` is not used: it starts as soon as the
//! connection waits for its next request, so it would close every kept-alive
//! connection between two pings. Here the header deadline starts with the
//! request's first byte, and the time between requests is the idle
//! deadline's alone.
//!
//! An HTTP/1.1 connection idle for [`PARK_AFTER`] is *parked*: hyper is
//! told to stop (it ends at once, sending nothing, as nothing is in flight)
//! and hands the socket back, the task waits for the socket to be readable,
//! then serves the next request with a new hyper connection. Between a
//! browser's pings its connection holds a socket and about 2 KB instead of
//! hyper's buffers (docs/benchmarks.md).
//!
//! Ownership: each connection task holds a permit of the connection
//! semaphore and the connection's [`Activity`]; its service and its socket
//! report to that activity (a request started or ended, bytes arrived), and
//! the task sleeps until the earliest deadline. On shutdown the listener is
//! dropped (new connections are refused), every connection is told to
//! finish gracefully, and the loop returns once every permit is back.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use bytes::BytesMut;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tower::ServiceExt;

/// How long a connection told to close (idle, or at shutdown with nothing
/// in flight) gets to do so before it is dropped.
const CLOSE_WITHIN: Duration = Duration::from_secs(5);
/// The wait after an accept error (such as running out of descriptors)
/// before accepting again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// HTTP/2 idle connections are probed this often by a ping, and closed when
/// it is not answered within the timeout.
const HTTP2_KEEPALIVE_EVERY: Duration = Duration::from_secs(30);
const HTTP2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Streams one HTTP/2 client connection may have open at once.
const HTTP2_MAX_STREAMS: u32 = 256;
/// The largest header list an HTTP/2 client may send (hyper's default, said
/// here so the edge's own limit, `upstream::MAX_UPSTREAM_HEADER_BYTES`, is
/// read beside it).
const HTTP2_MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;

/// How long an HTTP/1.1 connection with nothing in flight keeps its hyper
/// state (read and write buffers, about 16 KiB) before it is parked: the
/// state is dropped and only the socket is kept, until the next request's
/// first bytes arrive. A browser pings once a minute, so at scale nearly
/// every connection is parked (docs/benchmarks.md, "Browser-realistic load").
const PARK_AFTER: Duration = Duration::from_secs(1);
/// HTTP/2's connection preface, which a client with prior knowledge sends first.
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What a listener reports of its connections.
#[derive(Clone, Debug, Default)]
pub struct ConnectionGauges {
    /// Client connections open, parked or not.
    pub open: Gauge,
    /// HTTP/1.1 connections parked between two requests.
    pub parked: Gauge,
}

/// Counts one in a gauge until dropped.
struct Counted(Gauge);

impl Counted {
    fn new(gauge: &Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The bounds of a listener's connections.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// Serves `listener` until `shutdown` completes, each connection with the
/// service `connection` makes for its peer; then stops accepting and
/// returns once every connection has closed.
pub async fn serve<S>(
    listener: TcpListener,
    connection: impl Fn(SocketAddr) -> S,
    limits: ConnectionLimits,
    gauges: ConnectionGauges,
    shutdown: impl Future<Output = ()>,
) where
    S: ConnectionService,
{
    let builders = Arc::new(builders());
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (stopping, stop_seen) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut refused: u64 = 0;
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // Closed at once: the client fails fast and may retry elsewhere,
            // and the connections already open keep their descriptors.
            refused += 1;
            if refused.is_power_of_two() {
                tracing::warn!(
                    max = limits.max_connections,
                    refused,
                    "connection limit reached; closing new connections"
                );
            }
            drop(stream);
            continue;
        };
        // Nagle off: a gRPC-Web response is several small writes, and the last
        // must not wait for the browser's (delayed) acknowledgement.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot turn Nagle's algorithm off");
        }
        tokio::spawn(serve_connection(
            stream,
            connection(peer),
            builders.clone(),
            limits,
            stop_seen.clone(),
            (permit, Counted::new(&gauges.open)),
            gauges.parked.clone(),
        ));
    }
    drop(listener);
    stopping.send_replace(true);
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    // Every connection task holds a permit until it ends.
    let _ = permits.acquire_many(all).await;
}

/// What serves the requests of a listener's connections.
pub trait ConnectionService:
    tower::Service<Request, Response = Response, Error = Infallible, Future: Send + 'static>
    + Clone
    + Send
    + Unpin
    + 'static
{
}

impl<S> ConnectionService for S where
    S: tower::Service<Request, Response = Response, Error = Infallible, Future: Send + 'static>
        + Clone
        + Send
        + Unpin
        + 'static
{
}

/// How a listener's connections speak each protocol.
struct Builders {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
}

fn builders() -> Builders {
    let mut http1 = http1::Builder::new();
    http1.timer(TokioTimer::new()).header_read_timeout(None);
    let mut http2 = http2::Builder::new(TokioExecutor::new());
    http2
        .timer(TokioTimer::new())
        .max_concurrent_streams(HTTP2_MAX_STREAMS)
        .max_header_list_size(HTTP2_MAX_HEADER_LIST_BYTES)
        .keep_alive_interval(HTTP2_KEEPALIVE_EVERY)
        .keep_alive_timeout(HTTP2_KEEPALIVE_TIMEOUT);
    Builders { http1, http2 }
}

async fn serve_connection<S>(
    stream: TcpStream,
    service: S,
    builders: Arc<Builders>,
    limits: ConnectionLimits,
    mut stopping: watch::Receiver<bool>,
    _open: (OwnedSemaphorePermit, Counted),
    parked: Gauge,
) where
    S: ConnectionService,
{
    let activity = Arc::new(Activity::new(limits));
    let mut io = Watched {
        inner: stream,
        activity: activity.clone(),
        prefix: Bytes::new(),
    };
    let mut service = Tracked {
        inner: service,
        activity: activity.clone(),
    };
    // The first bytes tell HTTP/2 with prior knowledge (its preface) from
    // HTTP/1.1; they must arrive within the header deadline.
    let http2 = tokio::select! {
        read = read_version(&mut io) => match read {
            Ok(Some(http2)) => http2,
            _ => return,
        },
        () = activity.expiry() => return,
        _ = stopping.wait_for(|stopping| *stopping) => return,
    };
    if http2 {
        activity.http2.store(true, Ordering::Release);
        // Boxed, so that every connection's task is sized for HTTP/1.1's state only.
        let mut connection = Box::pin(builders.http2.serve_connection(TokioIo::new(io), service));
        drive(connection.as_mut(), &activity, &mut stopping, false).await;
        return;
    }
    loop {
        // Boxed, so that a parked connection's task holds none of hyper's state.
        let mut connection = Box::new(builders.http1.serve_connection(TokioIo::new(io), service));
        if drive(Pin::new(&mut *connection), &activity, &mut stopping, true).await == Ended::Closed
        {
            return;
        }
        // Parked: hyper's state is dropped, the socket and the service kept.
        let http1::Parts {
            io: socket,
            read_buf,
            service: served,
            ..
        } = connection.into_parts();
        io = socket.into_inner();
        // Copied, and the original dropped before the wait: the bytes hyper
        // returns share its whole read buffer.
        io.prefix = Bytes::copy_from_slice(&read_buf);
        drop(read_buf);
        service = served;
        if io.prefix.is_empty() {
            let _parked = Counted::new(&parked);
            tokio::select! {
                readable = io.inner.readable() => if readable.is_err() {
                    return;
                },
                () = activity.expiry() => return,
                _ = stopping.wait_for(|stopping| *stopping) => return,
            }
        }
    }
}

/// Reads a connection's first bytes until they tell HTTP/2's preface from
/// anything else: whether it is HTTP/2, or `None` if the client closed
/// first. What was read is kept in `io`'s prefix for the protocol to read.
async fn read_version(io: &mut Watched) -> io::Result<Option<bool>> {
    let mut first = BytesMut::with_capacity(HTTP2_PREFACE.len());
    let http2 = loop {
        if io.read_buf(&mut first).await? == 0 {
            return Ok(None);
        }
        if !HTTP2_PREFACE.starts_with(&first) {
            break false;
        }
        if first.len() == HTTP2_PREFACE.len() {
            break true;
        }
    };
    io.prefix = first.freeze();
    Ok(Some(http2))
}

/// How [`drive`] left a connection.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// Over: the socket is to be closed.
    Closed,
    /// Idle and parked: hyper let go of the socket, which stays open.
    Parked,
}

/// A hyper connection as [`drive`] runs it.
trait Served {
    /// Polls until the connection is over (or, for HTTP/1.1, parked).
    fn poll_served(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<hyper::Result<()>>;
    fn graceful_shutdown(self: Pin<&mut Self>);
}

type ServedIo = TokioIo<Watched>;

impl<S> Served for http1::Connection<ServedIo, Tracked<S>>
where
    S: ConnectionService,
{
    fn poll_served(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<hyper::Result<()>> {
        // Without shutdown: a parked connection's socket stays open.
        self.get_mut().poll_without_shutdown(cx)
    }

    fn graceful_shutdown(self: Pin<&mut Self>) {
        http1::Connection::graceful_shutdown(self);
    }
}

impl<S> Served for http2::Connection<ServedIo, Tracked<S>, TokioExecutor>
where
    S: ConnectionService,
{
    fn poll_served(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<hyper::Result<()>> {
        self.poll(cx)
    }

    fn graceful_shutdown(self: Pin<&mut Self>) {
        http2::Connection::graceful_shutdown(self);
    }
}

/// Runs `connection` until it is over, within the connection's deadlines
/// and the listener's shutdown; with `park`, an HTTP/1.1 connection idle for
/// [`PARK_AFTER`] is let go of (hyper returns its socket) and `Parked`.
async fn drive<C: Served + ?Sized>(
    mut connection: Pin<&mut C>,
    activity: &Activity,
    stopping: &mut watch::Receiver<bool>,
    park: bool,
) -> Ended {
    let mut closing = false;
    let mut parking = false;
    loop {
        let park_at = activity.park_at().filter(|_| park && !closing && !parking);
        let wake = park_at.map_or(activity.deadline(), |at| at.min(activity.deadline()));
        tokio::select! {
            served = std::future::poll_fn(|cx| connection.as_mut().poll_served(cx)) => {
                if let Err(error) = served {
                    tracing::debug!(%error, "client connection ended with an error");
                    return Ended::Closed;
                }
                return if parking && !closing { Ended::Parked } else { Ended::Closed };
            }
            () = tokio::time::sleep_until(wake) => match activity.expired() {
                Expired::No => {
                    // Read again: bytes may have arrived as the timer fired.
                    let due = activity.park_at().is_some_and(|at| Instant::now() >= at);
                    if park_at.is_some() && due {
                        // Idle, so hyper ends at once without a byte sent.
                        connection.as_mut().graceful_shutdown();
                        parking = true;
                    }
                }
                Expired::Headers => {
                    tracing::debug!("a request's headers did not arrive in time; closing the connection");
                    return Ended::Closed;
                }
                Expired::Idle if closing => return Ended::Closed,
                Expired::Idle => {
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                    activity.close_within(CLOSE_WITHIN);
                }
            },
            () = activity.changed.notified() => {}
            _ = stopping.wait_for(|stopping| *stopping), if !closing => {
                // Requests in flight finish (streams until the drain
                // deadline); an idle connection closes now.
                connection.as_mut().graceful_shutdown();
                closing = true;
                activity.close_within(CLOSE_WITHIN);
            }
        }
    }
}

/// What a connection is doing, as its socket and its service report it.
#[derive(Debug)]
struct Activity {
    limits: ConnectionLimits,
    /// When this connection started: deadlines are milliseconds after it.
    epoch: Instant,
    in_flight: AtomicUsize,
    /// The current deadline, in milliseconds after `epoch`; `u64::MAX` for none.
    deadline_ms: AtomicU64,
    /// Whether the deadline is a request's header deadline (missed: the
    /// connection is dropped) rather than the idle one (closed gracefully).
    reading_head: AtomicBool,
    /// When the last request in flight ended, in milliseconds after
    /// `epoch`; `u64::MAX` while one is in flight or none has ended yet.
    idle_since_ms: AtomicU64,
    /// Whether the first bytes were HTTP/2's preface: then bytes between
    /// requests are frames of the connection itself (pings, window
    /// updates), not the start of a request.
    http2: AtomicBool,
    /// Wakes the connection task when the deadline moved.
    changed: Notify,
}

enum Expired {
    No,
    Headers,
    Idle,
}

const NO_DEADLINE: u64 = u64::MAX;

impl Activity {
    /// A new connection: its first request must arrive within the header deadline.
    fn new(limits: ConnectionLimits) -> Self {
        Self {
            limits,
            epoch: Instant::now(),
            in_flight: AtomicUsize::new(0),
            deadline_ms: AtomicU64::new(millis(limits.header_read_timeout)),
            reading_head: AtomicBool::new(true),
            idle_since_ms: AtomicU64::new(NO_DEADLINE),
            http2: AtomicBool::new(false),
            changed: Notify::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        millis(self.epoch.elapsed())
    }

    fn deadline(&self) -> Instant {
        match self.deadline_ms.load(Ordering::Acquire) {
            NO_DEADLINE => self.epoch + Duration::from_secs(365 * 24 * 3600),
            ms => self.epoch + Duration::from_millis(ms),
        }
    }

    fn set_deadline(&self, ms: u64, reading_head: bool) {
        self.reading_head.store(reading_head, Ordering::Release);
        self.deadline_ms.store(ms, Ordering::Release);
        self.changed.notify_one();
    }

    fn expired(&self) -> Expired {
        let deadline = self.deadline_ms.load(Ordering::Acquire);
        if self.in_flight.load(Ordering::Acquire) > 0 || self.now_ms() < deadline {
            return Expired::No;
        }
        if self.reading_head.load(Ordering::Acquire) {
            Expired::Headers
        } else {
            Expired::Idle
        }
    }

    fn close_within(&self, within: Duration) {
        self.set_deadline(self.now_ms().saturating_add(millis(within)), false);
    }

    /// Bytes arrived: with no request in flight on HTTP/1.1 they start the
    /// next request, whose headers now have their deadline.
    fn bytes_arrived(&self) {
        if self.in_flight.load(Ordering::Acquire) > 0
            || self.reading_head.load(Ordering::Acquire)
            || self.http2.load(Ordering::Acquire)
        {
            return;
        }
        let headers_by = self
            .now_ms()
            .saturating_add(millis(self.limits.header_read_timeout));
        let deadline = self.deadline_ms.load(Ordering::Acquire).min(headers_by);
        self.set_deadline(deadline, true);
    }

    /// When an idle HTTP/1.1 connection is to be parked: [`PARK_AFTER`]
    /// after its last request ended. `None` while a request is in flight
    /// or its bytes are arriving, and before the first one ended.
    fn park_at(&self) -> Option<Instant> {
        let since = self.idle_since_ms.load(Ordering::Acquire);
        if since == NO_DEADLINE
            || self.in_flight.load(Ordering::Acquire) > 0
            || self.reading_head.load(Ordering::Acquire)
        {
            return None;
        }
        Some(self.epoch + Duration::from_millis(since) + PARK_AFTER)
    }

    /// Resolves once the current deadline has passed with nothing in flight.
    async fn expiry(&self) {
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(self.deadline()) => {
                    if !matches!(self.expired(), Expired::No) {
                        return;
                    }
                }
                () = self.changed.notified() => {}
            }
        }
    }

    fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.idle_since_ms.store(NO_DEADLINE, Ordering::Release);
        self.reading_head.store(false, Ordering::Release);
        self.deadline_ms.store(NO_DEADLINE, Ordering::Release);
    }

    fn request_ended(&self) {
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            let now = self.now_ms();
            self.idle_since_ms.store(now, Ordering::Release);
            let idle_by = now.saturating_add(millis(self.limits.idle_timeout));
            self.set_deadline(idle_by, false);
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(NO_DEADLINE - 1)
}

/// A connection's socket, reporting the bytes it reads, with bytes already
/// read from it put back in front (`prefix`): those that told its protocol,
/// or those hyper had read when the connection parked.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
    prefix: Bytes,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            let front = self.prefix.split_to(n);
            buf.put_slice(&front);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.bytes_arrived();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A connection's service, reporting when each request starts and ends (its
/// response's body is dropped, or the call is abandoned before it answered).
#[derive(Clone)]
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

/// One request in flight, until dropped.
#[derive(Debug)]
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: &Arc<Activity>) -> Self {
        activity.request_started();
        Self(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

impl<S> hyper::service::Service<hyper::Request<Incoming>> for Tracked<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = hyper::Response<Guarded>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, request: hyper::Request<Incoming>) -> Self::Future {
        let in_flight = InFlight::start(&self.activity);
        let call = self
            .inner
            .clone()
            .oneshot(request.map(axum::body::Body::new));
        Box::pin(async move {
            let response = call.await?;
            Ok(response.map(|body| Guarded {
                body,
                _in_flight: in_flight,
            }))
        })
    }
}

/// A response's body that keeps its request in flight until it is dropped.
#[derive(Debug)]
pub struct Guarded {
    body: axum::body::Body,
    _in_flight: InFlight,
}

impl http_body::Body for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
