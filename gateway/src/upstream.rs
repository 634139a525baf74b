//! The gateway's client to one upstream service: a few HTTP/2 connections,
//! used in turn, spoken with `h2` directly. A call goes from the browser's
//! connection task straight onto an upstream connection and its response wakes
//! that task directly: no request queue, no task per call in between (the
//! hops a general-purpose client adds are a measured share of a ping's CPU
//! through the gateway; see docs/benchmarks.md). A connection that died is
//! re-opened by the next call that needs it, within the connect timeout. A
//! call the upstream provably never processed (it went away before the
//! call's stream, as a replica that is stopping does, or refused the stream)
//! is sent once more, on the next connection; any other failure is the
//! caller's, since the call may have taken effect.
//!
//! Request bodies are read whole (they are bounded by the edge's size limit)
//! and sent in one frame: every method of the contract takes a single
//! message. Answers stream back as they arrive, so server streams pass
//! through unchanged.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use http::uri::{Authority, Scheme};
use http::{HeaderMap, Request, Response, Uri, header};
use http_body::Frame;
use http_body_util::BodyExt;
use tokio::net::TcpStream;

use crate::error::GatewayError;

/// How long a new connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Idle connections are probed this often, by TCP keep-alive and an HTTP/2 ping.
const KEEPALIVE_EVERY: Duration = Duration::from_secs(30);
/// A connection whose peer does not answer a ping within this time is closed.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
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

#[derive(Debug, Clone)]
pub struct Upstream {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// `host:port`, for connecting and for error messages.
    address: String,
    authority: Authority,
    /// The largest request body sent on, in bytes.
    max_request_bytes: usize,
    connections: Vec<Connection>,
    next: AtomicUsize,
}

#[derive(Debug, Default)]
struct Connection {
    /// The open connection's sender, cloned for each call.
    sender: Mutex<Option<SendRequest<Bytes>>>,
    /// Held while (re)opening, so a dead connection is re-opened once.
    opening: tokio::sync::Mutex<()>,
}

impl Upstream {
    /// An upstream at `url` (`http://host:port`) over `connections`
    /// connections, opened when first needed, taking request bodies of at
    /// most `max_request_bytes`.
    pub fn new(url: &str, connections: usize, max_request_bytes: usize) -> Result<Self, String> {
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
        Ok(Self {
            inner: Arc::new(Inner {
                address: authority.as_str().to_owned(),
                authority,
                max_request_bytes,
                connections: (0..connections.max(1))
                    .map(|_| Connection::default())
                    .collect(),
                next: AtomicUsize::new(0),
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
        let body = read_whole(body, self.inner.max_request_bytes).await?;
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

        // Copied before the first attempt, which consumes the request: a
        // call the upstream provably never processed is sent once more.
        let again = copy_head(&head);
        let response = match self.send(Request::from_parts(head, ()), body.clone()).await {
            Ok(response) => response,
            Err(Failure {
                error,
                unprocessed: true,
            }) => {
                tracing::debug!(address = %self.inner.address, %error, "the upstream did not process the call; sending it again");
                self.send(again, body)
                    .await
                    .map_err(|failure| failure.error)?
            }
            Err(Failure { error, .. }) => return Err(error),
        };
        Ok(response.map(|receive| UpstreamBody {
            receive,
            data_done: false,
            finished: false,
        }))
    }

    /// One attempt of a call on the next connection: the request sent and
    /// its response's head awaited.
    async fn send(
        &self,
        request: Request<()>,
        body: Bytes,
    ) -> Result<Response<h2::RecvStream>, Failure> {
        let connection = self.pick();
        // A connection found dead before the request leaves is re-opened.
        // Once it left, it is sent again only if the upstream provably did
        // not process it (`Failure::unprocessed`): it may have taken effect.
        let open = connection.sender.lock().clone();
        let mut sender = match open {
            Some(sender) => match sender.ready().await {
                Ok(sender) => sender,
                Err(_) => Box::pin(self.reopen(connection))
                    .await
                    .map_err(Failure::processed)?,
            },
            None => Box::pin(self.reopen(connection))
                .await
                .map_err(Failure::processed)?,
        };
        // Refused before anything was sent (the connection went away
        // since `ready`): nothing reached the upstream.
        let (response, mut stream) =
            sender
                .send_request(request, body.is_empty())
                .map_err(|error| Failure {
                    error: error.into(),
                    unprocessed: true,
                })?;
        if !body.is_empty() {
            stream
                .send_data(body, true)
                .map_err(|error| Failure::processed(error.into()))?;
        }
        response.await.map_err(|error| Failure {
            unprocessed: never_processed(&error),
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

    fn pick(&self) -> &Connection {
        let turn = self.inner.next.fetch_add(1, Ordering::Relaxed);
        &self.inner.connections[turn % self.inner.connections.len()]
    }

    /// Opens the connection again unless another call just did. (Callers
    /// box this rare, large future so that every call's own stays small.)
    async fn reopen(&self, connection: &Connection) -> Result<SendRequest<Bytes>, GatewayError> {
        let _opening = connection.opening.lock().await;
        let current = connection.sender.lock().clone();
        if let Some(sender) = current
            && let Ok(sender) = sender.ready().await
        {
            return Ok(sender);
        }
        let sender = tokio::time::timeout(CONNECT_TIMEOUT, self.open())
            .await
            .map_err(|_| GatewayError::Unreachable {
                address: self.inner.address.clone(),
                reason: format!("no connection within {CONNECT_TIMEOUT:?}"),
            })??;
        *connection.sender.lock() = Some(sender.clone());
        Ok(sender.ready().await?)
    }

    async fn open(&self) -> Result<SendRequest<Bytes>, GatewayError> {
        let unreachable = |error: std::io::Error| GatewayError::Unreachable {
            address: self.inner.address.clone(),
            reason: error.to_string(),
        };
        let socket = TcpStream::connect(&self.inner.address)
            .await
            .map_err(unreachable)?;
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
        let address = self.inner.address.clone();
        tokio::spawn(async move {
            tokio::select! {
                ended = &mut connection => {
                    if let Err(error) = ended {
                        tracing::warn!(%address, %error, "upstream connection closed");
                    }
                }
                () = keep_alive(ping_pong) => {
                    tracing::warn!(%address, "upstream did not answer a ping; closing the connection");
                }
            }
        });
        Ok(sender)
    }
}

/// A failed attempt at a call, and whether the upstream provably never
/// processed it (then it is safe to send again).
struct Failure {
    error: GatewayError,
    unprocessed: bool,
}

impl Failure {
    /// A failure after which the call may have taken effect.
    fn processed(error: GatewayError) -> Self {
        Self {
            error,
            unprocessed: false,
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

/// The request line and headers of `head`, for sending the call again.
fn copy_head(head: &http::request::Parts) -> Request<()> {
    let mut request = Request::new(());
    *request.method_mut() = head.method.clone();
    *request.uri_mut() = head.uri.clone();
    *request.version_mut() = head.version;
    *request.headers_mut() = head.headers.clone();
    request
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
        let upstream = Upstream::new(&test.url, 1, 1024).unwrap();
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
        let upstream = Upstream::new(&test.url, 1, 1024).unwrap();
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
        let upstream = Upstream::new(&test.url, 1, 1024).unwrap();
        let failed = answered(&upstream).await.expect_err("no response");
        assert_eq!(failed.status().code(), tonic::Code::Unavailable, "{failed}");
        assert_eq!(test.requests.load(Ordering::SeqCst), 1, "sent once only");
    }

    #[test]
    fn header_lists_beyond_what_the_upstream_accepts_are_refused() {
        let upstream = Upstream::new("http://127.0.0.1:50051", 1, 1024).unwrap();
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
}
