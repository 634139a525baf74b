//! Configuration pieces both services read from the environment (clap `env`),
//! each documented in `--help`, with defaults safe for local development and
//! checks that refuse an insecure production set-up.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};

use crate::Error;
use crate::keys::RedisKeys;
use crate::telemetry::LogFormat;
use crate::token::{TokenIssuer, TokenVerifier};

/// The HS256 secret used when none is configured. Development only: a
/// production process refuses to start with it.
const DEVELOPMENT_JWT_SECRET: &str = "presence-development-secret-not-for-production";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Environment {
    /// Local defaults allowed (built-in JWT secret, dev accounts).
    Development,
    /// Refuses to start with any development default that would be insecure.
    Production,
}

#[derive(Args, Clone, Debug)]
pub struct CommonArgs {
    /// Deployment environment; `production` refuses insecure settings.
    #[arg(
        long,
        env = "PRESENCE_ENVIRONMENT",
        value_enum,
        default_value = "development"
    )]
    pub environment: Environment,
    /// Log line format. Filter with RUST_LOG (default `info`).
    #[arg(long, env = "PRESENCE_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

#[derive(Args, Clone, Debug)]
pub struct PingArgs {
    /// Seconds between pings that clients are told to use. Capped at half the
    /// threshold, so a visible tab always keeps its user online.
    #[arg(long, env = "PRESENCE_PING_INTERVAL_SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u32).range(1..=3600))]
    pub ping_interval_seconds: u32,
}

#[derive(Args, Clone)]
pub struct DatabaseArgs {
    /// PostgreSQL URL (users, login_history, settings).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/presence",
        hide_env_values = true
    )]
    pub database_url: String,
    /// Maximum pooled PostgreSQL connections per process.
    #[arg(long, env = "PRESENCE_DATABASE_MAX_CONNECTIONS", default_value_t = 10)]
    pub database_max_connections: u32,
    /// Milliseconds a query waits for a connection before the call fails with UNAVAILABLE.
    #[arg(long, env = "PRESENCE_DATABASE_TIMEOUT_MS", default_value_t = 2000)]
    pub database_timeout_ms: u64,
    /// Milliseconds PostgreSQL lets one statement run (waiting for locks
    /// included) before cancelling it; the call then fails with UNAVAILABLE.
    /// Set on every pooled connection; migrations run without it.
    #[arg(long, env = "PRESENCE_DATABASE_STATEMENT_TIMEOUT_MS", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub database_statement_timeout_ms: u64,
}

impl std::fmt::Debug for DatabaseArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseArgs")
            .field("database_url", &redact_url(&self.database_url))
            .field("database_max_connections", &self.database_max_connections)
            .field("database_timeout_ms", &self.database_timeout_ms)
            .field(
                "database_statement_timeout_ms",
                &self.database_statement_timeout_ms,
            )
            .finish()
    }
}

#[derive(Args, Clone)]
pub struct RedisArgs {
    /// Redis URL (activity timestamps, logout markers, revoked tokens).
    #[arg(
        long,
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        hide_env_values = true
    )]
    pub redis_url: String,
    /// Redis Cluster seed nodes, comma-separated `redis://` URLs (a few masters
    /// suffice; the rest of the cluster is discovered). When set, Redis Cluster
    /// is used instead of REDIS_URL.
    #[arg(
        long,
        env = "PRESENCE_REDIS_CLUSTER_NODES",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub redis_cluster_nodes: Vec<String>,
    /// Prefix put before every Redis key (no braces), to share one Redis between deployments.
    #[arg(long, env = "PRESENCE_REDIS_KEY_PREFIX", default_value = "")]
    pub redis_key_prefix: String,
    /// Milliseconds a Redis connection attempt or command may take before the call fails.
    #[arg(long, env = "PRESENCE_REDIS_TIMEOUT_MS", default_value_t = 500)]
    pub redis_timeout_ms: u64,
    /// PEM file of the certificate authorities trusted for `rediss://` (TLS)
    /// URLs, instead of the system's; for a Redis whose certificate a private
    /// CA signed. Without it, `rediss://` trusts the system's CAs.
    #[arg(long, env = "PRESENCE_REDIS_CA_FILE")]
    pub redis_ca_file: Option<PathBuf>,
}

impl RedisArgs {
    /// The cluster seed nodes, if Redis Cluster is configured (blank entries,
    /// such as a trailing comma's, are ignored).
    pub fn cluster_nodes(&self) -> Vec<&str> {
        self.redis_cluster_nodes
            .iter()
            .map(|node| node.trim())
            .filter(|node| !node.is_empty())
            .collect()
    }

    pub fn is_cluster(&self) -> bool {
        !self.cluster_nodes().is_empty()
    }

    pub fn keys(&self) -> Result<RedisKeys, Error> {
        let prefix = self.redis_key_prefix.clone();
        if self.is_cluster() {
            RedisKeys::for_cluster(prefix)
        } else {
            RedisKeys::new(prefix)
        }
        .map_err(|error| Error::InvalidConfig(error.to_string()))
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.redis_timeout_ms)
    }

    /// The certificate authorities of `PRESENCE_REDIS_CA_FILE`, if set.
    pub fn ca_certificates(&self) -> Result<Option<Vec<u8>>, Error> {
        let Some(path) = &self.redis_ca_file else {
            return Ok(None);
        };
        std::fs::read(path).map(Some).map_err(|error| {
            Error::InvalidConfig(format!(
                "PRESENCE_REDIS_CA_FILE {}: {error}",
                path.display()
            ))
        })
    }
}

impl std::fmt::Debug for RedisArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisArgs")
            .field("redis_url", &redact_url(&self.redis_url))
            .field(
                "redis_cluster_nodes",
                &self
                    .cluster_nodes()
                    .into_iter()
                    .map(redact_url)
                    .collect::<Vec<_>>(),
            )
            .field("redis_key_prefix", &self.redis_key_prefix)
            .field("redis_timeout_ms", &self.redis_timeout_ms)
            .field("redis_ca_file", &self.redis_ca_file)
            .finish()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum JwtAlgorithm {
    /// Shared secret (PRESENCE_JWT_SECRET, at least 32 bytes).
    #[value(name = "HS256")]
    Hs256,
    /// RSA key pair (PEM files); lets an external issuer be trusted.
    #[value(name = "RS256")]
    Rs256,
    /// Ed25519 key pair (PEM files); lets an external issuer be trusted.
    #[value(name = "EdDSA")]
    EdDsa,
}

impl JwtAlgorithm {
    fn algorithm(self) -> Algorithm {
        match self {
            JwtAlgorithm::Hs256 => Algorithm::HS256,
            JwtAlgorithm::Rs256 => Algorithm::RS256,
            JwtAlgorithm::EdDsa => Algorithm::EdDSA,
        }
    }
}

#[derive(Args, Clone)]
pub struct JwtArgs {
    /// The only JWT algorithm accepted (tokens with any other, or `none`, are refused).
    #[arg(
        long,
        env = "PRESENCE_JWT_ALGORITHM",
        value_enum,
        default_value = "HS256"
    )]
    pub jwt_algorithm: JwtAlgorithm,
    /// HS256 secret, at least 32 bytes. Required in production; a built-in
    /// development secret is used otherwise.
    #[arg(long, env = "PRESENCE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// PEM public key file verifying RS256/EdDSA tokens.
    #[arg(long, env = "PRESENCE_JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<PathBuf>,
    /// PEM private key file signing RS256/EdDSA tokens (the activity service's Login only).
    #[arg(long, env = "PRESENCE_JWT_PRIVATE_KEY_FILE")]
    pub jwt_private_key_file: Option<PathBuf>,
    /// Value of the `iss` claim issued and required.
    #[arg(long, env = "PRESENCE_JWT_ISSUER", default_value = "presence")]
    pub jwt_issuer: String,
}

impl std::fmt::Debug for JwtArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtArgs")
            .field("jwt_algorithm", &self.jwt_algorithm)
            .field(
                "jwt_secret",
                &self.jwt_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("jwt_public_key_file", &self.jwt_public_key_file)
            .field("jwt_private_key_file", &self.jwt_private_key_file)
            .field("jwt_issuer", &self.jwt_issuer)
            .finish()
    }
}

impl JwtArgs {
    fn secret(&self, environment: Environment) -> Result<&[u8], Error> {
        let secret = match (&self.jwt_secret, environment) {
            (Some(secret), _) => secret.as_str(),
            (None, Environment::Development) => DEVELOPMENT_JWT_SECRET,
            (None, Environment::Production) => {
                return Err(Error::InvalidConfig(
                    "PRESENCE_JWT_SECRET must be set in production".into(),
                ));
            }
        };
        if environment == Environment::Production && secret == DEVELOPMENT_JWT_SECRET {
            return Err(Error::InvalidConfig(
                "PRESENCE_JWT_SECRET is the public development secret; set a private one".into(),
            ));
        }
        if secret.len() < 32 {
            return Err(Error::InvalidConfig(
                "PRESENCE_JWT_SECRET must be at least 32 bytes".into(),
            ));
        }
        Ok(secret.as_bytes())
    }

    fn read_pem(path: &Option<PathBuf>, variable: &str) -> Result<Vec<u8>, Error> {
        let path = path.as_ref().ok_or_else(|| {
            Error::InvalidConfig(format!("{variable} is required for this algorithm"))
        })?;
        std::fs::read(path).map_err(|error| {
            Error::InvalidConfig(format!("{variable} {}: {error}", path.display()))
        })
    }

    /// Secret material to derive other keys from (admin page tokens): the
    /// HS256 secret, or the public key file's bytes.
    pub fn key_material(&self, environment: Environment) -> Result<Vec<u8>, Error> {
        match self.jwt_algorithm {
            JwtAlgorithm::Hs256 => Ok(self.secret(environment)?.to_vec()),
            JwtAlgorithm::Rs256 | JwtAlgorithm::EdDsa => {
                Self::read_pem(&self.jwt_public_key_file, "PRESENCE_JWT_PUBLIC_KEY_FILE")
            }
        }
    }

    pub fn verifier(&self, environment: Environment) -> Result<TokenVerifier, Error> {
        if self.jwt_algorithm == JwtAlgorithm::Hs256 && self.jwt_secret.is_none() {
            tracing::warn!("PRESENCE_JWT_SECRET unset: using the public development secret");
        }
        let algorithm = self.jwt_algorithm.algorithm();
        let invalid = |error: jsonwebtoken::errors::Error| {
            Error::InvalidConfig(format!("PRESENCE_JWT_PUBLIC_KEY_FILE: {error}"))
        };
        let key = match self.jwt_algorithm {
            JwtAlgorithm::Hs256 => DecodingKey::from_secret(self.secret(environment)?),
            JwtAlgorithm::Rs256 => DecodingKey::from_rsa_pem(&Self::read_pem(
                &self.jwt_public_key_file,
                "PRESENCE_JWT_PUBLIC_KEY_FILE",
            )?)
            .map_err(invalid)?,
            JwtAlgorithm::EdDsa => DecodingKey::from_ed_pem(&Self::read_pem(
                &self.jwt_public_key_file,
                "PRESENCE_JWT_PUBLIC_KEY_FILE",
            )?)
            .map_err(invalid)?,
        };
        Ok(TokenVerifier::new(algorithm, key, &self.jwt_issuer))
    }

    pub fn issuer(
        &self,
        environment: Environment,
        lifetime_seconds: i64,
    ) -> Result<TokenIssuer, Error> {
        let algorithm = self.jwt_algorithm.algorithm();
        let invalid = |error: jsonwebtoken::errors::Error| {
            Error::InvalidConfig(format!("PRESENCE_JWT_PRIVATE_KEY_FILE: {error}"))
        };
        let key = match self.jwt_algorithm {
            JwtAlgorithm::Hs256 => EncodingKey::from_secret(self.secret(environment)?),
            JwtAlgorithm::Rs256 => EncodingKey::from_rsa_pem(&Self::read_pem(
                &self.jwt_private_key_file,
                "PRESENCE_JWT_PRIVATE_KEY_FILE",
            )?)
            .map_err(invalid)?,
            JwtAlgorithm::EdDsa => EncodingKey::from_ed_pem(&Self::read_pem(
                &self.jwt_private_key_file,
                "PRESENCE_JWT_PRIVATE_KEY_FILE",
            )?)
            .map_err(invalid)?,
        };
        Ok(TokenIssuer::new(
            algorithm,
            key,
            &self.jwt_issuer,
            lifetime_seconds,
        ))
    }
}

/// A URL fit for a log line: its password and any query parameter that may
/// carry a secret (`password=`, `sslpassword=`, `token=`, ...) are replaced.
/// Parsed as a URL (the last `@` ends the credentials, as in every client),
/// so a password holding `@`, `:` or `/` is hidden whole.
pub fn redact_url(url: &str) -> String {
    const HIDDEN: &str = "<redacted>";
    let Ok(mut parsed) = url::Url::parse(url) else {
        return "<unparseable url>".into();
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some(HIDDEN));
    }
    if parsed.query().is_some() {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(name, value)| {
                let lowered = name.to_ascii_lowercase();
                let secret = ["pass", "secret", "token", "key", "auth"]
                    .iter()
                    .any(|word| lowered.contains(word));
                let value = if secret {
                    HIDDEN.to_owned()
                } else {
                    value.into_owned()
                };
                (name.into_owned(), value)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    // The placeholder's brackets come back percent-encoded; show them plainly.
    parsed.as_str().replace("%3Credacted%3E", HIDDEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(secret: Option<&str>) -> JwtArgs {
        JwtArgs {
            jwt_algorithm: JwtAlgorithm::Hs256,
            jwt_secret: secret.map(str::to_owned),
            jwt_public_key_file: None,
            jwt_private_key_file: None,
            jwt_issuer: "presence".into(),
        }
    }

    #[test]
    fn production_refuses_to_start_without_a_secret() {
        assert!(jwt(None).verifier(Environment::Production).is_err());
        assert!(jwt(None).verifier(Environment::Development).is_ok());
    }

    #[test]
    fn production_refuses_the_development_secret() {
        let args = jwt(Some(DEVELOPMENT_JWT_SECRET));
        assert!(args.verifier(Environment::Production).is_err());
    }

    #[test]
    fn short_secrets_are_refused_everywhere() {
        assert!(
            jwt(Some("short"))
                .verifier(Environment::Development)
                .is_err()
        );
    }

    #[derive(clap::Parser)]
    struct RedisOnly {
        #[command(flatten)]
        redis: RedisArgs,
    }

    fn redis_args(flags: &[&str]) -> RedisArgs {
        use clap::Parser;
        RedisOnly::parse_from(std::iter::once("test").chain(flags.iter().copied())).redis
    }

    #[test]
    fn cluster_nodes_select_redis_cluster_and_its_sharded_index() {
        let single = redis_args(&[]);
        assert!(!single.is_cluster());
        assert_eq!(single.keys().unwrap().presence_index_shards().len(), 1);

        let cluster = redis_args(&["--redis-cluster-nodes=redis://a:7000, redis://b:7001,"]);
        assert_eq!(
            cluster.cluster_nodes(),
            ["redis://a:7000", "redis://b:7001"]
        );
        assert_eq!(
            cluster.keys().unwrap().presence_index_shards().len(),
            usize::from(crate::keys::CLUSTER_INDEX_SHARDS)
        );
    }

    #[test]
    fn cluster_node_passwords_never_reach_the_log() {
        let args =
            redis_args(&["--redis-cluster-nodes=redis://:s3cret@a:7000,redis://u:s3cret@b:7001"]);
        let printed = format!("{args:?}");
        assert!(!printed.contains("s3cret"), "{printed}");
        assert!(printed.contains("redis://u:<redacted>@b:7001"), "{printed}");
    }

    #[test]
    fn passwords_never_reach_the_log() {
        assert_eq!(
            redact_url("postgres://app:hunter2@db:5432/presence"),
            "postgres://app:<redacted>@db:5432/presence"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
    }

    #[test]
    fn passwords_with_at_signs_or_in_the_query_never_reach_the_log() {
        for (url, secret) in [
            ("postgres://app:p@ss@db:5432/presence", "ss"),
            ("postgres://app:p%40ss:w%2Frd@db/presence", "ss"),
            (
                "postgres://db/presence?user=app&password=hunter2",
                "hunter2",
            ),
            (
                "postgres://db/presence?sslmode=require&sslpassword=hunter2",
                "hunter2",
            ),
            ("rediss://:hunter2@cache:6380/0", "hunter2"),
            ("redis://cache:6379/?token=hunter2", "hunter2"),
        ] {
            let printed = redact_url(url);
            assert!(!printed.contains(secret), "{url} printed as {printed}");
            assert!(printed.contains("<redacted>"), "{url} printed as {printed}");
        }
        assert_eq!(
            redact_url("postgres://app:p@ss@db:5432/presence?sslmode=require"),
            "postgres://app:<redacted>@db:5432/presence?sslmode=require"
        );
        assert_eq!(redact_url("not a url with p@ss"), "<unparseable url>");
    }
}
