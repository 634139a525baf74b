//! Routing: which service behind the gateway a call goes to, by the service
//! name in its path: the activity or the admin service upstream, or the
//! gateway's own gRPC health service, which is called in-process.

use std::convert::Infallible;

use http::{Request, Response};
use tonic::Status;
use tonic::body::Body;

use crate::contract::KnownMethod;
use crate::upstream::Upstream;

pub const ACTIVITY_SERVICE: &str = "presence.activity.v1.ActivityService";
pub const ADMIN_SERVICE: &str = "presence.admin.v1.AdminService";
pub const HEALTH_SERVICE: &str = "grpc.health.v1.Health";

/// The gateway's own gRPC health service.
pub type HealthService =
    tower::util::BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>;

/// The services behind the gateway.
#[derive(Debug)]
pub struct Upstreams {
    pub activity: Upstream,
    pub admin: Upstream,
}

/// Every destination a call can be routed to.
#[derive(Debug)]
pub struct Routes {
    pub upstreams: Upstreams,
    pub health: HealthService,
}

/// Where a call goes.
#[derive(Debug, Clone, Copy)]
pub enum Route<'a> {
    Upstream(&'a Upstream),
    Health(&'a HealthService),
}

impl Routes {
    /// The route of a known `method`.
    pub fn route(&self, method: &KnownMethod) -> Result<Route<'_>, Status> {
        let service = method
            .path
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or_default();
        match service {
            ACTIVITY_SERVICE => Ok(Route::Upstream(&self.upstreams.activity)),
            ADMIN_SERVICE => Ok(Route::Upstream(&self.upstreams.admin)),
            HEALTH_SERVICE => Ok(Route::Health(&self.health)),
            _ => Err(Status::unimplemented("no such service behind the gateway")),
        }
    }
}
