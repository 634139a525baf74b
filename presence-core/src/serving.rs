//! What every gRPC server of presence carries besides its own service: gRPC
//! health (`grpc.health.v1`, the Kubernetes probes ask it) and server
//! reflection over the whole contract (so grpcurl needs no proto files).

use tonic::server::NamedService;
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
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|error| Error::InvalidConfig(format!("reflection: {error}")))
}
