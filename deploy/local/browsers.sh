#!/usr/bin/env bash
# Browser-realistic load: the whole stack, as the system tests start it, and
# N simulated browsers pinging it through the gateway as the web app does
# (a user, a token and a keep-alive connection each; the interval the server
# names, +-10 % jitter). Prints pings/s, latency, errors, and each process's
# RSS per connection and CPU per ping; figures go to docs/benchmarks.md by hand.
#
#   deploy/local/browsers.sh                                  # 10,000 browsers, HTTP/1.1, 120 s
#   deploy/local/browsers.sh --browsers 1000 --seconds 60     # a smaller run
#   deploy/local/browsers.sh --h2c-share 1.0                  # every browser over h2c
#   deploy/local/browsers.sh --churn-per-minute 0.05 --json target/browsers.json
#   deploy/local/browsers.sh --ping-interval-seconds 10       # more pings in a short run
#   deploy/local/browsers.sh --same-user                      # one token for all: what distinct users cost
#   BROWSERS_PROFILE=debug deploy/local/browsers.sh --browsers 200   # the binaries `make test` built
#
# Every flag has an environment fallback (`--help`). The open-file limit is
# raised to the hard limit; past about `ulimit -Hn` - 1,000 browsers it says
# so and stops. All traffic stays on 127.0.0.1 (127.0.0.2... past 16,384
# browsers, for ephemeral ports).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
eval "$(deploy/local/services.sh)"
case "${BROWSERS_PROFILE:-release}" in
  release) cargo build --release --workspace --bins -q; bin=target/release ;;
  debug) cargo build --workspace --bins -q; bin=target/debug ;;
  *) echo "browsers: BROWSERS_PROFILE must be release or debug" >&2; exit 64 ;;
esac
exec "$bin/browsers" "$@"
