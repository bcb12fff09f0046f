"""The refresh schedule: when each tracked task falls due for a lookup, and which goes first.

`Schedule` keeps a heap of tasks by the time they fall due, and hands out the due ones most
urgent first (`priority`), then stalest. Each task's place in it is a `Slot`, which the
tracker's record of the task extends. Items are never removed from the heaps: planning a task
anew gives it a new sequence number, an item with another one is stale, skipped when it
surfaces and dropped once stale items outnumber the tasks. It is not thread-safe (the tracker
calls it under its own lock, with its own clock's time), and it knows nothing of task states,
sources, storage or ZEGO.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable, Mapping
from typing import Final, Generic, TypeVar

# Priorities, most urgent first.
RESTORED: Final = -1
"""Tasks a previous run left unfinished: they may have ended while nobody watched, and ZEGO
answers for an ended task only for a while (then "task not found", and a FailReason is lost)."""
URGENT: Final = 0
"""Tasks never fetched, tasks that just left the running list, endings to confirm."""
ROUTINE: Final = 1
"""Tasks that are merely due again."""


class Slot:
    """A task's place in the schedule."""

    __slots__ = ("due", "in_flight", "priority", "scheduled", "seq")

    def __init__(self) -> None:
        self.due = -math.inf  # when it falls due; inf: never
        self.priority = URGENT
        self.seq = 0  # its live item's; items with another are stale
        self.scheduled = False  # its item (due, seq, task_id) in Schedule's due heap is live
        self.in_flight = False  # claimed; its lookup has not been answered yet

    def pending(self, now: float, *, in_flight_only: bool = False) -> bool:
        """In flight or, unless `in_flight_only`, urgently due: what a scrape waits for."""
        return self.in_flight or (
            not in_flight_only and self.priority <= URGENT and self.due <= now)


S = TypeVar("S", bound=Slot)


class Schedule(Generic[S]):
    """When each task of `slots` (the tracker's records, by TaskId) falls due.

    `touched(slot)` is when the task was last answered or attempted: among due tasks of one
    priority, the one touched longest ago goes first.
    """

    def __init__(self, slots: Mapping[str, S], touched: Callable[[S], float]) -> None:
        self._slots = slots
        self._touched = touched
        self._due: list[tuple[float, int, str]] = []  # (due, seq, task_id)
        self._ready: list[tuple[int, float, int, str]] = []  # (priority, touched, seq, task_id)
        self._seq = itertools.count(1)

    def __len__(self) -> int:
        """Items waiting to fall due, live or stale."""
        return len(self._due)

    def plan(self, task_id: str, slot: S, due: float, priority: int) -> None:
        """`task_id` falls due at `due` (inf: never) with `priority`."""
        later = due >= slot.due
        slot.due = due
        slot.priority = priority
        if not (later and slot.scheduled):
            # A new item; any other item of the task goes stale. A task moved later keeps its
            # item instead (claim moves it on): each discovery round moves every listed task
            # later, and a stale item per task and round would cost ~120 bytes each.
            slot.seq = next(self._seq)
            slot.scheduled = due != math.inf
            if slot.scheduled:
                heapq.heappush(self._due, (due, slot.seq, task_id))

    def claim(self, now: float) -> str | None:
        """The most urgent, then stalest, task due at `now`, marked in flight; None if none is.

        A due task that is in flight already is passed over: its item is dropped, and its
        answer plans it again.
        """
        due, ready, slots = self._due, self._ready, self._slots
        while due and due[0][0] <= now:
            _, seq, task_id = heapq.heappop(due)
            slot = slots.get(task_id)
            if slot is None or slot.seq != seq:
                continue  # stale
            if slot.due > now:
                # Planned later while its item waited here: back in line for that.
                slot.scheduled = slot.due != math.inf
                if slot.scheduled:
                    heapq.heappush(due, (slot.due, seq, task_id))
            else:
                slot.scheduled = False
                heapq.heappush(ready, (slot.priority, self._touched(slot), seq, task_id))
        while ready:
            _, _, seq, task_id = heapq.heappop(ready)
            slot = slots.get(task_id)
            if slot is not None and slot.seq == seq and not slot.in_flight:
                slot.in_flight = True
                slot.seq = next(self._seq)  # any item left for it is now stale
                return task_id
        return None

    def next_due_in(self, now: float) -> float | None:
        """Seconds from `now` until the next task falls due (0 if one is due); None if none
        will. Drops stale items first once they outnumber the tasks, so memory stays bounded."""
        if self._ready:
            return 0.0
        if len(self._due) > 2 * len(self._slots) + 1024:
            self._due = [item for item in self._due
                         if (slot := self._slots.get(item[2])) is not None
                         and slot.seq == item[1]]
            heapq.heapify(self._due)
        if not self._due:
            return None
        return max(0.0, self._due[0][0] - now)
