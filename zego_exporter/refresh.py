"""The refresh engine: keeps the tracker fresh while spending at most the API budget.

A few worker threads take the most urgent, stalest due task from the tracker and look it up
(GetDigitalHumanStreamTaskStatus), each start paced by that Action's limiter; one discovery
thread lists the running tasks (QueryDigitalHumanStreamTasks) once per interval, which
refreshes all of them in a single call. Refreshing follows demand: it runs while the exporter
is being scraped and pauses when nobody has scraped for a while. Failures slow it down
(jittered backoff, fewer usable slots) instead of hammering ZEGO. It never renders metrics and
never raises into its caller: every failure ends up as data in the tracker.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from zego_exporter.errors import (
    CODE_SIGNATURE_EXPIRED,
    CODE_SIGNATURE_INVALID,
    TaskNotFound,
    ZegoError,
)
from zego_exporter.ratelimit import Permit, SlidingWindowLimiter
from zego_exporter.responses import ACTION_GET_STATUS, ACTION_QUERY_TASKS, TaskStatus
from zego_exporter.tracker import Tracker

log = logging.getLogger(__name__)

# After ZEGO rejects our signature or AppId, ask again this often (one probe at a time).
REJECTED_RETRY_SECONDS = 30.0
# Repeat a log line about an ongoing API problem at most this often.
PROBLEM_LOG_EVERY = 300.0


class TaskApi(Protocol):
    """What the engine needs of the client (ZegoClient satisfies it)."""

    def get_task_status(self, task_id: str) -> TaskStatus: ...

    def query_running_tasks(self) -> list[TaskStatus]: ...


class Refresher:
    """Background refreshing of the tracker's tasks within per-Action rate limits."""

    def __init__(
        self,
        api: TaskApi,
        tracker: Tracker,
        limiters: dict[str, SlidingWindowLimiter],
        *,
        workers: int = 4,
        discovery: bool = True,
        idle_after: float | None = 600.0,
        rejected_retry: float = REJECTED_RETRY_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api = api
        self._tracker = tracker
        self._limiters = limiters
        self._workers = workers
        self.discovery = discovery
        self._idle_after = idle_after
        self._rejected_retry = rejected_retry
        self._mono = monotonic
        self._stop = threading.Event()
        self._demand = threading.Event()
        self._last_demand = monotonic()  # starting counts as demand: get ready before scrapes
        self._threads: list[threading.Thread] = []
        self._discovery_attempted = False
        self._ready = False
        self._idle = False
        self._problem: str | None = None
        self._problem_logged_at = -PROBLEM_LOG_EVERY
        self._log_lock = threading.Lock()
        self._looking_up: set[str] = set()  # TaskIds whose lookup is in flight right now
        self._looking_up_lock = threading.Lock()

    # -- lifecycle --

    def start(self) -> None:
        targets: list[tuple[str, Callable[[], None]]] = [
            (f"lookup-{n}", self._lookup_loop) for n in range(self._workers)
        ]
        if self.discovery:
            targets.append(("discovery", self._discovery_loop))
        targets.append(("housekeeping", self._housekeeping_loop))
        for name, target in targets:
            thread = threading.Thread(target=target, name=f"zego-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._demand.set()
        for limiter in self._limiters.values():
            limiter.close()
        self._tracker.wake_waiters()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()

    # -- what the web layer asks --

    def touch(self) -> None:
        """A scrape arrived: keep refreshing (and resume if we were idle)."""
        self._last_demand = self._mono()
        if self._idle:
            self._idle = False
            log.info("scraped again: resuming API calls")
        self._demand.set()

    @property
    def ready(self) -> bool:
        """The first API round is done: every configured task asked once, discovery tried."""
        if not self._ready:
            self._ready = (self._discovery_attempted or not self.discovery) and (
                self._tracker.first_round_done()
            )
        return self._ready

    def wait_for_fresh(self, timeout: float) -> bool:
        """Wait up to `timeout` s for lookups in flight and urgent ones to finish; True if done.

        While backing off past that time no urgent lookup can start, so then only lookups
        already in flight are waited for.
        """
        pending = self._tracker.urgent_or_in_flight()
        give_up_at = self._mono() + timeout
        limiter = self._limiters.get(ACTION_GET_STATUS)
        while pending and not self._tracker.is_settled(pending):
            left = give_up_at - self._mono()
            if left <= 0:
                return False
            if limiter is not None and limiter.paused_until - limiter.now() >= left:
                with self._looking_up_lock:
                    if not pending & self._looking_up:
                        return False
            time.sleep(0.01)
        return True

    # -- the loops --

    def _lookup_loop(self) -> None:
        limiter = self._limiters[ACTION_GET_STATUS]
        while self._wait_for_demand():
            permit = limiter.acquire(deadline=limiter.now() + 1.0)
            if permit is None:
                continue
            task_id = self._tracker.claim_due()
            if task_id is None:
                permit.cancel()
                due_in = self._tracker.next_due_in()
                self._tracker.wait_for_due(1.0 if due_in is None else min(due_in, 1.0))
                continue
            with self._looking_up_lock:
                self._looking_up.add(task_id)
            try:
                self._lookup(task_id, permit, limiter)
            finally:
                with self._looking_up_lock:
                    self._looking_up.discard(task_id)

    def _lookup(self, task_id: str, permit: Permit, limiter: SlidingWindowLimiter) -> None:
        """One lookup; records exactly one result for the claimed task, whatever happens."""
        outcome = "internal_error"
        try:
            for attempt in (1, 2):
                try:
                    result = self._api.get_task_status(task_id)
                except TaskNotFound:
                    permit.release()
                    self._tracker.record_not_found(task_id)
                    outcome = "400000005"
                    self._answered(limiter)
                    return
                except ZegoError as exc:
                    permit.release()
                    outcome = exc.outcome
                    if exc.code == CODE_SIGNATURE_EXPIRED and attempt == 1:
                        # A fresh timestamp and nonce may be all it takes; a second expiry means
                        # the clock is off, which _failed reports.
                        retry = limiter.acquire(deadline=limiter.now() + 5.0)
                        if retry is not None:
                            permit = retry
                            continue
                    self._failed(exc, limiter)
                    return
                else:
                    permit.release()
                    self._tracker.record_lookup(result)
                    outcome = "0"
                    self._answered(limiter)
                    return
        except Exception:  # a bug must not kill the worker or leave the task claimed
            permit.release()
            log.exception("unexpected error looking up task %s", task_id)
        finally:
            if outcome not in ("0", "400000005"):
                self._tracker.record_lookup_failure(task_id, outcome)

    def _discovery_loop(self) -> None:
        limiter = self._limiters[ACTION_QUERY_TASKS]
        interval = self._tracker.policy.discovery_interval
        while self._wait_for_demand():
            started = self._mono()
            permit = limiter.acquire(deadline=limiter.now() + interval)
            if permit is None:
                continue
            try:
                running = self._api.query_running_tasks()
            except ZegoError as exc:
                permit.release()
                self._failed(exc, limiter)
            except Exception:
                permit.release()
                log.exception("unexpected error in discovery")
            else:
                permit.release()
                left = self._tracker.record_discovery(running)
                self._answered(limiter)
                if left:
                    log.debug("tasks left the running list: looking them up", extra={
                        "tasks": len(left)})
            finally:
                self._discovery_attempted = True
            self._stop.wait(max(0.0, started + interval - self._mono()))

    def _housekeeping_loop(self) -> None:
        while not self._stop.wait(30.0):
            dropped = self._tracker.expire()
            if dropped:
                log.debug("forgot ended tasks past retention", extra={"tasks": dropped})

    def _wait_for_demand(self) -> bool:
        """True while refreshing should go on; blocks while nobody scrapes; False on stop."""
        while not self._stop.is_set():
            if self._idle_after is None or self._mono() - self._last_demand < self._idle_after:
                return True
            if not self._idle:
                self._idle = True
                log.info("not scraped for a while: pausing API calls until the next scrape",
                         extra={"idle_after_seconds": self._idle_after})
            self._demand.clear()
            if self._mono() - self._last_demand >= self._idle_after:
                self._demand.wait(5.0)
        return False

    # -- reacting to answers --

    def _answered(self, limiter: SlidingWindowLimiter) -> None:
        self._tracker.record_api(True)
        limiter.succeeded()
        if self._problem is not None:
            with self._log_lock:
                if self._problem is not None:
                    log.info("ZEGO API answering again", extra={"after": self._problem})
                    self._problem = None

    def _failed(self, exc: ZegoError, limiter: SlidingWindowLimiter) -> None:
        if exc.api_down:
            self._tracker.record_api(False)
        else:
            # ZEGO answered (e.g. rate limited, busy, invalid parameter): it is reachable.
            self._tracker.record_api(True)
        if exc.code == CODE_SIGNATURE_INVALID or (exc.api_down and not exc.retryable):
            # Nothing will work until the configuration changes: probe slowly, not per task.
            for each in self._limiters.values():
                each.pause(self._rejected_retry)
            self._report_problem(exc, logging.ERROR)
        elif exc.retryable and (exc.throttled or exc.api_down):
            pause = limiter.throttled()
            self._report_problem(exc, logging.WARNING, backoff=round(pause, 2))
        elif exc.api_down:
            self._report_problem(exc, logging.WARNING)

    def _report_problem(self, exc: ZegoError, level: int, **fields: object) -> None:
        """Log an API problem when it starts or changes, then at most every PROBLEM_LOG_EVERY."""
        with self._log_lock:
            now = self._mono()
            if exc.outcome == self._problem and now - self._problem_logged_at < PROBLEM_LOG_EVERY:
                return
            self._problem = exc.outcome
            self._problem_logged_at = now
        log.log(level, exc.message, extra={"outcome": exc.outcome, **fields})

