//! What operators and browsers get besides gRPC-Web: health, metrics, the
//! web app, and a shutdown that drains open streams.

use std::time::{Duration, Instant};

use presence_core::token::Role;
use presence_proto::activity::PingRequest;
use presence_proto::admin::WatchUserStatusesRequest;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::helpers::{
    BINARY, GrpcWebResponse, SOON, call, check_health, frame, grpc_status, http, metrics_text,
    parse_response, shows_online, spawn_gateway, spawn_gateway_to,
};
use crate::stack::{connect, spawn_stack};

const WATCH: &str = "/presence.admin.v1.AdminService/WatchUserStatuses";

async fn health(address: std::net::SocketAddr, service: &str) -> i32 {
    HealthClient::new(connect(address).await)
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn readiness_follows_the_upstreams(pool: sqlx::PgPool) {
    /// Waits (generously: the gateway asks every 2 s) for readiness to be `wanted`.
    async fn readiness_becomes(gateway: std::net::SocketAddr, wanted: ServingStatus, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let status = health(gateway, "readiness").await;
            if status == wanted as i32 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: readiness is {status}, not {wanted:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    let stack = spawn_stack(pool).await;
    // The activity upstream is a health service the test steers, in front of
    // nothing at first; the admin upstream is the real service.
    let activity_address: std::net::SocketAddr =
        format!("127.0.0.1:{}", presence_testkit::free_port())
            .parse()
            .unwrap();
    let gateway = spawn_gateway_to(
        &format!("http://{activity_address}"),
        &format!("http://{}", stack.admin_address),
        &[],
    )
    .await;
    let closed = format!("http://127.0.0.1:{}", presence_testkit::free_port());
    let cut_off = spawn_gateway_to(&closed, &closed, &[]).await;

    readiness_becomes(
        gateway.address,
        ServingStatus::NotServing,
        "with the activity service not there",
    )
    .await;
    let (activity, activity_health) = tonic_health::server::health_reporter();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(activity_health)
            .serve(activity_address),
    );
    readiness_becomes(
        gateway.address,
        ServingStatus::Serving,
        "once both services are up",
    )
    .await;

    activity
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
    readiness_becomes(
        gateway.address,
        ServingStatus::NotServing,
        "once the activity service stops serving",
    )
    .await;
    activity
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    readiness_becomes(
        gateway.address,
        ServingStatus::Serving,
        "once the activity service serves again",
    )
    .await;
    // Alive throughout: restarting it would not bring the services back.
    assert_eq!(
        health(gateway.address, "").await,
        ServingStatus::Serving as i32
    );

    assert_eq!(
        health(cut_off.address, "readiness").await,
        ServingStatus::NotServing as i32
    );
    assert_eq!(
        health(cut_off.address, "").await,
        ServingStatus::Serving as i32
    );
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_browser_can_ask_the_gateways_health_in_grpc_web(pool: sqlx::PgPool) {
    let stack = spawn_stack(pool).await;
    let gateway = spawn_gateway(&stack, &[]).await;

    let response = check_health(&gateway).await;

    assert_eq!(grpc_status(&response), 0);
    let message = &GrpcWebResponse::parse(&response.body).messages[0];
    let health = tonic_health::pb::HealthCheckResponse::decode(message.as_slice()).unwrap();
    assert_eq!(health.status, ServingStatus::Serving as i32);

    // Watching is a stream: it is passed on as one, until the client's deadline.
    let watched = http(
        gateway.address,
        "POST",
        "/grpc.health.v1.Health/Watch",
        &[("Content-Type", BINARY), ("grpc-timeout", "1S")],
        &frame(&HealthCheckRequest {
            service: String::new(),
        }),
        SOON,
    )
    .await;
    let watched = GrpcWebResponse::parse(&watched.body);
    let first =
        tonic_health::pb::HealthCheckResponse::decode(watched.messages[0].as_slice()).unwrap();
    assert_eq!(first.status, ServingStatus::Serving as i32);
    assert_eq!(
        watched.trailer("grpc-status"),
        Some("4"),
        "ended by its deadline"
    );
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn metrics_count_calls_by_method_and_status(pool: sqlx::PgPool) {
    let stack = spawn_stack(pool).await;
    let gateway = spawn_gateway(&stack, &[]).await;
    call(
        &gateway,
        "/presence.activity.v1.ActivityService/Ping",
        None,
        &PingRequest::default(),
    )
    .await;

    let text = metrics_text(&gateway).await;

    assert!(
        text.contains(r#"presence_gateway_requests_total{method="/presence.activity.v1.ActivityService/Ping",code="UNAUTHENTICATED"} 1"#),
        "{text}"
    );
    assert!(text.contains("presence_gateway_request_duration_seconds_count"));
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn the_web_app_is_served_with_a_fallback_to_its_page(pool: sqlx::PgPool) {
    let stack = spawn_stack(pool).await;
    let gateway = spawn_gateway(&stack, &[]).await;

    let deep_link = http(gateway.address, "GET", "/admin/users", &[], b"", SOON).await;
    let asset = http(
        gateway.address,
        "GET",
        "/assets/app-1234.js",
        &[("Accept-Encoding", "gzip")],
        b"",
        SOON,
    )
    .await;

    assert_eq!(deep_link.status, 200);
    assert!(String::from_utf8_lossy(&deep_link.body).contains("<title>presence</title>"));
    assert_eq!(deep_link.header("cache-control"), Some("no-cache"));
    assert_eq!(asset.status, 200);
    assert_eq!(asset.header("content-encoding"), Some("gzip"));
    assert!(asset.header("cache-control").unwrap().contains("immutable"));
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_shutdown_lets_open_streams_run_until_the_drain_deadline(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool).await;
    stack.create_user("usertest1", Role::User).await;
    let mut gateway = spawn_gateway(&stack, &["--drain-seconds=4"]).await;

    // An admin's status stream, open (its first bytes arrived) before the shutdown.
    let mut stream = TcpStream::connect(gateway.address).await.unwrap();
    let body = frame(&WatchUserStatusesRequest {});
    let head = format!(
        "POST {WATCH} HTTP/1.1\r\nHost: {}\r\nContent-Type: {BINARY}\r\n\
         Authorization: Bearer {}\r\ngrpc-timeout: 60S\r\nContent-Length: {}\r\n\r\n",
        gateway.address,
        stack.admin_token,
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body).await.unwrap();
    let mut raw = vec![0u8; 64 * 1024];
    let first = tokio::time::timeout(SOON, stream.read(&mut raw))
        .await
        .unwrap()
        .unwrap();
    raw.truncate(first);

    let shutting_down = Instant::now();
    gateway.begin_shutdown();
    // A sign-in during the drain still reaches the open stream.
    stack.login("usertest1").await;
    // New connections are refused while the open stream drains.
    let mut refused = false;
    for _ in 0..20 {
        if TcpStream::connect(gateway.address).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refused, "no new connections once shutting down");
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw))
        .await
        .expect("the drain deadline ends the stream")
        .unwrap();
    let lasted = shutting_down.elapsed();

    let parsed = GrpcWebResponse::parse(&parse_response(&raw).body);
    let events = parsed.status_events();
    assert!(
        shows_online(&events, "usertest1"),
        "the stream kept delivering during the drain: {events:?}"
    );
    assert_eq!(
        parsed.trailer("grpc-status"),
        Some("14"),
        "ended as UNAVAILABLE, so the browser reconnects elsewhere"
    );
    // Not before the drain deadline (a slow machine only makes it later);
    // not at its own 60 s deadline either, or it would end DEADLINE_EXCEEDED.
    assert!(
        lasted >= Duration::from_secs(3),
        "ended at the 4 s drain deadline, not before: {lasted:?}"
    );
}

/// Checks every line of an OpenMetrics text exposition strictly (names,
/// label syntax and escapes, values) and returns its samples' label sets.
fn parse_exposition(text: &str) -> Vec<(String, Vec<(String, String)>)> {
    let is_name = |name: &str| {
        let mut chars = name.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    assert!(text.ends_with("# EOF\n"), "the exposition ends with # EOF");
    let mut samples = Vec::new();
    for line in text.lines() {
        if line == "# EOF" {
            continue;
        }
        if let Some(comment) = line.strip_prefix("# ") {
            let mut words = comment.splitn(3, ' ');
            let kind = words.next().unwrap();
            assert!(["HELP", "TYPE", "UNIT"].contains(&kind), "{line}");
            assert!(is_name(words.next().unwrap()), "{line}");
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
        assert!(
            value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value),
            "{line}"
        );
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => (name, labels.strip_suffix('}').expect("labels end")),
            None => (series, ""),
        };
        assert!(is_name(name), "{line}");
        let mut parsed = Vec::new();
        let mut rest = labels;
        while !rest.is_empty() {
            let (label, after) = rest.split_once("=\"").expect("label=\"value\"");
            assert!(is_name(label), "{line}");
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next().expect("a closing quote") {
                    (at, '"') => break at,
                    (_, '\\') => match chars.next().expect("an escaped character").1 {
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        'n' => value.push('\n'),
                        other => panic!("bad escape \\{other} in {line}"),
                    },
                    (_, c) => value.push(c),
                }
            };
            parsed.push((label.to_owned(), value));
            rest = &after[end + 1..];
            rest = rest.strip_prefix(',').unwrap_or(rest);
        }
        samples.push((name.to_owned(), parsed));
    }
    samples
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn metrics_stay_valid_and_bounded_whatever_paths_clients_make_up(pool: sqlx::PgPool) {
    use crate::helpers::KeepAlive;
    let stack = spawn_stack(pool).await;
    let gateway = spawn_gateway(&stack, &[]).await;
    let mut browser = KeepAlive::open(gateway.address).await;
    let long = "x".repeat(4000);
    for n in 0..2000 {
        let path = match n % 5 {
            0 => format!("/made-up{n}/\"quoted\""),
            1 => format!("/presence.activity.v1.ActivityService/made-up{n}%22%7D"),
            2 => format!("/made-up{n}/{long}"),
            3 => format!("/made-up{n}\\back'slash"),
            _ => format!("/grpc.health.v1.Health/made-up{n}"),
        };
        if browser.call(&path, &PingRequest::default()).await.is_none() {
            // Refused as HTTP (a path the parser takes for malformed): the
            // connection is closed; carry on with another.
            browser = KeepAlive::open(gateway.address).await;
        }
    }
    call(
        &gateway,
        "/presence.activity.v1.ActivityService/Ping",
        None,
        &PingRequest::default(),
    )
    .await;

    let text = metrics_text(&gateway).await;
    let samples = parse_exposition(&text);

    assert!(!text.contains("made-up"), "no made-up path is a label");
    let methods: std::collections::BTreeSet<&str> = samples
        .iter()
        .flat_map(|(_, labels)| labels.iter())
        .filter(|(label, _)| label == "method")
        .map(|(_, value)| value.as_str())
        .collect();
    let known: Vec<&str> = gateway::contract::methods()
        .iter()
        .map(|m| m.path)
        .collect();
    assert!(
        methods
            .iter()
            .all(|method| *method == "unknown" || known.contains(method)),
        "{methods:?}"
    );
    assert!(methods.contains("unknown"));
    assert!(methods.contains("/presence.activity.v1.ActivityService/Ping"));
    assert!(samples.len() < 200, "{} series", samples.len());
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn every_web_answer_carries_the_security_headers(pool: sqlx::PgPool) {
    let stack = spawn_stack(pool).await;
    let gateway = spawn_gateway(&stack, &[]).await;

    for path in ["/", "/assets/app-1234.js", "/admin/users"] {
        let response = http(gateway.address, "GET", path, &[], b"", SOON).await;
        assert_eq!(response.status, 200, "{path}");
        let policy = response
            .header("content-security-policy")
            .unwrap_or_default();
        for directive in [
            "default-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
            "object-src 'none'",
            "base-uri 'none'",
        ] {
            assert!(policy.contains(directive), "{path}: {policy}");
        }
        assert_eq!(
            response.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(
            response.header("referrer-policy"),
            Some("no-referrer"),
            "{path}"
        );
    }
}
