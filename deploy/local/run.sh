#!/usr/bin/env bash
# `make run`: the whole stack on this machine, in the foreground; Ctrl-C stops it.
# Finds or starts PostgreSQL and Redis, migrates, creates the development
# accounts (admintest1 / usertest1, password Test1234!), builds, and runs the
# services with their local defaults.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
eval "$(deploy/local/services.sh)"

# The web app, served by the gateway from web/dist.
if [ -z "${PRESENCE_SKIP_WEB_BUILD:-}" ]; then
  (cd web && { [ -d node_modules ] && [ node_modules/.package-lock.json -nt package-lock.json ] || PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund; } && npm run build)
fi

cargo build --workspace --bins
bin=target/debug
$bin/activity-service migrate
printf 'Test1234!\n' | $bin/activity-service user upsert --username admintest1 --role admin --display-name "Admin Test 1" >/dev/null
printf 'Test1234!\n' | $bin/activity-service user upsert --username usertest1 --role user --display-name "User Test 1" >/dev/null
echo "run: accounts admintest1 (admin) and usertest1 (user), password Test1234!"

pids=()
stop() {
  trap - INT TERM EXIT
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
}
trap stop INT TERM EXIT
# The activity service sees browsers through the gateway (127.0.0.1), which sends the
# browser's address in x-forwarded-for.
PRESENCE_TRUSTED_PROXIES=${PRESENCE_TRUSTED_PROXIES:-127.0.0.1/32} $bin/activity-service & pids+=($!)
$bin/admin-service & pids+=($!)
$bin/gateway & pids+=($!)
echo "run: activity-service on ${PRESENCE_ACTIVITY_ADDR:-127.0.0.1:50051} and admin-service on ${PRESENCE_ADMIN_ADDR:-127.0.0.1:50052} (native gRPC)"
echo "run: open http://${PRESENCE_GATEWAY_ADDR:-127.0.0.1:8080}/ (sign in as usertest1 or admintest1, password Test1234!). Ctrl-C stops everything."
# Whichever service stops first stops the stack.
wait -n "${pids[@]}"
