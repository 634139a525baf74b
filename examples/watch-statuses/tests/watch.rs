//! The built `watch-statuses` binary against the real activity and admin
//! services (the test kit's stack, on the machine's PostgreSQL and Redis):
//! what it prints, and when it gives up or reconnects.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use presence_core::token::Role;
use presence_proto::activity::LogoutRequest;
use presence_testkit::authorized;
use presence_testkit::stack::{Stack, spawn_stack};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const SOON: Duration = Duration::from_secs(15);

/// The running binary; killed when dropped.
struct WatchStatuses {
    child: Child,
    /// Its standard output and error, line by line (error lines prefixed).
    lines: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
}

impl Drop for WatchStatuses {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn forward(
    from: impl Read + Send + 'static,
    prefix: &'static str,
    to: mpsc::UnboundedSender<String>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            if to.send(format!("{prefix}{line}")).is_err() {
                break;
            }
        }
    });
}

fn start(admin_url: &str, token: &str) -> WatchStatuses {
    let mut child = Command::new(env!("CARGO_BIN_EXE_watch-statuses"))
        .args(["--admin-url", admin_url, "--max-backoff-seconds=1"])
        .env("PRESENCE_SERVICE_TOKEN", token)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let (send, lines) = mpsc::unbounded_channel();
    forward(child.stdout.take().unwrap(), "", send.clone());
    forward(child.stderr.take().unwrap(), "stderr: ", send);
    WatchStatuses {
        child,
        lines,
        seen: Vec::new(),
    }
}

impl WatchStatuses {
    /// Waits (at most `SOON`) for a line matching `wanted`.
    async fn line(&mut self, wanted: impl Fn(&str) -> bool) -> String {
        let found = tokio::time::timeout(SOON, async {
            while let Some(line) = self.lines.recv().await {
                self.seen.push(line.clone());
                if wanted(&line) {
                    return Some(line);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(line)) => line,
            _ => panic!("no such line in time; it printed {:#?}", self.seen),
        }
    }

    /// Waits (at most `SOON`) for it to exit.
    async fn exit(&mut self) -> ExitStatus {
        let deadline = tokio::time::Instant::now() + SOON;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(tokio::time::Instant::now() < deadline, "it never exited");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn service_token(stack: &Stack, username: &str) -> String {
    let service = stack.create_user(username, Role::Service).await;
    presence_testkit::test_token(service, Role::Service)
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn prints_who_is_online_then_users_coming_online_and_leaving(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool).await;
    let token = service_token(&stack, "chat").await;
    let mut watcher = start(&format!("http://{}", stack.admin_address), &token);

    watcher.line(|line| line == "snapshot complete").await;
    assert!(
        watcher
            .seen
            .iter()
            .any(|line| line.starts_with("online  admintest1 (") && line.ends_with(") via login")),
        "the signed-in admin is in the snapshot: {:#?}",
        watcher.seen
    );

    let user = stack.create_user("usertest1", Role::User).await;
    let session = stack.login("usertest1").await.access_token;
    watcher
        .line(|line| line == format!("online  usertest1 ({user}) via login"))
        .await;
    stack
        .activity
        .logout(authorized(LogoutRequest::default(), &session))
        .await
        .unwrap();
    watcher
        .line(|line| line == format!("offline usertest1 ({user})"))
        .await;
    assert!(
        watcher.seen.iter().all(|line| !line.contains(&token)),
        "the token is never printed"
    );
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn a_user_token_ends_it_with_a_message(pool: sqlx::PgPool) {
    let mut stack = spawn_stack(pool).await;
    stack.create_user("usertest1", Role::User).await;
    let token = stack.login("usertest1").await.access_token;
    let mut watcher = start(&format!("http://{}", stack.admin_address), &token);

    watcher
        .line(|line| line.starts_with("stderr: ") && line.contains("may not watch statuses"))
        .await;
    assert_eq!(watcher.exit().await.code(), Some(1));
}

/// Listens on `address` from now on, relaying each connection to `to`.
async fn relay(address: SocketAddr, to: SocketAddr) {
    let listener = TcpListener::bind(address).await.unwrap();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut server) = TcpStream::connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
}

#[sqlx::test(migrator = "presence_store::db::MIGRATOR")]
async fn it_reconnects_until_the_admin_service_answers(pool: sqlx::PgPool) {
    let stack = spawn_stack(pool).await;
    let token = service_token(&stack, "chat").await;
    let address = SocketAddr::from(([127, 0, 0, 1], presence_testkit::free_port()));
    let mut watcher = start(&format!("http://{address}"), &token);
    watcher
        .line(|line| line.starts_with("stderr: ") && line.contains("reconnecting"))
        .await;

    relay(address, stack.admin_address).await;

    watcher.line(|line| line == "snapshot complete").await;
}
