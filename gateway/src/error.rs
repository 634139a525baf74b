//! The gateway's one error type: what stops it from starting. Errors of a
//! call are gRPC statuses made where they happen (`forward`, `edge`).

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl From<presence_core::Error> for GatewayError {
    fn from(error: presence_core::Error) -> Self {
        GatewayError::Config(error.to_string())
    }
}
