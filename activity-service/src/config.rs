//! Every setting of the activity service, read once from the environment
//! (or flags); `activity-service serve --help` documents each.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use presence_core::config::{CommonArgs, JwtArgs, PingArgs};
use presence_store::config::{DatabaseArgs, RedisArgs};

use crate::password::PasswordChecks;
use crate::retention::RetentionSettings;
use crate::throttle::ThrottleSettings;

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
    /// Failed sign-ins allowed for one username from one client address
    /// within the throttle window; that address may then not try that
    /// username again until the window has passed since its last failure.
    #[arg(long, env = "PRESENCE_LOGIN_MAX_FAILURES_PER_USER_AND_CLIENT", default_value_t = 5,
          value_parser = clap::value_parser!(i32).range(1..=1000))]
    pub login_max_failures_per_user_and_client: i32,
    /// Failed sign-ins allowed from one client address, whatever the
    /// usernames, within the throttle window (IPv6: per /64 network).
    #[arg(long, env = "PRESENCE_LOGIN_MAX_FAILURES_PER_CLIENT", default_value_t = 30,
          value_parser = clap::value_parser!(i32).range(1..=100_000))]
    pub login_max_failures_per_client: i32,
    /// Failed sign-ins of one username, from every address, after which the
    /// username is in backoff: an address that has failed for it must wait
    /// before each further try (an address that has not is never held back).
    #[arg(long, env = "PRESENCE_LOGIN_BACKOFF_AFTER_FAILURES", default_value_t = 5,
          value_parser = clap::value_parser!(i32).range(1..=1000))]
    pub login_backoff_after_failures: i32,
    /// First backoff wait in milliseconds; it doubles with each further failure.
    #[arg(long, env = "PRESENCE_LOGIN_BACKOFF_BASE_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub login_backoff_base_ms: u64,
    /// Longest backoff wait, in seconds.
    #[arg(long, env = "PRESENCE_LOGIN_BACKOFF_MAX_SECONDS", default_value_t = 900,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub login_backoff_max_seconds: u64,
    /// How long a failed sign-in counts towards the limits above, in seconds.
    #[arg(long, env = "PRESENCE_LOGIN_THROTTLE_WINDOW_SECONDS", default_value_t = 900,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub login_throttle_window_seconds: u64,
    /// Password checks (argon2id, about 19 MiB each) run at once. Defaults to
    /// the CPU cores this process may use.
    #[arg(long, env = "PRESENCE_LOGIN_CONCURRENCY", default_value_t = cores(),
          value_parser = clap::value_parser!(u64).range(1..=256))]
    pub login_concurrency: u64,
    /// Sign-ins that may wait for a password check; beyond, RESOURCE_EXHAUSTED
    /// at once. Defaults to twice the CPU cores this process may use.
    #[arg(long, env = "PRESENCE_LOGIN_QUEUE", default_value_t = 2 * cores(),
          value_parser = clap::value_parser!(u64).range(0..=4096))]
    pub login_queue: u64,
    /// Milliseconds a sign-in waits for a password check before
    /// RESOURCE_EXHAUSTED ("busy, retry").
    #[arg(long, env = "PRESENCE_LOGIN_QUEUE_WAIT_MS", default_value_t = 2000,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub login_queue_wait_ms: u64,
    /// login_history rows (sign-ins, failures, logouts) are deleted after this many days.
    #[arg(long, env = "PRESENCE_LOGIN_HISTORY_RETENTION_DAYS", default_value_t = 365,
          value_parser = clap::value_parser!(i32).range(1..=36_500))]
    pub login_history_retention_days: i32,
    /// Seconds between two purges of old login_history rows and expired
    /// sign-in throttle counters (every replica purges; they do not collide).
    #[arg(long, env = "PRESENCE_LOGIN_HISTORY_PURGE_INTERVAL_SECONDS", default_value_t = 3600,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub login_history_purge_interval_seconds: u64,
    /// Proxies whose `x-forwarded-for` names the client, for the sign-in
    /// throttle and `login_history` (comma-separated CIDR ranges: the
    /// gateway's, e.g. 127.0.0.1/32 locally or the gateway pods' range).
    /// The client is the right-most address that is not one of them. Empty
    /// trusts nobody: the TCP peer is the client.
    #[arg(long, env = "PRESENCE_TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: presence_core::forwarded::TrustedProxies,
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

/// Settings that were replaced; still set, they would be silently ignored.
const REPLACED_SETTINGS: &[(&str, &str)] = &[(
    "PRESENCE_LOGIN_MAX_FAILURES_PER_USER",
    "PRESENCE_LOGIN_MAX_FAILURES_PER_USER_AND_CLIENT and PRESENCE_LOGIN_BACKOFF_*",
)];

/// The CPU cores this process may use (its cgroup's quota included).
fn cores() -> u64 {
    std::thread::available_parallelism().map_or(1, |cores| cores.get() as u64)
}

impl ActivityConfig {
    pub fn throttle(&self) -> ThrottleSettings {
        ThrottleSettings {
            max_failures_per_pair: self.login_max_failures_per_user_and_client,
            max_failures_per_client: self.login_max_failures_per_client,
            backoff_after_failures: self.login_backoff_after_failures,
            backoff_base: Duration::from_millis(self.login_backoff_base_ms),
            backoff_max: Duration::from_secs(self.login_backoff_max_seconds),
            window: Duration::from_secs(self.login_throttle_window_seconds),
        }
    }

    pub fn password_checks(&self) -> PasswordChecks {
        PasswordChecks::new(
            self.login_concurrency as usize,
            self.login_queue as usize,
            Duration::from_millis(self.login_queue_wait_ms),
        )
    }

    pub fn retention(&self) -> RetentionSettings {
        RetentionSettings {
            login_history_days: self.login_history_retention_days,
            interval: Duration::from_secs(self.login_history_purge_interval_seconds),
        }
    }

    /// Warns about each replaced setting still present in the environment.
    pub fn warn_about_replaced_settings(&self) {
        for (old, new) in REPLACED_SETTINGS {
            if std::env::var_os(old).is_some() {
                tracing::warn!(setting = old, replaced_by = new, "setting no longer read");
            }
        }
    }
}
