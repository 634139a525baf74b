//! What the real binary says when it cannot start: the failing step, then
//! each cause on its own `caused by:` line, and a failure exit status.

use presence_testkit::start_failures;

const BINARY: &str = env!("CARGO_BIN_EXE_activity-service");

#[test]
fn a_port_already_bound_is_named_with_the_systems_reason() {
    start_failures::port_already_bound(BINARY);
}

#[test]
fn an_unreachable_database_is_named_with_the_connect_error() {
    start_failures::database_unreachable(BINARY);
}

#[test]
fn a_missing_key_file_is_named_by_its_path() {
    start_failures::key_file_missing(
        BINARY,
        &[
            "--listen-addr=127.0.0.1:0",
            "--jwt-private-key-file=/nonexistent/presence/jwt/private.pem",
        ],
    );
}
