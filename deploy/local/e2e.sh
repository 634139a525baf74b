#!/usr/bin/env bash
# The browser end-to-end test (web/e2e, Playwright) against the whole stack, started by
# run.sh exactly as `make run` does, but on free ports with its own database and key
# prefix (so it never disturbs a running `make run`) and a 2-second ping interval (so
# "no ping for two intervals" takes seconds, not minutes).
#
# Arguments go to `playwright test`: `deploy/local/e2e.sh -g "signs out"` runs one test.
# Reports, traces and screenshots land in target/e2e/.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
eval "$(deploy/local/services.sh)"

if ! command -v chromium >/dev/null; then
  echo "e2e: installing Debian's chromium"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
export CHROMIUM_PATH=${CHROMIUM_PATH:-$(command -v chromium)}
# Playwright drives Debian's Chromium: never download a browser of its own.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
activity_port=$(free_port); admin_port=$(free_port); gateway_port=$(free_port); metrics_port=$(free_port)
export DATABASE_URL=$DATABASE_SERVER_URL/presence_e2e
export PRESENCE_REDIS_KEY_PREFIX="e2e-$$:"
export PRESENCE_ACTIVITY_ADDR=127.0.0.1:$activity_port PRESENCE_ACTIVITY_URL=http://127.0.0.1:$activity_port
export PRESENCE_ADMIN_ADDR=127.0.0.1:$admin_port PRESENCE_ADMIN_URL=http://127.0.0.1:$admin_port
export PRESENCE_GATEWAY_ADDR=127.0.0.1:$gateway_port PRESENCE_METRICS_ADDR=127.0.0.1:$metrics_port
export PRESENCE_PING_INTERVAL_SECONDS=2
# A sample of the online count every few seconds, so the chart has points within the run.
export PRESENCE_ONLINE_SAMPLE_SECONDS=3
psql "$DATABASE_SERVER_URL/postgres" -qc "DROP DATABASE IF EXISTS presence_e2e WITH (FORCE)" >/dev/null

mkdir -p target/e2e
log=target/e2e/stack.log
: >"$log"

# Each long-running step runs in a process group of its own (setsid), so cleanup can stop
# all of it (a cargo build and its rustc jobs, run.sh and the services) and not only the
# process it knows; and in the background, so a signal reaches this script's trap at once
# instead of after the step.
groups=()
cleanup() {
  for group in "${groups[@]}"; do kill -TERM -- "-$group" 2>/dev/null || true; done
  for group in "${groups[@]}"; do wait "$group" 2>/dev/null || true; done
  redis-cli -u "$REDIS_URL" --scan --pattern "${PRESENCE_REDIS_KEY_PREFIX}*" | xargs -r redis-cli -u "$REDIS_URL" del >/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
in_own_group() {
  setsid "$@" &
  groups+=("$!")
}

# Build first, with no deadline (a cold cargo build takes many minutes on a small machine);
# the stack then only has to start, which gets one.
echo "e2e: building the web app and the services (log: $log)"
in_own_group bash -c '
  set -euo pipefail
  cd web
  { [ -d node_modules ] && [ node_modules/.package-lock.json -nt package-lock.json ]; } || npm ci --no-audit --no-fund
  npm run build
  cd ..
  cargo build --workspace --bins
' >>"$log" 2>&1
wait "${groups[-1]}" || { echo "e2e: the build failed:"; tail -40 "$log"; exit 1; }

export PRESENCE_SKIP_WEB_BUILD=1
in_own_group deploy/local/run.sh >>"$log" 2>&1
stack=${groups[-1]}

url=http://$PRESENCE_GATEWAY_ADDR
ready_deadline=$((SECONDS + ${E2E_STARTUP_SECONDS:-120}))
until curl -fs -o /dev/null "$url/login"; do
  kill -0 "$stack" 2>/dev/null || { echo "e2e: the stack stopped before answering:"; tail -40 "$log"; exit 1; }
  ((SECONDS < ready_deadline)) || { echo "e2e: no answer from $url after ${E2E_STARTUP_SECONDS:-120} s:"; tail -40 "$log"; exit 1; }
  sleep 1
done

cd web
export PRESENCE_URL=$url PRESENCE_REDIS_URL=$REDIS_URL
in_own_group npx playwright test "$@"
wait "${groups[-1]}"
