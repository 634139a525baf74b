//! Helpers for the services' integration tests (feature `testing`): a
//! throwaway Redis for tests that stop it, and authorised requests.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The Redis the tests share (each test under its own key prefix).
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A key prefix no other test uses.
pub fn unique_prefix() -> String {
    format!("test:{}:", uuid::Uuid::new_v4().simple())
}

/// A `Request` carrying `authorization: Bearer <token>`.
pub fn authorized<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}")
            .parse()
            .expect("a token is valid metadata"),
    );
    request
}

/// A free loopback port (free when asked; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free loopback port")
}

/// A throwaway `redis-server` on a free loopback port, killed on drop. Tests
/// that stop Redis use one of these, never the machine's shared server.
pub struct ThrowawayRedis {
    pub url: String,
    child: Child,
}

impl ThrowawayRedis {
    pub async fn start() -> Self {
        Self::start_on(&free_port().to_string()).await
    }

    /// Starts one on a given port (to bring a stopped one back at the same address).
    pub async fn start_on(port: &str) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", port, "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (make test installs it)");
        // Owned from here on, so a failed start still kills the process (Drop).
        let server = Self {
            url: format!("redis://127.0.0.1:{port}"),
            child,
        };
        let client = redis::Client::open(server.url.as_str()).expect("a valid URL");
        for _ in 0..100 {
            if client.get_multiplexed_async_connection().await.is_ok() {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("throwaway redis-server did not start on port {port}");
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ThrowawayRedis {
    fn drop(&mut self) {
        self.stop();
    }
}
