#!/usr/bin/env bash
# Redis memory per online user: writes, for N users, exactly what a ping
# leaves behind (the `last_activity:<id>` key with its TTL and the user's
# entry in the presence index) under a throwaway prefix, reads `used_memory`
# before and after, then deletes them.
#
#   deploy/local/bench-redis-memory.sh [users]      (default 100000)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
users=${1:-100000}
eval "$(deploy/local/services.sh)"
prefix="memory-bench-$$:"
used() { redis-cli -u "$REDIS_URL" info memory | awk -F: '/^used_memory:/ {print $2}' | tr -d '\r'; }
before=$(used)
python3 - "$users" "$prefix" <<'PY' | redis-cli -u "$REDIS_URL" --pipe >/dev/null
import sys, uuid, time
users, prefix = int(sys.argv[1]), sys.argv[2]
now = int(time.time())
def command(*parts):
    out = [f"*{len(parts)}\r\n"]
    for part in parts:
        part = str(part)
        out.append(f"${len(part.encode())}\r\n{part}\r\n")
    return "".join(out)
write = sys.stdout.write
for n in range(users):
    user = str(uuid.uuid4())
    write(command("SET", f"{prefix}last_activity:{user}", now - n % 900, "EX", 1800))
    write(command("ZADD", f"{prefix}presence_index", now - n % 900, user))
PY
after=$(used)
awk -v b="$before" -v a="$after" -v n="$users" 'BEGIN { printf "%d users: %.0f bytes of Redis memory per online user (key + index entry)\n", n, (a - b) / n }'
redis-cli -u "$REDIS_URL" --scan --pattern "${prefix}*" | xargs -r -n 1000 redis-cli -u "$REDIS_URL" del >/dev/null
