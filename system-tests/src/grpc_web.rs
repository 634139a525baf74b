//! The browser's side of gRPC-Web, as the web app's Connect-ES transport
//! speaks it: binary `application/grpc-web+proto` POSTs over one kept-alive
//! HTTP/1.1 connection, a `grpc-timeout` with each unary call, answers
//! framed as messages then one trailer frame (or a trailers-only answer with
//! the status in the headers), and server streams read frame by frame.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, Request, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use prost::Message;
use tokio::net::TcpStream;
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

/// One HTTP/1.1 connection to the gateway, as a browser tab holds one.
#[derive(Debug)]
pub struct WebClient {
    address: SocketAddr,
    sender: SendRequest<Full<Bytes>>,
}

impl WebClient {
    pub async fn connect(address: SocketAddr) -> Result<Self, CallError> {
        let transport = |error: std::io::Error| CallError::Transport(error.to_string());
        let socket = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(address))
            .await
            .map_err(|_| CallError::TimedOut)?
            .map_err(transport)?;
        socket.set_nodelay(true).map_err(transport)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(socket))
            .await
            .map_err(|error| CallError::Transport(error.to_string()))?;
        tokio::spawn(connection);
        Ok(Self { address, sender })
    }

    /// Whether the connection can take another call.
    pub fn is_open(&self) -> bool {
        !self.sender.is_closed()
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
        let mut request = Request::post(path)
            .header(header::HOST, self.address.to_string())
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
        self.sender
            .ready()
            .await
            .map_err(|error| CallError::Transport(error.to_string()))?;
        let response = self
            .sender
            .send_request(request)
            .await
            .map_err(|error| CallError::Transport(error.to_string()))?;
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
