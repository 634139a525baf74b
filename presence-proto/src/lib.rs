//! The gRPC contract, generated at build time from `proto/` by protox, and the
//! conversions into its timestamps. Every crate that speaks the contract (the
//! services, the gateway, the system tests) uses this one, so a message can
//! never be built two ways.

pub mod activity {
    tonic::include_proto!("presence.activity.v1");
}
pub mod admin {
    tonic::include_proto!("presence.admin.v1");
}
/// Every message and service of the contract, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/presence_descriptor.bin"));

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
