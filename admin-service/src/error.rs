//! The admin service's one error type, and the one place it becomes a gRPC
//! status: a code the client can act on and a short, safe message; details go
//! to the log.

use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    PermissionDenied(&'static str),
    /// What the request names does not exist (a user id of no user).
    #[error("{0}")]
    NotFound(&'static str),
    /// The caller's session ended while its stream was open: the token
    /// expired or was revoked. The client must sign in again.
    #[error("{0}")]
    SessionEnded(&'static str),
    /// A cap on open status streams (the caller's or the server's) is reached.
    #[error("{0}")]
    TooManyStreams(&'static str),
    /// The server ended a stream it will not go on serving (it is stopping, or
    /// the client stopped reading); the client should reconnect.
    #[error("{0}")]
    StreamInterrupted(&'static str),
    /// A store call of a background loop outlived its deadline.
    #[error("{0} took longer than {1:?}")]
    TimedOut(&'static str, std::time::Duration),
    /// A failure reported by the shared crate (bad token, bad setting); it
    /// knows which status fits.
    #[error(transparent)]
    Core(#[from] presence_core::Error),
    /// A failure reported by the store crate (Redis or PostgreSQL unavailable,
    /// token revoked, ...); it knows which status fits.
    #[error(transparent)]
    Store(#[from] presence_store::Error),
}

impl From<sqlx::Error> for AdminError {
    fn from(error: sqlx::Error) -> Self {
        AdminError::Store(error.into())
    }
}

impl From<redis::RedisError> for AdminError {
    fn from(error: redis::RedisError) -> Self {
        AdminError::Store(error.into())
    }
}

impl From<AdminError> for Status {
    fn from(error: AdminError) -> Self {
        let (code, message) = match &error {
            AdminError::InvalidArgument(message) => (Code::InvalidArgument, message.as_str()),
            AdminError::PermissionDenied(message) => (Code::PermissionDenied, *message),
            AdminError::NotFound(message) => (Code::NotFound, *message),
            AdminError::SessionEnded(message) => (Code::Unauthenticated, *message),
            AdminError::TooManyStreams(message) => (Code::ResourceExhausted, *message),
            AdminError::StreamInterrupted(message) => (Code::Unavailable, *message),
            AdminError::TimedOut(..) => (
                Code::Unavailable,
                "a store did not answer in time; retry shortly",
            ),
            AdminError::Core(core) => core.client_status(),
            AdminError::Store(store) => store.client_status(),
        };
        match (&error, code) {
            // Expected at every shutdown and for every client that stops reading.
            (AdminError::StreamInterrupted(_), _) => tracing::info!(%error, "stream ended"),
            (_, Code::Internal | Code::Unavailable) => tracing::error!(%error, "call failed"),
            _ => tracing::info!(%error, "call refused"),
        }
        Status::new(code, message)
    }
}
