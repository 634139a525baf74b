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
    #[error("internal error: {0}")]
    Internal(String),
    /// A store call of a background loop outlived its deadline.
    #[error("{0} took longer than {1:?}")]
    TimedOut(&'static str, std::time::Duration),
    /// A failure reported by the shared crate: bad token, Redis or PostgreSQL
    /// unavailable, ...; it knows which status fits.
    #[error(transparent)]
    Core(#[from] presence_core::Error),
}

impl From<sqlx::Error> for AdminError {
    fn from(error: sqlx::Error) -> Self {
        AdminError::Core(error.into())
    }
}

impl From<AdminError> for Status {
    fn from(error: AdminError) -> Self {
        let (code, message) = match &error {
            AdminError::InvalidArgument(message) => (Code::InvalidArgument, message.as_str()),
            AdminError::PermissionDenied(message) => (Code::PermissionDenied, *message),
            AdminError::Internal(_) => (Code::Internal, "internal error"),
            AdminError::TimedOut(..) => (
                Code::Unavailable,
                "a store did not answer in time; retry shortly",
            ),
            AdminError::Core(core) => core.client_status(),
        };
        match code {
            Code::Internal | Code::Unavailable => tracing::error!(%error, "call failed"),
            _ => tracing::info!(%error, "call refused"),
        }
        Status::new(code, message)
    }
}
