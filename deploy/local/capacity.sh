#!/usr/bin/env bash
# The capacity sweep behind docs/capacity.md: the browser-realistic load
# (deploy/local/browsers.sh) at rising offered load — the same browsers, each
# run with a shorter ping interval — then one PNG of p99 latency and of each
# process's CPU per ping against the pings per second offered.
#
#   deploy/local/capacity.sh                    # 10,000 browsers; intervals 60 20 10 5 3 2 1 s
#   CAPACITY_INTERVALS="60 10" CAPACITY_SECONDS=30 deploy/local/capacity.sh   # a quick look
#
# Writes target/capacity/interval-<s>.json (one report per run, as
# `browsers --json` writes it) and docs/capacity-load.png (gnuplot, from
# Debian's gnuplot-nox, installed if missing). Each run starts its own stack;
# run it on a quiet machine: every process shares its cores with the load.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
browsers=${CAPACITY_BROWSERS:-10000}
intervals=${CAPACITY_INTERVALS:-60 20 10 5 3 2 1}
seconds=${CAPACITY_SECONDS:-60}
out=target/capacity
plot=${CAPACITY_PLOT:-docs/capacity-load.png}
mkdir -p "$out"

if ! command -v gnuplot > /dev/null; then
  echo "capacity: installing gnuplot-nox (Debian) for the plot" >&2
  if [ "$(id -u)" -eq 0 ]; then
    apt-get install -y -q gnuplot-nox > /dev/null
  else
    sudo apt-get install -y -q gnuplot-nox > /dev/null
  fi
fi

eval "$(deploy/local/services.sh)"
cargo build --release --workspace --bins -q
for interval in $intervals; do
  echo "capacity: $browsers browsers pinging every $interval s, $seconds s measured" >&2
  # A run that saw errors still reports them: they belong on the plot.
  target/release/browsers --browsers "$browsers" --ping-interval-seconds "$interval" \
    --seconds "$seconds" --json "$out/interval-$interval.json" || true
done
python3 deploy/local/capacity-plot.py "$plot" "$out"/interval-*.json
echo "capacity: plot written to $plot" >&2
