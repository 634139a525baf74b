//! The shared crate's one error type. Each service wraps it in its own error,
//! which alone decides the gRPC status a client sees.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is missing, malformed or unsafe; the message says which and why.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// A key in a setting (PEM file, secret) does not parse.
    #[error("invalid configuration: {variable}: {source}")]
    InvalidKey {
        variable: &'static str,
        #[source]
        source: jsonwebtoken::errors::Error,
    },
    /// A file named by a setting cannot be read.
    #[error("cannot read {variable} {}", path.display())]
    UnreadableFile {
        variable: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A token could not be signed (a key the algorithm cannot use).
    #[error("cannot sign a token: {0}")]
    Signing(#[source] jsonwebtoken::errors::Error),
    /// The reflection service cannot read the contract's descriptors.
    #[error("invalid configuration: reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The bearer token is missing or does not verify. The reason is for logs only.
    #[error("invalid token: {0}")]
    InvalidToken(String),
    /// A status event could not be encoded, so it is not published (rather
    /// than published empty, which every watcher would have to ignore).
    #[error("status event not encoded: {0}")]
    EventEncoding(#[from] serde_json::Error),
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
            Error::InvalidConfig(_)
            | Error::InvalidKey { .. }
            | Error::UnreadableFile { .. }
            | Error::Signing(_)
            | Error::Reflection(_)
            | Error::EventEncoding(_) => (tonic::Code::Internal, "internal error"),
        }
    }
}
