"""Memory benchmark: resident memory per tracked task at 10,000 and 100,000 tasks.

Each measurement runs in a fresh subprocess: it starts a real exporter (web layer on loopback,
no refreshing), scrapes it empty twice and takes that RSS as the baseline; fills the tracker
with tasks in realistic states (bench.harness.fill_tracker: simulator-style 128-bit TaskIds,
rooms and streams, fetched data, a few failures, a fifth discovered); scrapes it over HTTP with
Prometheus' headers (so the renderer's label cache exists); refreshes every task once more (new
answer objects, as refreshing makes) and scrapes twice again; then reads the RSS. Bytes per
task is the difference from the baseline over the task count, the median of a few runs.

Two more figures explain it. "held": the same RSS after glibc's malloc_trim(0), i.e. without
the freed memory glibc keeps for reuse (mostly buffers of the last scrape); the gap between
the two varies from run to run. "scrape peak": VmHWM during one scrape (reset just before it),
the figure to size a container's memory limit by.

    python -m bench.memory                     # 10,000 and 100,000 tasks, 3 runs each
    python -m bench.memory --tasks 50000 --runs 1
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.harness import fill_tracker
from bench.scrape import PROMETHEUS_ACCEPT, Bench, Variant


def _status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> bool:
    """Make VmHWM start again from the current RSS (Linux >= 4.0); False if not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _malloc_trim() -> bool:
    """Hand glibc's cached free memory back to the OS; False where there is no glibc."""
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        trim = None
    if trim is None:
        return False
    trim(0)
    return True


def measure(tasks: int) -> dict[str, float]:
    """Runs in the child process: RSS figures in bytes."""
    prometheus = Variant("prometheus", PROMETHEUS_ACCEPT, gzip=True)
    bench = Bench(0)
    try:
        for _ in range(2):
            bench.fetch(prometheus)
        gc.collect()
        baseline = _status_bytes("VmRSS")
        answered_at = time.time()
        fill_tracker(bench.exporter.tracker, tasks, now=answered_at)
        gc.collect()
        filled = _status_bytes("VmRSS")
        peak_known = _reset_peak()
        bench.fetch(prometheus)
        peak = _status_bytes("VmHWM") if peak_known else float("nan")
        fill_tracker(bench.exporter.tracker, tasks, now=answered_at)  # one refresh round
        for _ in range(2):
            bench.fetch(prometheus)
        gc.collect()
        after = _status_bytes("VmRSS")
        held = _status_bytes("VmRSS") if _malloc_trim() else float("nan")
        return {"tasks": tasks, "baseline": baseline, "filled": filled, "after": after,
                "held": held, "peak": peak, "tracked": len(bench.exporter.tracker)}
    finally:
        bench.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=[10000, 100000])
    parser.add_argument("--runs", type=int, default=3, help="fresh processes per size")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(measure(args.child)))
        return
    print(f"{'tasks':>7} {'runs':>4} {'baseline MB':>11} {'filled B/task':>13} "
          f"{'B/task':>7} {'(min..max)':>12} {'held B/task':>11} {'scrape peak MB':>14} "
          f"{'peak B/task':>11}")
    for tasks in args.tasks:
        runs = []
        for _ in range(args.runs):
            answer = subprocess.run(
                [sys.executable, "-m", "bench.memory", "--child", str(tasks)],
                capture_output=True, text=True, check=True)
            run = json.loads(answer.stdout)
            assert run["tracked"] == tasks, run
            runs.append(run)

        def per_task(key: str, runs: list[dict[str, float]] = runs, tasks: int = tasks) -> (
                list[float]):
            return [(r[key] - r["baseline"]) / tasks for r in runs]

        after = per_task("after")
        print(f"{tasks:>7} {len(runs):>4} "
              f"{statistics.median(r['baseline'] for r in runs) / 1e6:>11.1f} "
              f"{statistics.median(per_task('filled')):>13.0f} "
              f"{statistics.median(after):>7.0f} "
              f"{f'{min(after):.0f}..{max(after):.0f}':>12} "
              f"{statistics.median(per_task('held')):>11.0f} "
              f"{statistics.median(r['peak'] for r in runs) / 1e6:>14.1f} "
              f"{statistics.median(per_task('peak')):>11.0f}", flush=True)
    print("\nB/task: RSS after scrape, refresh round and two scrapes, minus the empty exporter's, "
          "over the task count (median of the runs); filled: before any scrape; held: after "
          "malloc_trim(0); peak: VmHWM during one scrape (Prometheus' headers, gzip)")


if __name__ == "__main__":
    main()
