//! The admin service's one error type, and the one place it becomes a gRPC
//! status: a code the client can act on and a short, safe message; details go
//! to the log.

use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("invalid token: {0}")]
    InvalidToken(String),
    #[error("{0}")]
    PermissionDenied(&'static str),
    #[error("activity store unavailable: {0}")]
    RedisUnavailable(String),
    #[error("database unavailable: {0}")]
    DatabaseUnavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<presence_core::Error> for AdminError {
    fn from(error: presence_core::Error) -> Self {
        use presence_core::Error as Core;
        match error {
            Core::InvalidToken(detail) => AdminError::InvalidToken(detail),
            Core::RedisUnavailable(detail) => AdminError::RedisUnavailable(detail),
            Core::Database(error) => error.into(),
            other => AdminError::Internal(other.to_string()),
        }
    }
}

impl From<sqlx::Error> for AdminError {
    fn from(error: sqlx::Error) -> Self {
        if presence_core::db::is_unreachable(&error) {
            AdminError::DatabaseUnavailable(error.to_string())
        } else {
            AdminError::Internal(error.to_string())
        }
    }
}

impl From<AdminError> for Status {
    fn from(error: AdminError) -> Self {
        let (code, message) = match &error {
            AdminError::InvalidArgument(message) => (Code::InvalidArgument, message.as_str()),
            AdminError::InvalidToken(_) => {
                (Code::Unauthenticated, "invalid or missing access token")
            }
            AdminError::PermissionDenied(message) => (Code::PermissionDenied, *message),
            AdminError::RedisUnavailable(_) => (
                Code::Unavailable,
                "activity store unavailable; retry shortly",
            ),
            AdminError::DatabaseUnavailable(_) => (
                Code::Unavailable,
                "user database unavailable; statuses cannot be listed until it is back",
            ),
            AdminError::Internal(_) => (Code::Internal, "internal error"),
        };
        match code {
            Code::Internal | Code::Unavailable => tracing::error!(%error, "call failed"),
            _ => tracing::info!(%error, "call refused"),
        }
        Status::new(code, message)
    }
}
