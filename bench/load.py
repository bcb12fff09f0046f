"""Load: `zego-exporter serve` under many scrapers at once, judged where the API counts.

The exporter runs as its own process (so its threads and memory are its own, read from /proc),
against the simulated ZEGO API in this process, tracking about 300 tasks with discovery on and
50 configured TaskIds that ZEGO does not know. 50 scrapers with their own keep-alive sessions
scrape it continuously for 30 s. Prints the scrapes served and their latency percentiles, the
exporter's threads and RSS before, at the peak and after, and per Action the requests the
simulated API saw, its busiest one-second window and how many it rejected. It checks nothing:
the properties (every scrape answered, the budget held, threads back afterwards) are
tests/test_load.py's, at a smaller size; the scenario is tests/support/load.py.

    python -m bench.load                       # 50 scrapers, 30 s
    python -m bench.load --scrapers 200 --seconds 60
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from tests.support.load import run_load
from zego_exporter.responses import ACTIONS


def percentile(ordered: list[float], share: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scrapers", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-load-") as workdir:
        run = run_load(args.scrapers, args.seconds, Path(workdir))
    ordered = sorted(run.results.latencies)
    print(f"{args.scrapers} scrapers x {args.seconds:g} s against serve tracking "
          f"{run.tracked:.0f} tasks: {len(ordered)} scrapes ({len(ordered) / args.seconds:.0f}/s),"
          f" statuses {run.results.statuses}, errors {len(run.results.errors)}")
    if ordered:
        print(f"latency p50 {statistics.median(ordered) * 1000:.0f} ms, p90 "
              f"{percentile(ordered, 0.9) * 1000:.0f} ms, p99 "
              f"{percentile(ordered, 0.99) * 1000:.0f} ms, max {ordered[-1] * 1000:.0f} ms")
    before, peak, after = run.threads
    print(f"exporter threads {before} before, {peak} at peak, {after} after; RSS "
          f"{run.rss[0]:.1f} MiB before, {run.rss[1]:.1f} MiB after")
    for action in ACTIONS:
        print(f"{action}: {run.requests[action]} requests, busiest second "
              f"{run.peaks[action]} accepted, {run.rejected[action]} rate limited")
    print(f"tracebacks in the exporter's log: {run.stderr.count('Traceback')}")


if __name__ == "__main__":
    main()
