"""Listing benchmark: what one discovery round costs at 1,000, 10,000 and 100,000 running tasks.

Discovery lists the running tasks every 3 s by default (so a task that initializes for 5 s or
more is seen before it fails), and lists less often only when a round would take more than 5%
of a CPU core (refresh.LISTING_CPU_SHARE). This prints what a round costs, in CPU seconds of the
thread that runs it, measured side by side in one run:

- parse: `parse_task_list` on the answer's bytes (JSON decoding included; `json.loads` alone is
  shown beside it);
- record: `Tracker.record_discovery` of the parsed list into a tracker that already holds the
  same tasks (the steady state: every round re-lists them);
- call: the whole round as the refresh engine runs it, `ZegoClient.query_running_tasks` against
  the simulated API on loopback plus `record_discovery`, in the calling thread's CPU time (what
  the engine measures with `time.thread_time`; the simulator's own work is in other threads).

Then the listing interval the engine would pick and the CPU share of listing at that interval.
Medians of `--repeat` rounds.

    python -m bench.listing                     # N = 1000, 10000, 100000
    python -m bench.listing --tasks 10000 --repeat 15
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

from bench.harness import APP_ID, SECRET
from zego_exporter.client import ZegoClient
from zego_exporter.refresh import LISTING_CPU_SHARE
from zego_exporter.responses import parse_task_list
from zego_exporter.simulator import Simulator, World
from zego_exporter.tracker import RefreshPolicy, Tracker


def cpu_median(work: Callable[[], object], repeat: int) -> float:
    """Median CPU seconds of this thread for one call of `work`."""
    spent = []
    for _ in range(repeat):
        started = time.thread_time()
        work()
        spent.append(time.thread_time() - started)
    return statistics.median(spent)


def measure(tasks: int, repeat: int) -> dict[str, float]:
    world = World.static(tasks)
    with Simulator(APP_ID, SECRET, world=world, qps=0) as sim:
        client = ZegoClient(APP_ID, SECRET, sim.url)
        try:
            body = json.dumps({"Code": 0, "Message": "success", "RequestId": "bench",
                               "Data": {"TaskList": [
                                   {"TaskId": t.task_id, "RoomId": t.room_id,
                                    "StreamId": t.stream_id, "CreateTime": t.create_time,
                                    "Status": t.status} for t in world.running()]}},
                              separators=(",", ":")).encode()
            listed = parse_task_list(body).tasks
            tracker = Tracker(RefreshPolicy())
            tracker.record_discovery(listed)  # the steady state: the same tasks again
            loads = cpu_median(lambda: json.loads(body), repeat)
            parse = cpu_median(lambda: parse_task_list(body), repeat)
            record = cpu_median(lambda: tracker.record_discovery(parse_task_list(body).tasks),
                                repeat) - parse
            call = cpu_median(
                lambda: tracker.record_discovery(client.query_running_tasks().tasks), repeat)
        finally:
            client.close()
    policy = RefreshPolicy()
    interval = max(policy.discovery_interval, call / LISTING_CPU_SHARE)
    return {"bytes": len(body), "loads": loads, "parse": parse, "record": record,
            "call": call, "interval": interval, "share": call / interval,
            "share_at_3s": call / policy.discovery_interval}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, action="append",
                        help="running tasks (repeatable; default 1000, 10000, 100000)")
    parser.add_argument("--repeat", type=int, default=9, help="rounds per figure (median)")
    args = parser.parse_args()
    print(f"listing cost, CPU seconds of the listing thread, median of {args.repeat} rounds")
    print(f"{'tasks':>8} {'answer':>9} {'json.loads':>10} {'parse':>8} {'record':>8} "
          f"{'round':>8} {'interval':>9} {'CPU share':>9} {'at 3 s':>7}")
    for tasks in args.tasks or [1000, 10000, 100000]:
        m = measure(tasks, args.repeat)
        print(f"{tasks:>8} {m['bytes'] / 2**20:>7.2f}MB {m['loads'] * 1000:>8.1f}ms "
              f"{m['parse'] * 1000:>6.1f}ms {m['record'] * 1000:>6.1f}ms "
              f"{m['call'] * 1000:>6.1f}ms {m['interval']:>8.1f}s {m['share']:>9.1%} "
              f"{m['share_at_3s']:>7.1%}")


if __name__ == "__main__":
    main()
