"""Storage benchmark: the --storage.path file's size, its write rate, and what writing costs others.

For N tracked tasks in realistic states (bench.harness.fill_tracker), measured side by side in
one run:

- size: the file after every task was written and the file closed (the WAL checkpointed into
  it), and the biggest the -wal file got while writing;
- all change at once: every task changes state between two turns of the writer; one flush
  takes the changes (under the tracker's lock: what a scrape or a lookup could wait for) and
  writes them in one transaction. Medians of `--repeat` rounds;
- sustained: the writer's own thread runs for `--seconds` while another thread changes every
  task again and again; commits/s and rows/s are what it wrote, and the snapshot times are
  those of a third thread taking tracker snapshots (what a scrape does) the whole time,
  beside the same snapshots without the writer;
- start: opening the file and restoring every task into a new tracker.

    python -m bench.storage                  # N = 10000
    python -m bench.storage --tasks 1000 10000 100000 --repeat 5
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from unittest.mock import patch

from bench.harness import fill_tracker
from zego_exporter.responses import TaskStatus
from zego_exporter.storage import Saved, Store, StoreWriter, open_store
from zego_exporter.tracker import Changes, Tracker


def change_all(tracker: Tracker, round_number: int) -> int:
    """Every task gets a new answer whose state differs from the last one's."""
    status = (1, 3)[round_number % 2]
    changed = 0
    for view in tracker.snapshot().tasks:
        tracker.record_lookup(TaskStatus(view.task_id, status, view.room_id, view.stream_id,
                                         view.create_time or 0))
        changed += 1
    return changed


def timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def bursts(tracker: Tracker, seconds: float, every: float) -> tuple[list[float], list[float]]:
    """For `seconds`, every task changes every `every` seconds while this thread times a
    round of the tracker's lock (`view`) every 20 ms: (those times, the bursts' times)."""
    stop = threading.Event()
    burst_times: list[float] = []

    def changer() -> None:
        round_number = 0
        while not stop.is_set():
            started = time.perf_counter()
            change_all(tracker, round_number)
            burst_times.append(time.perf_counter() - started)
            round_number += 1
            stop.wait(every)

    thread = threading.Thread(target=changer)
    thread.start()
    waits = []
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        waits.append(timed(lambda: tracker.view("")))
        time.sleep(0.02)
    stop.set()
    thread.join()
    return waits, burst_times


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def measure(tasks: int, repeat: int, seconds: float, burst_every: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="zego-bench-storage-") as directory:
        path = Path(directory) / "zego-exporter.db"
        wal = Path(f"{path}-wal")
        store, _ = open_store(str(path))
        tracker = Tracker(keep_changes=True)
        fill_tracker(tracker, tasks)
        writer = StoreWriter(store, tracker.take_changes)
        first_write = timed(writer.flush)
        wal_peak = wal.stat().st_size

        takes, writes, rows = [], [], []
        for round_number in range(repeat):
            change_all(tracker, round_number)
            started = time.perf_counter()
            taken = tracker.take_changes()
            takes.append(time.perf_counter() - started)
            started = time.perf_counter()
            rows.append(store.write(taken))
            writes.append(time.perf_counter() - started)
            wal_peak = max(wal_peak, wal.stat().st_size)

        # Sustained: every task changes at once every `burst_every` seconds, and a third
        # thread asks the tracker something every 20 ms (as a lookup recording its answer
        # would) and times how long that takes: first without the writer, then with its
        # thread running.
        alone, _ = bursts(tracker, seconds, burst_every)
        writer.flush()
        commits: list[int] = []
        write = store.write

        def counted(batch: Changes) -> int:
            written = write(batch)
            commits.append(written)
            return written

        # The writer's own commits, counted on this one store for the sustained phase.
        with patch.object(store, "write", counted):
            writer.start()
            started = time.monotonic()
            busy, burst_times = bursts(tracker, seconds, burst_every)
            elapsed = time.monotonic() - started
            wal_peak = max(wal_peak, wal.stat().st_size)
            writer.stop()  # last flush, close: checkpoints the WAL into the file
        size = path.stat().st_size

        opened: list[tuple[Store, Saved]] = []
        load_all = timed(lambda: opened.append(open_store(str(path))))
        reopened, saved = opened[0]
        restore = timed(lambda: Tracker().restore(saved.tasks, saved.failures))
        reopened.close()
        return {
            "tasks": tasks, "size": size, "wal_peak": wal_peak, "first_write": first_write,
            "take": statistics.median(takes), "write": statistics.median(writes),
            "rows": statistics.median(rows), "commits_per_s": len(commits) / elapsed,
            "wait_alone_p99": percentile(alone, 0.99),
            "rows_per_s": sum(commits) / elapsed, "bursts": len(burst_times),
            "burst": statistics.median(burst_times),
            "wait_alone_p50": statistics.median(alone), "wait_alone_max": max(alone),
            "wait_busy_p50": statistics.median(busy), "wait_busy_p99": percentile(busy, 0.99),
            "wait_busy_max": max(busy),
            "open": load_all, "restore": restore,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=[10_000])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="each of the two sustained runs")
    parser.add_argument("--burst-every", type=float, default=1.0)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, sqlite {sqlite3.sqlite_version}")
    for tasks in args.tasks:
        m = measure(tasks, args.repeat, args.seconds, args.burst_every)
        print(f"\n{tasks:,} tracked tasks")
        print(f"  file size                  {m['size'] / 1e6:6.2f} MB "
              f"({m['size'] / tasks:.0f} bytes per task); -wal at most "
              f"{m['wal_peak'] / 1e6:.2f} MB")
        print(f"  first write of every task  {m['first_write'] * 1e3:6.0f} ms")
        print(f"  all change at once         {m['rows']:,.0f} rows in one commit: take "
              f"{m['take'] * 1e3:.0f} ms, write {m['write'] * 1e3:.0f} ms "
              f"= {m['rows'] / m['write']:,.0f} rows/s")
        print(f"  every task changes every {args.burst_every:g} s: {m['commits_per_s']:.1f} "
              f"commits/s, {m['rows_per_s']:,.0f} rows/s ({m['bursts']:.0f} bursts of "
              f"{m['burst'] * 1e3:.0f} ms each)")
        print(f"  tracker lock round         without the writer p50 "
              f"{m['wait_alone_p50'] * 1e6:.0f} us, p99 {m['wait_alone_p99'] * 1e3:.1f} ms, max "
              f"{m['wait_alone_max'] * 1e3:.1f} ms; with it p50 "
              f"{m['wait_busy_p50'] * 1e6:.0f} us, p99 {m['wait_busy_p99'] * 1e3:.1f} ms, "
              f"max {m['wait_busy_max'] * 1e3:.1f} ms")
        print(f"  start                      open and read {m['open'] * 1e3:.0f} ms, "
              f"restore {m['restore'] * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
