#!/usr/bin/env bash
# The browser end-to-end test (web/e2e) against the whole stack, started by
# run.sh exactly as `make run` does, but on free ports with its own database
# and key prefix (so it never disturbs a running `make run`) and a 2-second
# ping interval (so "no ping for two intervals" takes seconds, not minutes).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
eval "$(deploy/local/services.sh)"

if ! command -v chromium >/dev/null; then
  echo "e2e: installing Debian's chromium"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
activity_port=$(free_port); admin_port=$(free_port); gateway_port=$(free_port); metrics_port=$(free_port)
export DATABASE_URL=$DATABASE_SERVER_URL/presence_e2e
export PRESENCE_REDIS_KEY_PREFIX="e2e-$$:"
export PRESENCE_ACTIVITY_ADDR=127.0.0.1:$activity_port PRESENCE_ACTIVITY_URL=http://127.0.0.1:$activity_port
export PRESENCE_ADMIN_ADDR=127.0.0.1:$admin_port PRESENCE_ADMIN_URL=http://127.0.0.1:$admin_port
export PRESENCE_GATEWAY_ADDR=127.0.0.1:$gateway_port PRESENCE_METRICS_ADDR=127.0.0.1:$metrics_port
export PRESENCE_PING_INTERVAL_SECONDS=2
psql "$DATABASE_SERVER_URL/postgres" -qc "DROP DATABASE IF EXISTS presence_e2e WITH (FORCE)" >/dev/null

log=target/e2e-stack.log
mkdir -p target
deploy/local/run.sh >"$log" 2>&1 &
stack=$!
cleanup() {
  kill -TERM "$stack" 2>/dev/null || true
  wait "$stack" 2>/dev/null || true
  redis-cli -u "$REDIS_URL" --scan --pattern "${PRESENCE_REDIS_KEY_PREFIX}*" | xargs -r redis-cli -u "$REDIS_URL" del >/dev/null
}
trap cleanup EXIT

url=http://$PRESENCE_GATEWAY_ADDR
for _ in $(seq 600); do
  curl -fs -o /dev/null "$url/login" && break
  kill -0 "$stack" 2>/dev/null || { echo "e2e: the stack did not start:"; tail -40 "$log"; exit 1; }
  sleep 1
done
curl -fs -o /dev/null "$url/login" || { echo "e2e: no answer from $url"; tail -40 "$log"; exit 1; }

cd web
PRESENCE_URL=$url PRESENCE_REDIS_URL=$REDIS_URL npm run e2e
