//! Every setting of the admin service, read once from the environment (or
//! flags); `admin-service --help` documents each.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use presence_core::config::{CommonArgs, Environment, JwtArgs, PingArgs, check_secret};
use presence_store::config::{DatabaseArgs, RedisArgs};
use secrecy::{ExposeSecret, SecretString};

/// The page-token secret used when none is configured. Development only: a
/// production process refuses to start without its own.
const DEVELOPMENT_PAGE_TOKEN_SECRET: &str = "presence-development-page-tokens-not-for-production";

#[derive(Args, Clone, Debug)]
pub struct AdminConfig {
    /// Address the gRPC server listens on.
    #[arg(long, env = "PRESENCE_ADMIN_ADDR", default_value = "127.0.0.1:50052")]
    pub listen_addr: SocketAddr,
    /// Apply database migrations before serving.
    #[arg(long, env = "PRESENCE_MIGRATE_ON_START", default_value_t = false)]
    pub migrate_on_start: bool,
    /// Events buffered per status watcher; one that falls further behind is resynchronised.
    #[arg(long, env = "PRESENCE_WATCH_BUFFER", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(16..=1_000_000))]
    pub watch_buffer: u32,
    /// Status streams open at once on this server; beyond, RESOURCE_EXHAUSTED.
    #[arg(long, env = "PRESENCE_MAX_WATCHERS", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_watchers: u32,
    /// Status streams one account (admin or service) may have open at once; beyond, RESOURCE_EXHAUSTED.
    #[arg(long, env = "PRESENCE_MAX_WATCHERS_PER_USER", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_watchers_per_user: u32,
    /// Seconds a unary call may run before it is cancelled (streams are not cut).
    #[arg(long, env = "PRESENCE_CALL_TIMEOUT_SECONDS", default_value_t = 15,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    pub call_timeout_seconds: u64,
    /// Seconds in-flight calls may run on after a shutdown request (status
    /// streams end at once, with UNAVAILABLE); then the connections still
    /// open are closed and the server stops.
    #[arg(long, env = "PRESENCE_DRAIN_SECONDS", default_value_t = 20,
          value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub drain_seconds: u64,
    /// Secret (at least 32 bytes, the same on every admin replica) that
    /// signs ListUserStatuses page tokens. Required in production; a built-in
    /// development secret is used otherwise.
    #[arg(long, env = "PRESENCE_PAGE_TOKEN_SECRET", hide_env_values = true)]
    pub page_token_secret: Option<SecretString>,
    /// Days the online count history is kept; older samples are deleted.
    #[arg(long, env = "PRESENCE_ONLINE_HISTORY_RETENTION_DAYS", default_value_t = 90,
          value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub online_history_retention_days: u32,
    /// Seconds between two samples of the online count (one writer across
    /// every replica). A minute in production; shorter only for tests.
    #[arg(long, env = "PRESENCE_ONLINE_SAMPLE_SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub online_sample_seconds: u64,
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

impl AdminConfig {
    pub fn call_timeout(&self) -> Duration {
        Duration::from_secs(self.call_timeout_seconds)
    }

    pub fn drain(&self) -> Duration {
        Duration::from_secs(self.drain_seconds)
    }

    /// The page-token key: configured, at least 32 bytes, and in production
    /// neither the development default nor the JWT secret (one key, one use).
    pub fn page_token_key(&self) -> Result<Vec<u8>, presence_core::Error> {
        let environment = self.common.environment;
        let secret = check_secret(
            self.page_token_secret
                .as_ref()
                .map(ExposeSecret::expose_secret),
            DEVELOPMENT_PAGE_TOKEN_SECRET,
            "PRESENCE_PAGE_TOKEN_SECRET",
            environment,
        )?;
        if environment == Environment::Production
            && self
                .jwt
                .jwt_secret
                .as_ref()
                .map(|jwt_secret| jwt_secret.expose_secret().as_bytes())
                == Some(secret)
        {
            return Err(presence_core::Error::InvalidConfig(
                "PRESENCE_PAGE_TOKEN_SECRET must differ from PRESENCE_JWT_SECRET".into(),
            ));
        }
        Ok(secret.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct AdminOnly {
        #[command(flatten)]
        config: AdminConfig,
    }

    #[test]
    fn the_page_token_secret_never_reaches_the_log() {
        let args = [
            "test",
            "--page-token-secret=page-secret-0123456789abcdef012345",
        ];
        let printed = format!("{:?}", AdminOnly::parse_from(args).config);
        assert!(!printed.contains("page-secret-"), "{printed}");
        assert!(printed.contains("page_token_secret"), "{printed}");
    }
}
