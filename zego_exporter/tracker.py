"""The task tracker: what the exporter knows about every task, and which one to refresh next.

It keeps, per task, the last good data (as an immutable `TaskView`), when it was fetched, the
last attempt, consecutive failures, the sources that named it, and whether its init failure has
been counted; and it plans refreshes: refresh targets and priorities that depend on the task's
state and on what told it (`schedule.py` keeps the order and hands out the due tasks). It
applies the contract's state rules for ended tasks: ZEGO's current docs describe GetStatus for
running tasks only, so "task not found" (400000005) means `not_found` only for a task this
exporter has never seen; a task seen in any state keeps a known ending (`init_failed` with its
FailReason, or `stopped`) and otherwise becomes `stopped`. Each task's init failure is counted
once, whichever source reported it first. Snapshots for the collector are consistent and cost
one pass over the tasks. For storage it can keep a note of what changed (`take_changes`, latest
wins) and take back what a previous run knew (`restore`); it never reads or writes a file
itself, never calls the API and knows nothing of Prometheus.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, TypeVar

from zego_exporter.ratelimit import WaitFn, wait_on
from zego_exporter.responses import TaskStatus, clean_fail_reason
from zego_exporter.schedule import RESTORED, ROUTINE, URGENT, Schedule, Slot
from zego_exporter.states import (
    NOT_FOUND,
    STATUS_STATES,
    STATUS_STOPPED,
    TERMINAL_STATES,
    UNKNOWN,
    state_of,
)

# Endings that a later "task not found" confirms rather than replaces.
_KNOWN_ENDINGS: Final = frozenset({"init_failed", "stopped"})
_FAST_STATES: Final = frozenset({"initializing", "stopping"})

STATIC, FILE, DISCOVERED, CALLBACK = "static", "file", "discovered", "callback"
SOURCES: Final = (STATIC, FILE, DISCOVERED, CALLBACK)
# Per task, the sources that name it are kept as bits of a small int: a set costs 216 bytes.
_SOURCE_BIT: Final = {source: 1 << n for n, source in enumerate(SOURCES)}
_CONFIGURED_BITS: Final = _SOURCE_BIT[STATIC] | _SOURCE_BIT[FILE]
_SOURCES_OF_BITS: Final = tuple(
    tuple(source for source in SOURCES if bits & _SOURCE_BIT[source])
    for bits in range(1 << len(SOURCES)))

_UNKNOWN_PAIR: Final = ("", "")


@dataclass(frozen=True)
class RefreshPolicy:
    """How old each kind of task data may get before it is refreshed (seconds)."""

    interval: float = 30.0
    """Streaming tasks, and tasks in a state this version does not know."""
    fast_interval: float = 5.0
    """Initializing and stopping tasks, and the first retry of a failed lookup."""
    failure_backoff_cap: float = 60.0
    """Failed lookups are retried after fast_interval, doubling up to this."""
    discovery_interval: float = 3.0
    """How often discovery lists the running tasks (when it is on). The list shows Status 1
    and 3 only, so a task that fails sooner after its creation than this may never be seen;
    3 s catches every task that initializes for 5 s or more. The engine lists less often only
    for lists so large that listing would take more than LISTING_CPU_SHARE of a core."""
    callback_reconcile: float = 300.0
    """Tasks fed by callbacks are still polled this often, since delivery is not guaranteed."""
    retention: float = 3600.0
    """Discovered and callback tasks in a terminal state are forgotten after this long."""

    def listed_grace(self, listing_interval: float | None = None) -> float:
        """Tasks in the running list need no lookup until discovery has missed them twice:
        this long, when it lists every `listing_interval` (default: discovery_interval)."""
        every = self.discovery_interval if listing_interval is None else listing_interval
        return 2 * every + self.fast_interval


@dataclass(frozen=True, slots=True)
class TaskView:
    """What the collector may show of one task; replaced, never changed."""

    task_id: str
    room_id: str = ""
    stream_id: str = ""
    status: int | None = None
    state: str = UNKNOWN
    create_time: int | None = None
    fail_reason: str = ""
    last_success: float | None = None
    lookup_ok: bool | None = None


@dataclass(frozen=True)
class Snapshot:
    """A consistent picture of the tracker for one scrape."""

    taken_at: float
    tasks: list[TaskView]
    failures: dict[tuple[str, str], int]
    """Init failures by (room_id, stream_id), with 0 for every known pair that has none."""
    sources: dict[str, int]
    backlog: int
    api_up: bool | None


@dataclass(frozen=True, slots=True)
class SavedTask:
    """What storage keeps of one task: enough to carry its state, FailReason and whether its
    failure was counted across a restart."""

    view: TaskView
    sources: tuple[str, ...]
    failure_counted: bool = False
    terminal_since: float | None = None
    """When a lookup confirmed its ending (tracker clock); None while it runs."""
    callback_time: float | None = None
    """EventTime of the newest callback applied, so that an older one stays ignored."""


@dataclass(frozen=True)
class Changes:
    """What changed since the last `take_changes`, latest state only."""

    tasks: dict[str, SavedTask | None] = field(default_factory=dict)
    """By TaskId; None: the task was forgotten."""
    failures: dict[tuple[str, str], int | None] = field(default_factory=dict)
    """Init failures by (room_id, stream_id); None: the pair was forgotten."""

    def __bool__(self) -> bool:
        return bool(self.tasks or self.failures)


class _Entry(Slot):
    """The tracker's mutable bookkeeping for one task, with its place in the schedule."""

    __slots__ = (
        "asked_at",
        "attempts",
        "callback_applied_at",
        "callback_time",
        "failure_counted",
        "failures",
        "last_attempt",
        "listed",
        "sources",
        "terminal_since",
        "view",
    )

    def __init__(self, task_id: str) -> None:
        super().__init__()
        self.view = TaskView(task_id)
        self.sources = 0  # bits of _SOURCE_BIT
        self.attempts = 0
        self.last_attempt: float | None = None
        self.failures = 0
        self.failure_counted = False
        self.terminal_since: float | None = None
        self.listed = False  # in the latest running-task list from discovery
        self.callback_time: float | None = None  # EventTime of the newest callback applied
        self.callback_applied_at: float | None = None  # when (tracker clock) it was applied
        self.asked_at: float | None = None  # when the lookup in flight was claimed


class Tracker:
    """Thread-safe store and scheduler of tracked tasks."""

    def __init__(
        self, policy: RefreshPolicy | None = None, *, clock: Callable[[], float] = time.time,
        keep_changes: bool = False,
    ) -> None:
        """`keep_changes`: note what changes for `take_changes` (when storage is on)."""
        self.policy = policy or RefreshPolicy()
        self._clock = clock
        self._lock = threading.Lock()
        self._due_changed = threading.Condition(self._lock)
        self._answered = threading.Condition(self._lock)  # a claimed task got its result
        self._entries: dict[str, _Entry] = {}
        self._schedule = Schedule(self._entries, _touched)
        self._failures: dict[tuple[str, str], int] = {}
        self._pair_tasks: dict[tuple[str, str], int] = {}
        self._api_up: bool | None = None
        # TaskIds and pairs changed since the last take_changes; None when nobody takes them.
        self._changed_tasks: set[str] | None = set() if keep_changes else None
        self._changed_pairs: set[tuple[str, str]] = set()
        # With storage on, scrapes show each failure count only once it is written: a count a
        # kill -9 could still take back would go down after the restart, and increase() reads a
        # counter that goes down as a reset and counts its whole value again.
        self._written_failures: dict[tuple[str, str], int] | None = (
            {} if keep_changes else None)

    # -- sources --

    def set_configured(self, source: str, task_ids: Iterable[str], *,
                       let_go: bool = True) -> None:
        """The full list of TaskIds a configured source (static, file) names now; tasks it no
        longer names lose it as a source (`let_go` False: not yet), and are forgotten when no
        other source names them."""
        wanted = dict.fromkeys(task_ids)  # ordered, so output order follows configuration
        bit = _SOURCE_BIT[source]
        with self._lock:
            for task_id in wanted:
                self._add_source_locked(self._ensure_locked(task_id), bit)
            let_go_of = [task_id for task_id, entry in self._entries.items()
                         if entry.sources & bit and task_id not in wanted] if let_go else []
            for task_id in let_go_of:
                entry = self._entries[task_id]
                entry.sources &= ~bit
                self._changed_locked(task_id)
                if not entry.sources:
                    self._drop_locked(task_id)
            self._sources_told_locked()

    def task_ids(self) -> list[str]:
        with self._lock:
            return list(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    # -- results --

    def record_lookup(self, result: TaskStatus) -> None:
        """An answer of GetDigitalHumanStreamTaskStatus."""
        with self._lock:
            entry = self._entries.get(result.task_id)
            if entry is None:  # dropped while the request was in flight
                return
            now = self._clock()
            if self._answer_stands_locked(entry, now):
                self._store_locked(entry, result, now, source=None)

    def record_not_found(self, task_id: str) -> None:
        """ZEGO answered 400000005 for this task: it has ended, or it never existed.

        Which one, only what this exporter has seen of the task can tell (the contract's state
        rules): never seen in any state, it is `not_found`; known as `init_failed` or
        `stopped`, it stays so, FailReason and all; otherwise (last seen initializing,
        streaming, stopping, or in a state this version does not know) it has ended:
        `stopped`, with Status 5.
        """
        with self._lock:
            entry = self._entries.get(task_id)
            if entry is None:
                return
            now = self._clock()
            if not self._answer_stands_locked(entry, now):
                return
            old = entry.view
            if old.status is None:  # no source ever gave it a Status
                view = TaskView(task_id, old.room_id, old.stream_id, None, NOT_FOUND,
                                old.create_time, "", now, True)
            elif old.state in _KNOWN_ENDINGS:
                view = TaskView(task_id, old.room_id, old.stream_id, old.status, old.state,
                                old.create_time, old.fail_reason, now, True)
            else:
                view = TaskView(task_id, old.room_id, old.stream_id, STATUS_STOPPED,
                                STATUS_STATES[STATUS_STOPPED], old.create_time, "", now, True)
            self._replace_locked(entry, view)
            entry.listed = False
            self._settle_terminal_locked(entry, now)

    def record_lookup_failure(self, task_id: str) -> None:
        """A lookup got no usable answer; the last good data stays as it was."""
        with self._lock:
            entry = self._entries.get(task_id)
            if entry is None:
                return
            now = self._clock()
            self._attempted_locked(entry, now)
            entry.failures += 1
            old = entry.view
            if old.lookup_ok is not False:
                self._replace_locked(entry, _with(old, lookup_ok=False))
            backoff = min(self.policy.failure_backoff_cap,
                          self.policy.fast_interval * 2 ** min(entry.failures - 1, 16))
            self._reschedule_locked(entry, now + backoff, entry.priority)

    def record_discovery(self, running: list[TaskStatus], *, listed_for: float | None = None,
                         asked_at: float | None = None) -> list[str]:
        """The full running-task list. Returns the TaskIds that just left it (looked up next).

        A listed task needs no lookup for `listed_for` seconds (default: the policy's
        listed_grace); the engine passes what its actual listing interval implies.
        `asked_at` (this tracker's clock) is when the list was requested: a task a callback
        changed since then keeps what the callback said, and a task whose ending a lookup
        confirmed stays ended whenever the list was asked.
        """
        grace = self.policy.listed_grace() if listed_for is None else listed_for
        with self._lock:
            now = self._clock()
            listed_now = set()
            for result in running:
                listed_now.add(result.task_id)
                entry = self._entries.get(result.task_id)
                if entry is not None and (_predates_callback(entry, asked_at)
                                          or _reopens_ending(entry, result.status)):
                    continue
                entry = self._ensure_locked(result.task_id)
                self._add_source_locked(entry, _SOURCE_BIT[DISCOVERED])
                entry.listed = True
                self._store_locked(entry, result, now, source=DISCOVERED, listed_for=grace)
            left = []
            for task_id, entry in self._entries.items():
                if entry.listed and task_id not in listed_now:
                    entry.listed = False
                    left.append(task_id)
                    self._reschedule_locked(entry, now, URGENT)
            self._sources_told_locked()
            return left

    def record_callback(self, result: TaskStatus, event_time: float | None = None) -> bool:
        """A stream-task status callback (EventType 3): trusted now, confirmed by polling.

        `event_time` is when ZEGO says the change happened (its EventTime; None if unknown).
        Callbacks arrive out of order: one older than the newest already applied to the task
        changes nothing and returns False. An equal time is applied again (ZEGO's retries).
        Nor can a callback reopen a task whose ending a lookup has confirmed.
        """
        with self._lock:
            entry = self._entries.get(result.task_id)
            if entry is not None and _reopens_ending(entry, result.status):
                return False
            if (event_time is not None and entry is not None
                    and entry.callback_time is not None and event_time < entry.callback_time):
                return False
            now = self._clock()
            entry = self._ensure_locked(result.task_id)
            if event_time is not None and event_time != entry.callback_time:
                entry.callback_time = event_time
                self._changed_locked(result.task_id)
            entry.callback_applied_at = now
            self._add_source_locked(entry, _SOURCE_BIT[CALLBACK])
            self._store_locked(entry, result, now, source=CALLBACK)
            self._sources_told_locked()
            return True

    def now(self) -> float:
        """This tracker's clock (for `record_discovery`'s asked_at)."""
        return self._clock()

    def record_api(self, up: bool) -> None:
        """Whether the latest API call got a usable answer (reachable, signature accepted)."""
        self._api_up = up

    @property
    def api_up(self) -> bool | None:
        return self._api_up

    # -- scheduling --

    def claim_due(self) -> str | None:
        """The most urgent, then stalest (`_touched`), task due now, marked in flight; None if
        none is due. Every claimed task must get exactly one record_* call."""
        with self._lock:
            now = self._clock()
            task_id = self._schedule.claim(now)
            if task_id is not None:
                self._entries[task_id].asked_at = now
            return task_id

    def next_due_in(self) -> float | None:
        """Seconds until the next task falls due (0 if one is due now); None if none will."""
        with self._lock:
            return self._schedule.next_due_in(self._clock())

    def wait_for_due(self, timeout: float) -> None:
        """Block until something may have fallen due, or `timeout` seconds passed."""
        with self._due_changed:
            self._due_changed.wait(timeout)

    def wake_waiters(self) -> None:
        """Release every `wait_for_due` now (on shutdown)."""
        with self._due_changed:
            self._due_changed.notify_all()

    def urgent_or_in_flight(self) -> set[str]:
        """Tasks a scrape would like answered first: never fetched, just left, or in flight."""
        with self._lock:
            now = self._clock()
            return {task_id for task_id, e in self._entries.items() if e.pending(now)}

    def is_settled(self, task_ids: set[str]) -> bool:
        """True when none of `task_ids` is in flight or urgently due any more."""
        with self._lock:
            return not self._unsettled_locked(task_ids, in_flight_only=False)

    def wait_settled(self, task_ids: set[str], timeout: float, *, in_flight_only: bool = False,
                     wait: WaitFn = wait_on) -> bool:
        """True at once when none of `task_ids` is in flight or urgently due (`in_flight_only`:
        in flight); else waits up to `timeout` s for the next result to be recorded, and then
        says whether they are settled. `wait` is how to wait (tests move a clock instead)."""
        with self._answered:
            if not self._unsettled_locked(task_ids, in_flight_only=in_flight_only):
                return True
            wait(self._answered, timeout)
            return not self._unsettled_locked(task_ids, in_flight_only=in_flight_only)

    def first_round_done(self) -> bool:
        """Every configured task has been asked about at least once, by its own lookup or by
        a running list that named it (which then spares it the lookup for a while). What a
        previous run knew counts only for endings a lookup had confirmed."""
        with self._lock:
            return all(
                e.attempts > 0 or e.terminal_since is not None
                or (e.view.last_success is not None and e.priority != RESTORED)
                for e in self._entries.values() if e.sources & _CONFIGURED_BITS)

    # -- housekeeping --

    def expire(self) -> int:
        """Forget discovered and callback tasks that have been terminal longer than retention."""
        with self._lock:
            cutoff = self._clock() - self.policy.retention
            old = [
                task_id for task_id, e in self._entries.items()
                if e.terminal_since is not None and e.terminal_since <= cutoff
                and not e.sources & _CONFIGURED_BITS and not e.in_flight
            ]
            for task_id in old:
                self._drop_locked(task_id)
            return len(old)

    # -- views --

    def snapshot(self) -> Snapshot:
        with self._lock:
            now = self._clock()
            tasks = []
            by_bits: dict[int, int] = {}  # tasks per combination of sources
            backlog = 0
            for entry in self._entries.values():
                tasks.append(entry.view)
                by_bits[entry.sources] = by_bits.get(entry.sources, 0) + 1
                if entry.due <= now and entry.view.state not in TERMINAL_STATES:
                    backlog += 1
            sources = {source: sum(count for bits, count in by_bits.items() if bits & bit)
                       for source, bit in _SOURCE_BIT.items()}
            # A zero for every known pair, so increase() sees 0 -> 1 when one of them fails.
            failures = dict.fromkeys(self._pair_tasks, 0)
            failures.pop(_UNKNOWN_PAIR, None)
            failures.update(self._failures)
            if (written := self._written_failures) is not None:
                failures = {pair: min(count, written.get(pair, 0))
                            for pair, count in failures.items()}
            return Snapshot(now, tasks, failures, sources, backlog, self._api_up)

    def view(self, task_id: str) -> TaskView | None:
        with self._lock:
            entry = self._entries.get(task_id)
            return None if entry is None else entry.view

    # -- storage --

    def restore(self, tasks: Iterable[SavedTask],
                failures: Mapping[tuple[str, str], int]) -> int:
        """Take back what a previous run knew, before any source is set; returns the number
        of tasks that were not known to have ended: they are looked up before anything else.

        Restored tasks count as seen (the state rules), keep their sources until a source says
        otherwise (`set_configured`, retention), and each keeps whether its failure was
        counted; the failure counts per room and stream go on from their saved values.
        """
        unfinished = 0
        with self._lock:
            for saved in tasks:
                bits = sum(_SOURCE_BIT.get(source, 0) for source in set(saved.sources))
                if not bits:
                    continue
                entry = self._ensure_locked(saved.view.task_id)
                entry.sources |= bits
                self._replace_locked(entry, saved.view)
                entry.failure_counted = saved.failure_counted
                entry.callback_time = saved.callback_time
                if saved.terminal_since is not None and saved.view.state in TERMINAL_STATES:
                    entry.terminal_since = saved.terminal_since
                    self._reschedule_locked(entry, math.inf, ROUTINE)
                else:
                    unfinished += 1
                    self._reschedule_locked(entry, -math.inf, RESTORED)
            saved_pairs = dict(failures)
            kept = {pair: count for pair, count in saved_pairs.items()
                    if pair in self._pair_tasks}
            self._failures.update(kept)
            if self._written_failures is not None:
                self._written_failures.update(kept)
            if self._changed_tasks is not None:
                # What was just read needs no writing back; a count without a task does not
                # stay (as at run time, a pair's count goes when its last task does).
                self._changed_tasks.clear()
                self._changed_pairs = {pair for pair in saved_pairs
                                       if pair not in self._pair_tasks}
            self._due_changed.notify_all()
        return unfinished

    def take_changes(self) -> Changes:
        """What changed since the last call: each changed task and failure count once, as it
        is now (None where it was forgotten). Empty unless made with keep_changes."""
        with self._lock:
            if self._changed_tasks is None or not (self._changed_tasks or self._changed_pairs):
                return Changes()
            task_ids, self._changed_tasks = self._changed_tasks, set()
            pairs, self._changed_pairs = self._changed_pairs, set()
            entries = self._entries
            # Plain tuples under the lock, records after it: building 10,000 frozen records
            # here held the lock for 30 ms, a wait for every scrape and lookup meanwhile.
            taken = [(task_id, None if (e := entries.get(task_id)) is None else (
                e.view, e.sources, e.failure_counted, e.terminal_since, e.callback_time))
                for task_id in task_ids]
            failures = {pair: self._failures.get(pair) for pair in pairs}
        tasks = {task_id: None if saved is None else SavedTask(
            saved[0], _SOURCES_OF_BITS[saved[1]], *saved[2:]) for task_id, saved in taken}
        return Changes(tasks, failures)

    def note_all_changed(self) -> None:
        """Note every task and failure count as changed: the storage file was started anew and
        must be given everything."""
        with self._lock:
            if self._changed_tasks is None:
                return
            self._changed_tasks.update(self._entries)
            self._changed_pairs.update(self._failures)

    def changes_written(self, changes: Changes) -> None:
        """Storage has committed `changes`: the failure counts in them may be shown now."""
        with self._lock:
            written = self._written_failures
            if written is None:
                return
            for pair, count in changes.failures.items():
                if count is None:
                    written.pop(pair, None)
                else:
                    written[pair] = count

    # -- internals (lock held) --

    def _ensure_locked(self, task_id: str) -> _Entry:
        entry = self._entries.get(task_id)
        if entry is None:
            entry = self._entries[task_id] = _Entry(task_id)
            self._pair_tasks[_UNKNOWN_PAIR] = self._pair_tasks.get(_UNKNOWN_PAIR, 0) + 1
            self._reschedule_locked(entry, -math.inf, URGENT)
            self._changed_locked(task_id)
        return entry

    def _drop_locked(self, task_id: str) -> None:
        entry = self._entries.pop(task_id)
        self._forget_pair_locked(entry.view)
        self._changed_locked(task_id)

    def _changed_locked(self, task_id: str) -> None:
        if self._changed_tasks is not None:
            self._changed_tasks.add(task_id)

    def _add_source_locked(self, entry: _Entry, bit: int) -> None:
        if not entry.sources & bit:
            entry.sources |= bit
            self._changed_locked(entry.view.task_id)

    def _unsettled_locked(self, task_ids: set[str], *, in_flight_only: bool) -> bool:
        now = self._clock()
        return any(entry.pending(now, in_flight_only=in_flight_only)
                   for task_id in task_ids if (entry := self._entries.get(task_id)) is not None)

    def _sources_told_locked(self) -> None:
        """The configuration, a running list or a callback changed tasks: wake the lookup
        workers, and the scrapes waiting for tasks that this may have settled without a lookup."""
        self._due_changed.notify_all()
        self._answered.notify_all()

    def _attempted_locked(self, entry: _Entry, now: float) -> None:
        self._answered.notify_all()
        entry.in_flight = False
        entry.asked_at = None
        entry.attempts += 1
        entry.last_attempt = now

    def _answer_stands_locked(self, entry: _Entry, now: float) -> bool:
        """A lookup of the claimed `entry` answered: False when the answer may be older than a
        callback applied meanwhile, whose word then stands, and whose plan stays: its heap item
        may have fallen due while the lookup was in flight, and claim_due drops those."""
        asked_at = entry.asked_at
        self._attempted_locked(entry, now)
        if not _predates_callback(entry, asked_at):
            return True
        if not entry.scheduled:
            self._reschedule_locked(entry, entry.due, entry.priority)
        return False

    def _store_locked(
        self, entry: _Entry, result: TaskStatus, now: float, source: str | None,
        listed_for: float = 0.0,
    ) -> None:
        """Good data arrived (lookup, running list or callback): keep it and plan the next."""
        old = entry.view
        state = state_of(result.status)
        self._replace_locked(entry, TaskView(
            task_id=old.task_id,
            # Room and stream, once known, are remembered when an answer leaves them out.
            room_id=_kept(result.room_id or old.room_id, old.room_id),
            stream_id=_kept(result.stream_id or old.stream_id, old.stream_id),
            status=result.status,
            state=state,
            create_time=_kept(result.create_time or old.create_time, old.create_time),
            fail_reason=_kept(clean_fail_reason(result.fail_reason), old.fail_reason)
            if state == "init_failed" else "",
            last_success=now,
            # A callback is not a lookup: it says nothing about whether lookups work.
            lookup_ok=old.lookup_ok if source == CALLBACK else True,
        ))
        entry.failures = 0
        if state == "init_failed" and not entry.failure_counted:
            entry.failure_counted = True
            pair = (entry.view.room_id, entry.view.stream_id)
            self._failures[pair] = self._failures.get(pair, 0) + 1
            self._changed_locked(entry.view.task_id)
            if self._changed_tasks is not None:
                self._changed_pairs.add(pair)
        if state in TERMINAL_STATES:
            entry.listed = False
            if source == CALLBACK and entry.terminal_since is None:
                # Callbacks are not guaranteed, nor ordered: confirm an ending once by polling.
                self._reschedule_locked(entry, now + self.policy.fast_interval, URGENT)
            else:
                self._settle_terminal_locked(entry, now)
            return
        if entry.terminal_since is not None:
            entry.terminal_since = None
            self._changed_locked(entry.view.task_id)
        if source == DISCOVERED:
            target = listed_for
        elif source == CALLBACK:
            target = self.policy.callback_reconcile
        elif state in _FAST_STATES:
            target = self.policy.fast_interval
        else:
            target = self.policy.interval
        self._reschedule_locked(entry, now + target, ROUTINE)

    def _settle_terminal_locked(self, entry: _Entry, now: float) -> None:
        """A terminal state confirmed by a lookup: never polled again."""
        if entry.terminal_since is None:
            entry.terminal_since = now
            self._changed_locked(entry.view.task_id)
        self._reschedule_locked(entry, math.inf, ROUTINE)

    def _replace_locked(self, entry: _Entry, view: TaskView) -> None:
        old = entry.view
        if (old.room_id, old.stream_id) != (view.room_id, view.stream_id):
            self._forget_pair_locked(old)
            pair = (view.room_id, view.stream_id)
            self._pair_tasks[pair] = self._pair_tasks.get(pair, 0) + 1
        if self._changed_tasks is not None and _durable(old) != _durable(view):
            self._changed_tasks.add(view.task_id)
        entry.view = view

    def _forget_pair_locked(self, view: TaskView) -> None:
        pair = (view.room_id, view.stream_id)
        count = self._pair_tasks.get(pair)
        if count is None:
            return
        if count > 1:
            self._pair_tasks[pair] = count - 1
        else:
            del self._pair_tasks[pair]
            if self._failures.pop(pair, None) is not None and self._changed_tasks is not None:
                self._changed_pairs.add(pair)

    def _reschedule_locked(self, entry: _Entry, due: float, priority: int) -> None:
        self._schedule.plan(entry.view.task_id, entry, due, priority)
        if due <= self._clock():
            self._due_changed.notify_all()


_T = TypeVar("_T")


def _touched(entry: _Entry) -> float:
    """When the task was last answered or attempted, whichever is later: the schedule's
    staleness. A task whose lookups keep failing would otherwise stay the stalest and, while
    throttling shrinks the budget, take every turn from the tasks behind it."""
    return max(-math.inf if t is None else t for t in (entry.view.last_success,
                                                         entry.last_attempt))


def _kept(value: _T, old: _T) -> _T:
    """`old` when `value` equals it. Every answer brings new copies of the same strings;
    keeping the task's own means the snapshot a slow scrape still holds shares them with the
    tracker instead of pinning a second copy of each."""
    return old if value == old else value


def _predates_callback(entry: _Entry, asked_at: float | None) -> bool:
    """Whether an answer to a request sent at `asked_at` may be older than the latest callback
    applied to the task: then the callback's word stands (a lookup sent after it confirms)."""
    applied = entry.callback_applied_at
    return asked_at is not None and applied is not None and applied >= asked_at


def _reopens_ending(entry: _Entry, status: int) -> bool:
    """Whether `status` says a task is running again whose ending (init_failed, stopped) a
    lookup confirmed. Tasks never come back: such news is stale (a list asked before that
    lookup, a callback delivered late), and taking it would lose the known ending."""
    return (entry.terminal_since is not None and entry.view.state in _KNOWN_ENDINGS
            and state_of(status) not in TERMINAL_STATES)


def _durable(view: TaskView) -> tuple[object, ...]:
    """What storage must write when it changes. When a task was last fetched, and whether that
    worked, change with every answer: they are written along with the rest, not for
    themselves (10,000 listed tasks would otherwise mean 10,000 rows every 3 s)."""
    return (view.status, view.state, view.room_id, view.stream_id, view.create_time,
            view.fail_reason)


def _with(view: TaskView, *, lookup_ok: bool) -> TaskView:
    return TaskView(view.task_id, view.room_id, view.stream_id, view.status, view.state,
                    view.create_time, view.fail_reason, view.last_success, lookup_ok)
