#!/usr/bin/env python3
"""The gateway's memory per idle connection, without browsers: opens N
connections to a running gateway (e.g. `make run`'s, 127.0.0.1:8080), each
sending nothing or, with --request, one gRPC-Web health check whose response
it reads; waits until they are idle (parked), then prints the gateway's RSS
growth per connection and its connection gauges. Figures:
docs/benchmarks.md, "Browser-realistic load".

  deploy/local/idle-connections.py --connections 8000 --request
  deploy/local/idle-connections.py --gateway 127.0.0.1:8080 --metrics 127.0.0.1:9090 --pid 1234

N must stay below the gateway's PRESENCE_MAX_CONNECTIONS (10,000 by default)
and this shell's open-file limit."""

import argparse
import asyncio
import resource
import subprocess
import time
import urllib.request

CHECK = (
    b"POST /grpc.health.v1.Health/Check HTTP/1.1\r\nHost: gateway\r\n"
    b"Content-Type: application/grpc-web+proto\r\nX-Grpc-Web: 1\r\nContent-Length: 5\r\n\r\n"
    b"\x00\x00\x00\x00\x00"
)


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise SystemExit(f"no VmRSS for process {pid}")


def gauges(metrics: str) -> str:
    with urllib.request.urlopen(f"http://{metrics}/metrics", timeout=5) as page:
        text = page.read().decode()
    return ", ".join(
        line for line in text.splitlines() if line.startswith("presence_gateway_connections_")
    )


async def connect(host: str, port: int, request: bool, limit: asyncio.Semaphore, held: list):
    async with limit:
        reader, writer = await asyncio.open_connection(host, port)
        held.append(writer)
        if request:
            writer.write(CHECK)
            await writer.drain()
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = await asyncio.wait_for(reader.read(4096), 10)
                if not chunk:
                    raise SystemExit("the gateway closed a connection before answering")
                head += chunk


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gateway", default="127.0.0.1:8080", help="its gRPC-Web address")
    parser.add_argument("--metrics", default="127.0.0.1:9090", help="its metrics address")
    parser.add_argument("--pid", type=int, help="its process id (default: pgrep -x gateway)")
    parser.add_argument("--connections", type=int, default=8000)
    parser.add_argument("--request", action="store_true", help="one health check per connection")
    parser.add_argument("--at-once", type=int, default=200, help="connections opening at once")
    args = parser.parse_args()
    pid = args.pid or int(subprocess.run(["pgrep", "-x", "gateway"], capture_output=True,
                                         text=True, check=True).stdout.split()[0])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    host, port = args.gateway.rsplit(":", 1)
    before = rss_kib(pid)
    held: list = []
    started = time.monotonic()
    limit = asyncio.Semaphore(args.at_once)
    await asyncio.gather(*(connect(host, int(port), args.request, limit, held)
                           for _ in range(args.connections)))
    opened = time.monotonic() - started
    # Idle for longer than the gateway's park delay (1 s), within its header deadline.
    await asyncio.sleep(3)
    after = rss_kib(pid)
    print(f"{len(held)} connections ({'one request each' if args.request else 'nothing sent'}) "
          f"in {opened:.1f} s; gateway RSS {before / 1024:.1f} -> {after / 1024:.1f} MiB, "
          f"{(after - before) * 1024 / args.connections:.0f} B per connection; {gauges(args.metrics)}")
    for writer in held:
        writer.close()


if __name__ == "__main__":
    asyncio.run(main())
