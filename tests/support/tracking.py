"""A tracker filled by hand in unit tests: a fixed start time, answers, and claiming what is due."""

from __future__ import annotations

from tests.support.clock import FakeClock
from zego_exporter.responses import TaskStatus
from zego_exporter.tracker import RefreshPolicy, Tracker

T0 = 1_750_000_000.0
"""The fake clock's start: a fixed moment, so created and fetched times read the same each run."""


def make(policy: RefreshPolicy | None = None) -> tuple[Tracker, FakeClock]:
    """A tracker on a FakeClock at T0."""
    clock = FakeClock(T0)
    return Tracker(policy or RefreshPolicy(), clock=clock), clock


def status(task_id: str, code: int, room: str = "r", stream: str = "s", reason: str = "") -> (
    TaskStatus
):
    """A lookup's answer for a task created a minute before T0."""
    return TaskStatus(task_id, code, room, stream, int(T0) - 60, reason)


def drain(tracker: Tracker) -> list[str]:
    """Claim every task due now, in the tracker's order."""
    claimed = []
    while (task_id := tracker.claim_due()) is not None:
        claimed.append(task_id)
    return claimed
