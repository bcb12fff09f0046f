"""Callbacks from the simulated API: a signed EventType 3 POST for every task status change.

`CallbackSender` watches a `World`: a background thread compares every task's status with its
last look (woken at once by changes made by hand, otherwise every `check_interval`) and reads
the task's schedule to date each lifecycle step, so that steps between two looks are all sent,
with their own EventTime. Each event is signed as zego-api.md section 5 documents and POSTed to
one URL by a delivery thread, with ZEGO's retry schedule after a non-2xx answer or none (2, 4,
8, 16 and 32 s after the previous attempt, multiplied by `retry_scale` for tests). Faults
switchable at run time (`CallbackFaults`) send bad signatures, duplicates, events out of order,
or drop events as a lost delivery would. `stats` counts what happened. The sender must never
POST anywhere but its URL, never log or expose the callback secret, and never read the time
except through the injected clocks.
"""

from __future__ import annotations

import contextlib
import heapq
import http.client
import json
import logging
import math
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any
from urllib.parse import urlsplit

from zego_exporter.signing import Secret, callback_signature, new_nonce
from zego_exporter.simulator.world import World
from zego_exporter.states import STATUS_INIT_FAILED

_log = logging.getLogger(__name__)

EVENT_TASK_STATUS = 3
RETRY_GAPS = (2.0, 4.0, 8.0, 16.0, 32.0)
"""Seconds from one attempt to the next after a non-2xx answer or none (zego-api.md)."""
_WRONG_SECRET = Secret("not-the-callback-secret")
_ATTEMPT_LOG_SIZE = 10_000
_MAX_ANSWER = 64 * 1024


@dataclass(frozen=True)
class CallbackFaults:
    """What goes wrong with deliveries; every field off means ZEGO on a good day."""

    bad_signature: bool = False
    """Sign with a wrong secret."""
    duplicate: bool = False
    """Deliver every event twice (the same body)."""
    out_of_order: bool = False
    """Hold each event back until the next one is sent (or `hold` seconds passed)."""
    drop: bool = False
    """Deliver nothing, as when ZEGO loses an event."""

    def to_json(self) -> dict[str, bool]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, doc: object) -> CallbackFaults:
        """From `{"drop": true, ...}`; ValueError naming the problem otherwise."""
        if not isinstance(doc, dict):
            raise ValueError("callback faults must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = set(doc) - known
        if unknown:
            raise ValueError(f"unknown callback faults {sorted(unknown)}; known: {sorted(known)}")
        for name, value in doc.items():
            if not isinstance(value, bool):
                raise ValueError(f"callback fault {name} must be true or false")
        return cls(**doc)


@dataclass(frozen=True)
class DeliveryStats:
    """Counters of the sender since it was made."""

    events: int = 0
    """Events produced (status changes noticed, or handed to `deliver`)."""
    sent: int = 0
    """HTTP attempts: first tries, duplicates and retries."""
    acked: int = 0
    """Attempts answered with a 2xx status."""
    retried: int = 0
    """Attempts that were retries."""
    given_up: int = 0
    """Deliveries abandoned after the last retry failed too."""
    dropped: int = 0
    """Events never sent (the drop fault)."""

    def to_json(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class Attempt:
    """One HTTP attempt, for tests that check timing and outcomes."""

    at: float
    """When it started, on the monotonic clock."""
    task_id: str
    event_type: int | None
    attempt: int
    """0 for the first try, 1..5 for the retries."""
    outcome: str
    """The HTTP status answered (e.g. "200"), "timeout" or "connection_error"."""


@dataclass(frozen=True, slots=True)
class _Delivery:
    body: bytes
    task_id: str
    event_type: int | None


class CallbackSender:
    """Watches a world and delivers signed callbacks to `url`; `start()`, then `stop()`.

    `retry_scale` multiplies RETRY_GAPS; `timeout` is how long an attempt may take before it
    counts as no answer; `hold` bounds how long the out_of_order fault keeps an event back.
    `monotonic` and `wait` (how the delivery thread waits on its condition for the next
    delivery due, None: until notified) let tests run the retry schedule on a fake clock.
    Raises ValueError for a URL that is not http(s) or an empty secret.
    """

    def __init__(
        self,
        url: str,
        secret: Secret,
        world: World,
        *,
        app_id: int,
        retry_scale: float = 1.0,
        timeout: float = 5.0,
        check_interval: float = 0.1,
        hold: float = 1.0,
        faults: CallbackFaults | None = None,
        ssl_context: ssl.SSLContext | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        wait: Callable[[threading.Condition, float | None], object] = threading.Condition.wait,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"callback URL {url!r} must be an http(s) URL, e.g. "
                             "http://127.0.0.1:9877/zego/callback")
        if not secret:
            raise ValueError("a callback secret is needed to sign callbacks")
        if not retry_scale >= 0 or math.isinf(retry_scale):
            raise ValueError(f"retry scale must be a number >= 0, got {retry_scale}")
        self.url = url
        self._parts = parts
        self._secret = secret
        self._world = world
        self._app_id = app_id
        self.retry_gaps = tuple(gap * retry_scale for gap in RETRY_GAPS)
        self._timeout = timeout
        self._check_interval = check_interval
        self._hold = hold
        self._ssl_context = ssl_context
        self._mono = monotonic
        self._wait = wait
        self.faults = faults or CallbackFaults()

        self._cond = threading.Condition()
        self._queue: list[tuple[float, int, int, _Delivery]] = []  # (due, seq, attempt, ...)
        self._seq = 0
        self._held: tuple[list[_Delivery], float] | None = None  # (deliveries, send by)
        self._in_flight = 0
        self._connection: http.client.HTTPConnection | None = None
        self._stats = DeliveryStats()
        self._attempts: deque[Attempt] = deque(maxlen=_ATTEMPT_LOG_SIZE)

        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._seen: dict[str, int] = {}
        self._last_event_ms: dict[str, int] = {}
        self._checked_at = 0.0
        self._looks_started = self._looks_done = 0
        self._threads: list[threading.Thread] = []
        self._unsubscribe: Callable[[], None] | None = None

    def __repr__(self) -> str:
        return f"CallbackSender(url={self.url!r})"

    # -- running -------------------------------------------------------------------------

    def start(self) -> CallbackSender:
        """Take the world's current statuses as known and start watching and delivering."""
        if self._threads or self._stopping.is_set():
            raise RuntimeError("the callback sender is already running or has been stopped")
        self._checked_at = self._world.now()
        self._seen = {task.task_id: task.status for task in self._world.tasks()}
        self._unsubscribe = self._world.subscribe(self._wake.set)
        for name, target in (("watch", self._watch_loop), ("deliver", self._deliver_loop)):
            thread = threading.Thread(target=target, name=f"zego-simulator-callback-{name}",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop watching and delivering; pending deliveries are forgotten. Idempotent."""
        self._stopping.set()
        self._wake.set()
        if self._unsubscribe is not None:
            self._unsubscribe()
        with self._cond:
            self._cond.notify_all()
            connection = self._connection
        if connection is not None and connection.sock is not None:
            with contextlib.suppress(OSError):  # hang up on an attempt in flight
                connection.sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(self._timeout + 1.0)

    # -- what tests read and do ------------------------------------------------------------

    @property
    def stats(self) -> DeliveryStats:
        with self._cond:
            return self._stats

    def attempts(self) -> list[Attempt]:
        """The HTTP attempts made (the last 10,000), oldest first."""
        with self._cond:
            return list(self._attempts)

    def wait_idle(self, timeout: float) -> bool:
        """Look for changes now, then wait until nothing is queued, held or in flight.

        True if that happened within `timeout` seconds.
        """
        deadline = self._mono() + timeout
        with self._cond:
            look = self._looks_started + 1  # the first look that starts after this call
        if self._threads:
            self.check()
        with self._cond:
            while (self._threads and self._looks_done < look) or (
                    self._queue or self._held is not None or self._in_flight):
                left = deadline - self._mono()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
            return True

    def deliver(self, doc: dict[str, Any]) -> None:
        """Sign and send any callback body (e.g. an EventType no exporter knows).

        AppId is added when missing; Nonce, Timestamp and Signature are always set here.
        """
        body = dict(doc)
        body.setdefault("AppId", self._app_id)
        event_type = body.get("EventType")
        task_id = body.get("TaskId")
        self._enqueue(self._signed(body), task_id if isinstance(task_id, str) else "",
                      event_type if isinstance(event_type, int) else None)

    def check(self) -> None:
        """Look for status changes now (the watcher thread does this by itself)."""
        self._wake.set()

    # -- watching --------------------------------------------------------------------------

    def _watch_loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self._check_interval)
            self._wake.clear()
            if self._stopping.is_set():
                return
            with self._cond:
                self._looks_started += 1
            try:
                self._look()
            except Exception:  # a bug must not end callbacks silently for the whole run
                _log.exception("error while looking for task status changes")
            with self._cond:
                self._looks_done += 1
                self._cond.notify_all()

    def _look(self) -> None:
        """Send an event for every status change since the last look."""
        world = self._world
        # Read the time first: a step between now and the table's own reading shows up in
        # the statuses and is dated now; the next look then finds no change for it.
        now = world.now()
        tasks = world.tasks()
        seen: dict[str, int] = {}
        for task in tasks:
            seen[task.task_id] = task.status
            before = self._seen.get(task.task_id)
            if before == task.status:
                continue
            for at, status in self._steps(task.task_id, task.status, before, now):
                last_ms = self._last_event_ms.get(task.task_id, 0)
                event_ms = max(int(at * 1000), last_ms)  # never older than the one before
                self._last_event_ms[task.task_id] = event_ms
                detail: dict[str, Any] = {"Status": status, "RoomId": task.room_id,
                                          "StreamId": task.stream_id}
                if status == STATUS_INIT_FAILED:
                    detail["FailReason"] = task.fail_reason
                self._enqueue(self._signed({
                    "AppId": self._app_id, "EventType": EVENT_TASK_STATUS,
                    "EventTime": event_ms, "TaskId": task.task_id, "Detail": detail,
                }), task.task_id, EVENT_TASK_STATUS)
        for task_id in self._last_event_ms.keys() - seen.keys():
            del self._last_event_ms[task_id]  # gone: no status, no more events
        self._seen = seen
        self._checked_at = now

    def _steps(self, task_id: str, status: int, before: int | None,
               now: float) -> list[tuple[float, int]]:
        """The (time, Status) changes of a task since the last look, oldest first."""
        schedule = self._world.schedule(task_id) or []
        steps = [(at, step) for at, step in schedule
                 if step is not None and self._checked_at < at <= now]
        if not steps or steps[-1][1] != status:
            steps.append((now, status))  # pinned by hand: the schedule was rewritten
        changes = []
        for at, step in steps:
            if step != before:
                changes.append((at, step))
                before = step
        return changes

    # -- delivering ------------------------------------------------------------------------

    def _signed(self, doc: dict[str, Any]) -> bytes:
        nonce = new_nonce()
        timestamp = str(int(self._world.now()))
        secret = _WRONG_SECRET if self.faults.bad_signature else self._secret
        doc.update(Nonce=nonce, Timestamp=timestamp,
                   Signature=callback_signature(secret, timestamp, nonce))
        return json.dumps(doc, separators=(",", ":")).encode()

    def _enqueue(self, body: bytes, task_id: str, event_type: int | None) -> None:
        faults = self.faults
        with self._cond:
            self._stats = replace(self._stats, events=self._stats.events + 1)
            if faults.drop:
                self._stats = replace(self._stats, dropped=self._stats.dropped + 1)
                return
            deliveries = [_Delivery(body, task_id, event_type)] * (2 if faults.duplicate else 1)
            now = self._mono()
            if faults.out_of_order:
                if self._held is None:
                    self._held = (deliveries, now + self._hold)
                    self._cond.notify_all()
                    return
                held, _ = self._held
                self._held = None
                deliveries += held  # the later event overtakes the held one
            for delivery in deliveries:
                self._push_locked(now, 0, delivery)
            self._cond.notify_all()

    def _push_locked(self, due: float, attempt: int, delivery: _Delivery) -> None:
        self._seq += 1  # unique, so deliveries themselves are never compared
        heapq.heappush(self._queue, (due, self._seq, attempt, delivery))

    def _deliver_loop(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stopping.is_set():
                        return
                    now = self._mono()
                    if self._held is not None and self._held[1] <= now:
                        for delivery in self._held[0]:
                            self._push_locked(now, 0, delivery)
                        self._held = None
                    if self._queue and self._queue[0][0] <= now:
                        _, _, attempt, delivery = heapq.heappop(self._queue)
                        self._in_flight += 1
                        break
                    wake_at = [self._queue[0][0]] if self._queue else []
                    if self._held is not None:
                        wake_at.append(self._held[1])
                    self._wait(self._cond, min(wake_at) - now if wake_at else None)
            started = self._mono()
            outcome = self._post(delivery.body)
            with self._cond:
                self._in_flight -= 1
                self._attempts.append(Attempt(started, delivery.task_id, delivery.event_type,
                                              attempt, outcome))
                acked = outcome.isdigit() and 200 <= int(outcome) < 300
                stats = replace(self._stats, sent=self._stats.sent + 1,
                                acked=self._stats.acked + acked,
                                retried=self._stats.retried + (attempt > 0))
                if not acked and attempt < len(self.retry_gaps):
                    self._push_locked(started + self.retry_gaps[attempt], attempt + 1, delivery)
                elif not acked:
                    stats = replace(stats, given_up=stats.given_up + 1)
                    _log.debug("callback given up after %d attempts: %s", attempt + 1, outcome)
                self._stats = stats
                self._cond.notify_all()

    def _post(self, body: bytes) -> str:
        """One attempt; the HTTP status as text, "timeout" or "connection_error"."""
        parts = self._parts
        connection: http.client.HTTPConnection
        if parts.scheme == "https":
            connection = http.client.HTTPSConnection(
                parts.hostname or "", parts.port, timeout=self._timeout,
                context=self._ssl_context)
        else:
            connection = http.client.HTTPConnection(parts.hostname or "", parts.port,
                                                    timeout=self._timeout)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        with self._cond:
            self._connection = connection
        try:
            connection.request("POST", path, body=body, headers={
                "Content-Type": "application/json", "User-Agent": "zego-simulator-callbacks"})
            response = connection.getresponse()
            response.read(_MAX_ANSWER)
            return str(response.status)
        except TimeoutError:
            return "timeout"
        except (OSError, http.client.HTTPException):
            return "connection_error"
        finally:
            with self._cond:
                self._connection = None
            connection.close()
