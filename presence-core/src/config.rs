//! Configuration pieces both services read from the environment (clap `env`),
//! each documented in `--help`, with defaults safe for local development and
//! checks that refuse an insecure production set-up.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use secrecy::{ExposeSecret, SecretString};

use crate::Error;
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

#[derive(Args, Clone, Debug)]
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
    pub jwt_secret: Option<SecretString>,
    /// During a key rotation: the HS256 secret used before PRESENCE_JWT_SECRET,
    /// whose tokens still verify until it is removed.
    #[arg(long, env = "PRESENCE_JWT_PREVIOUS_SECRET", hide_env_values = true)]
    pub jwt_previous_secret: Option<SecretString>,
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
            self.jwt_secret.as_ref().map(ExposeSecret::expose_secret),
            DEVELOPMENT_JWT_SECRET,
            "PRESENCE_JWT_SECRET",
            environment,
        )
    }

    fn read_pem(path: &Option<PathBuf>, variable: &'static str) -> Result<Vec<u8>, Error> {
        let path = path.as_ref().ok_or_else(|| {
            Error::InvalidConfig(format!("{variable} is required for this algorithm"))
        })?;
        std::fs::read(path).map_err(|source| Error::UnreadableFile {
            variable,
            path: path.clone(),
            source,
        })
    }

    /// Opens each key file the settings name (the private key too when
    /// `signing`), so that a missing or unreadable one is reported at start-up
    /// with its setting, its path and the system's reason as the source.
    pub fn check_key_files(&self, signing: bool) -> Result<(), Error> {
        if self.jwt_algorithm == JwtAlgorithm::Hs256 {
            return Ok(());
        }
        let mut files = vec![
            ("PRESENCE_JWT_PUBLIC_KEY_FILE", &self.jwt_public_key_file),
            (
                "PRESENCE_JWT_PREVIOUS_PUBLIC_KEY_FILE",
                &self.jwt_previous_public_key_file,
            ),
        ];
        if signing {
            files.push(("PRESENCE_JWT_PRIVATE_KEY_FILE", &self.jwt_private_key_file));
        }
        for (variable, path) in files {
            if let Some(path) = path {
                std::fs::File::open(path).map_err(|source| Error::UnreadableFile {
                    variable,
                    path: path.clone(),
                    source,
                })?;
            }
        }
        Ok(())
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
    fn public_key(
        &self,
        path: &Option<PathBuf>,
        variable: &'static str,
    ) -> Result<DecodingKey, Error> {
        let pem = Self::read_pem(path, variable)?;
        let invalid = |source| Error::InvalidKey { variable, source };
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
                        Some(previous.expose_secret()),
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
        let invalid = |source| Error::InvalidKey {
            variable: "PRESENCE_JWT_PRIVATE_KEY_FILE",
            source,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(secret: Option<&str>) -> JwtArgs {
        let mut args = jwt_args(&[]);
        args.jwt_secret = secret.map(SecretString::from);
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
    fn jwt_secrets_never_reach_the_log() {
        let args = jwt_args(&[
            "--jwt-secret=current-0123456789abcdef0123456789",
            "--jwt-previous-secret=previous-0123456789abcdef01234567",
        ]);
        let printed = format!("{args:?}");
        assert!(!printed.contains("current-"), "{printed}");
        assert!(!printed.contains("previous-"), "{printed}");
        assert!(printed.contains("jwt_issuer"), "{printed}");
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
}
