//! Every setting of the activity service, read once from the environment
//! (or flags); `activity-service serve --help` documents each.

use std::net::SocketAddr;

use clap::Args;
use presence_core::config::{CommonArgs, DatabaseArgs, JwtArgs, PingArgs, RedisArgs};

#[derive(Args, Clone, Debug)]
pub struct ActivityConfig {
    /// Address the gRPC server listens on.
    #[arg(
        long,
        env = "PRESENCE_ACTIVITY_ADDR",
        default_value = "127.0.0.1:50051"
    )]
    pub listen_addr: SocketAddr,
    /// Lifetime of the access tokens Login issues, in seconds.
    #[arg(long, env = "PRESENCE_TOKEN_TTL_SECONDS", default_value_t = 12 * 3600,
          value_parser = clap::value_parser!(i64).range(60..=30 * 24 * 3600))]
    pub token_ttl_seconds: i64,
    /// Failed sign-ins allowed per username within the throttle window.
    #[arg(
        long,
        env = "PRESENCE_LOGIN_MAX_FAILURES_PER_USER",
        default_value_t = 5
    )]
    pub login_max_failures_per_user: i64,
    /// Failed sign-ins allowed per client address within the throttle window.
    #[arg(
        long,
        env = "PRESENCE_LOGIN_MAX_FAILURES_PER_CLIENT",
        default_value_t = 30
    )]
    pub login_max_failures_per_client: i64,
    /// Length of the sign-in throttle window, in seconds.
    #[arg(
        long,
        env = "PRESENCE_LOGIN_THROTTLE_WINDOW_SECONDS",
        default_value_t = 900
    )]
    pub login_throttle_window_seconds: i64,
    /// Take the client address from `x-forwarded-for` (set only behind a trusted
    /// proxy such as the gateway; otherwise clients could forge it).
    #[arg(long, env = "PRESENCE_TRUST_FORWARDED_FOR", default_value_t = false)]
    pub trust_forwarded_for: bool,
    /// Apply database migrations before serving.
    #[arg(long, env = "PRESENCE_MIGRATE_ON_START", default_value_t = false)]
    pub migrate_on_start: bool,
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub ping: PingArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub jwt: JwtArgs,
}
