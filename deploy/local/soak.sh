#!/usr/bin/env bash
# The soak: steady ping load through the gateway for 10 minutes, each
# process's RSS sampled every 10 s, and whether any grew after the warm-up.
#
#   deploy/local/soak.sh                          # release build, 600 s
#   SOAK_SECONDS=60 deploy/local/soak.sh          # a quick try
#   SOAK_PROFILE=debug deploy/local/soak.sh       # the binaries `make test` built
#   SOAK_USERS=500 deploy/local/soak.sh           # more users (default 200)
#
# The stack is started as the system tests start it (system-tests/src/stack.rs):
# a database of its own on the local PostgreSQL, a throwaway Redis, the three
# services on free loopback ports; each user has a token and a connection of
# its own and pings every 0.6 s, and an admin watches the live statuses. The
# table is printed and written to target/soak-rss.txt; the exit status is 1
# if a process grew after the warm-up. The figures go to docs/reliability.md
# by hand. All traffic stays on 127.0.0.1.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
eval "$(deploy/local/services.sh)"
case "${SOAK_PROFILE:-release}" in
  release) cargo build --release --workspace --bins -q; bin=target/release ;;
  debug) cargo build --workspace --bins -q; bin=target/debug ;;
  *) echo "soak: SOAK_PROFILE must be release or debug" >&2; exit 64 ;;
esac
exec "$bin/soak"
