"""Pacing benchmark: how close the refresh engine gets to the API budget, judged at the server.

Runs the real refresh engine against the simulated ZEGO API (strict sliding window of Q per
second per Action) and prints the achieved rate, the busiest one-second window the server saw,
rejections, and the median and worst data age against the N/Q bound.

    python -m bench.pacing                      # N=500, 60 s, discovery off
    python -m bench.pacing --tasks 300 --seconds 45 --latency 0.3
    python -m bench.pacing --discovery --tasks 2000 --seconds 30
"""

from __future__ import annotations

import argparse

from bench.harness import run_pacing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--qps", type=int, default=10)
    parser.add_argument("--latency", type=float, default=0.0,
                        help="seconds the simulator adds to every answer")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--discovery", action="store_true")
    args = parser.parse_args()
    result = run_pacing(args.tasks, args.seconds, qps=args.qps, discovery=args.discovery,
                        latency=args.latency, workers=args.workers)
    print("\n".join(result.lines()))


if __name__ == "__main__":
    main()
