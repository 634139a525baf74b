//! What the presence services share, once: the generated gRPC contract, the
//! Redis key schema and connection, token issuing, verification and revocation, the
//! activity threshold and its live updates, configuration pieces, telemetry,
//! the PostgreSQL migrations and graceful shutdown.
//!
//! Each service keeps its own handlers, store and error type; anything both
//! need to agree on (a key format, a claim, a default) lives here so it can
//! never be spelled two ways.

pub mod auth;
pub mod cli;
pub mod config;
pub mod db;
mod error;
pub mod events;
pub mod forwarded;
pub mod keys;
pub mod redis_client;
pub mod revocation;
pub mod serving;
pub mod settings;
pub mod shutdown;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod threshold;
pub mod token;

pub use error::Error;

/// The gRPC contract, generated at build time from `proto/` by protox.
pub mod proto {
    pub mod activity {
        tonic::include_proto!("presence.activity.v1");
    }
    pub mod admin {
        tonic::include_proto!("presence.admin.v1");
    }
    /// Every message and service of the contract, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/presence_descriptor.bin"));
}

/// Converts Unix seconds into a protobuf timestamp.
pub fn timestamp(unix_seconds: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: unix_seconds,
        nanos: 0,
    }
}

/// Converts a chrono time into a protobuf timestamp, keeping sub-second precision.
pub fn timestamp_from(time: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}
