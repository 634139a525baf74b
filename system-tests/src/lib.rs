//! The kit of the system tests: the real binaries of the three services run as
//! child processes, against stores the tests own, behind proxies the tests
//! control, under a load shaped like browsers'. The tests (`tests/faults/`)
//! then kill, stop, slow down and restart those processes and check what a
//! user would notice.
//!
//! - `binaries`: where cargo put the services' executables.
//! - `goaway`: an idle HTTP/2 connection, to see how a server ends it.
//! - `process`: a child process with its log file, its health, signals, RSS.
//! - `postgres`: a throwaway PostgreSQL cluster the tests may stop and start.
//! - `proxy`: a TCP proxy that adds latency, holds traffic (a blackhole), and
//!   balances new connections over a changing set of backends, as a
//!   Kubernetes Service does.
//! - `grpc_web`: a browser's side of gRPC-Web over HTTP/1.1.
//! - `load`: many users pinging through the gateway, every outcome recorded.
//! - `stack`: all of it put together, with users and tokens.
//! - `watcher`: an admin's live status stream, reconnecting as the web app does.

pub mod binaries;
pub mod goaway;
pub mod grpc_web;
pub mod load;
pub mod postgres;
pub mod process;
pub mod proxy;
pub mod stack;
pub mod watcher;

use std::time::Duration;

/// Polls `check` every 100 ms until it returns `Some`, or panics with `what`
/// once `within` has passed: every wait of the tests has a deadline.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Unix seconds now.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}
