//! Every setting of the gateway, read once from the environment (or flags);
//! `gateway --help` documents each.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use presence_core::config::{CommonArgs, JwtArgs};
use presence_core::forwarded::{ForwardedHeader, TrustedProxies};

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
    /// HTTP/2 connections kept to each address (pod) of an upstream
    /// service, used in turn (default: one per CPU core of the gateway); a
    /// connection that died is re-opened by the next call.
    #[arg(long, env = "PRESENCE_UPSTREAM_CONNECTIONS", default_value_t = one_per_core(),
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub upstream_connections: u16,
    /// Seconds between look-ups of each upstream URL's host name (1 to 300).
    /// Calls are spread over every address it resolves to (at most 256):
    /// name a headless Service so that each ready pod is one, and new pods
    /// get calls within this time. A failed or empty answer keeps the
    /// addresses known.
    #[arg(long, env = "PRESENCE_UPSTREAM_RESOLVE_SECONDS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=300))]
    pub upstream_resolve_seconds: u64,
    /// Threads serving requests. 1 runs the gateway on a single thread, which
    /// costs the least CPU per request (no hand-offs between threads; see
    /// docs/benchmarks.md); scale out with replicas of one CPU each, or raise
    /// it for one gateway given several cores.
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
    /// Proxies in front of the gateway whose forwarding header names the
    /// client (comma-separated CIDR ranges, e.g. the ingress pods'
    /// 10.0.0.0/8). The per-address limits then key on the right-most address
    /// of the header that is not one of them. Empty trusts nobody: the TCP
    /// peer is the client. 0.0.0.0/0 or ::/0 is refused in production.
    #[arg(long, env = "PRESENCE_TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: TrustedProxies,
    /// The header the trusted proxies write the client's address in (the
    /// other one is passed through by them, so it is never read).
    #[arg(
        long,
        env = "PRESENCE_FORWARDED_HEADER",
        value_enum,
        default_value = "x-forwarded-for"
    )]
    pub forwarded_header: ForwardedHeader,
    /// Milliseconds a client has to send a request's headers, from its first
    /// byte (a slow sender is disconnected). A connection's first request
    /// must start within this time too.
    #[arg(long, env = "PRESENCE_HEADER_READ_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub header_read_timeout_ms: u64,
    /// Seconds a connection may stay open with no request in flight (above
    /// the web app's 60 s ping interval, so its connection is reused).
    #[arg(long, env = "PRESENCE_IDLE_TIMEOUT_SECONDS", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub idle_timeout_seconds: u64,
    /// Client connections open at once; beyond it new ones are closed at
    /// once. Keep it below the process's open-file limit (`ulimit -n`).
    #[arg(long, env = "PRESENCE_MAX_CONNECTIONS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,
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

    pub fn upstream_resolve_every(&self) -> Duration {
        Duration::from_secs(self.upstream_resolve_seconds)
    }

    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_seconds)
    }
}

/// One upstream connection per core: each connection is written by one task,
/// so fewer would leave cores idle, and more only split the same frames into
/// more, smaller writes (measured in docs/benchmarks.md).
fn one_per_core() -> u16 {
    std::thread::available_parallelism().map_or(2, |cores| cores.get().clamp(1, 64) as u16)
}
