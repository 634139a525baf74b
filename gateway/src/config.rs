//! Every setting of the gateway, read once from the environment (or flags);
//! `gateway --help` documents each.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use presence_core::config::{CommonArgs, JwtArgs};

#[derive(Args, Clone, Debug)]
pub struct GatewayConfig {
    /// Address serving gRPC-Web, the web app and gRPC health (HTTP/1.1 and HTTP/2).
    #[arg(long, env = "PRESENCE_GATEWAY_ADDR", default_value = "127.0.0.1:8080")]
    pub listen_addr: SocketAddr,
    /// Address serving Prometheus metrics at /metrics.
    #[arg(long, env = "PRESENCE_METRICS_ADDR", default_value = "127.0.0.1:9090")]
    pub metrics_addr: SocketAddr,
    /// The activity service (native gRPC).
    #[arg(
        long,
        env = "PRESENCE_ACTIVITY_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    pub activity_url: String,
    /// The admin service (native gRPC).
    #[arg(
        long,
        env = "PRESENCE_ADMIN_URL",
        default_value = "http://127.0.0.1:50052"
    )]
    pub admin_url: String,
    /// HTTP/2 connections kept to each upstream service, used in turn
    /// (default: one per CPU core of the gateway); a connection that died is
    /// re-opened by the next call.
    #[arg(long, env = "PRESENCE_UPSTREAM_CONNECTIONS", default_value_t = one_per_core(),
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub upstream_connections: u16,
    /// Threads serving requests. 1 runs the gateway on a single thread, which
    /// costs the least CPU per request (no hand-offs between threads: 19 µs
    /// per ping against 26 µs with two); scale out with replicas of one CPU
    /// each, or raise it for one gateway given several cores.
    #[arg(long, env = "PRESENCE_WORKER_THREADS", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=256))]
    pub worker_threads: u16,
    /// Directory of the built web app (index.html and assets); empty serves none.
    #[arg(long, env = "PRESENCE_WEB_DIR", default_value = "web/dist")]
    pub web_dir: PathBuf,
    /// Other origins allowed to call gRPC-Web (comma-separated, e.g.
    /// https://app.example.com). The gateway's own origin is always allowed.
    #[arg(
        long,
        env = "PRESENCE_CORS_ORIGINS",
        value_delimiter = ',',
        default_value = ""
    )]
    pub cors_origins: Vec<String>,
    /// Largest request accepted, in bytes (gRPC message plus framing).
    #[arg(long, env = "PRESENCE_MAX_REQUEST_BYTES", default_value_t = 64 * 1024)]
    pub max_request_bytes: usize,
    /// Deadline of an upstream call in milliseconds, when the client sets none
    /// (or a longer one). Streams are bounded only until they start.
    #[arg(long, env = "PRESENCE_UPSTREAM_TIMEOUT_MS", default_value_t = 10_000)]
    pub upstream_timeout_ms: u64,
    /// Pings allowed per user per rate window.
    #[arg(long, env = "PRESENCE_RATE_PING_PER_USER", default_value_t = 30)]
    pub rate_ping_per_user: u32,
    /// Pings allowed per client address per rate window.
    #[arg(long, env = "PRESENCE_RATE_PING_PER_IP", default_value_t = 600)]
    pub rate_ping_per_ip: u32,
    /// Sign-in attempts allowed per client address per rate window.
    #[arg(long, env = "PRESENCE_RATE_LOGIN_PER_IP", default_value_t = 30)]
    pub rate_login_per_ip: u32,
    /// Length of the rate window, in seconds (allowances refill continuously).
    #[arg(long, env = "PRESENCE_RATE_WINDOW_SECONDS", default_value_t = 60)]
    pub rate_window_seconds: u64,
    /// Seconds open streams may run on after a shutdown request; then they
    /// end with UNAVAILABLE, and browsers reconnect to another replica.
    #[arg(long, env = "PRESENCE_DRAIN_SECONDS", default_value_t = 20)]
    pub drain_seconds: u64,
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub jwt: JwtArgs,
}

impl GatewayConfig {
    pub fn upstream_timeout(&self) -> Duration {
        Duration::from_millis(self.upstream_timeout_ms)
    }
}

/// One upstream connection per core: each connection is written by one task,
/// so fewer would leave cores idle, and more only split the same frames into
/// more, smaller writes (measured: 2 connections beat 4 by 5 % on 2 cores).
fn one_per_core() -> u16 {
    std::thread::available_parallelism().map_or(2, |cores| cores.get().clamp(1, 64) as u16)
}
