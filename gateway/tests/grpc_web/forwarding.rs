//! Calls through the gateway reach the services and come back as a browser
//! expects them.

use std::time::Duration;

use presence_core::token::Role;
use presence_proto::activity::{
    GetMyPresenceRequest, LoginEventKind, LoginRequest, LoginResponse, MyPresence, PingRequest,
    PingResponse,
};
use presence_proto::admin::{BatchGetUserStatusesRequest, WatchUserStatusesRequest};
use prost::Message;
use redis::AsyncCommands;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use crate::helpers::{
    BINARY, GrpcWebResponse, SOON, TEXT, call, frame, grpc_status, http, parse_response,
    shows_online, spawn_gateway, spawn_gateway_to,
};
use crate::stack::{PASSWORD, spawn_stack};

const LOGIN: &str = "/presence.activity.v1.ActivityService/Login";
const PING: &str = "/presence.activity.v1.ActivityService/Ping";
const WATCH: &str = "/presence.admin.v1.AdminService/WatchUserStatuses";
const BATCH: &str = "/presence.admin.v1.AdminService/BatchGetUserStatuses";
const MY_PRESENCE: &str = "/presence.activity.v1.ActivityService/GetMyPresence";

fn credentials(username: &str) -> LoginRequest {
    LoginRequest {
        username: username.into(),
        password: PASSWORD.into(),
    }
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn login_then_ping_through_the_gateway_writes_the_activity_key(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool).await;
    stack.create_user("usertest1", Role::User).await;
    let gateway = spawn_gateway(&stack, &[]).await;

    let login = call(&gateway, LOGIN, None, &credentials("usertest1")).await;
    assert_eq!(login.status, 200);
    assert_eq!(grpc_status(&login), 0);
    let parsed = GrpcWebResponse::parse(&login.body);
    let login = LoginResponse::decode(parsed.messages[0].as_slice()).unwrap();

    let ping = call(
        &gateway,
        PING,
        Some(&login.access_token),
        &PingRequest::default(),
    )
    .await;
    assert_eq!(grpc_status(&ping), 0);
    let pong =
        PingResponse::decode(GrpcWebResponse::parse(&ping.body).messages[0].as_slice()).unwrap();
    assert_eq!(pong.threshold_minutes, 15);

    let key = stack.keys.last_activity(login.user_id.parse().unwrap());
    let written: Option<i64> = stack.redis.get(key).await.unwrap();
    assert_eq!(written, pong.server_time.map(|t| t.seconds));
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_browser_call_from_the_gateways_own_origin_is_answered(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool).await;
    stack.create_user("usertest1", Role::User).await;
    let token = stack.login("usertest1").await.access_token;
    let gateway = spawn_gateway(&stack, &[]).await;
    let origin = format!("http://{}", gateway.address);
    let bearer = format!("Bearer {token}");

    let ping = http(
        gateway.address,
        "POST",
        PING,
        &[
            ("Content-Type", BINARY),
            ("Origin", &origin),
            ("Authorization", &bearer),
        ],
        &frame(&PingRequest::default()),
        SOON,
    )
    .await;

    assert_eq!(grpc_status(&ping), 0);
    let pong =
        PingResponse::decode(GrpcWebResponse::parse(&ping.body).messages[0].as_slice()).unwrap();
    assert_eq!(pong.threshold_minutes, 15);
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_sign_in_through_the_gateway_records_the_browsers_user_agent(pool: sqlx::PgPool) {
    let stack = spawn_stack(pool).await;
    stack.create_user("usertest1", Role::User).await;
    let gateway = spawn_gateway(&stack, &[]).await;

    let login = http(
        gateway.address,
        "POST",
        LOGIN,
        &[
            ("Content-Type", BINARY),
            ("User-Agent", "presence-test-browser/1.0"),
            // What a gRPC-Web library says of itself (Connect-ES sends it):
            // the browser's own User-Agent is the one an admin needs.
            ("X-User-Agent", "connect-es/2.2.0"),
            // Browser-only headers stay at the edge; the call still passes.
            ("Cookie", "session=not-for-the-services"),
            ("Sec-Fetch-Mode", "cors"),
        ],
        &frame(&credentials("usertest1")),
        SOON,
    )
    .await;
    assert_eq!(grpc_status(&login), 0);

    let user_agent: Option<String> = sqlx::query_scalar(
        "SELECT user_agent FROM login_history WHERE username = 'usertest1' \
         ORDER BY occurred_at DESC LIMIT 1",
    )
    .fetch_one(&stack.pool)
    .await
    .unwrap();
    assert_eq!(user_agent.as_deref(), Some("presence-test-browser/1.0"));
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_restarted_service_is_reached_again(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool).await;
    stack.create_user("usertest1", Role::User).await;
    let token = stack.login("usertest1").await.access_token;
    let address: std::net::SocketAddr = format!("127.0.0.1:{}", presence_testkit::free_port())
        .parse()
        .unwrap();
    let (stop, stopped) = stack.spawn_activity_at(address).await;
    let gateway = spawn_gateway_to(
        &format!("http://{address}"),
        &format!("http://{}", stack.admin_address),
        &[],
    )
    .await;
    let request = PingRequest::default();
    let ping = || call(&gateway, PING, Some(&token), &request);
    assert_eq!(grpc_status(&ping().await), 0);

    stop.send(()).unwrap();
    stopped.await.unwrap();
    assert_eq!(grpc_status(&ping().await), 14, "the service is down");

    let (_stop, _running) = stack.spawn_activity_at(address).await;
    assert_eq!(
        grpc_status(&ping().await),
        0,
        "the next call opens a new connection"
    );
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_user_reads_their_own_records_through_the_gateway(pool: sqlx::PgPool) {
    let stack = spawn_stack(pool).await;
    let user_id = stack.create_user("usertest1", Role::User).await;
    let gateway = spawn_gateway(&stack, &[]).await;
    let login = call(&gateway, LOGIN, None, &credentials("usertest1")).await;
    let login =
        LoginResponse::decode(GrpcWebResponse::parse(&login.body).messages[0].as_slice()).unwrap();
    let ping = call(
        &gateway,
        PING,
        Some(&login.access_token),
        &PingRequest::default(),
    )
    .await;
    assert_eq!(grpc_status(&ping), 0);

    let mine = call(
        &gateway,
        MY_PRESENCE,
        Some(&login.access_token),
        &GetMyPresenceRequest {},
    )
    .await;
    let anonymous = call(&gateway, MY_PRESENCE, None, &GetMyPresenceRequest {}).await;

    assert_eq!(grpc_status(&mine), 0);
    let mine =
        MyPresence::decode(GrpcWebResponse::parse(&mine.body).messages[0].as_slice()).unwrap();
    assert_eq!(mine.user_id, user_id.to_string());
    assert!(mine.last_activity.is_some());
    let newest = &mine.recent_events[0];
    assert_eq!(newest.kind(), LoginEventKind::LoginSuccess);
    // The gateway names the browser's address, as for the admin's view.
    assert_eq!(newest.client_address, "127.0.0.1");
    assert_eq!(grpc_status(&anonymous), 16);
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn an_unauthenticated_ping_gets_status_16(pool: sqlx::PgPool) {
    let stack = spawn_stack(pool).await;
    let gateway = spawn_gateway(&stack, &[]).await;

    let ping = call(&gateway, PING, None, &PingRequest::default()).await;

    assert_eq!(ping.status, 200);
    assert_eq!(grpc_status(&ping), 16);
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn text_mode_works(pool: sqlx::PgPool) {
    use base64::Engine;
    let stack = spawn_stack(pool).await;
    stack.create_user("usertest1", Role::User).await;
    let gateway = spawn_gateway(&stack, &[]).await;
    let body = base64::engine::general_purpose::STANDARD.encode(frame(&credentials("usertest1")));

    let response = http(
        gateway.address,
        "POST",
        LOGIN,
        &[
            ("Content-Type", TEXT),
            ("Accept", TEXT),
            ("X-Grpc-Web", "1"),
        ],
        body.as_bytes(),
        SOON,
    )
    .await;

    assert!(response.header("content-type").unwrap().starts_with(TEXT));
    // The response is base64 chunks, one per frame.
    let text = String::from_utf8(response.body).unwrap();
    let mut decoded = Vec::new();
    for chunk in text.split_inclusive('=').filter(|chunk| !chunk.is_empty()) {
        decoded.extend(
            base64::engine::general_purpose::STANDARD
                .decode(chunk.trim())
                .unwrap(),
        );
    }
    let parsed = GrpcWebResponse::parse(&decoded);
    assert_eq!(parsed.trailer("grpc-status"), Some("0"));
    let login = LoginResponse::decode(parsed.messages[0].as_slice()).unwrap();
    assert_eq!(login.role, "user");
}

/// A service that answers the first call's head and one message, then dies
/// (its connection dropped, as when its process is killed) when `die` fires;
/// its URL.
async fn service_dying_mid_response(message: Vec<u8>, die: oneshot::Receiver<()>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        // The activity and admin upstreams each connect, and the health
        // follower calls too: only the watch gets the message; every stream
        // and connection is kept open until the service dies.
        let mut connections = tokio::task::JoinSet::new();
        let accept = async {
            while let Ok((socket, _)) = listener.accept().await {
                let message = message.clone();
                connections.spawn(async move {
                    let mut connection = h2::server::handshake(socket).await.unwrap();
                    let mut streams = Vec::new();
                    while let Some(Ok((request, mut respond))) = connection.accept().await {
                        if request.uri().path() != WATCH {
                            continue;
                        }
                        let head = http::Response::builder()
                            .header("content-type", "application/grpc")
                            .body(())
                            .unwrap();
                        let mut body = respond.send_response(head, false).unwrap();
                        body.send_data(message.clone().into(), false).unwrap();
                        streams.push((respond, body));
                    }
                });
            }
        };
        // Dying when told to, once the browser has the message, keeps the
        // test from racing the forwarding; dropping the set drops every
        // connection, as a killed process does.
        tokio::select! {
            _ = die => {}
            () = accept => {}
            () = tokio::time::sleep(SOON) => {}
        }
        drop(connections);
    });
    url
}

#[tokio::test]
async fn a_stream_whose_service_dies_mid_response_ends_with_unavailable() {
    let event = presence_proto::admin::UserStatusEvent {
        snapshot_complete: true,
        ..Default::default()
    };
    let (die, dying_signal) = oneshot::channel();
    let dying = service_dying_mid_response(frame(&event), dying_signal).await;
    let gateway = spawn_gateway_to(&dying, &dying, &[]).await;

    let raw = tokio::time::timeout(SOON, async {
        let mut stream = TcpStream::connect(gateway.address).await.unwrap();
        let body = frame(&WatchUserStatusesRequest {});
        let head = format!(
            "POST {WATCH} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
             Content-Type: {BINARY}\r\nX-Grpc-Web: 1\r\nContent-Length: {}\r\n\r\n",
            gateway.address,
            body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&body).await.unwrap();
        let expected = frame(&event);
        let mut raw = Vec::new();
        let mut buffer = [0u8; 4096];
        while !raw.windows(expected.len()).any(|w| w == expected) {
            let read = stream.read(&mut buffer).await.unwrap();
            assert_ne!(read, 0, "the response ended before its first message");
            raw.extend_from_slice(&buffer[..read]);
        }
        die.send(()).unwrap();
        stream.read_to_end(&mut raw).await.unwrap();
        raw
    })
    .await
    .expect("the gateway answered in time");

    // What came before the end reaches the browser, then a status it can
    // act on (the web app reconnects), not a broken connection.
    let parsed = GrpcWebResponse::parse(&parse_response(&raw).body);
    assert_eq!(parsed.status_events(), [event]);
    assert_eq!(parsed.trailer("grpc-status"), Some("14"), "{parsed:?}");
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_status_stream_delivers_several_messages_then_trailers(pool: sqlx::PgPool) {
    let stack = spawn_stack(pool).await;
    let gateway = spawn_gateway(&stack, &[]).await;
    let bearer = format!("Bearer {}", stack.admin_token);

    // The stream ends at the client's deadline, which proves the trailers arrive.
    let response = http(
        gateway.address,
        "POST",
        WATCH,
        &[
            ("Content-Type", BINARY),
            ("X-Grpc-Web", "1"),
            ("Authorization", &bearer),
            ("grpc-timeout", "3S"),
        ],
        &frame(&WatchUserStatusesRequest {}),
        Duration::from_secs(15),
    )
    .await;

    let parsed = GrpcWebResponse::parse(&response.body);
    let events = parsed.status_events();
    assert!(events.len() >= 2, "{events:?}");
    assert!(events.iter().any(|event| event.snapshot_complete));
    // In the snapshot, or just after it if the sign-in was a moment ago.
    assert!(shows_online(&events, "admintest1"), "{events:?}");
    assert_eq!(
        parsed.trailer("grpc-status"),
        Some("4"),
        "ended by its deadline"
    );
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_service_token_watches_statuses_through_the_gateway_but_nothing_internal(
    pool: sqlx::PgPool,
) {
    let stack = spawn_stack(pool).await;
    let service = stack.create_user("chat", Role::Service).await;
    let token = presence_testkit::test_token(service, Role::Service);
    let gateway = spawn_gateway(&stack, &[]).await;
    let bearer = format!("Bearer {token}");

    let response = http(
        gateway.address,
        "POST",
        WATCH,
        &[
            ("Content-Type", BINARY),
            ("X-Grpc-Web", "1"),
            ("Authorization", &bearer),
            ("grpc-timeout", "3S"),
        ],
        &frame(&WatchUserStatusesRequest {}),
        Duration::from_secs(15),
    )
    .await;
    let batch = call(
        &gateway,
        BATCH,
        Some(&token),
        &BatchGetUserStatusesRequest {
            user_ids: vec![service.to_string()],
        },
    )
    .await;

    let parsed = GrpcWebResponse::parse(&response.body);
    let events = parsed.status_events();
    assert!(
        events.iter().any(|event| event.snapshot_complete),
        "{events:?}"
    );
    assert!(shows_online(&events, "admintest1"), "{events:?}");
    assert_eq!(
        parsed.trailer("grpc-status"),
        Some("4"),
        "ended by its deadline"
    );
    // The internal methods stay closed to it at the edge.
    assert_eq!(grpc_status(&batch), 7);
}
