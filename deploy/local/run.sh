#!/usr/bin/env bash
# `make run`: the whole stack on this machine, in the foreground; Ctrl-C stops it.
# Finds or starts PostgreSQL and Redis, migrates, creates the development
# accounts (admintest1 / usertest1, password Test1234!), builds, and runs the
# services with their local defaults.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
eval "$(deploy/local/services.sh)"

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
$bin/activity-service & pids+=($!)
echo "run: activity-service on ${PRESENCE_ACTIVITY_ADDR:-127.0.0.1:50051} (native gRPC). Ctrl-C stops everything."
# Whichever service stops first stops the stack.
wait -n "${pids[@]}"
