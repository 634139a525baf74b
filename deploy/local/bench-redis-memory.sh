#!/usr/bin/env bash
# Redis memory per online user: writes, for N users, exactly what a ping
# leaves behind (the `last_activity:<id>` key with its TTL, the user's entry
# in the presence index and, for B browsers per user, `browsers:<id>` with B
# random 22-character ids) under a throwaway prefix, reads `used_memory`
# before and after, then deletes them.
#
#   deploy/local/bench-redis-memory.sh [users] [browsers]   (defaults 100000, 1;
#                                                            0: a client without browser ids)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
users=${1:-100000}
browsers=${2:-1}
eval "$(deploy/local/services.sh)"
prefix="memory-bench-$$:"
used() { redis-cli -u "$REDIS_URL" info memory | awk -F: '/^used_memory:/ {print $2}' | tr -d '\r'; }
before=$(used)
python3 - "$users" "$prefix" "$browsers" <<'PY' | redis-cli -u "$REDIS_URL" --pipe >/dev/null
import base64, os, sys, uuid, time
users, prefix, browsers = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
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
    for _ in range(browsers):
        browser = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
        write(command("ZADD", f"{prefix}browsers:{user}", now - n % 900, browser))
    if browsers:
        write(command("EXPIRE", f"{prefix}browsers:{user}", 1800))
PY
after=$(used)
awk -v b="$before" -v a="$after" -v n="$users" -v k="$browsers" 'BEGIN { printf "%d users, %d browser(s) each: %.0f bytes of Redis memory per online user (key + index entry + browsers)\n", n, k, (a - b) / n }'
redis-cli -u "$REDIS_URL" --scan --pattern "${prefix}*" | xargs -r -n 1000 redis-cli -u "$REDIS_URL" del >/dev/null
