#!/usr/bin/env bash
# Ping throughput and latency: directly against the activity service over
# native gRPC (h2load), and through the gateway over HTTP/1.1 gRPC-Web as
# browsers send it (wrk), at the same concurrency, on this machine.
#
#   deploy/local/bench-ping.sh [connections] [seconds] [rounds]   (defaults: 64, 20, 5)
#
# Each round runs both phases back to back on the same processes, and the
# summary gives each round's ratio and their median: on a shared machine the
# throughput drifts from minute to minute, and a ratio of neighbouring runs is
# steadier than a ratio of single runs.
#
# Starts its own release-built services on free loopback ports, with their own
# database and key prefix; installs nghttp2-client and wrk if missing. All
# traffic stays on 127.0.0.1. The figures go to docs/benchmarks.md by hand.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
connections=${1:-64}
seconds=${2:-20}
rounds=${3:-5}
eval "$(deploy/local/services.sh)"
if ! command -v h2load >/dev/null || ! command -v wrk >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nghttp2-client wrk >/dev/null
fi
cargo build --release --bins -q
bin=target/release

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
activity_port=$(free_port); gateway_port=$(free_port); metrics_port=$(free_port)
work=$(mktemp -d)
export DATABASE_URL=$DATABASE_SERVER_URL/presence_bench_ping
export PRESENCE_REDIS_KEY_PREFIX="bench-$$:"
export RUST_LOG=warn
psql "$DATABASE_SERVER_URL/postgres" -qc "DROP DATABASE IF EXISTS presence_bench_ping WITH (FORCE)" >/dev/null
$bin/activity-service migrate
printf 'Bench1234!\n' | $bin/activity-service user upsert --username benchuser >/dev/null

pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  redis-cli -u "$REDIS_URL" --scan --pattern "${PRESENCE_REDIS_KEY_PREFIX}*" | xargs -r redis-cli -u "$REDIS_URL" del >/dev/null
  psql "$DATABASE_SERVER_URL/postgres" -qc "DROP DATABASE IF EXISTS presence_bench_ping WITH (FORCE)" >/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
PRESENCE_ACTIVITY_ADDR=127.0.0.1:$activity_port $bin/activity-service & pids+=($!)
# Every ping of the run comes from one user and one address: lift the edge limits.
PRESENCE_GATEWAY_ADDR=127.0.0.1:$gateway_port PRESENCE_METRICS_ADDR=127.0.0.1:$metrics_port \
PRESENCE_ACTIVITY_URL=http://127.0.0.1:$activity_port PRESENCE_WEB_DIR="$work" \
PRESENCE_RATE_PING_PER_USER=1000000000 PRESENCE_RATE_PING_PER_IP=1000000000 \
  $bin/gateway & pids+=($!)
for _ in $(seq 50); do curl -fs -o /dev/null "http://127.0.0.1:$gateway_port/" -H 'accept: text/html' && break; sleep 0.2; done

# Sign in through the gateway with a hand-framed gRPC-Web Login.
python3 - "$work/login.bin" <<'PY'
import struct, sys
def field(number, text):
    data = text.encode()
    return bytes([number << 3 | 2, len(data)]) + data
message = field(1, "benchuser") + field(2, "Bench1234!")
open(sys.argv[1], "wb").write(b"\0" + struct.pack(">I", len(message)) + message)
PY
curl -fs "http://127.0.0.1:$gateway_port/presence.activity.v1.ActivityService/Login" \
  -H 'content-type: application/grpc-web+proto' -H 'x-grpc-web: 1' --data-binary "@$work/login.bin" -o "$work/login.out"
token=$(python3 - "$work/login.out" <<'PY'
import struct, sys
body = open(sys.argv[1], "rb").read()
length = struct.unpack(">I", body[1:5])[0]
message = body[5:5 + length]
# Field 1 (access_token) comes first: tag, varint length, bytes.
assert message[0] == 0x0a
size, shift, index = 0, 0, 1
while True:
    byte = message[index]; index += 1
    size |= (byte & 0x7f) << shift; shift += 7
    if byte < 0x80: break
print(message[index:index + size].decode())
PY
)
# A ping as the web app sends it: PingRequest{browser_id} (20 characters) in one
# gRPC frame; BENCH_NO_BROWSER=1 sends the empty request of a client without one.
if [ "${BENCH_NO_BROWSER:-0}" = 1 ]; then
  printf '\0\0\0\0\0' > "$work/ping.bin"
  lua_body='\0\0\0\0\0'
else
  printf '\0\0\0\0\026\012\024bench-browser-000001' > "$work/ping.bin"
  lua_body='\0\0\0\0\22\10\20bench-browser-000001'
fi

# CPU time (user + system, in clock ticks) a process has used so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
activity_pid=${pids[0]}; gateway_pid=${pids[1]}
redis_pid=$(redis-cli -u "$REDIS_URL" info server | awk -F: '/^process_id/ {print $2}' | tr -d '\r')
ticks=$(getconf CLK_TCK)
snapshot() { echo "$(cpu_ticks "$activity_pid") $(cpu_ticks "$gateway_pid") $( [ -r "/proc/$redis_pid/stat" ] && cpu_ticks "$redis_pid" || echo 0)"; }
# Prints CPU microseconds per ping of each process between two snapshots.
cpu_per_ping() {
  read -r a0 g0 r0 <<<"$1"; read -r a1 g1 r1 <<<"$2"
  awk -v n="$3" -v t="$ticks" -v a=$((a1 - a0)) -v g=$((g1 - g0)) -v r=$((r1 - r0)) 'BEGIN {
    printf "CPU per ping: activity-service %.1f us, gateway %.1f us, redis %.1f us\n", a*1e6/t/n, g*1e6/t/n, r*1e6/t/n }'
}

cat > "$work/ping.lua" <<LUA
wrk.method = "POST"
wrk.body = "$lua_body"
wrk.headers["Content-Type"] = "application/grpc-web+proto"
wrk.headers["X-Grpc-Web"] = "1"
wrk.headers["Authorization"] = "Bearer $token"
LUA

direct_round() {
  echo "== direct: native gRPC to the activity service (h2load, $connections connections, ${seconds}s)"
  local before; before=$(snapshot)
  h2load -t 1 -c "$connections" -m 1 -D "$seconds" \
    -H 'content-type: application/grpc' -H 'te: trailers' -H "authorization: Bearer $token" \
    -d "$work/ping.bin" "http://127.0.0.1:$activity_port/presence.activity.v1.ActivityService/Ping" \
    | tee "$work/h2load.out" | grep -E "finished in|requests:|status codes|time for request|req/s|traffic"
  local pings; pings=$(awk '/^requests:/ {print $8}' "$work/h2load.out")
  cpu_per_ping "$before" "$(snapshot)" "$pings"
  awk '/finished in/ {gsub(",", "", $4); print $4}' "$work/h2load.out" >>"$work/direct.rates"
}

gateway_round() {
  echo "== through the gateway: gRPC-Web over HTTP/1.1 (wrk, $connections connections, ${seconds}s)"
  local before; before=$(snapshot)
  wrk -t 1 -c "$connections" -d "${seconds}s" --latency -s "$work/ping.lua" \
    "http://127.0.0.1:$gateway_port/presence.activity.v1.ActivityService/Ping" \
    | tee "$work/wrk.out" | grep -vE "^\s*$"
  local pings; pings=$(awk '/requests in/ {print $1}' "$work/wrk.out")
  cpu_per_ping "$before" "$(snapshot)" "$pings"
  awk '/^Requests\/sec/ {print $2}' "$work/wrk.out" >>"$work/gateway.rates"
}

for round in $(seq "$rounds"); do
  echo "#### round $round of $rounds"
  direct_round
  gateway_round
done
echo "== summary: pings/s per round, and the gateway's share of the direct throughput"
paste "$work/direct.rates" "$work/gateway.rates" | awk '{
  printf "round %d: direct %.0f, gateway %.0f, ratio %.1f %%\n", NR, $1, $2, 100 * $2 / $1 }'
paste "$work/direct.rates" "$work/gateway.rates" | awk '{ print 100 * $2 / $1 }' | sort -n | awk '
  { ratio[NR] = $1 }
  END {
    median = (NR % 2) ? ratio[(NR + 1) / 2] : (ratio[NR / 2] + ratio[NR / 2 + 1]) / 2
    printf "median ratio: %.1f %% (target: at least 70 %%)\n", median
  }'
echo "== the gateway's own count of Ping outcomes"
curl -fs "http://127.0.0.1:$metrics_port/metrics" | grep 'requests_total{method="/presence.activity.v1.ActivityService/Ping"'
echo "== bytes on the wire for one browser ping (HTTP/1.1 gRPC-Web, this token)"
curl -s -o /dev/null -w 'request body %{size_upload} B, request headers %{size_request} B, response %{size_header} B headers + %{size_download} B body\n' \
  "http://127.0.0.1:$gateway_port/presence.activity.v1.ActivityService/Ping" \
  -H 'content-type: application/grpc-web+proto' -H 'x-grpc-web: 1' -H "authorization: Bearer $token" --data-binary "@$work/ping.bin"
