#!/usr/bin/env bash
# Stops the throwaway PostgreSQL and Redis that services.sh may have started
# under .local/. The machine's own servers are never touched.
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
state="$root/.local"
if [ -f "$state/redis/redis.pid" ]; then
  kill "$(cat "$state/redis/redis.pid")" 2>/dev/null && echo "stopped the throwaway Redis"
  rm -f "$state/redis/redis.pid"
fi
if [ -f "$state/postgres/postmaster.pid" ]; then
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  run_as=()
  [ "$(id -u)" -eq 0 ] && run_as=(runuser -u postgres --)
  "${run_as[@]}" "$pg_bin/pg_ctl" -D "$state/postgres" -m fast stop >/dev/null && echo "stopped the throwaway PostgreSQL"
fi
exit 0
