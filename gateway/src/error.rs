//! The gateway's one error type, and the one place it becomes a gRPC status.
//! Refusals of the edge rules (allowlist, rate limits, origin, size before
//! reading) are statuses made where they are decided (`admission`, `edge`).

use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("cannot reach the upstream at {address}: {reason}")]
    Unreachable { address: String, reason: String },
    #[error("upstream HTTP/2 error: {0}")]
    Upstream(#[from] h2::Error),
    #[error("the upstream's response could not be read: {reason}")]
    BrokenResponse { reason: String },
    #[error("request larger than the gateway accepts")]
    TooLarge,
    #[error("malformed request: {reason}")]
    MalformedRequest { reason: String },
}

impl GatewayError {
    /// What the browser is told; the details of upstream failures stay in
    /// the gateway's log.
    pub fn status(&self) -> Status {
        match self {
            GatewayError::Unreachable { .. } => {
                Status::unavailable("the service is unreachable; retry shortly")
            }
            GatewayError::Upstream(error) if error.reason() == Some(h2::Reason::CANCEL) => {
                Status::cancelled("the call was cancelled")
            }
            GatewayError::Upstream(_) => {
                Status::unavailable("the service did not complete the call; retry shortly")
            }
            GatewayError::BrokenResponse { .. } => {
                Status::internal("the service's response could not be read")
            }
            GatewayError::TooLarge => Status::new(Code::ResourceExhausted, "request too large"),
            GatewayError::MalformedRequest { reason } => {
                Status::invalid_argument(format!("malformed request: {reason}"))
            }
        }
    }
}
