//! The methods the gateway knows: every method of the contract's descriptors
//! and of gRPC health, read once from their encoded `FileDescriptorSet`s.
//! Anything keyed by a request's path (a metrics label, whether the response
//! streams) is keyed by one of these, never by the raw path a client sent,
//! so it stays bounded whatever paths clients make up.

use std::sync::LazyLock;

use prost::Message;

/// One method of the contract.
#[derive(Debug)]
pub struct KnownMethod {
    /// `/package.Service/Method`.
    pub path: &'static str,
    /// Whether its response is a stream.
    pub streaming: bool,
}

static METHODS: LazyLock<Vec<KnownMethod>> = LazyLock::new(|| {
    [
        presence_proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
    ]
    .into_iter()
    .flat_map(methods_of)
    .collect()
});

/// Every known method.
pub fn methods() -> &'static [KnownMethod] {
    &METHODS
}

/// The known method at `path`, if any (a dozen: a scan costs less than
/// hashing the path).
pub fn method(path: &str) -> Option<&'static KnownMethod> {
    METHODS.iter().find(|method| method.path == path)
}

/// The methods described in an encoded `FileDescriptorSet`. Their paths are
/// leaked once: they live as long as the process and label its metrics.
fn methods_of(descriptors: &[u8]) -> Vec<KnownMethod> {
    let set = prost_types::FileDescriptorSet::decode(descriptors)
        .expect("the contract's descriptors, built with the gateway, decode");
    let mut methods = Vec::new();
    for file in &set.file {
        for service in &file.service {
            for method in &service.method {
                let path = format!("/{}.{}/{}", file.package(), service.name(), method.name());
                methods.push(KnownMethod {
                    path: Box::leak(path.into_boxed_str()),
                    streaming: method.server_streaming(),
                });
            }
        }
    }
    methods
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_streaming_methods_are_read_from_the_contract() {
        let streaming: Vec<&str> = methods()
            .iter()
            .filter(|method| method.streaming)
            .map(|method| method.path)
            .collect();
        assert_eq!(
            streaming,
            [
                "/presence.admin.v1.AdminService/WatchUserStatuses",
                "/grpc.health.v1.Health/Watch"
            ]
        );
    }

    #[test]
    fn every_method_of_the_contract_and_of_health_is_known_and_nothing_else() {
        assert!(method("/presence.activity.v1.ActivityService/Ping").is_some());
        assert!(method("/presence.admin.v1.AdminService/ListUserStatuses").is_some());
        assert!(method("/grpc.health.v1.Health/Check").is_some());
        assert!(method("/presence.activity.v1.ActivityService/Made-up").is_none());
        assert!(method("/presence.activity.v1.ActivityService").is_none());
    }
}
