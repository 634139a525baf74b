//! What the real binary says when it cannot start: the failing step, then
//! each cause on its own `caused by:` line, and a failure exit status.

use std::net::TcpListener;

/// Starts the binary with `args` and checks its first line and one cause.
fn assert_start_failure(args: &[&str], failure: &str, cause: &str) {
    presence_testkit::assert_start_failure(
        env!("CARGO_BIN_EXE_activity-service"),
        args,
        failure,
        cause,
    );
}

#[test]
fn a_port_already_bound_is_named_with_the_systems_reason() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap();
    assert_start_failure(
        &[
            &format!("--listen-addr={address}"),
            &format!(
                "--database-url=postgres://postgres@{}/presence",
                presence_testkit::closed_port()
            ),
        ],
        &format!("cannot listen on {address}"),
        "Address already in use",
    );
}

#[test]
fn an_unreachable_database_is_named_with_the_connect_error() {
    assert_start_failure(
        &[
            "--listen-addr=127.0.0.1:0",
            "--migrate-on-start",
            &format!(
                "--database-url=postgres://postgres@{}/presence",
                presence_testkit::closed_port()
            ),
        ],
        "cannot connect to PostgreSQL (DATABASE_URL)",
        "error communicating with database: Connection refused",
    );
}

#[test]
fn a_missing_key_file_is_named_by_its_path() {
    assert_start_failure(
        &[
            "--listen-addr=127.0.0.1:0",
            "--jwt-algorithm=EdDSA",
            "--jwt-public-key-file=/nonexistent/presence/jwt/public.pem",
            "--jwt-private-key-file=/nonexistent/presence/jwt/private.pem",
        ],
        "cannot read PRESENCE_JWT_PUBLIC_KEY_FILE \
             /nonexistent/presence/jwt/public.pem",
        "No such file or directory",
    );
}
