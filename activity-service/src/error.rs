//! The activity service's one error type, and the one place it becomes a gRPC
//! status: the client gets a code it can act on and a short message; the
//! detail (which may name hosts or SQL) goes to the log only.

use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum ActivityError {
    #[error("{0}")]
    InvalidArgument(String),
    /// A missing or bad token; the detail is for the log.
    #[error("invalid token: {0}")]
    InvalidToken(String),
    /// Unknown user, wrong password or disabled account, deliberately alike.
    #[error("bad credentials: {0}")]
    BadCredentials(&'static str),
    #[error("{0}")]
    PermissionDenied(&'static str),
    #[error("{0}")]
    NotFound(String),
    #[error("too many failed sign-in attempts")]
    Throttled,
    #[error("activity store unavailable: {0}")]
    RedisUnavailable(String),
    #[error("database unavailable: {0}")]
    DatabaseUnavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<presence_core::Error> for ActivityError {
    fn from(error: presence_core::Error) -> Self {
        use presence_core::Error as Core;
        match error {
            Core::InvalidToken(detail) => ActivityError::InvalidToken(detail),
            Core::RedisUnavailable(detail) => ActivityError::RedisUnavailable(detail),
            Core::Database(error) => error.into(),
            other => ActivityError::Internal(other.to_string()),
        }
    }
}

impl From<sqlx::Error> for ActivityError {
    fn from(error: sqlx::Error) -> Self {
        if presence_core::db::is_unreachable(&error) {
            ActivityError::DatabaseUnavailable(error.to_string())
        } else {
            ActivityError::Internal(error.to_string())
        }
    }
}

impl From<ActivityError> for Status {
    fn from(error: ActivityError) -> Self {
        let (code, message) = match &error {
            ActivityError::InvalidArgument(message) => (Code::InvalidArgument, message.as_str()),
            ActivityError::InvalidToken(_) => {
                (Code::Unauthenticated, "invalid or missing access token")
            }
            ActivityError::BadCredentials(_) => {
                (Code::Unauthenticated, "invalid username or password")
            }
            ActivityError::PermissionDenied(message) => (Code::PermissionDenied, *message),
            ActivityError::NotFound(message) => (Code::NotFound, message.as_str()),
            ActivityError::Throttled => (
                Code::ResourceExhausted,
                "too many failed sign-in attempts; try again in a few minutes",
            ),
            ActivityError::RedisUnavailable(_) => (
                Code::Unavailable,
                "activity store unavailable; retry shortly",
            ),
            ActivityError::DatabaseUnavailable(_) => (
                Code::Unavailable,
                "user database unavailable; retry shortly",
            ),
            ActivityError::Internal(_) => (Code::Internal, "internal error"),
        };
        match code {
            Code::Internal | Code::Unavailable => tracing::error!(%error, "call failed"),
            _ => tracing::info!(%error, "call refused"),
        }
        Status::new(code, message)
    }
}
