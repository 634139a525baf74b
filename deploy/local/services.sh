#!/usr/bin/env bash
# Makes sure a PostgreSQL and a Redis are reachable for the local stack and the
# tests, then prints the `export` lines that point at them (for `eval`).
#
# It uses the servers already listening on 127.0.0.1:5432 and 127.0.0.1:6379 if
# there are any (or the ones DATABASE_SERVER_URL / REDIS_URL name). Otherwise it
# starts throwaway ones under .local/ on ports 55432 and 56379, installing the
# Debian packages first if they are missing. Those keep running between runs;
# `make stop-local` stops them. The shared servers are never stopped.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
state="$root/.local"
log() { echo "services: $*" >&2; }

apt_install() {
  if [ "$(id -u)" -ne 0 ]; then
    log "missing $*; install them (sudo apt-get install $*) and run again"
    exit 1
  fi
  log "installing $* from Debian's packages"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

# The fault tests start their own redis-server, so the binary is needed even
# when a shared Redis is running.
command -v redis-server >/dev/null && command -v redis-cli >/dev/null || apt_install redis-server
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if ! command -v psql >/dev/null || [ -z "$pg_bin" ]; then
  apt_install postgresql
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
fi

redis_url=${REDIS_URL:-redis://127.0.0.1:6379}
if ! timeout 2 redis-cli -u "$redis_url" ping >/dev/null 2>&1; then
  redis_url=redis://127.0.0.1:56379
  if ! timeout 2 redis-cli -u "$redis_url" ping >/dev/null 2>&1; then
    log "no Redis reachable: starting a throwaway one on port 56379"
    mkdir -p "$state/redis"
    redis-server --port 56379 --bind 127.0.0.1 --save "" --appendonly no \
      --dir "$state/redis" --daemonize yes --pidfile "$state/redis/redis.pid" \
      --logfile "$state/redis/redis.log"
    for _ in $(seq 50); do timeout 1 redis-cli -u "$redis_url" ping >/dev/null 2>&1 && break; sleep 0.1; done
  fi
fi

server_url=${DATABASE_SERVER_URL:-postgres://postgres@127.0.0.1:5432}
pg_ready() { timeout 3 psql "$1/postgres" -Atqc 'select 1' >/dev/null 2>&1; }
if ! pg_ready "$server_url"; then
  server_url=postgres://postgres@127.0.0.1:55432
  if ! pg_ready "$server_url"; then
    log "no PostgreSQL reachable: starting a throwaway one on port 55432"
    data="$state/postgres"
    run_as=()
    # PostgreSQL refuses to run as root: use its own system account.
    if [ "$(id -u)" -eq 0 ]; then
      id postgres >/dev/null 2>&1 || useradd --system --home-dir "$state" postgres
      run_as=(runuser -u postgres --)
    fi
    if [ ! -f "$data/PG_VERSION" ]; then
      mkdir -p "$data"
      [ "$(id -u)" -eq 0 ] && chown postgres "$state" "$data"
      "${run_as[@]}" "$pg_bin/initdb" -D "$data" -U postgres --auth=trust >/dev/null
    fi
    "${run_as[@]}" "$pg_bin/pg_ctl" -D "$data" -l "$data/server.log" -w \
      -o "-p 55432 -k /tmp -c listen_addresses=127.0.0.1" start >/dev/null
  fi
fi

echo "export REDIS_URL=$redis_url"
echo "export DATABASE_SERVER_URL=$server_url"
echo "export DATABASE_URL=${DATABASE_URL:-$server_url/presence}"
# The tests make one database per test on this server (sqlx::test needs a URL).
echo "export TEST_DATABASE_URL=$server_url/postgres"
