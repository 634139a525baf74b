//! What every gRPC server of presence carries besides its own service: gRPC
//! health (`grpc.health.v1`, the Kubernetes probes ask it) and server
//! reflection over the whole contract (so grpcurl needs no proto files);
//! and how they accept connections.

use tokio::net::TcpListener;
use tonic::server::NamedService;
use tonic::transport::server::TcpIncoming;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::server::HealthReporter;
use tonic_reflection::server::v1::{ServerReflection, ServerReflectionServer};

use crate::Error;

/// Health, reporting `S` (and the server as a whole) as serving, and its reporter.
pub async fn health<S: NamedService>() -> (HealthReporter, HealthServer<impl Health>) {
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter.set_serving::<S>().await;
    (reporter, service)
}

/// Server reflection for the presence contract and gRPC health.
pub fn reflection() -> Result<ServerReflectionServer<impl ServerReflection>, Error> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(presence_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(Error::from)
}

/// The connections accepted on `listener`, with Nagle's algorithm off. A gRPC
/// answer is several small writes (headers, message, trailers); with Nagle on,
/// the last waits for the client's acknowledgement, which a delayed ACK holds
/// back 40 ms: every answer larger than a packet took 44 ms.
pub fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}
