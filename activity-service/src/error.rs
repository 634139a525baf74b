//! The activity service's one error type, and the one place it becomes a gRPC
//! status: the client gets a code it can act on and a short message; the
//! detail (which may name hosts or SQL) goes to the log only.

use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum ActivityError {
    #[error("{0}")]
    InvalidArgument(String),
    /// Unknown user, wrong password or disabled account, deliberately alike.
    #[error("bad credentials: {0}")]
    BadCredentials(&'static str),
    #[error("{0}")]
    PermissionDenied(&'static str),
    #[error("{0}")]
    NotFound(String),
    /// The sign-in throttle refused the attempt; says which limit, for the log.
    #[error("too many failed sign-in attempts ({0})")]
    Throttled(&'static str),
    /// Every password check slot is taken: retry shortly.
    #[error("too many sign-ins being checked at once")]
    Busy,
    #[error("internal error: {0}")]
    Internal(String),
    /// A failure reported by the shared crate (bad token, bad setting); it
    /// knows which status fits.
    #[error(transparent)]
    Core(#[from] presence_core::Error),
    /// A failure reported by the store crate (Redis or PostgreSQL unavailable,
    /// token revoked, ...); it knows which status fits.
    #[error(transparent)]
    Store(#[from] presence_store::Error),
}

impl From<sqlx::Error> for ActivityError {
    fn from(error: sqlx::Error) -> Self {
        ActivityError::Store(error.into())
    }
}

impl From<redis::RedisError> for ActivityError {
    fn from(error: redis::RedisError) -> Self {
        ActivityError::Store(error.into())
    }
}

impl From<ActivityError> for Status {
    fn from(error: ActivityError) -> Self {
        let (code, message) = match &error {
            ActivityError::InvalidArgument(message) => (Code::InvalidArgument, message.as_str()),
            ActivityError::BadCredentials(_) => {
                (Code::Unauthenticated, "invalid username or password")
            }
            ActivityError::PermissionDenied(message) => (Code::PermissionDenied, *message),
            ActivityError::NotFound(message) => (Code::NotFound, message.as_str()),
            ActivityError::Throttled(_) => (
                Code::ResourceExhausted,
                "too many failed sign-in attempts; try again in a few minutes",
            ),
            ActivityError::Busy => (
                Code::ResourceExhausted,
                "busy checking other sign-ins; retry in a few seconds",
            ),
            ActivityError::Internal(_) => (Code::Internal, "internal error"),
            ActivityError::Core(core) => core.client_status(),
            ActivityError::Store(store) => store.client_status(),
        };
        match code {
            Code::Internal | Code::Unavailable => tracing::error!(%error, "call failed"),
            _ => tracing::info!(%error, "call refused"),
        }
        Status::new(code, message)
    }
}
