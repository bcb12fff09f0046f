"""Shared measurement runs for the benchmarks.

A run starts the simulated ZEGO API on loopback with a fixed world of streaming tasks, points a
real refresh engine at it, and judges the result where the server counts: the simulator's
request log (accepted starts, rejections, the busiest one-second window), plus the data age of
every task sampled from the tracker (bench.pacing, bench.freshness).
`fill_tracker` instead puts tasks in realistic states straight into a tracker, without an API,
for the benchmarks that measure what the exporter does with them (bench.scrape, bench.memory).
"""

from __future__ import annotations

import random
import statistics
import time
from dataclasses import dataclass

from tests.support.credentials import APP_ID, SECRET
from zego_exporter.client import ZegoClient
from zego_exporter.ratelimit import SlidingWindowLimiter
from zego_exporter.refresh import Refresher
from zego_exporter.responses import ACTION_GET_STATUS, ACTION_QUERY_TASKS, ACTIONS, TaskStatus
from zego_exporter.simulator import Simulator, World
from zego_exporter.simulator.faults import Faults, Latency
from zego_exporter.simulator.world import FAIL_REASONS
from zego_exporter.tracker import STATIC, RefreshPolicy, Tracker


@dataclass(frozen=True)
class PacingResult:
    tasks: int
    qps: float
    seconds: float
    discovery: bool
    interval: float
    """Refresh target of streaming tasks: data gets this old even when the budget allows more."""
    lookups: int
    """GetDigitalHumanStreamTaskStatus requests the server saw."""
    queries: int
    """QueryDigitalHumanStreamTasks requests the server saw."""
    rejected: int
    """Requests the server answered with 400010009 (rate limited)."""
    peak_window: int
    """Most accepted lookups that arrived within any one second."""
    achieved_rate: float
    """Lookups per second while there was a backlog."""
    warmup: float
    """Seconds until every task had been fetched once."""
    median_age: float
    worst_age: float
    """Data age over all samples after warm-up (s)."""
    discovery_interval: float = RefreshPolicy().discovery_interval
    """How often discovery listed the running tasks (when it was on)."""

    @property
    def bound(self) -> float:
        """N/Q: the least time a full round of individual lookups can take."""
        return self.tasks / self.qps

    @property
    def expected_worst(self) -> float:
        """What worst age to expect: with discovery, the discovery interval (every running task
        is in each list); without, the refresh interval or N/Q, whichever is longer."""
        return self.discovery_interval if self.discovery else max(self.interval, self.bound)

    def lines(self) -> list[str]:
        mode = "discovery on" if self.discovery else "discovery off"
        return [
            f"N={self.tasks} Q={self.qps:g} {mode}, {self.seconds:g}s:",
            f"  lookups {self.lookups}, queries {self.queries}, rejected (400010009) "
            f"{self.rejected}",
            f"  achieved {self.achieved_rate:.2f} lookups/s "
            f"({100 * self.achieved_rate / self.qps:.1f}% of Q) while a backlog existed",
            f"  busiest 1 s window at the server: {self.peak_window} accepted lookups "
            f"(limit {self.qps:g})",
            f"  warm-up {self.warmup:.1f}s; data age after warm-up: median "
            f"{self.median_age:.1f}s, worst {self.worst_age:.1f}s; N/Q = {self.bound:.1f}s, "
            + (f"discovery interval {self.discovery_interval:g}s (worst/interval "
               if self.discovery else
               f"refresh interval {self.interval:g}s (worst/max of both ")
            + f"{self.worst_age / self.expected_worst:.2f})",
        ]


def run_pacing(
    tasks: int,
    seconds: float,
    *,
    qps: int = 10,
    discovery: bool = False,
    interval: float = RefreshPolicy().interval,
    discovery_interval: float = RefreshPolicy().discovery_interval,
    latency: float = 0.0,
    workers: int = 4,
    sample_every: float = 0.25,
) -> PacingResult:
    """Refresh `tasks` streaming tasks for `seconds` against the strict simulator."""
    faults = Faults(latency=Latency(seconds=latency)) if latency else None
    world = World.static(tasks)
    with Simulator(APP_ID, SECRET, world=world, qps=qps, faults=faults) as sim:
        task_ids = [task.task_id for task in world.tasks()]
        client = ZegoClient(APP_ID, SECRET, sim.url, pool_size=workers + 2)
        policy = RefreshPolicy(interval=interval, discovery_interval=discovery_interval)
        tracker = Tracker(policy)
        if not discovery:
            tracker.set_configured(STATIC, task_ids)
        limiters = {action: SlidingWindowLimiter(qps) for action in ACTIONS}
        refresher = Refresher(client, tracker, limiters, workers=workers, discovery=discovery,
                              idle_after=None)
        started = time.time()
        refresher.start()
        warmup: float | None = None
        ages: list[float] = []
        backlog_until = started
        try:
            while (now := time.time()) < started + seconds:
                snap = tracker.snapshot()
                if snap.backlog:
                    backlog_until = now
                fetched = [t.last_success for t in snap.tasks if t.last_success is not None]
                if warmup is None and len(fetched) == tasks:
                    warmup = now - started
                elif warmup is not None:
                    ages.extend(now - last for last in fetched)
                time.sleep(sample_every)
        finally:
            refresher.stop()
            client.close()
        lookups = sim.stats.action(ACTION_GET_STATUS)
        queries = sim.stats.action(ACTION_QUERY_TASKS)
        arrivals = [r.arrival for r in sim.stats.requests()
                    if r.action == ACTION_GET_STATUS and r.accepted]
    during_backlog = [a for a in arrivals if a <= arrivals[0] + (backlog_until - started)] if (
        arrivals) else []
    # Q starts go out at once, then Q more each time a window has passed since their answers:
    # the steady rate is (starts - Q) over the span between the first and the last start.
    span = (during_backlog[-1] - during_backlog[0]) if len(during_backlog) > qps else 0.0
    rate = (len(during_backlog) - qps) / span if span > 0 else 0.0
    return PacingResult(
        tasks=tasks, qps=qps, seconds=seconds, discovery=discovery, interval=interval,
        lookups=lookups.requests, queries=queries.requests,
        rejected=lookups.rate_limited + queries.rate_limited,
        peak_window=sim.stats.peak(action=ACTION_GET_STATUS, accepted_only=True),
        achieved_rate=rate,
        warmup=warmup if warmup is not None else float("inf"),
        median_age=statistics.median(ages) if ages else float("inf"),
        worst_age=max(ages) if ages else float("inf"),
        discovery_interval=discovery_interval,
    )


# -- a tracker filled directly, for the scrape and memory benchmarks ------------------------

# Shares of a realistic tracker (the rest stream): tasks come and go, so a large exporter
# always holds some starting, failed, ending and ended tasks, and a few lookups fail.
STATE_MIX: tuple[tuple[int | None, float], ...] = (
    (1, 0.05),     # initializing
    (2, 0.05),     # init_failed, with a FailReason
    (4, 0.02),     # stopping
    (5, 0.03),     # stopped
    (None, 0.02),  # not found (400000005)
)
LOOKUP_FAILED_SHARE = 0.02
"""Tasks whose latest lookup failed (their last good data stays)."""
DISCOVERED_SHARE = 0.2
"""Tasks named by discovery only; the rest are configured (static)."""


def realistic_tasks(tasks: int, *, seed: int = 0,
                    now: float | None = None) -> list[tuple[TaskStatus | None, str]]:
    """`tasks` (answer, task_id) pairs as the simulator makes them (128-bit hex TaskIds,
    room_NNNN, stream_NNNN_xxxx), states in the proportions of STATE_MIX; the answer is None
    for tasks that answer "not found"."""
    rng = random.Random(seed)
    created_before = time.time() if now is None else now
    out: list[tuple[TaskStatus | None, str]] = []
    for n in range(1, tasks + 1):
        task_id = f"{rng.getrandbits(128):032x}"
        room_id, stream_id = f"room_{n:04d}", f"stream_{n:04d}_{rng.getrandbits(16):04x}"
        create_time = int(created_before - rng.uniform(5.0, 7200.0))
        roll = rng.random()
        status: int | None = 3
        for candidate, share in STATE_MIX:
            if roll < share:
                status = candidate
                break
            roll -= share
        if status is None:
            out.append((None, task_id))
            continue
        reason = FAIL_REASONS[rng.randrange(len(FAIL_REASONS))] if status == 2 else ""
        out.append((TaskStatus(task_id, status, room_id, stream_id, create_time, reason),
                    task_id))
    return out


def fill_tracker(tracker: Tracker, tasks: int, *, seed: int = 0,
                 now: float | None = None) -> None:
    """Put `tasks` tasks into `tracker` in realistic states, as answers would, without an API:
    configured ones looked up once (a few failing or not found), discovered ones listed.
    Called again with the same seed and `now`, it is one more round of the same answers (new
    objects with equal values, as parsing them again makes)."""
    made = realistic_tasks(tasks, seed=seed, now=now)
    rng = random.Random(seed + 1)
    discovered = [answer for answer, _ in made
                  if answer is not None and answer.status in (1, 3)
                  and rng.random() < DISCOVERED_SHARE]
    listed = {answer.task_id for answer in discovered}
    tracker.set_configured(STATIC, (task_id for _, task_id in made if task_id not in listed))
    while tracker.claim_due() is not None:
        pass
    for answer, task_id in made:
        if task_id in listed:
            continue
        if answer is None:
            tracker.record_not_found(task_id)
            continue
        tracker.record_lookup(answer)
        if rng.random() < LOOKUP_FAILED_SHARE:
            tracker.record_lookup_failure(task_id)
    tracker.record_discovery(discovered)
    tracker.record_api(True)
