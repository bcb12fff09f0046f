"""Shared measurement runs for the benchmarks and the pacing tests.

A run starts the simulated ZEGO API on loopback with a fixed world of streaming tasks, points a
real refresh engine at it, and judges the result where the server counts: the simulator's
request log (accepted starts, rejections, the busiest one-second window), plus the data age of
every task sampled from the tracker.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

from zego_exporter.client import ZegoClient
from zego_exporter.ratelimit import SlidingWindowLimiter
from zego_exporter.refresh import Refresher
from zego_exporter.responses import ACTION_GET_STATUS, ACTION_QUERY_TASKS, ACTIONS
from zego_exporter.signing import Secret
from zego_exporter.simulator import Simulator, World
from zego_exporter.simulator.faults import Faults, Latency
from zego_exporter.tracker import STATIC, RefreshPolicy, Tracker

APP_ID = 1234567890
SECRET = Secret("0123456789abcdef0123456789abcdef")


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

    @property
    def bound(self) -> float:
        """N/Q: the least time a full round of individual lookups can take."""
        return self.tasks / self.qps

    @property
    def expected_worst(self) -> float:
        """What worst age to expect: the refresh interval or N/Q, whichever is longer."""
        return max(self.interval, self.bound)

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
            f"refresh interval {self.interval:g}s (worst/max of both "
            f"{self.worst_age / self.expected_worst:.2f})",
        ]


def run_pacing(
    tasks: int,
    seconds: float,
    *,
    qps: int = 10,
    discovery: bool = False,
    interval: float = 30.0,
    discovery_interval: float = 15.0,
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
    )
