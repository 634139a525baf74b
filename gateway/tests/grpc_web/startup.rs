//! What the gateway refuses at start: it verifies tokens itself (for the
//! per-user ping limit), so outside development it must have the key; and
//! what the real binary says when it cannot start: the failing step, then
//! each cause on its own `caused by:` line, and a failure exit status.

use std::net::TcpListener;

use gateway::startup::Application;

use crate::helpers::gateway_config;

const LOCAL: [&str; 2] = ["--listen-addr=127.0.0.1:0", "--metrics-addr=127.0.0.1:0"];

async fn refusal(flags: &[&str]) -> String {
    let flags: Vec<&str> = LOCAL.iter().copied().chain(flags.iter().copied()).collect();
    match Application::build(gateway_config(&flags)).await {
        Ok(_) => panic!("the gateway started with {flags:?}"),
        Err(error) => error.to_string(),
    }
}

#[tokio::test]
async fn a_production_gateway_without_its_verifying_key_refuses_to_start() {
    let error = refusal(&["--environment=production"]).await;
    assert!(error.contains("PRESENCE_JWT_SECRET"), "{error}");

    // The production overlay's set-up with the key file not mounted.
    let error = refusal(&[
        "--environment=production",
        "--jwt-algorithm=EdDSA",
        "--jwt-public-key-file=/nonexistent/presence/jwt/public.pem",
    ])
    .await;
    assert!(error.contains("PRESENCE_JWT_PUBLIC_KEY_FILE"), "{error}");
}

#[tokio::test]
async fn a_development_gateway_starts_with_the_development_secret() {
    // Development keeps working out of the box (make run), with the same
    // built-in secret as the services, so the per-user limit still applies.
    let flags: Vec<&str> = LOCAL.to_vec();
    assert!(Application::build(gateway_config(&flags)).await.is_ok());
}

/// Starts the binary with `args` and checks its first line and one cause.
fn assert_start_failure(args: &[&str], failure: &str, cause: &str) {
    presence_testkit::assert_start_failure(env!("CARGO_BIN_EXE_gateway"), args, failure, cause);
}

#[test]
fn a_port_already_bound_is_named_with_the_systems_reason() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap();
    assert_start_failure(
        &[
            "--listen-addr=127.0.0.1:0",
            &format!("--metrics-addr={address}"),
        ],
        &format!("cannot listen on {address}"),
        "Address already in use",
    );
}

#[test]
fn a_missing_key_file_is_named_by_its_path() {
    presence_testkit::start_failures::key_file_missing(
        env!("CARGO_BIN_EXE_gateway"),
        &["--listen-addr=127.0.0.1:0", "--metrics-addr=127.0.0.1:0"],
    );
}
