"""Task file benchmark: how long reading `--tasks.file` takes at 1,000 to 100,000 lines.

The watcher re-reads the whole file whenever it changes, in its own thread, and a large file
also delays the first lookups at start. This writes files of N TaskIds (32 hex digits each, with
a trailing comment, as users write them) to a temp directory and times `read_task_file` on
each: medians of `--repeat` reads, wall clock and per line, measured side by side in one run.
The tests check what is read (tests/test_sources.py); the time is measured here, where a busy
machine makes a figure noisy rather than a test red.

    python -m bench.taskfile
    python -m bench.taskfile --lines 100000 --repeat 15
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from zego_exporter.sources import read_task_file


def task_file(directory: Path, lines: int) -> Path:
    path = directory / f"tasks-{lines}.txt"
    path.write_text("".join(f"{n:032x}  # room {n}\n" for n in range(lines)))
    return path


def median_read(path: Path, repeat: int, expected: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        loaded = read_task_file(str(path))
        times.append(time.perf_counter() - started)
        if len(loaded.task_ids) != expected:  # a figure for the wrong work is no figure
            raise SystemExit(f"{path}: read {len(loaded.task_ids)} TaskIds, wrote {expected}")
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    if args.repeat < 1 or min(args.lines) < 1:
        parser.error("--lines and --repeat must be at least 1")
    print(f"{'lines':>8} {'file':>9} {'median read':>12} {'per line':>9}")
    with tempfile.TemporaryDirectory() as directory:
        for lines in args.lines:
            path = task_file(Path(directory), lines)
            took = median_read(path, args.repeat, lines)
            print(f"{lines:>8} {path.stat().st_size / 2**20:>7.1f}MB {took * 1000:>10.1f}ms "
                  f"{took / lines * 1e6:>7.2f}µs")


if __name__ == "__main__":
    main()
