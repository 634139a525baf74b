# The two commands of the README: `make run` and `make test`.
.PHONY: run test test-rust lint stop-local

run:
	./deploy/local/run.sh

test: lint test-rust

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

# Every Rust test against real PostgreSQL and Redis (sqlx::test makes a
# database per test on TEST_DATABASE_URL's server).
test-rust:
	eval "$$(./deploy/local/services.sh)" && DATABASE_URL=$$TEST_DATABASE_URL cargo test --workspace

stop-local:
	./deploy/local/stop.sh
