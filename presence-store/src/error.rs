//! The store crate's one error type. Each service wraps it in its own error,
//! whose one status mapping asks `client_status` for the code and the
//! client-safe message; the source stays attached for the log.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Redis setting is malformed or unsafe; the message says which and why.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// A Redis URL does not parse (or its TLS set-up is refused).
    #[error("invalid configuration: {variable}: {source}")]
    InvalidRedisUrl {
        variable: &'static str,
        #[source]
        source: redis::RedisError,
    },
    #[error("invalid configuration: PRESENCE_REDIS_KEY_PREFIX: {0}")]
    InvalidKeyPrefix(#[from] crate::keys::InvalidPrefix),
    #[error("invalid configuration: PRESENCE_REDIS_CA_FILE {}: {source}", path.display())]
    UnreadableCaFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Redis refused the command or the connection failed.
    #[error("activity store unavailable: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis answered with a reply of the wrong shape: it counts as misbehaving.
    #[error("activity store unavailable: unexpected reply: {0}")]
    RedisReply(#[from] redis::ParsingError),
    /// Redis gave no answer within the configured timeout.
    #[error("activity store unavailable: no answer within {} ms", .0.as_millis())]
    RedisTimedOut(Duration),
    /// Neither Redis nor PostgreSQL could say whether a token was revoked:
    /// the call is refused rather than let a revoked token through.
    #[error("token revocation cannot be checked: {reason}")]
    RevocationUnknown {
        reason: &'static str,
        #[source]
        source: Option<sqlx::Error>,
    },
    /// The bearer token verified but was revoked (logout, disabled user).
    #[error("invalid token: token revoked")]
    TokenRevoked,
    #[error("cannot connect to PostgreSQL (DATABASE_URL)")]
    DatabaseUnreachable(#[source] sqlx::Error),
    #[error("cannot connect to PostgreSQL (DATABASE_URL): no answer within {0:?}")]
    DatabaseTimedOut(Duration),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
}

impl Error {
    /// The gRPC code and the client-safe message for this error; the detail
    /// stays in the log.
    pub fn client_status(&self) -> (tonic::Code, &'static str) {
        match self {
            Error::TokenRevoked => (
                tonic::Code::Unauthenticated,
                "invalid or missing access token",
            ),
            Error::Redis(_) | Error::RedisReply(_) | Error::RedisTimedOut(_) => (
                tonic::Code::Unavailable,
                "activity store unavailable; retry shortly",
            ),
            Error::RevocationUnknown { .. } => (
                tonic::Code::Unavailable,
                "cannot check the access token right now; retry shortly",
            ),
            Error::DatabaseUnreachable(_) | Error::DatabaseTimedOut(_) => (
                tonic::Code::Unavailable,
                "user database unavailable; retry shortly",
            ),
            Error::Database(error) if crate::db::is_unreachable(error) => (
                tonic::Code::Unavailable,
                "user database unavailable; retry shortly",
            ),
            Error::InvalidConfig(_)
            | Error::InvalidRedisUrl { .. }
            | Error::InvalidKeyPrefix(_)
            | Error::UnreadableCaFile { .. }
            | Error::Database(_)
            | Error::Migration(_) => (tonic::Code::Internal, "internal error"),
        }
    }
}
