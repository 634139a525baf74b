# The two commands of the README: `make run` and `make test`.
.PHONY: run test lint test-rust test-web test-k8s test-containers test-e2e stop-local

run:
	./deploy/local/run.sh

# Every check and test, cheapest first. Needs only Rust, Node and Debian's
# packages (PostgreSQL, Redis and Chromium are installed and started if missing).
test: lint test-rust test-web test-k8s test-containers test-e2e

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	./deploy/local/cargo-deny.sh
	./deploy/local/cargo-machete.sh

# The Rust tests against real PostgreSQL and Redis (sqlx::test makes a
# database per test on TEST_DATABASE_URL's server). The system tests
# (system-tests/) run the services' binaries, built first.
test-rust:
	cargo build --workspace --bins
	eval "$$(./deploy/local/services.sh)" && DATABASE_URL=$$TEST_DATABASE_URL cargo test --workspace

# The web app: generated client up to date, lint, unit tests, build.
test-web:
	cd web && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund && npm run check:gen && npm run lint && npm test && npm run build

# The Kubernetes manifests: rendered, schema-validated and policy-checked offline.
test-k8s:
	bash deploy/check-k8s.sh

# The images built from deploy/docker/Dockerfile and the rendered overlays run with podman on
# this host, checked from outside (needs root; installs podman and mmdebstrap if missing).
test-containers:
	./deploy/containers/run-test.sh

# The browser end to end (Playwright), in Debian's headless Chromium against the whole
# stack. E2E_ARGS go to `playwright test`, e.g. make test-e2e E2E_ARGS='-g "signs out"'.
test-e2e:
	./deploy/local/e2e.sh $(E2E_ARGS)

stop-local:
	./deploy/local/stop.sh
