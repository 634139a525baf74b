//! The shared crate's one error type. Each service wraps it in its own error,
//! which alone decides the gRPC status a client sees.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is missing, malformed or unsafe; the message says which and why.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The bearer token is missing or does not verify. The reason is for logs only.
    #[error("invalid token: {0}")]
    InvalidToken(String),
    /// Redis did not answer in time or refused the command.
    #[error("activity store unavailable: {0}")]
    RedisUnavailable(String),
    /// Neither Redis nor PostgreSQL could say whether a token was revoked:
    /// the call is refused rather than let a revoked token through.
    #[error("token revocation cannot be checked: {0}")]
    RevocationUnknown(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// A status event could not be encoded, so it is not published (rather
    /// than published empty, which every watcher would have to ignore).
    #[error("status event not encoded: {0}")]
    EventEncoding(#[from] serde_json::Error),
}

impl From<redis::RedisError> for Error {
    fn from(error: redis::RedisError) -> Self {
        Error::RedisUnavailable(error.to_string())
    }
}

impl Error {
    /// The gRPC code and the client-safe message for this error; the detail
    /// stays in the log. Each service's error type defers to it for the
    /// failures the shared crate reports.
    pub fn client_status(&self) -> (tonic::Code, &'static str) {
        match self {
            Error::InvalidToken(_) => (
                tonic::Code::Unauthenticated,
                "invalid or missing access token",
            ),
            Error::RedisUnavailable(_) => (
                tonic::Code::Unavailable,
                "activity store unavailable; retry shortly",
            ),
            Error::RevocationUnknown(_) => (
                tonic::Code::Unavailable,
                "cannot check the access token right now; retry shortly",
            ),
            Error::Database(error) if crate::db::is_unreachable(error) => (
                tonic::Code::Unavailable,
                "user database unavailable; retry shortly",
            ),
            Error::InvalidConfig(_)
            | Error::Database(_)
            | Error::Migration(_)
            | Error::EventEncoding(_) => (tonic::Code::Internal, "internal error"),
        }
    }
}
