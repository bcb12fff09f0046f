"""The simulated task table: seeded tasks, their precomputed lifecycles, and new arrivals.

Each task gets its whole schedule (initializing, then init_failed or streaming, then stopping,
stopped and finally gone, which the API answers as "task not found") when it is created,
drawn from a seeded RNG with a fixed number of draws per task. The status at any moment is
computed from the clock, not ticked, so the same seed and the same clock readings always give
the same answers. New tasks arrive as a seeded Poisson process, generated lazily up to the
current time. This module knows nothing of HTTP, signatures or faults, and must never read
the time except through the injected clock.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import NamedTuple

INITIALIZING = 1
INIT_FAILED = 2
STREAMING = 3
STOPPING = 4
STOPPED = 5
UNEXPECTED_STATUS = 7
"""A Status ZEGO does not document, for showing the exporter's `unknown` state."""

RUNNING_STATUSES = frozenset({INITIALIZING, STREAMING})
"""The statuses QueryDigitalHumanStreamTasks lists."""

FAIL_REASONS = (
    "digital human model load timeout",
    "invalid DigitalHumanId",
    "no available render node",
    "RTC room login failed: token expired",
    "timbre not supported by this digital human",
    "stream publish failed: StreamId already in use",
)

Span = tuple[float, float]
"""A duration range in seconds, (shortest, longest); `math.inf` as longest means forever."""

_DRAWS_PER_TASK = 8  # fixed, so that changing one duration never shifts the other tasks


@dataclass(frozen=True, slots=True)
class Lifecycle:
    """How long each state lasts (seconds, drawn between the two ends) and how tasks end.

    Streaming durations are drawn log-uniformly (short and long tasks are both common);
    the others uniformly. `stopping_rate` is the share of ending tasks that pass through
    Status 4 rather than going straight to Status 5. `init_failed` and `stopped` are how long
    the ended task keeps its Status before it is gone: a failed task answers Status 2 that
    long, then "task not found" (400000005). Whether GetStatus ever answers Status 5 is the
    server's choice (`Simulator(ended_tasks=...)`); callbacks report it either way.
    """

    initializing: Span = (1.0, 6.0)
    init_failure_rate: float = 0.15
    init_failed: Span = (30.0, 60.0)
    streaming: Span = (120.0, 3600.0)
    stopping_rate: float = 0.7
    stopping: Span = (2.0, 5.0)
    stopped: Span = (30.0, 60.0)

    def __post_init__(self) -> None:
        for name in ("initializing", "init_failed", "streaming", "stopping", "stopped"):
            low, high = getattr(self, name)
            if not 0.0 <= low <= high or math.isnan(high):
                raise ValueError(f"lifecycle {name} must be 0 <= shortest <= longest, got "
                                 f"({low}, {high})")
        for name in ("init_failure_rate", "stopping_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"lifecycle {name} must be between 0 and 1")

    def scaled(self, time_scale: float) -> Lifecycle:
        """The same lifecycle with every duration multiplied by `time_scale`.

        0.1 runs ten times faster, 2.0 twice as slow; the shares of outcomes stay the same.
        """
        if not time_scale > 0 or math.isinf(time_scale):
            raise ValueError(f"time scale must be a positive number, got {time_scale}")

        def times(span: Span) -> Span:
            return (span[0] * time_scale, span[1] * time_scale)

        return replace(
            self,
            initializing=times(self.initializing),
            init_failed=times(self.init_failed),
            streaming=times(self.streaming),
            stopping=times(self.stopping),
            stopped=times(self.stopped),
        )

    @classmethod
    def demo(cls) -> Lifecycle:
        """Tasks pass through every state in about ten seconds: for the demo dashboards."""
        return cls(initializing=(1.0, 3.0), init_failed=(3.0, 6.0), streaming=(3.0, 10.0),
                   stopping=(1.0, 2.0), stopped=(2.0, 4.0))

    @classmethod
    def forever(cls) -> Lifecycle:
        """Every task streams from its creation on and never stops: for pacing tests."""
        return cls(initializing=(0.0, 0.0), init_failure_rate=0.0,
                   streaming=(math.inf, math.inf))


LIFECYCLES: dict[str, Lifecycle] = {
    "realistic": Lifecycle(),
    "demo": Lifecycle.demo(),
    "forever": Lifecycle.forever(),
}
"""Named lifecycles, for command-line options."""


class TaskView(NamedTuple):
    """One task as the API would describe it at one moment (a tuple: cheap by the 100,000)."""

    task_id: str
    room_id: str
    stream_id: str
    create_time: int
    status: int
    fail_reason: str = ""
    """Set only when status is INIT_FAILED."""
    pinned: bool = False
    """True when the status was set by hand and no longer follows the lifecycle."""

    def to_json(self) -> dict[str, object]:
        doc: dict[str, object] = {
            "TaskId": self.task_id, "RoomId": self.room_id, "StreamId": self.stream_id,
            "CreateTime": self.create_time, "Status": self.status, "Pinned": self.pinned,
        }
        if self.status == INIT_FAILED:
            doc["FailReason"] = self.fail_reason
        return doc


@dataclass(frozen=True, slots=True)
class _Identity:
    task_id: str
    room_id: str
    stream_id: str


class _Task:
    """A task and its schedule: `statuses[i]` holds from `times[i]` on, until `gone_at`."""

    __slots__ = ("created", "fail_reason", "gone_at", "pinned", "room_id", "statuses",
                 "stream_id", "task_id", "times")

    def __init__(self, identity: _Identity, created: float, *, times: tuple[float, ...],
                 statuses: tuple[int, ...], gone_at: float, fail_reason: str = "",
                 pinned: bool = False) -> None:
        self.task_id = identity.task_id
        self.room_id = identity.room_id
        self.stream_id = identity.stream_id
        self.created = created
        self.times = times
        self.statuses = statuses
        self.gone_at = gone_at
        self.fail_reason = fail_reason
        self.pinned = pinned

    def status_at(self, now: float) -> int | None:
        """The Status at `now`, or None when the task does not exist (yet, or any more)."""
        if now < self.created or now >= self.gone_at:
            return None
        status = self.statuses[0]
        for since, later in zip(self.times, self.statuses, strict=True):
            if since > now:
                break
            status = later
        return status

    def view(self, status: int) -> TaskView:
        return TaskView(self.task_id, self.room_id, self.stream_id, int(self.created), status,
                        self.fail_reason if status == INIT_FAILED else "", self.pinned)


def _within(span: Span, draw: float) -> float:
    low, high = span
    if math.isinf(high):
        return math.inf
    return low + (high - low) * draw


def _log_within(span: Span, draw: float) -> float:
    low, high = span
    if math.isinf(high):
        return math.inf
    if low <= 0.0:
        return _within(span, draw)
    return float(low * (high / low) ** draw)


class World:
    """The table of simulated tasks; thread-safe. Time comes from `clock` (unix seconds).

    `tasks` tasks exist at construction, created at seeded moments in the recent past
    (spread so that they are initializing or streaming, a few already failed); then new
    tasks arrive at `arrival_rate` per second on average. Tasks that have been gone for
    `prune_after` seconds are dropped from memory (they answer "not found" either way).
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        tasks: int = 20,
        arrival_rate: float = 0.1,
        lifecycle: Lifecycle | None = None,
        clock: Callable[[], float] = time.time,
        prune_after: float = 300.0,
    ) -> None:
        if tasks < 0:
            raise ValueError(f"number of tasks must be >= 0, got {tasks}")
        if not arrival_rate >= 0:
            raise ValueError(f"arrival rate must be >= 0 tasks/second, got {arrival_rate}")
        self._lock = threading.Lock()
        self._clock = clock
        self._lifecycle = lifecycle if lifecycle is not None else Lifecycle()
        self._arrival_rate = arrival_rate
        self._prune_after = prune_after
        # The seeded stream draws only for the initial tasks and arrivals; tasks added by
        # hand draw from their own stream, so they never change what the seed produces.
        self._rng = random.Random(seed)
        self._manual_rng = random.Random(f"zego-simulator-manual:{seed}")
        self._tasks: dict[str, _Task] = {}
        self._sequence = 0
        self._showcase: dict[str, list[str]] = {}
        self._listeners: list[Callable[[], None]] = []
        start = clock()
        self._next_prune = start + prune_after
        # Spread initial tasks over the time a task takes to reach streaming, so most
        # stream, some are still initializing, and a few have just failed.
        spread = self._lifecycle.initializing[1] + min(self._lifecycle.streaming[0], 3600.0)
        for _ in range(tasks):
            created = start - spread * self._rng.random()
            self._insert(self._seeded_task(self._rng, created))
        self._next_arrival = self._after_gap(start)

    @classmethod
    def static(cls, tasks: int, *, seed: int = 0,
               clock: Callable[[], float] = time.time) -> World:
        """`tasks` tasks that stream forever, and no arrivals: a fixed load for pacing tests."""
        return cls(seed=seed, tasks=tasks, arrival_rate=0.0, lifecycle=Lifecycle.forever(),
                   clock=clock)

    @property
    def lifecycle(self) -> Lifecycle:
        return self._lifecycle

    def now(self) -> float:
        return self._clock()

    # -- reading -------------------------------------------------------------------------

    def get(self, task_id: str) -> TaskView | None:
        """The task as GetDigitalHumanStreamTaskStatus sees it now; None means not found."""
        with self._lock:
            now = self._advance()
            task = self._tasks.get(task_id)
            status = task.status_at(now) if task is not None else None
            return task.view(status) if task is not None and status is not None else None

    def running(self) -> list[TaskView]:
        """The tasks QueryDigitalHumanStreamTasks lists now: Status 1 or 3."""
        return self.tasks(statuses=RUNNING_STATUSES)

    def tasks(self, statuses: frozenset[int] | None = None) -> list[TaskView]:
        """Every task that exists now (optionally only those in `statuses`), oldest first."""
        with self._lock:
            now = self._advance()
            views = []
            for task in self._tasks.values():
                status = task.status_at(now)
                if status is not None and (statuses is None or status in statuses):
                    views.append(task.view(status))
            return views

    def count(self, status: int | None = None) -> int:
        """How many tasks exist now (optionally only those with `status`)."""
        return len(self.tasks(None if status is None else frozenset({status})))

    def schedule(self, task_id: str) -> list[tuple[float, int | None]] | None:
        """A task's transitions as (unix time, Status), None meaning gone; None if unknown."""
        with self._lock:
            self._advance()
            task = self._tasks.get(task_id)
            if task is None:
                return None
            steps: list[tuple[float, int | None]] = list(
                zip(task.times, task.statuses, strict=True))
            if not math.isinf(task.gone_at):
                steps.append((task.gone_at, None))
            return steps

    @property
    def showcase(self) -> dict[str, list[str]]:
        """The TaskIds per state of the last `add_showcase`, or {}."""
        with self._lock:
            return {state: list(ids) for state, ids in self._showcase.items()}

    def subscribe(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener()` after every change by hand (add, pin, stop, remove); returns the
        function that unsubscribes it. Lifecycle steps are not announced: they follow from the
        schedules, which a watcher reads itself."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def _changed(self) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener()

    # -- changing ------------------------------------------------------------------------

    def add_task(
        self,
        *,
        status: int | None = None,
        room_id: str | None = None,
        stream_id: str | None = None,
        fail_reason: str | None = None,
        task_id: str | None = None,
        create_time: float | None = None,
    ) -> str:
        """Add a task now; returns its TaskId.

        With a `status` the task stays in it (pinned) until changed; without, it follows
        the lifecycle from `create_time` (default: now), like a freshly created task.
        """
        with self._lock:
            now = self._advance()
            created = now if create_time is None else create_time
            if status is None:
                task = self._seeded_task(self._manual_rng, created)
            else:
                identity = self._new_identity(self._manual_rng)
                reason = fail_reason if fail_reason is not None else FAIL_REASONS[0]
                task = _Task(identity, created, times=(created,), statuses=(status,),
                             gone_at=math.inf,
                             fail_reason=reason if status == INIT_FAILED else "", pinned=True)
            if task_id is not None:
                if not task_id or task_id in self._tasks:
                    raise ValueError(f"TaskId {task_id!r} is empty or already exists")
                task.task_id = task_id
            if room_id is not None:
                task.room_id = room_id
            if stream_id is not None:
                task.stream_id = stream_id
            self._insert(task)
        self._changed()
        return task.task_id

    def set_status(self, task_id: str, status: int, fail_reason: str | None = None) -> None:
        """Pin a task to `status` from now on (any integer, even undocumented ones).

        Raises KeyError for a TaskId the world does not hold.
        """
        with self._lock:
            now = self._advance()
            task = self._task(task_id)
            created = min(task.created, now)
            task.created = created
            task.times, task.statuses, task.gone_at = (created,), (status,), math.inf
            if status == INIT_FAILED:
                task.fail_reason = fail_reason or task.fail_reason or FAIL_REASONS[0]
            task.pinned = True
        self._changed()

    def fail(self, task_id: str, reason: str | None = None) -> None:
        """Pin the task to init_failed (Status 2) with `reason` as its FailReason."""
        self.set_status(task_id, INIT_FAILED, reason)

    def stream(self, task_id: str) -> None:
        """Pin the task to streaming (Status 3)."""
        self.set_status(task_id, STREAMING)

    def stop(self, task_id: str) -> None:
        """Stop the task as StopDigitalHumanStreamTask would: stopping, stopped, then gone.

        The durations come from the lifecycle (drawn from the hand-made tasks' own RNG).
        """
        with self._lock:
            now = self._advance()
            task = self._task(task_id)
            lifecycle = self._lifecycle
            stopped_at = now + _within(lifecycle.stopping, self._manual_rng.random())
            gone_at = stopped_at + _within(lifecycle.stopped, self._manual_rng.random())
            current = task.status_at(now) or STREAMING
            task.created = min(task.created, now)
            task.times = (task.created, now, stopped_at)
            task.statuses = (current, STOPPING, STOPPED)
            task.gone_at = gone_at
            task.pinned = False
        self._changed()

    def remove(self, task_id: str) -> None:
        """From now on the task answers "task not found" (400000005)."""
        with self._lock:
            now = self._advance()
            task = self._task(task_id)
            task.gone_at = now
            task.pinned = False
        self._changed()

    def add_showcase(self, per_state: int = 1, *,
                     stop_after: float = 5.0) -> dict[str, list[str]]:
        """Add `per_state` pinned tasks in every state the exporter knows; return their ids.

        Keys: initializing, init_failed, streaming, stopping, unknown (Status 7,
        undocumented), stopped and not_found. A "stopped" task streams for `stop_after`
        seconds, then stops (Status 5 from then on): under ZEGO's current docs GetStatus then
        answers "task not found", and only an exporter that saw it streaming knows it stopped.
        A "not_found" TaskId never existed. Hand-made tasks draw from their own RNG, so the
        seeded tasks and arrivals stay the same.
        """
        pinned = {"initializing": INITIALIZING, "init_failed": INIT_FAILED,
                  "streaming": STREAMING, "stopping": STOPPING,
                  "unknown": UNEXPECTED_STATUS}
        ids: dict[str, list[str]] = {state: [] for state in (*pinned, "stopped", "not_found")}
        for n in range(per_state):
            for state, status in pinned.items():
                reason = FAIL_REASONS[n % len(FAIL_REASONS)] if status == INIT_FAILED else None
                ids[state].append(self.add_task(status=status, fail_reason=reason))
            ids["stopped"].append(self._add_stopping_later(stop_after))
            with self._lock:
                ids["not_found"].append(self._new_identity(self._manual_rng).task_id)
        with self._lock:
            self._showcase = ids
        return {state: list(task_ids) for state, task_ids in ids.items()}

    def _add_stopping_later(self, stop_after: float) -> str:
        """A pinned task that streams for `stop_after` seconds, then is stopped for good."""
        if not stop_after >= 0:
            raise ValueError(f"stop_after must be >= 0 seconds, got {stop_after}")
        with self._lock:
            now = self._advance()
            times, statuses = ((now,), (STOPPED,)) if stop_after == 0 else (
                (now, now + stop_after), (STREAMING, STOPPED))
            task = _Task(self._new_identity(self._manual_rng), now, times=times,
                         statuses=statuses, gone_at=math.inf, pinned=True)
            self._insert(task)
        self._changed()
        return task.task_id

    # -- internals (call with the lock held) ----------------------------------------------

    def _task(self, task_id: str) -> _Task:
        task = self._tasks.get(task_id)
        if task is None:
            raise KeyError(task_id)
        return task

    def _insert(self, task: _Task) -> None:
        self._tasks[task.task_id] = task

    def _after_gap(self, since: float) -> float:
        if self._arrival_rate <= 0:
            return math.inf
        return since + self._rng.expovariate(self._arrival_rate)

    def _advance(self) -> float:
        """Create the arrivals due by now and forget long-gone tasks; returns now."""
        now = self._clock()
        while self._next_arrival <= now:
            arrival = self._next_arrival
            self._insert(self._seeded_task(self._rng, arrival))
            self._next_arrival = self._after_gap(arrival)
        if now >= self._next_prune:
            horizon = now - self._prune_after
            for task_id in [t.task_id for t in self._tasks.values() if t.gone_at < horizon]:
                del self._tasks[task_id]
            self._next_prune = now + self._prune_after
        return now

    def _new_identity(self, rng: random.Random) -> _Identity:
        self._sequence += 1
        task_id = f"{rng.getrandbits(128):032x}"
        while task_id in self._tasks:  # 2**-128 per pair, but an id must never be reused
            task_id = f"{rng.getrandbits(128):032x}"
        suffix = f"{rng.getrandbits(16):04x}"
        return _Identity(task_id, f"room_{self._sequence:04d}",
                         f"stream_{self._sequence:04d}_{suffix}")

    def _seeded_task(self, rng: random.Random, created: float) -> _Task:
        identity = self._new_identity(rng)
        draw = [rng.random() for _ in range(_DRAWS_PER_TASK)]
        lifecycle = self._lifecycle
        ready = created + _within(lifecycle.initializing, draw[0])
        if draw[1] < lifecycle.init_failure_rate:
            reason = FAIL_REASONS[int(draw[2] * len(FAIL_REASONS))]
            gone = ready + _within(lifecycle.init_failed, draw[3])
            return _Task(identity, created, times=(created, ready),
                         statuses=(INITIALIZING, INIT_FAILED), gone_at=gone, fail_reason=reason)
        ends = ready + _log_within(lifecycle.streaming, draw[4])
        if draw[5] < lifecycle.stopping_rate:
            stopped = ends + _within(lifecycle.stopping, draw[6])
            times: tuple[float, ...] = (created, ready, ends, stopped)
            statuses: tuple[int, ...] = (INITIALIZING, STREAMING, STOPPING, STOPPED)
        else:
            stopped = ends
            times, statuses = (created, ready, ends), (INITIALIZING, STREAMING, STOPPED)
        gone = stopped + _within(lifecycle.stopped, draw[7])
        return _Task(identity, created, times=times, statuses=statuses, gone_at=gone)
