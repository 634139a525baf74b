//! Checks of a stack running elsewhere, made from the outside as the kubelet and a browser
//! reach it. deploy/containers/run-test.sh runs them (they are ignored otherwise) against the
//! images and manifests it has just started with podman, and names what to reach in `DEPLOYED_*`
//! variables taken from the rendered manifests: every gRPC probe, the gateway's address, the
//! Redis and key prefix of the deployment, and the accounts it created.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use presence_proto::activity::{LoginRequest, LoginResponse, PingRequest, PingResponse};
use presence_proto::admin::{ListUserStatusesRequest, ListUserStatusesResponse};
use presence_store::keys::RedisKeys;
use prost::Message;
use redis::AsyncCommands;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::helpers::{BINARY, GrpcWebResponse, HttpResponse, SOON, frame, grpc_status, http};

const LOGIN: &str = "/presence.activity.v1.ActivityService/Login";
const PING: &str = "/presence.activity.v1.ActivityService/Ping";
const LIST: &str = "/presence.admin.v1.AdminService/ListUserStatuses";

/// As long as the startup probes allow (every 2 s, 30 times), and some more for a slow host.
const STARTUP: Duration = Duration::from_secs(90);

fn setting(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set (deploy/containers/run-test.sh sets it)"))
}

/// One gRPC probe of a container: `container=host:port/service` in DEPLOYED_PROBES.
struct Probe {
    container: String,
    address: SocketAddr,
    service: String,
}

fn probes() -> Vec<Probe> {
    let probes: Vec<Probe> = setting("DEPLOYED_PROBES")
        .split_whitespace()
        .map(|entry| {
            let (container, target) = entry.split_once('=').expect("container=host:port/service");
            let (address, service) = target.split_once('/').expect("host:port/service");
            Probe {
                container: container.into(),
                address: address.parse().expect("a socket address"),
                service: service.into(),
            }
        })
        .collect();
    assert!(!probes.is_empty(), "DEPLOYED_PROBES names no probe");
    probes
}

/// The response of one native gRPC health check over h2c, as the kubelet's gRPC probe asks it.
async fn health(address: SocketAddr, service: &str) -> Result<ServingStatus, String> {
    let channel = Channel::from_shared(format!("http://{address}"))
        .expect("a valid URI")
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(2))
        .connect()
        .await
        .map_err(|error| format!("no connection: {error}"))?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .map_err(|status| format!("{:?}: {}", status.code(), status.message()))?;
    Ok(response.into_inner().status())
}

/// Waits until the probe answers SERVING, giving up after `STARTUP` with the last status.
async fn wait_until_serving(probe: &Probe) {
    let deadline = Instant::now() + STARTUP;
    loop {
        let status = health(probe.address, &probe.service).await;
        if status == Ok(ServingStatus::Serving) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{}: its probe (gRPC health on {}, service {:?}) did not answer SERVING within {:?}; \
             last status: {status:?}",
            probe.container,
            probe.address,
            probe.service,
            STARTUP,
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
#[ignore = "needs a deployed stack: deploy/containers/run-test.sh"]
async fn every_probe_of_the_deployed_containers_answers_serving() {
    for probe in probes() {
        wait_until_serving(&probe).await;
    }
}

/// A binary gRPC-Web call as the web app makes it from the gateway's own page.
async fn browser_call(
    gateway: SocketAddr,
    path: &str,
    token: Option<&str>,
    message: &impl Message,
) -> HttpResponse {
    let origin = format!("http://{gateway}");
    let bearer = token.map(|token| format!("Bearer {token}"));
    let mut headers = vec![
        ("Content-Type", BINARY),
        ("Accept", BINARY),
        ("X-Grpc-Web", "1"),
        ("Origin", origin.as_str()),
    ];
    if let Some(bearer) = &bearer {
        headers.push(("Authorization", bearer));
    }
    http(gateway, "POST", path, &headers, &frame(message), SOON).await
}

/// The one message of a successful unary response, or a panic saying what came back.
fn single_message<T: Message + Default>(what: &str, response: &HttpResponse) -> T {
    assert_eq!(
        (response.status, grpc_status(response)),
        (200, 0),
        "{what} through the gateway failed: {response:?}"
    );
    let messages = GrpcWebResponse::parse(&response.body).messages;
    T::decode(messages.first().expect("one message").as_slice()).expect("the message decodes")
}

async fn sign_in(gateway: SocketAddr, username: &str) -> LoginResponse {
    let credentials = LoginRequest {
        username: username.into(),
        password: setting("DEPLOYED_PASSWORD"),
    };
    let login = browser_call(gateway, LOGIN, None, &credentials).await;
    single_message(&format!("Login as {username}"), &login)
}

#[tokio::test]
#[ignore = "needs a deployed stack: deploy/containers/run-test.sh"]
async fn a_user_signed_in_through_the_deployed_gateway_is_online_for_an_admin() {
    let gateway: SocketAddr = setting("DEPLOYED_GATEWAY").parse().expect("host:port");
    for probe in probes().iter().filter(|probe| probe.address == gateway) {
        wait_until_serving(probe).await;
    }

    // The browser's first request: the web app the image carries.
    let page = http(gateway, "GET", "/", &[("Accept", "text/html")], b"", SOON).await;
    assert_eq!(page.status, 200, "the web app is not served: {page:?}");
    assert!(
        page.header("content-type")
            .is_some_and(|kind| kind.starts_with("text/html")),
        "the web app's page is not HTML: {page:?}"
    );

    let user = sign_in(gateway, &setting("DEPLOYED_USER")).await;
    let ping = browser_call(
        gateway,
        PING,
        Some(&user.access_token),
        &PingRequest::default(),
    )
    .await;
    let pong: PingResponse = single_message("Ping", &ping);

    let keys = RedisKeys::new(setting("DEPLOYED_KEY_PREFIX")).expect("a valid prefix");
    let mut redis = redis::Client::open(setting("DEPLOYED_REDIS_URL"))
        .expect("a Redis URL")
        .get_multiplexed_async_connection()
        .await
        .expect("Redis answers");
    let user_id = user.user_id.parse().expect("a user id");
    let written: Option<i64> = redis.get(keys.last_activity(user_id)).await.unwrap();
    assert_eq!(
        written,
        pong.server_time.map(|time| time.seconds),
        "the ping through the gateway did not write {}",
        keys.last_activity(user_id)
    );

    let admin = sign_in(gateway, &setting("DEPLOYED_ADMIN")).await;
    let listing = ListUserStatusesRequest {
        page_size: 100,
        ..Default::default()
    };
    let list = browser_call(gateway, LIST, Some(&admin.access_token), &listing).await;
    let statuses: ListUserStatusesResponse = single_message("ListUserStatuses", &list);
    let status = statuses
        .statuses
        .iter()
        .find(|status| status.user_id == user.user_id)
        .unwrap_or_else(|| panic!("the admin's listing lacks the user: {statuses:?}"));
    assert!(status.online, "the admin sees the user offline: {status:?}");
    assert!(!statuses.degraded, "the listing is degraded: {statuses:?}");
}
