#!/usr/bin/env python3
"""Plots the capacity sweep (deploy/local/capacity.sh): p99 latency, and each
process's CPU per ping, against the pings per second offered, one point per
`browsers --json` report. Usage: capacity-plot.py OUT.png REPORT.json..."""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

PROCESSES = ["gateway", "activity", "redis", "admin"]


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 64
    out = Path(sys.argv[1])
    reports = [json.loads(Path(path).read_text()) for path in sys.argv[2:]]
    reports.sort(key=lambda report: report["pings_offered_per_second"])
    rows = []
    for report in reports:
        cpu = {p["name"]: p["cpu_us_per_ping"] for p in report["processes"]}
        errors = sum(n for outcome, n in report["outcomes"].items() if outcome != "OK")
        row = [report["pings_offered_per_second"], report["latency_ms"]["p99"], errors]
        row += [cpu.get(name) or 0.0 for name in PROCESSES]
        row.append(sum(cpu.get(name) or 0.0 for name in PROCESSES))
        rows.append(row)
    browsers = reports[0]["browsers"]
    with tempfile.TemporaryDirectory() as scratch:
        data = Path(scratch) / "sweep.dat"
        data.write_text("".join(" ".join(f"{v:g}" for v in row) + "\n" for row in rows))
        script = f"""
set terminal pngcairo size 1100,450 font "DejaVu Sans,10"
set output "{out}"
set multiplot layout 1,2 title "{browsers} browsers, one keep-alive connection each (release build, 2 vCPU shared by load and stack)"
set logscale x
set grid
set key top left
set xlabel "pings/s offered"
set ylabel "p99 latency (ms)"
set title "Latency"
plot "{data}" using 1:2 with linespoints lw 2 pt 7 title "p99 ping latency"
set ylabel "CPU µs per ping"
set title "CPU per ping, by process"
set key top right
plot "{data}" using 1:4 with linespoints lw 2 title "gateway", \\
     "{data}" using 1:5 with linespoints lw 2 title "activity-service", \\
     "{data}" using 1:6 with linespoints lw 2 title "Redis", \\
     "{data}" using 1:7 with linespoints lw 2 title "admin-service", \\
     "{data}" using 1:8 with linespoints lw 2 dt 2 title "all four"
unset multiplot
"""
        subprocess.run(["gnuplot"], input=script, text=True, check=True)
    for row in rows:
        print(
            f"{row[0]:8.1f} pings/s: p99 {row[1]:6.2f} ms, errors {row[2]}, CPU per ping "
            + ", ".join(f"{name} {value:.0f} µs" for name, value in zip(PROCESSES, row[3:7]))
            + f", all {row[7]:.0f} µs"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
