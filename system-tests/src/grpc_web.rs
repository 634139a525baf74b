//! The browser's side of gRPC-Web, as the web app's Connect-ES transport
//! speaks it: binary `application/grpc-web+proto` POSTs over one kept-alive
//! HTTP/1.1 connection (or one HTTP/2 cleartext connection, with prior
//! knowledge, as a browser behind an h2 edge multiplexes), a `grpc-timeout`
//! with each unary call, answers
//! framed as messages then one trailer frame (or a trailers-only answer with
//! the status in the headers), and server streams read frame by frame.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, Request, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use tokio::net::{TcpSocket, TcpStream};
use tonic::{Code, Status};

const CONTENT_TYPE: &str = "application/grpc-web+proto";
/// The flag of a gRPC-Web frame carrying trailers.
const TRAILERS: u8 = 0x80;

/// How a call ended when it did not end well.
#[derive(Debug)]
pub enum CallError {
    /// The server (gateway or service) answered with this status.
    Status(Status),
    /// No whole answer: the connection failed or was cut.
    Transport(String),
    /// No answer within the client's own deadline: the call hung.
    TimedOut,
}

impl CallError {
    /// The status code, when the server gave one.
    pub fn code(&self) -> Option<Code> {
        match self {
            CallError::Status(status) => Some(status.code()),
            _ => None,
        }
    }

    /// A short name for counting outcomes: the code's name, or what went wrong.
    pub fn label(&self) -> String {
        match self {
            CallError::Status(status) => format!("{:?}", status.code()),
            CallError::Transport(_) => "transport error".to_owned(),
            CallError::TimedOut => "client deadline".to_owned(),
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Status(status) => {
                write!(f, "{:?}: {}", status.code(), status.message())
            }
            CallError::Transport(reason) => write!(f, "transport: {reason}"),
            CallError::TimedOut => write!(f, "no answer within the client's deadline"),
        }
    }
}

/// One connection to the gateway, as a browser tab holds one.
#[derive(Debug)]
pub struct WebClient {
    address: SocketAddr,
    sender: Sender,
}

/// How a client speaks to the gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1, one call at a time, as a browser without an h2 edge.
    Http1,
    /// HTTP/2 cleartext with prior knowledge (no upgrade): the gateway tells
    /// the two apart by the client's preface, as it does behind an h2 edge.
    H2c,
}

#[derive(Debug)]
enum Sender {
    Http1(http1::SendRequest<Full<Bytes>>),
    Http2(http2::SendRequest<Full<Bytes>>),
}

impl WebClient {
    /// An HTTP/1.1 connection.
    pub async fn connect(address: SocketAddr) -> Result<Self, CallError> {
        Self::open(address, Protocol::Http1, None).await
    }

    /// A connection speaking `protocol`, from `source` (a loopback address
    /// other than 127.0.0.1 gives another 28,000 ephemeral ports towards one
    /// gateway) or from the address the kernel picks.
    pub async fn open(
        address: SocketAddr,
        protocol: Protocol,
        source: Option<IpAddr>,
    ) -> Result<Self, CallError> {
        let socket = open(address, source).await?;
        let failed = |error: hyper::Error| CallError::Transport(error.to_string());
        let sender = match protocol {
            Protocol::Http1 => {
                let (sender, connection) = http1::handshake(TokioIo::new(socket))
                    .await
                    .map_err(failed)?;
                tokio::spawn(connection);
                Sender::Http1(sender)
            }
            Protocol::H2c => {
                let (sender, connection) =
                    http2::handshake(TokioExecutor::new(), TokioIo::new(socket))
                        .await
                        .map_err(failed)?;
                tokio::spawn(connection);
                Sender::Http2(sender)
            }
        };
        Ok(Self { address, sender })
    }

    /// Whether the connection can take another call.
    pub fn is_open(&self) -> bool {
        match &self.sender {
            Sender::Http1(sender) => !sender.is_closed(),
            Sender::Http2(sender) => !sender.is_closed(),
        }
    }

    /// A unary call of `path`, answered within `deadline` (also sent as
    /// `grpc-timeout`, as the web app does).
    pub async fn unary<Answer: Message + Default>(
        &mut self,
        path: &str,
        token: Option<&str>,
        message: &impl Message,
        deadline: Duration,
    ) -> Result<Answer, CallError> {
        let call = async {
            let response = self.send(path, token, message, Some(deadline)).await?;
            let (head, body) = response.into_parts();
            let whole = body
                .collect()
                .await
                .map_err(|error| CallError::Transport(error.to_string()))?
                .to_bytes();
            let mut frames = Frames::default();
            frames.buffer.extend_from_slice(&whole);
            let mut answer = None;
            while let Some(frame) = frames.next_frame() {
                match frame {
                    Frame::Message(bytes) if answer.is_none() => answer = Some(bytes),
                    Frame::Message(_) => {}
                    Frame::Trailers(trailers) => {
                        status_of(&trailers)?;
                        let bytes = answer.ok_or_else(|| {
                            CallError::Transport("an OK answer without a message".to_owned())
                        })?;
                        return Answer::decode(bytes)
                            .map_err(|error| CallError::Transport(error.to_string()));
                    }
                }
            }
            // Trailers-only: the status is in the headers.
            status_of(&head.headers)?;
            Err(CallError::Transport(
                "an OK answer without a message".to_owned(),
            ))
        };
        tokio::time::timeout(deadline, call)
            .await
            .unwrap_or(Err(CallError::TimedOut))
    }

    /// Opens a server stream of `path`; its head must arrive within `deadline`
    /// (the stream itself has none, as the web app sets none).
    pub async fn stream(
        mut self,
        path: &str,
        token: Option<&str>,
        message: &impl Message,
        deadline: Duration,
    ) -> Result<WebStream, CallError> {
        let opening = self.send(path, token, message, None);
        let response = tokio::time::timeout(deadline, opening)
            .await
            .unwrap_or(Err(CallError::TimedOut))?;
        let (head, body) = response.into_parts();
        // A stream refused at once is a trailers-only answer.
        if head.headers.contains_key("grpc-status") {
            status_of(&head.headers)?;
        }
        Ok(WebStream {
            body,
            frames: Frames::default(),
            _client: self,
        })
    }

    async fn send(
        &mut self,
        path: &str,
        token: Option<&str>,
        message: &impl Message,
        deadline: Option<Duration>,
    ) -> Result<http::Response<Incoming>, CallError> {
        let mut body = BytesMut::with_capacity(5 + message.encoded_len());
        body.extend_from_slice(&[0]);
        body.extend_from_slice(&(message.encoded_len() as u32).to_be_bytes());
        message
            .encode(&mut body)
            .expect("a buffer sized for the message");
        let mut request = match self.sender {
            Sender::Http1(_) => Request::post(path).header(header::HOST, self.address.to_string()),
            // HTTP/2 names the authority in the request's pseudo-headers.
            Sender::Http2(_) => Request::post(format!("http://{}{path}", self.address)),
        };
        request = request
            .header(header::CONTENT_TYPE, CONTENT_TYPE)
            .header(header::ACCEPT, CONTENT_TYPE)
            .header("x-grpc-web", "1")
            .header("x-user-agent", "presence-system-tests");
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(deadline) = deadline {
            request = request.header("grpc-timeout", format!("{}m", deadline.as_millis()));
        }
        let request = request
            .body(Full::new(body.freeze()))
            .expect("a valid request");
        let transport = |error: hyper::Error| CallError::Transport(error.to_string());
        let response = match &mut self.sender {
            Sender::Http1(sender) => {
                sender.ready().await.map_err(transport)?;
                sender.send_request(request).await.map_err(transport)?
            }
            Sender::Http2(sender) => {
                sender.ready().await.map_err(transport)?;
                sender.send_request(request).await.map_err(transport)?
            }
        };
        if response.status() != http::StatusCode::OK {
            return Err(CallError::Transport(format!(
                "HTTP {} from the gateway",
                response.status()
            )));
        }
        Ok(response)
    }
}

/// An open server stream.
#[derive(Debug)]
pub struct WebStream {
    body: Incoming,
    frames: Frames,
    /// The connection is the stream's until it ends.
    _client: WebClient,
}

impl WebStream {
    /// The next message; `Ok(None)` when the stream ended with OK, the
    /// status when it ended with another.
    pub async fn next<M: Message + Default>(&mut self) -> Result<Option<M>, CallError> {
        loop {
            if let Some(frame) = self.frames.next_frame() {
                return match frame {
                    Frame::Message(bytes) => M::decode(bytes)
                        .map(Some)
                        .map_err(|error| CallError::Transport(error.to_string())),
                    Frame::Trailers(trailers) => status_of(&trailers).map(|()| None),
                };
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.frames.buffer.extend_from_slice(&data);
                    }
                }
                Some(Err(error)) => return Err(CallError::Transport(error.to_string())),
                None => {
                    return Err(CallError::Transport(
                        "the stream ended without a status".to_owned(),
                    ));
                }
            }
        }
    }
}

/// A TCP connection to `address`, Nagle off (a call is one small write).
async fn open(address: SocketAddr, source: Option<IpAddr>) -> Result<TcpStream, CallError> {
    let transport = |error: std::io::Error| CallError::Transport(error.to_string());
    let connecting = async {
        match source {
            None => TcpStream::connect(address).await,
            Some(source) => {
                let socket = match source {
                    IpAddr::V4(_) => TcpSocket::new_v4()?,
                    IpAddr::V6(_) => TcpSocket::new_v6()?,
                };
                socket.bind(SocketAddr::new(source, 0))?;
                socket.connect(address).await
            }
        }
    };
    let socket = tokio::time::timeout(Duration::from_secs(5), connecting)
        .await
        .map_err(|_| CallError::TimedOut)?
        .map_err(transport)?;
    socket.set_nodelay(true).map_err(transport)?;
    Ok(socket)
}

enum Frame {
    Message(Bytes),
    Trailers(HeaderMap),
}

/// gRPC-Web frames, split off a buffer as whole frames arrive.
#[derive(Debug, Default)]
struct Frames {
    buffer: BytesMut,
}

impl Frames {
    fn next_frame(&mut self) -> Option<Frame> {
        if self.buffer.len() < 5 {
            return None;
        }
        let length = u32::from_be_bytes(self.buffer[1..5].try_into().expect("four bytes")) as usize;
        if self.buffer.len() < 5 + length {
            return None;
        }
        let flags = self.buffer[0];
        self.buffer.advance(5);
        let payload = self.buffer.split_to(length).freeze();
        if flags & TRAILERS == 0 {
            return Some(Frame::Message(payload));
        }
        let mut trailers = HeaderMap::new();
        for line in String::from_utf8_lossy(&payload).split("\r\n") {
            if let Some((name, value)) = line.split_once(':')
                && let (Ok(name), Ok(value)) = (
                    http::HeaderName::from_bytes(name.trim().as_bytes()),
                    http::HeaderValue::from_str(value.trim()),
                )
            {
                trailers.append(name, value);
            }
        }
        Some(Frame::Trailers(trailers))
    }
}

/// `Ok` for `grpc-status: 0`, the status otherwise.
fn status_of(headers: &HeaderMap) -> Result<(), CallError> {
    let code = headers
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<i32>().ok())
        .ok_or_else(|| CallError::Transport("no grpc-status".to_owned()))?;
    if code == 0 {
        return Ok(());
    }
    let message = headers
        .get("grpc-message")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    Err(CallError::Status(Status::new(
        Code::from_i32(code),
        message,
    )))
}
