//! The kit of the system tests: the real binaries of the three services run as
//! child processes, against stores the tests own, behind proxies the tests
//! control, under a load shaped like browsers'. The tests (`tests/faults/`)
//! then kill, stop, slow down and restart those processes and check what a
//! user would notice.
//!
//! - `binaries`: where cargo put the services' executables.
//! - `goaway`: an idle HTTP/2 connection, to see how a server ends it.
//! - `process`: a child process with its log file, its health, signals, RSS,
//!   CPU time, and the open-file limit.
//! - `postgres`: a throwaway PostgreSQL cluster the tests may stop and start.
//! - `proxy`: a TCP proxy that adds latency, holds traffic (a blackhole), and
//!   balances new connections over a changing set of backends, as a
//!   Kubernetes Service does.
//! - `grpc_web`: a browser's side of gRPC-Web over HTTP/1.1 or h2c.
//! - `load`: many users pinging through the gateway, every outcome recorded.
//! - `measure`: percentiles and a browser's timer randomness, for the load generators.
//! - `stack`: all of it put together, with users and tokens.
//! - `watcher`: an admin's live status stream, reconnecting as the web app does.

pub mod binaries;
pub mod goaway;
pub mod grpc_web;
pub mod load;
pub mod measure;
pub mod postgres;
pub mod process;
pub mod proxy;
pub mod stack;
pub mod watcher;

/// Every wait of the tests has a deadline: the kit's one `eventually`.
pub use presence_testkit::eventually;

/// Unix seconds now.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}
