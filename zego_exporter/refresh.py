"""The refresh engine: keeps the tracker fresh while spending at most the API budget.

A few worker threads take the most urgent, stalest due task from the tracker and look it up
(GetDigitalHumanStreamTaskStatus), each start paced by that Action's limiter; one discovery
thread lists the running tasks (QueryDigitalHumanStreamTasks) every few seconds, which
refreshes all of them in a single call and catches tasks that fail within seconds of their
creation (the list shows Status 1 and 3 only: a task that is never listed is never seen).
Refreshing follows demand: it runs while the exporter is being scraped and pauses when nobody
has scraped for a while. Failures slow down only the Action that met them (jittered backoff,
fewer usable slots, or a slow probe when ZEGO has not enabled the Action for the AppId); only
the gateway's credential and AppId failures (1000000xx) pause both Actions. It never renders
metrics and never raises into its caller: every failure ends up as data in the tracker, and
ongoing problems are logged at warning level with ZEGO's RequestId, at most every few minutes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from zego_exporter.errors import (
    CODE_SIGNATURE_EXPIRED,
    RETRYABLE_CODES,
    TaskNotFound,
    ZegoError,
)
from zego_exporter.ratelimit import Permit, SlidingWindowLimiter, WaitFn, wait_on
from zego_exporter.responses import (
    ACTION_GET_STATUS,
    ACTION_QUERY_TASKS,
    RunningTasks,
    TaskStatus,
)
from zego_exporter.tracker import Tracker

log = logging.getLogger(__name__)

# After ZEGO rejects our signature or AppId, or denies an Action, ask again this often (one
# probe at a time).
REJECTED_RETRY_SECONDS = 30.0
# Repeat a log line about an ongoing API problem at most this often.
PROBLEM_LOG_EVERY = 300.0
# Listing stays at most this share of one CPU core: a list of 10,000 running tasks costs about
# 0.1 s to read and record (bench/listing.py), so discovery lists every 3 s up to roughly
# 15,000 running tasks and proportionally less often beyond.
LISTING_CPU_SHARE = 0.05

_ALL = "all"
"""The problem key of failures that concern every Action (the gateway's codes)."""
_SKIPPED = "skipped"
"""The problem key of running-list entries that could not be read."""

_DENIED_FIX = {
    ACTION_QUERY_TASKS: (
        "discovery cannot list the running tasks (configured tasks are still looked up): ask "
        "ZEGO support to enable QueryDigitalHumanStreamTasks for the AppId, or run with "
        "--no-discovery"
    ),
    ACTION_GET_STATUS: (
        "tasks cannot be looked up one by one (discovery still lists the running ones): ask "
        "ZEGO support to enable GetDigitalHumanStreamTaskStatus for the AppId"
    ),
}


class TaskApi(Protocol):
    """What the engine needs of the client (ZegoClient satisfies it)."""

    def get_task_status(self, task_id: str) -> TaskStatus: ...

    def query_running_tasks(self) -> RunningTasks: ...


class Refresher:
    """Background refreshing of the tracker's tasks within per-Action rate limits.

    `count_skipped(n)` is told about list entries that could not be read (the exporter counts
    them); `cpu_clock` measures what a discovery round costs this thread (for the listing
    interval). Clocks, and `wait` (how `wait_for_fresh` waits on the tracker), are parameters
    so tests can drive `discover`, `look_up` and `wait_for_fresh` by hand.
    """

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
        cpu_clock: Callable[[], float] = time.thread_time,
        wait: WaitFn = wait_on,
        count_skipped: Callable[[int], None] | None = None,
    ) -> None:
        self._api = api
        self._tracker = tracker
        self._limiters = limiters
        self._workers = workers
        self.discovery = discovery
        self._idle_after = idle_after
        self._rejected_retry = rejected_retry
        self._mono = monotonic
        self._cpu_clock = cpu_clock
        self._wait = wait
        self._count_skipped = count_skipped
        self._stop = threading.Event()
        self._demand = threading.Event()
        self._last_demand = monotonic()  # starting counts as demand: get ready before scrapes
        self._threads: list[threading.Thread] = []
        self._discovery_attempted = False
        self.listing_interval = tracker.policy.discovery_interval
        """Seconds between discovery rounds now: the policy's, longer for very large lists."""
        self._ready = False
        self._idle = False
        self._log_lock = threading.Lock()
        # What is being reported (an Action, _ALL or _SKIPPED) -> (what it is, logged at).
        self._problems: dict[str, tuple[str, float]] = {}

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
        while pending:
            left = give_up_at - self._mono()
            if left <= 0:
                return self._tracker.is_settled(pending)
            backing_off = limiter is not None and limiter.paused_until - limiter.now() >= left
            # Woken by each recorded result, not by polling.
            if self._tracker.wait_settled(pending, left, in_flight_only=backing_off,
                                          wait=self._wait):
                return not backing_off or self._tracker.is_settled(pending)
        return True

    # -- one call each: what the loops do, and what tests drive by hand --

    def look_up(self, task_id: str, permit: Permit) -> None:
        """One lookup of a claimed task, started under `permit`; records exactly one result
        for the task, whatever happens."""
        limiter = self._limiters[ACTION_GET_STATUS]
        outcome = "internal_error"
        try:
            for attempt in (1, 2):
                try:
                    result = self._api.get_task_status(task_id)
                except TaskNotFound:
                    permit.release()
                    self._tracker.record_not_found(task_id)
                    outcome = "400000005"
                    self._answered(ACTION_GET_STATUS)
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
                    self._failed(exc, ACTION_GET_STATUS)
                    return
                else:
                    permit.release()
                    self._tracker.record_lookup(result)
                    outcome = "0"
                    self._answered(ACTION_GET_STATUS)
                    return
        except Exception:  # a bug must not kill the worker or leave the task claimed
            permit.release()
            log.exception("unexpected error looking up task %s", task_id)
        finally:
            if outcome not in ("0", "400000005"):
                self._tracker.record_lookup_failure(task_id)

    def discover(self, permit: Permit) -> None:
        """One discovery round started under `permit`: list the running tasks, record them (or
        the failure), and set the next listing interval from what this one cost."""
        cpu_before = self._cpu_clock()
        asked_at = self._tracker.now()
        try:
            running = self._api.query_running_tasks()
        except ZegoError as exc:
            permit.release()
            self._failed(exc, ACTION_QUERY_TASKS)
        except Exception:
            permit.release()
            log.exception("unexpected error in discovery")
        else:
            permit.release()
            policy = self._tracker.policy
            left = self._tracker.record_discovery(
                running.tasks, listed_for=policy.listed_grace(self.listing_interval),
                asked_at=asked_at)
            self._answered(ACTION_QUERY_TASKS)
            self._skipped(running)
            if left:
                log.debug("tasks left the running list: looking them up", extra={
                    "tasks": len(left)})
            cost = self._cpu_clock() - cpu_before
            self.listing_interval = max(policy.discovery_interval, cost / LISTING_CPU_SHARE)
        finally:
            self._discovery_attempted = True

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
            self.look_up(task_id, permit)

    def _discovery_loop(self) -> None:
        limiter = self._limiters[ACTION_QUERY_TASKS]
        while self._wait_for_demand():
            started = self._mono()
            permit = limiter.acquire(deadline=limiter.now() + self.listing_interval)
            if permit is None:
                continue
            self.discover(permit)
            self._stop.wait(max(0.0, started + self.listing_interval - self._mono()))

    def _housekeeping_loop(self) -> None:
        while not self._stop.wait(30.0):
            dropped = self._tracker.expire()
            if dropped:
                log.debug("forgot ended tasks past retention", extra={"tasks": dropped})

    def demanded(self) -> bool:
        """Whether refreshing should go on: someone scraped within idle_after (or it is off).
        Going idle is logged once."""
        if self._idle_after is None or self._mono() - self._last_demand < self._idle_after:
            return True
        if not self._idle:
            self._idle = True
            log.info("not scraped for a while: pausing API calls until the next scrape",
                     extra={"idle_after_seconds": self._idle_after})
        return False

    def _wait_for_demand(self) -> bool:
        """True while refreshing should go on; blocks while nobody scrapes; False on stop."""
        while not self._stop.is_set():
            if self.demanded():
                return True
            self._demand.clear()
            if not self.demanded():  # a scrape may have come since the first look
                self._demand.wait(5.0)
        return False

    # -- reacting to answers --

    def _answered(self, action: str) -> None:
        self._tracker.record_api(True)
        self._limiters[action].succeeded()
        if self._problems:
            with self._log_lock:
                problem = self._problems.pop(action, None) or self._problems.pop(_ALL, None)
            if problem is not None:
                log.info("ZEGO API answering again", extra={"action": action,
                                                             "after": problem[0]})

    def _failed(self, exc: ZegoError, action: str) -> None:
        """Slow down what the failure concerns: every Action for the gateway's credential and
        AppId codes, else only `action`."""
        # ZEGO answered a denied Action, a rate limit or a bad parameter: the API is up.
        self._tracker.record_api(not exc.api_down)
        limiter = self._limiters[action]
        if exc.pauses_all and (
                exc.code not in RETRYABLE_CODES or exc.code == CODE_SIGNATURE_EXPIRED):
            # Nothing will work until the configuration (or the clock) changes: probe slowly,
            # not per task. An expiry reaches here only after the retry with a fresh signature.
            for each in self._limiters.values():
                each.pause(self._rejected_retry)
            self._report(exc, _ALL, logging.ERROR, retry_in=self._rejected_retry)
        elif exc.pauses_all:  # the gateway's transient errors
            pause = max(each.throttled() for each in self._limiters.values())
            self._report(exc, _ALL, logging.WARNING, backoff=round(pause, 2))
        elif exc.denied:
            limiter.pause(self._rejected_retry)
            self._report(exc, action, logging.WARNING, once=True,
                         message=f"{exc.message}: {_DENIED_FIX[action]}",
                         retry_in=self._rejected_retry)
        elif exc.retryable and (exc.throttled or exc.api_down):
            pause = limiter.throttled()
            self._report(exc, action, logging.WARNING, backoff=round(pause, 2))
        elif exc.api_down:  # an HTTP 4xx without ZEGO's envelope: a wrong URL, most likely
            limiter.pause(self._rejected_retry)
            self._report(exc, action, logging.ERROR, retry_in=self._rejected_retry)
        else:
            self._report(exc, action, logging.WARNING)

    def _report(self, exc: ZegoError, action: str, level: int, *, once: bool = False,
                message: str | None = None, **fields: object) -> None:
        """Log a problem of `action` (or of _ALL Actions) as _due_to_log says (`once`: not
        again until the Action has answered)."""
        if self._due_to_log(action, exc.outcome, once=once):
            log.log(level, message or exc.message,
                    extra={"action": action, **exc.log_fields(), **fields})

    def _due_to_log(self, key: str, what: str, *, once: bool = False) -> bool:
        """Whether to log problem `key` being `what` now: when it starts or changes, then at
        most every PROBLEM_LOG_EVERY (`once`: not again until it is cleared)."""
        with self._log_lock:
            now = self._mono()
            last = self._problems.get(key)
            if last is not None and last[0] == what and (
                    once or now - last[1] < PROBLEM_LOG_EVERY):
                return False
            self._problems[key] = (what, now)
            return True

    def _skipped(self, running: RunningTasks) -> None:
        """Count and log (as _due_to_log says) list entries that could not be read."""
        if not running.skipped:
            with self._log_lock:
                self._problems.pop(_SKIPPED, None)
            return
        if self._count_skipped is not None:
            self._count_skipped(running.skipped)
        if not self._due_to_log(_SKIPPED, str(running.skipped)):
            return
        log.warning("running-task list entries skipped, the rest was used: %s", running.problem,
                    extra={"action": ACTION_QUERY_TASKS, "skipped": running.skipped,
                           "listed": len(running.tasks), "request_id": running.request_id})
