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
use crate::token::{TokenIssuer, TokenRules, TokenVerifier, VerifyingKey};

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
    /// HS256 secret, at least 32 bytes, that signs and verifies tokens.
    /// Required in production; a built-in development secret is used otherwise.
    #[arg(long, env = "PRESENCE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// During a key rotation: the HS256 secret used before PRESENCE_JWT_SECRET,
    /// whose tokens still verify until it is removed.
    #[arg(long, env = "PRESENCE_JWT_PREVIOUS_SECRET", hide_env_values = true)]
    pub jwt_previous_secret: Option<String>,
    /// PEM public key file verifying RS256/EdDSA tokens.
    #[arg(long, env = "PRESENCE_JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<PathBuf>,
    /// During a key rotation: the PEM public key used before
    /// PRESENCE_JWT_PUBLIC_KEY_FILE, whose tokens still verify until it is removed.
    #[arg(long, env = "PRESENCE_JWT_PREVIOUS_PUBLIC_KEY_FILE")]
    pub jwt_previous_public_key_file: Option<PathBuf>,
    /// PEM private key file signing RS256/EdDSA tokens (the activity service's
    /// Login only); it must match PRESENCE_JWT_PUBLIC_KEY_FILE.
    #[arg(long, env = "PRESENCE_JWT_PRIVATE_KEY_FILE")]
    pub jwt_private_key_file: Option<PathBuf>,
    /// `kid` of the current key; derived from the key itself when unset
    /// (set it to trust an external issuer that names its keys).
    #[arg(long, env = "PRESENCE_JWT_KEY_ID")]
    pub jwt_key_id: Option<String>,
    /// `kid` of the previous key; derived from the key itself when unset.
    #[arg(long, env = "PRESENCE_JWT_PREVIOUS_KEY_ID")]
    pub jwt_previous_key_id: Option<String>,
    /// Value of the `iss` claim issued and required.
    #[arg(long, env = "PRESENCE_JWT_ISSUER", default_value = "presence")]
    pub jwt_issuer: String,
    /// Value of the `aud` claim issued and required: the presence services.
    #[arg(long, env = "PRESENCE_JWT_AUDIENCE", default_value = crate::token::DEFAULT_AUDIENCE)]
    pub jwt_audience: String,
    /// Longest lifetime (`exp - iat`) accepted for a user's or an admin's
    /// token, in seconds; PRESENCE_TOKEN_TTL_SECONDS may not exceed it.
    #[arg(long, env = "PRESENCE_JWT_MAX_LIFETIME_SECONDS",
          default_value_t = crate::token::DEFAULT_MAX_LIFETIME_SECONDS,
          value_parser = clap::value_parser!(i64).range(60..=30 * 24 * 3600))]
    pub jwt_max_lifetime_seconds: i64,
    /// Longest lifetime accepted for a service token (`token issue`), in seconds.
    #[arg(long, env = "PRESENCE_JWT_MAX_SERVICE_LIFETIME_SECONDS",
          default_value_t = crate::token::DEFAULT_MAX_SERVICE_LIFETIME_SECONDS,
          value_parser = clap::value_parser!(i64).range(60..=366 * 24 * 3600))]
    pub jwt_max_service_lifetime_seconds: i64,
}

impl std::fmt::Debug for JwtArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |secret: &Option<String>| secret.as_ref().map(|_| "<redacted>");
        f.debug_struct("JwtArgs")
            .field("jwt_algorithm", &self.jwt_algorithm)
            .field("jwt_secret", &redacted(&self.jwt_secret))
            .field("jwt_previous_secret", &redacted(&self.jwt_previous_secret))
            .field("jwt_public_key_file", &self.jwt_public_key_file)
            .field(
                "jwt_previous_public_key_file",
                &self.jwt_previous_public_key_file,
            )
            .field("jwt_private_key_file", &self.jwt_private_key_file)
            .field("jwt_key_id", &self.jwt_key_id)
            .field("jwt_previous_key_id", &self.jwt_previous_key_id)
            .field("jwt_issuer", &self.jwt_issuer)
            .field("jwt_audience", &self.jwt_audience)
            .field("jwt_max_lifetime_seconds", &self.jwt_max_lifetime_seconds)
            .field(
                "jwt_max_service_lifetime_seconds",
                &self.jwt_max_service_lifetime_seconds,
            )
            .finish()
    }
}

/// A secret setting: its value never reaches a log (`Debug` prints
/// `<redacted>`).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Ok(Secret(value.to_owned()))
    }
}

/// Checks a shared secret: present in production, never the public
/// development one there, and at least 32 bytes everywhere.
pub fn check_secret<'a>(
    secret: Option<&'a str>,
    development_default: &'a str,
    variable: &str,
    environment: Environment,
) -> Result<&'a [u8], Error> {
    let secret = match (secret, environment) {
        (Some(secret), _) => secret,
        (None, Environment::Development) => development_default,
        (None, Environment::Production) => {
            return Err(Error::InvalidConfig(format!(
                "{variable} must be set in production"
            )));
        }
    };
    if environment == Environment::Production && secret == development_default {
        return Err(Error::InvalidConfig(format!(
            "{variable} is the public development secret; set a private one"
        )));
    }
    if secret.len() < 32 {
        return Err(Error::InvalidConfig(format!(
            "{variable} must be at least 32 bytes"
        )));
    }
    Ok(secret.as_bytes())
}

impl JwtArgs {
    fn secret(&self, environment: Environment) -> Result<&[u8], Error> {
        check_secret(
            self.jwt_secret.as_deref(),
            DEVELOPMENT_JWT_SECRET,
            "PRESENCE_JWT_SECRET",
            environment,
        )
    }

    fn read_pem(path: &Option<PathBuf>, variable: &str) -> Result<Vec<u8>, Error> {
        let path = path.as_ref().ok_or_else(|| {
            Error::InvalidConfig(format!("{variable} is required for this algorithm"))
        })?;
        std::fs::read(path).map_err(|error| {
            Error::InvalidConfig(format!("{variable} {}: {error}", path.display()))
        })
    }

    /// The `iss`, `aud` and lifetime rules of every token.
    pub fn rules(&self) -> Result<TokenRules, Error> {
        if self.jwt_issuer.is_empty() || self.jwt_audience.is_empty() {
            return Err(Error::InvalidConfig(
                "PRESENCE_JWT_ISSUER and PRESENCE_JWT_AUDIENCE may not be empty".into(),
            ));
        }
        Ok(TokenRules {
            issuer: self.jwt_issuer.clone(),
            audience: self.jwt_audience.clone(),
            max_lifetime_seconds: self.jwt_max_lifetime_seconds,
            max_service_lifetime_seconds: self.jwt_max_service_lifetime_seconds,
        })
    }

    /// A public key (RS256/EdDSA) from a PEM file.
    fn public_key(&self, path: &Option<PathBuf>, variable: &str) -> Result<DecodingKey, Error> {
        let pem = Self::read_pem(path, variable)?;
        let invalid = |error: jsonwebtoken::errors::Error| {
            Error::InvalidConfig(format!("{variable}: {error}"))
        };
        match self.jwt_algorithm {
            JwtAlgorithm::Rs256 => DecodingKey::from_rsa_pem(&pem).map_err(invalid),
            JwtAlgorithm::EdDsa => DecodingKey::from_ed_pem(&pem).map_err(invalid),
            JwtAlgorithm::Hs256 => Err(Error::InvalidConfig(format!(
                "{variable} is for RS256 and EdDSA; HS256 uses PRESENCE_JWT_SECRET"
            ))),
        }
    }

    /// The keys that verify tokens: the current one, then the previous one
    /// if a rotation is under way, each under its configured or derived id.
    fn verifying_keys(&self, environment: Environment) -> Result<Vec<VerifyingKey>, Error> {
        let named = |key: DecodingKey, id: &Option<String>| match id {
            Some(id) if !id.is_empty() => VerifyingKey::with_id(id.clone(), key),
            _ => VerifyingKey::new(key),
        };
        let (current, previous) = match self.jwt_algorithm {
            JwtAlgorithm::Hs256 => {
                let previous = match &self.jwt_previous_secret {
                    Some(previous) => Some(DecodingKey::from_secret(check_secret(
                        Some(previous),
                        DEVELOPMENT_JWT_SECRET,
                        "PRESENCE_JWT_PREVIOUS_SECRET",
                        environment,
                    )?)),
                    None => None,
                };
                (
                    DecodingKey::from_secret(self.secret(environment)?),
                    previous,
                )
            }
            JwtAlgorithm::Rs256 | JwtAlgorithm::EdDsa => {
                let previous = match &self.jwt_previous_public_key_file {
                    Some(_) => Some(self.public_key(
                        &self.jwt_previous_public_key_file,
                        "PRESENCE_JWT_PREVIOUS_PUBLIC_KEY_FILE",
                    )?),
                    None => None,
                };
                let current =
                    self.public_key(&self.jwt_public_key_file, "PRESENCE_JWT_PUBLIC_KEY_FILE")?;
                (current, previous)
            }
        };
        let mut keys = vec![named(current, &self.jwt_key_id)];
        keys.extend(previous.map(|key| named(key, &self.jwt_previous_key_id)));
        Ok(keys)
    }

    pub fn verifier(&self, environment: Environment) -> Result<TokenVerifier, Error> {
        if self.jwt_algorithm == JwtAlgorithm::Hs256 && self.jwt_secret.is_none() {
            tracing::warn!("PRESENCE_JWT_SECRET unset: using the public development secret");
        }
        TokenVerifier::with_keys(
            self.jwt_algorithm.algorithm(),
            self.verifying_keys(environment)?,
            self.rules()?,
        )
    }

    /// The signer of tokens living `lifetime_seconds`: the current key, its
    /// id in every token's `kid`. Refuses a private key that does not match
    /// the current public key (a token it signs must verify).
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
        let verifier = self.verifier(environment)?;
        let current_id = verifier
            .key_ids()
            .next()
            .expect("a verifier has a current key")
            .to_owned();
        let issuer = TokenIssuer::new(algorithm, key, &self.jwt_issuer, lifetime_seconds)
            .with_key_id(current_id)
            .with_rules(self.rules()?);
        let role = if lifetime_seconds <= self.jwt_max_lifetime_seconds {
            crate::token::Role::User
        } else {
            crate::token::Role::Service
        };
        let probe = issuer.issue(uuid::Uuid::nil(), role, chrono::Utc::now().timestamp())?;
        verifier.verify(&probe.token).map_err(|_| {
            Error::InvalidConfig(
                "PRESENCE_JWT_PRIVATE_KEY_FILE does not match PRESENCE_JWT_PUBLIC_KEY_FILE".into(),
            )
        })?;
        Ok(issuer)
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
        let mut args = jwt_args(&[]);
        args.jwt_secret = secret.map(str::to_owned);
        args
    }

    #[derive(clap::Parser)]
    struct JwtOnly {
        #[command(flatten)]
        jwt: JwtArgs,
    }

    fn jwt_args(flags: &[&str]) -> JwtArgs {
        use clap::Parser;
        JwtOnly::parse_from(std::iter::once("test").chain(flags.iter().copied())).jwt
    }

    #[test]
    fn a_previous_secret_is_checked_like_the_current_one() {
        let args = jwt_args(&[
            "--jwt-secret=0123456789abcdef0123456789abcdef",
            "--jwt-previous-secret=short",
        ]);
        assert!(args.verifier(Environment::Development).is_err());
        let same = jwt_args(&[
            "--jwt-secret=0123456789abcdef0123456789abcdef",
            "--jwt-previous-secret=0123456789abcdef0123456789abcdef",
        ]);
        assert!(same.verifier(Environment::Development).is_err());
    }

    #[test]
    fn the_issuer_signs_with_the_current_key_and_both_keys_verify() {
        let old = jwt_args(&["--jwt-secret=fedcba9876543210fedcba9876543210"]);
        let rotating = jwt_args(&[
            "--jwt-secret=0123456789abcdef0123456789abcdef",
            "--jwt-previous-secret=fedcba9876543210fedcba9876543210",
        ]);
        let user = uuid::Uuid::new_v4();
        let now = chrono::Utc::now().timestamp();
        let role = crate::token::Role::User;
        let old_token = old.issuer(Environment::Development, 60).unwrap();
        let old_token = old_token.issue(user, role, now).unwrap().token;
        let new_token = rotating.issuer(Environment::Development, 60).unwrap();
        let new_token = new_token.issue(user, role, now).unwrap().token;
        let verifier = rotating.verifier(Environment::Development).unwrap();
        assert!(verifier.verify(&old_token).is_ok());
        assert!(verifier.verify(&new_token).is_ok());
        let rotated = jwt_args(&["--jwt-secret=0123456789abcdef0123456789abcdef"]);
        let verifier = rotated.verifier(Environment::Development).unwrap();
        assert!(verifier.verify(&old_token).is_err());
        assert!(verifier.verify(&new_token).is_ok());
    }

    #[test]
    fn an_issuer_whose_lifetime_outlives_every_maximum_is_refused() {
        let args = jwt_args(&[
            "--jwt-max-lifetime-seconds=3600",
            "--jwt-max-service-lifetime-seconds=3600",
        ]);
        assert!(args.issuer(Environment::Development, 7200).is_err());
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
