//! A gateway in front of a real stack, and a tiny HTTP/1.1 client that sends
//! hand-framed gRPC-Web and reads the response whole.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use gateway::config::GatewayConfig;
use gateway::startup::Application;
use presence_proto::admin::UserStatusEvent;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::stack::{SECRET, Stack};

#[derive(Parser)]
struct ConfigOnly {
    #[command(flatten)]
    config: GatewayConfig,
}

/// The gateway's configuration from these flags (and its defaults).
pub fn gateway_config(flags: &[&str]) -> GatewayConfig {
    ConfigOnly::parse_from(std::iter::once("gateway").chain(flags.iter().copied())).config
}

pub struct Gateway {
    pub address: SocketAddr,
    pub metrics: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _web_dir: TempDir,
}

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A built web app in miniature: a page and a fingerprinted asset.
fn web_dir() -> TempDir {
    let dir = std::env::temp_dir().join(format!("presence-web-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(dir.join("assets")).unwrap();
    std::fs::write(
        dir.join("index.html"),
        "<!doctype html><title>presence</title>",
    )
    .unwrap();
    std::fs::write(
        dir.join("assets/app-1234.js"),
        "console.log('presence');".repeat(100),
    )
    .unwrap();
    TempDir(dir)
}

pub async fn spawn_gateway(stack: &Stack, extra: &[&str]) -> Gateway {
    spawn_gateway_to(
        &format!("http://{}", stack.activity_address),
        &format!("http://{}", stack.admin_address),
        extra,
    )
    .await
}

pub async fn spawn_gateway_to(activity_url: &str, admin_url: &str, extra: &[&str]) -> Gateway {
    // The access log, when asked for (RUST_LOG=info cargo test ...).
    if std::env::var_os("RUST_LOG").is_some() {
        presence_core::telemetry::init(presence_core::telemetry::LogFormat::Text);
    }
    let web = web_dir();
    let mut args = vec![
        "gateway".to_owned(),
        "--listen-addr=127.0.0.1:0".into(),
        "--metrics-addr=127.0.0.1:0".into(),
        format!("--activity-url={activity_url}"),
        format!("--admin-url={admin_url}"),
        format!("--web-dir={}", web.0.display()),
        format!("--jwt-secret={SECRET}"),
        "--cors-origins=https://allowed.example".into(),
    ];
    args.extend(extra.iter().map(|arg| (*arg).to_owned()));
    let config = ConfigOnly::parse_from(args).config;
    let application = Application::build(config)
        .await
        .expect("the gateway builds");
    let (address, metrics) = (application.local_addr(), application.metrics_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(application.run_until(async {
        let _ = stopped.await;
    }));
    Gateway {
        address,
        metrics,
        stop: Some(stop),
        _web_dir: web,
    }
}

impl Gateway {
    /// Asks the gateway to stop, as SIGTERM does.
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// One gRPC-Web data frame around `message`.
pub fn frame(message: &impl Message) -> Vec<u8> {
    let body = message.encode_to_vec();
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(body.len() as u32).to_be_bytes());
    framed.extend_from_slice(&body);
    framed
}

#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// Sends one HTTP/1.1 request (Connection: close) and reads the whole response,
/// giving up after `within`.
pub async fn http(
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    within: Duration,
) -> HttpResponse {
    tokio::time::timeout(within, async {
        let mut stream = TcpStream::connect(address).await.unwrap();
        let mut request =
            format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
        if !headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        {
            request.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        stream.write_all(body).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        parse_response(&raw)
    })
    .await
    .expect("the gateway answered in time")
}

pub fn parse_response(raw: &[u8]) -> HttpResponse {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_lowercase(), value.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(name, value)| name == "transfer-encoding" && value.contains("chunked"))
    {
        body = dechunk(&body);
    }
    HttpResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..line_end]).trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            return out;
        }
        // A body cut short (the connection closed) ends at its last whole chunk.
        let Some(chunk) = data.get(line_end + 2..line_end + 2 + size) else {
            return out;
        };
        out.extend_from_slice(chunk);
        data = data.get(line_end + 2 + size + 2..).unwrap_or_default();
    }
}

/// A gRPC-Web response body split into its messages and trailers.
#[derive(Debug, Default)]
pub struct GrpcWebResponse {
    pub messages: Vec<Vec<u8>>,
    pub trailers: Vec<(String, String)>,
}

impl GrpcWebResponse {
    pub fn parse(mut body: &[u8]) -> Self {
        let mut parsed = GrpcWebResponse::default();
        while body.len() >= 5 {
            let flags = body[0];
            let length = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
            // A body cut short ends at its last whole frame.
            let Some(payload) = body.get(5..5 + length) else {
                break;
            };
            if flags & 0x80 != 0 {
                parsed.trailers = String::from_utf8_lossy(payload)
                    .split("\r\n")
                    .filter_map(|line| line.split_once(':'))
                    .map(|(name, value)| (name.trim().to_lowercase(), value.trim().to_owned()))
                    .collect();
            } else {
                parsed.messages.push(payload.to_vec());
            }
            body = &body[5 + length..];
        }
        parsed
    }

    pub fn trailer(&self, name: &str) -> Option<&str> {
        self.trailers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

impl GrpcWebResponse {
    /// The messages of a status stream.
    pub fn status_events(&self) -> Vec<UserStatusEvent> {
        self.messages
            .iter()
            .map(|message| UserStatusEvent::decode(message.as_slice()).unwrap())
            .collect()
    }
}

/// Whether one of `events` shows `username` online.
pub fn shows_online(events: &[UserStatusEvent], username: &str) -> bool {
    events.iter().any(|event| {
        event
            .status
            .as_ref()
            .is_some_and(|status| status.username == username && status.online)
    })
}

/// The gRPC status of a response: from the trailers, or from the headers of a
/// trailers-only response.
pub fn grpc_status(response: &HttpResponse) -> i32 {
    GrpcWebResponse::parse(&response.body)
        .trailer("grpc-status")
        .or_else(|| response.header("grpc-status"))
        .expect("the response carries a grpc-status")
        .parse()
        .unwrap()
}

pub const BINARY: &str = "application/grpc-web+proto";
pub const TEXT: &str = "application/grpc-web-text";
pub const SOON: Duration = Duration::from_secs(10);

/// POSTs one binary gRPC-Web call.
/// The gateway's own health, asked as a browser would (gRPC-Web `Check`).
pub async fn check_health(gateway: &Gateway) -> HttpResponse {
    let request = tonic_health::pb::HealthCheckRequest {
        service: String::new(),
    };
    call(gateway, "/grpc.health.v1.Health/Check", None, &request).await
}

/// The value of the gauge (or unlabelled counter) `name` on the gateway's
/// `/metrics` page, once `expected` holds of it, or a panic after `SOON`.
pub async fn wait_for_metric(gateway: &Gateway, name: &str, expected: impl Fn(f64) -> bool) -> f64 {
    let deadline = tokio::time::Instant::now() + SOON;
    loop {
        let text = metrics_text(gateway).await;
        let value = text.lines().find_map(|line| {
            let (series, value) = line.split_once(' ')?;
            (series == name)
                .then(|| value.parse::<f64>().ok())
                .flatten()
        });
        if let Some(value) = value
            && expected(value)
        {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} is {value:?} after {SOON:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The gateway's `/metrics` page, as text.
pub async fn metrics_text(gateway: &Gateway) -> String {
    let metrics = http(gateway.metrics, "GET", "/metrics", &[], b"", SOON).await;
    String::from_utf8(metrics.body).expect("the exposition is text")
}

pub async fn call(
    gateway: &Gateway,
    path: &str,
    token: Option<&str>,
    message: &impl Message,
) -> HttpResponse {
    let bearer = token.map(|token| format!("Bearer {token}"));
    let mut headers = vec![("Content-Type", BINARY), ("X-Grpc-Web", "1")];
    if let Some(bearer) = &bearer {
        headers.push(("Authorization", bearer));
    }
    http(
        gateway.address,
        "POST",
        path,
        &headers,
        &frame(message),
        SOON,
    )
    .await
}

/// One HTTP/1.1 connection kept open across requests, as a browser keeps it.
pub struct KeepAlive {
    stream: TcpStream,
    address: SocketAddr,
    read: Vec<u8>,
}

impl KeepAlive {
    pub async fn open(address: SocketAddr) -> Self {
        Self {
            stream: TcpStream::connect(address).await.unwrap(),
            address,
            read: Vec::new(),
        }
    }

    /// POSTs one binary gRPC-Web call and reads its response; `None` when the
    /// gateway closed the connection instead of answering.
    pub async fn call(&mut self, path: &str, message: &impl Message) -> Option<HttpResponse> {
        self.pipelined(path, message, 1).await.pop().flatten()
    }

    /// Sends `count` calls in one write, then reads their responses in
    /// order (`None` from the first the gateway closed instead of answering).
    pub async fn pipelined(
        &mut self,
        path: &str,
        message: &impl Message,
        count: usize,
    ) -> Vec<Option<HttpResponse>> {
        let request = self.request(path, message);
        if self.send(&request.repeat(count)).await.is_err() {
            return (0..count).map(|_| None).collect();
        }
        let mut responses = Vec::new();
        for _ in 0..count {
            let response = tokio::time::timeout(SOON, self.read_response())
                .await
                .expect("the gateway answered or closed in time");
            responses.push(response);
        }
        responses
    }

    /// The bytes of one binary gRPC-Web call.
    pub fn request(&self, path: &str, message: &impl Message) -> Vec<u8> {
        let body = frame(message);
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: {BINARY}\r\nX-Grpc-Web: 1\r\n\
             Content-Length: {}\r\n\r\n",
            self.address,
            body.len()
        );
        let mut request = head.into_bytes();
        request.extend_from_slice(&body);
        request
    }

    /// Writes raw bytes on the connection.
    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }

    async fn read_response(&mut self) -> Option<HttpResponse> {
        loop {
            if let Some(split) = self.read.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = parse_response(&self.read[..split + 4]);
                let length: usize = head
                    .header("content-length")
                    .map_or(0, |length| length.parse().unwrap());
                if self.read.len() >= split + 4 + length {
                    let rest = self.read.split_off(split + 4 + length);
                    let whole = std::mem::replace(&mut self.read, rest);
                    return Some(parse_response(&whole));
                }
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// Reads more; false when the connection was closed.
    async fn fill(&mut self) -> bool {
        let mut buffer = [0u8; 16 * 1024];
        match self.stream.read(&mut buffer).await {
            Ok(0) | Err(_) => false,
            Ok(read) => {
                self.read.extend_from_slice(&buffer[..read]);
                true
            }
        }
    }

    /// Waits until the gateway closes the connection (true), giving up after `within`.
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        tokio::time::timeout(within, async { while self.fill().await {} })
            .await
            .is_ok()
    }
}
