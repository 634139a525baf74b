//! What the real binary says when it cannot start: the failing step, then
//! each cause on its own `caused by:` line, and a failure exit status.

use std::net::TcpListener;

/// The binary's standard error when it fails to start with `args`.
fn start_failure(args: &[&str]) -> String {
    presence_testkit::start_failure(env!("CARGO_BIN_EXE_activity-service"), args)
}

#[test]
fn a_port_already_bound_is_named_with_the_systems_reason() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap();
    let stderr = start_failure(&[
        &format!("--listen-addr={address}"),
        &format!(
            "--database-url=postgres://postgres@{}/presence",
            presence_testkit::closed_port()
        ),
    ]);
    assert!(
        stderr.starts_with(&format!("activity-service: cannot listen on {address}\n")),
        "{stderr}"
    );
    assert!(
        stderr.contains("  caused by: Address already in use"),
        "{stderr}"
    );
}

#[test]
fn an_unreachable_database_is_named_with_the_connect_error() {
    let stderr = start_failure(&[
        "--listen-addr=127.0.0.1:0",
        "--migrate-on-start",
        &format!(
            "--database-url=postgres://postgres@{}/presence",
            presence_testkit::closed_port()
        ),
    ]);
    assert!(
        stderr.starts_with("activity-service: cannot connect to PostgreSQL (DATABASE_URL)\n"),
        "{stderr}"
    );
    assert!(
        stderr.contains("  caused by: error communicating with database: Connection refused"),
        "{stderr}"
    );
}

#[test]
fn a_missing_key_file_is_named_by_its_path() {
    let stderr = start_failure(&[
        "--listen-addr=127.0.0.1:0",
        "--jwt-algorithm=EdDSA",
        "--jwt-public-key-file=/nonexistent/presence/jwt/public.pem",
        "--jwt-private-key-file=/nonexistent/presence/jwt/private.pem",
    ]);
    assert!(
        stderr.starts_with(
            "activity-service: cannot read PRESENCE_JWT_PUBLIC_KEY_FILE \
             /nonexistent/presence/jwt/public.pem\n"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("  caused by: No such file or directory"),
        "{stderr}"
    );
}
