"""The refresh engine against the simulated API: budget, freshness, discovery, backoff."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable

import pytest
import requests

from bench.harness import APP_ID, SECRET, run_pacing
from zego_exporter.errors import ApiError, TaskNotFound, TransportError
from zego_exporter.exporter import Exporter, ExporterConfig
from zego_exporter.ratelimit import SlidingWindowLimiter
from zego_exporter.refresh import LISTING_CPU_SHARE, PROBLEM_LOG_EVERY, Refresher
from zego_exporter.responses import (
    ACTION_GET_STATUS,
    ACTION_QUERY_TASKS,
    ACTIONS,
    RunningTasks,
    TaskStatus,
)
from zego_exporter.simulator import Simulator, World
from zego_exporter.tracker import STATIC, RefreshPolicy, Tracker


@pytest.mark.slow
def test_500_tasks_polled_individually_stay_within_budget_and_fresh() -> None:
    result = run_pacing(500, 62, qps=10, discovery=False, interval=30)
    print("\n".join(result.lines()))
    assert result.rejected == 0
    assert result.peak_window <= 10
    assert result.achieved_rate >= 0.95 * 10
    assert result.worst_age <= 1.1 * result.bound  # N/Q = 50 s > the 30 s interval


def test_running_tasks_are_refreshed_by_discovery_alone() -> None:
    result = run_pacing(2000, 9, discovery=True, discovery_interval=2)
    print("\n".join(result.lines()))
    assert result.lookups == 0
    assert 4 <= result.queries <= 6  # one per 2 s interval over 9 s
    assert result.worst_age <= 2 * 2 + 1  # refreshed by every list


class FakeApi:
    """An in-process API whose answers the test scripts, one outcome per call.

    Lookups answer streaming unless an outcome says otherwise; the list answers `listing`
    (an exception to raise, or the running tasks).
    """

    def __init__(self, outcomes: list[Exception | None] | None = None,
                 listing: Exception | RunningTasks | None = None) -> None:
        self.outcomes = list(outcomes or [])
        self.listing = listing if listing is not None else RunningTasks()
        self.calls: list[str] = []
        self.lists = 0
        self.lock = threading.Lock()

    def get_task_status(self, task_id: str) -> TaskStatus:
        with self.lock:
            self.calls.append(task_id)
            outcome = self.outcomes.pop(0) if self.outcomes else None
        if outcome is not None:
            raise outcome
        return TaskStatus(task_id, 3, "room", "stream", int(time.time()) - 10)

    def query_running_tasks(self) -> RunningTasks:
        with self.lock:
            self.lists += 1
        if isinstance(self.listing, Exception):
            raise self.listing
        return self.listing


Engine = tuple[Refresher, Tracker, dict[str, SlidingWindowLimiter]]


def engine(api: FakeApi, task_ids: list[str], **kwargs: object) -> Engine:
    tracker = Tracker(RefreshPolicy(interval=60, fast_interval=0.2, failure_backoff_cap=0.5))
    tracker.set_configured(STATIC, task_ids)
    limiters = {a: SlidingWindowLimiter(10, window=0.05) for a in ACTIONS}
    options: dict[str, object] = {"workers": 2, "discovery": False, "idle_after": None}
    options.update(kwargs)
    refresher = Refresher(api, tracker, limiters, **options)  # type: ignore[arg-type]
    return refresher, tracker, limiters


def wait_until(condition: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def test_expired_signature_is_retried_once_with_a_fresh_one() -> None:
    expired = ApiError(100000004, "", ACTION_GET_STATUS)
    api = FakeApi([expired])
    refresher, tracker, _ = engine(api, ["a"])
    refresher.start()
    try:
        wait_until(lambda: (v := tracker.view("a")) is not None and v.lookup_ok)
    finally:
        refresher.stop()
    assert api.calls[:2] == ["a", "a"]
    assert tracker.api_up is True


def test_rejected_signature_marks_the_api_down_pauses_and_logs_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rejected = ApiError(100000005, "", ACTION_GET_STATUS)
    api = FakeApi([rejected] * 100)
    refresher, tracker, limiters = engine(api, ["a", "b", "c"])
    with caplog.at_level(logging.WARNING, logger="zego_exporter"):
        refresher.start()
        try:
            wait_until(lambda: tracker.api_up is False)
            time.sleep(0.3)
        finally:
            refresher.stop()
    assert len(api.calls) <= 2  # paused for 30 s after the first rejection (one per worker)
    assert limiters[ACTION_GET_STATUS].paused_until > time.monotonic() + 25
    messages = [r.getMessage() for r in caplog.records]
    assert sum("check ZEGO_APP_ID and the server secret" in m for m in messages) == 1


def test_rate_limiting_halves_the_usable_slots() -> None:
    api = FakeApi([ApiError(400010009, "", ACTION_GET_STATUS)])
    refresher, tracker, limiters = engine(api, ["a"])
    refresher.start()
    try:
        wait_until(lambda: limiters[ACTION_GET_STATUS].usable_slots < 10)
        wait_until(lambda: (v := tracker.view("a")) is not None and bool(v.lookup_ok))
    finally:
        refresher.stop()
    assert limiters[ACTION_GET_STATUS].usable_slots == 5
    assert tracker.api_up is True  # ZEGO answered: it is reachable


def test_timeouts_mark_the_api_down_and_keep_the_last_good_data() -> None:
    timeout = TransportError("x", outcome="timeout", retryable=True, api_down=True)
    api = FakeApi([None, timeout, timeout, timeout])
    refresher, tracker, _ = engine(api, ["a"])
    tracker.policy.__init__(interval=0.05, fast_interval=0.05, failure_backoff_cap=0.05)  # type: ignore[misc]
    refresher.start()
    try:
        wait_until(lambda: tracker.api_up is False)
        view = tracker.view("a")
    finally:
        refresher.stop()
    assert view is not None
    assert view.state == "streaming" and view.lookup_ok is False and view.last_success


def test_not_found_is_an_answer() -> None:
    api = FakeApi([TaskNotFound(400000005, "", ACTION_GET_STATUS)])
    refresher, tracker, _ = engine(api, ["gone"])
    refresher.start()
    try:
        wait_until(lambda: (v := tracker.view("gone")) is not None and v.state == "not_found")
    finally:
        refresher.stop()
    view = tracker.view("gone")
    assert view is not None and view.lookup_ok is True and tracker.api_up is True
    assert refresher.ready


def test_a_bug_in_one_lookup_does_not_kill_the_worker() -> None:
    api = FakeApi([RuntimeError("surprise")])
    refresher, tracker, _ = engine(api, ["a"], workers=1)
    refresher.start()
    try:
        wait_until(lambda: (v := tracker.view("a")) is not None and bool(v.lookup_ok))
    finally:
        refresher.stop()
    assert api.calls == ["a", "a"]


def test_refreshing_pauses_without_scrapes_and_resumes_on_the_next() -> None:
    api = FakeApi()
    refresher, tracker, _ = engine(api, ["a"], idle_after=0.3)
    tracker.policy.__init__(interval=0.05)  # type: ignore[misc]
    refresher.start()
    try:
        time.sleep(0.6)
        calls = len(api.calls)
        time.sleep(0.4)
        assert len(api.calls) == calls  # idle: nobody scraped for 0.3 s
        refresher.touch()
        wait_until(lambda: len(api.calls) > calls)
    finally:
        refresher.stop()


def test_a_scrape_waits_for_lookups_in_flight() -> None:
    api = FakeApi()
    original = api.get_task_status

    def slow(task_id: str) -> TaskStatus:
        time.sleep(0.3)
        return original(task_id)

    api.get_task_status = slow  # type: ignore[method-assign]
    refresher, tracker, _ = engine(api, ["a", "b"])
    refresher.start()
    try:
        time.sleep(0.05)
        assert refresher.wait_for_fresh(2.0)
        assert all(t.lookup_ok for t in tracker.snapshot().tasks)
    finally:
        refresher.stop()


def test_two_scrapers_cause_the_same_api_calls_as_one() -> None:
    """One exporter scraped once a second and one scraped twice as often, side by side (so the
    machine's load hits both alike), each against its own simulator, counted after warm-up."""
    stop = threading.Event()
    stacks = []
    for _ in range(2):
        world = World.static(8)  # 8 lookups/s: below the budget, so demand could matter
        sim = Simulator(APP_ID, SECRET, world=world, qps=10).start()
        config = ExporterConfig(
            app_id=APP_ID, server_secret=SECRET, api_url=sim.url,
            task_ids=tuple(t.task_id for t in world.tasks()), discovery=False,
            # Long enough that neither exporter idles between its scrapes: demand is on for
            # both, and the only difference left is how often they are scraped.
            listen_address="127.0.0.1:0", idle_after=30.0,
            policy=RefreshPolicy(interval=1, fast_interval=1, discovery_interval=1),
        )
        exporter = Exporter(config)
        exporter.start()
        stacks.append((sim, exporter))

    def scrape(url: str) -> None:
        with requests.Session() as session:
            while not stop.is_set():
                assert session.get(url, timeout=10).status_code == 200
                stop.wait(1.0)

    threads = [threading.Thread(target=scrape, args=(exporter.web.url + "/metrics",))
               for scrapers, (_, exporter) in zip((1, 2), stacks, strict=True)
               for _ in range(scrapers)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(2)  # warm-up: the first round is done
        for sim, _ in stacks:
            sim.reset_stats()
        time.sleep(20)  # long enough that each task's phase in the window hardly matters
        calls = [sim.stats.action(ACTION_GET_STATUS).requests
                 + sim.stats.action(ACTION_QUERY_TASKS).requests for sim, _ in stacks]
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        for sim, exporter in stacks:
            exporter.stop()
            sim.stop()
    print(f"API calls in 20 s: one scraper {calls[0]}, two scrapers {calls[1]}")
    one, two = calls
    assert one >= 140  # 8 lookups a second for 20 s
    assert abs(two - one) <= 0.05 * one, calls


# -- the engine driven by hand: per-Action isolation, listing interval, logging --------------

class HandClock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Driven:
    """The engine's loops run by hand on one hand-held clock: a discovery round whenever the
    listing interval has passed, then as many lookups as the limiter allows, then 10 ms pass.
    A limiter that would wait moves the clock instead; nothing sleeps."""

    def __init__(self, api: FakeApi, task_ids: list[str], *, discovery: bool = True,
                 cpu_clock: Callable[[], float] = lambda: 0.0,
                 count_skipped: Callable[[int], None] | None = None) -> None:
        self.clock = HandClock(1_750_000_000.0)
        self.api = api

        def wait(_condition: threading.Condition, timeout: float | None) -> None:
            self.clock.now += timeout or 0.01

        self.tracker = Tracker(RefreshPolicy(), clock=self.clock)
        self.tracker.set_configured(STATIC, task_ids)
        self.limiters = {action: SlidingWindowLimiter(10, clock=self.clock, wait=wait,
                                                      rng=random.Random(1))
                         for action in ACTIONS}
        self.refresher = Refresher(api, self.tracker, self.limiters, discovery=discovery,
                                   idle_after=None, monotonic=self.clock, cpu_clock=cpu_clock,
                                   count_skipped=count_skipped)
        self.next_list = self.clock.now

    def run(self, seconds: float) -> None:
        end = self.clock.now + seconds
        while self.clock.now < end:
            if self.refresher.discovery and self.clock.now >= self.next_list:
                permit = self.limiters[ACTION_QUERY_TASKS].try_acquire()
                if permit is not None:
                    self.refresher.discover(permit)
                    self.next_list = self.clock.now + self.refresher.listing_interval
            while (permit := self.limiters[ACTION_GET_STATUS].try_acquire()) is not None:
                task_id = self.tracker.claim_due()
                if task_id is None:
                    permit.cancel()
                    break
                self.refresher.look_up(task_id, permit)
            self.clock.now += 0.01

    def looked_up(self) -> int:
        return sum(1 for view in self.tracker.snapshot().tasks if view.lookup_ok)


def denied(action: str) -> ApiError:
    return ApiError(400010001, "no permission", action, "req-denied")


def test_a_denied_discovery_slows_only_itself_and_every_configured_task_is_looked_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Observed: with QueryDigitalHumanStreamTasks not permitted (400010001), 7 of 60 configured
    tasks were looked up in 20 s, because each failed discovery round paused every Action."""
    task_ids = [f"task-{n:02d}" for n in range(60)]
    engine = Driven(FakeApi(listing=denied(ACTION_QUERY_TASKS)), task_ids)
    with caplog.at_level(logging.INFO, logger="zego_exporter"):
        engine.run(20)
        assert engine.looked_up() == 60
        assert engine.api.lists == 1  # probed again only after 30 s
        assert engine.tracker.api_up is True  # ZEGO answered: denied is not down
        assert engine.limiters[ACTION_GET_STATUS].paused_until < engine.clock.now
        engine.run(45)  # two more probes, both denied: still logged once
    assert engine.api.lists == 3
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    message = warnings[0].getMessage()
    assert "code 400010001" in message and "--no-discovery" in message
    assert "ask ZEGO support to enable QueryDigitalHumanStreamTasks" in message
    assert getattr(warnings[0], "request_id", None) == "req-denied"


def test_a_denied_lookup_slows_only_itself_and_discovery_goes_on() -> None:
    listed = RunningTasks([TaskStatus("listed", 3, "r", "s", 1)])
    api = FakeApi([denied(ACTION_GET_STATUS)] * 10, listing=listed)
    engine = Driven(api, ["configured"])
    engine.run(20)
    assert api.lists >= 6  # every 3 s, undisturbed
    assert api.calls == ["configured"]  # one denial, then paused for 30 s
    view = engine.tracker.view("listed")
    assert view is not None and view.state == "streaming"


def test_rate_limiting_of_the_list_leaves_lookups_their_whole_budget() -> None:
    engine = Driven(FakeApi(listing=ApiError(400010009, "", ACTION_QUERY_TASKS)),
                    [f"t{n}" for n in range(30)])
    engine.run(4)
    assert engine.limiters[ACTION_QUERY_TASKS].usable_slots < 10
    assert engine.limiters[ACTION_GET_STATUS].usable_slots == 10
    assert engine.looked_up() == 30


@pytest.mark.parametrize("code", [100000005, 100000004, 100000001])
def test_credential_and_gateway_failures_pause_both_actions(
    code: int, caplog: pytest.LogCaptureFixture,
) -> None:
    api = FakeApi([ApiError(code, "", ACTION_GET_STATUS, "req-gw")] * 100)
    engine = Driven(api, ["a", "b", "c"])
    engine.refresher.discovery = False  # the lookup meets it first
    with caplog.at_level(logging.WARNING, logger="zego_exporter"):
        engine.run(1)
    engine.refresher.discovery = True
    engine.run(10)
    assert api.lists == 0  # paused too, though it never failed itself
    assert all(limiter.paused_until > engine.clock.now for limiter in engine.limiters.values())
    assert engine.tracker.api_up is False
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and getattr(errors[0], "request_id", None) == "req-gw"


def test_the_listing_interval_stretches_only_for_lists_that_cost_too_much() -> None:
    cpu = HandClock()
    cost = [0.01]
    api = FakeApi(listing=RunningTasks([TaskStatus("t", 3, "r", "s", 1)]))
    original = api.query_running_tasks

    def costly() -> RunningTasks:
        cpu.now += cost[0]
        return original()

    api.query_running_tasks = costly  # type: ignore[method-assign]
    engine = Driven(api, [], cpu_clock=cpu)
    engine.run(9.5)
    assert engine.refresher.listing_interval == 3.0
    assert api.lists == 4  # at 0, 3, 6 and 9 s
    cost[0] = 0.5  # a huge list: 0.5 s of CPU per round
    engine.run(3)
    assert engine.refresher.listing_interval == pytest.approx(0.5 / LISTING_CPU_SHARE)
    # A listed task needs no lookup while lists that far apart keep it fresh.
    engine.run(25)
    assert engine.api.calls == []


def test_skipped_entries_are_counted_and_logged_when_their_number_changes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    counted: list[int] = []
    api = FakeApi(listing=RunningTasks([TaskStatus("t", 3, "r", "s", 1)], skipped=2,
                                       problem="TaskList[1]: field TaskId is missing",
                                       request_id="req-list"))
    engine = Driven(api, [], count_skipped=counted.append)
    with caplog.at_level(logging.WARNING, logger="zego_exporter"):
        engine.run(10)
        api.listing = RunningTasks([], skipped=3, problem="x", request_id="req-2")
        engine.run(3)
        engine.run(PROBLEM_LOG_EVERY + 5)  # the same count again: repeated once
    assert counted[:4] == [2, 2, 2, 2] and counted[-1] == 3
    lines = [r for r in caplog.records if "skipped" in r.getMessage()]
    assert [(getattr(r, "skipped", None), getattr(r, "request_id", None)) for r in lines] == [
        (2, "req-list"), (3, "req-2"), (3, "req-2")]
    assert "TaskId is missing" in lines[0].getMessage()


def test_other_failed_lookups_are_reported_with_zegos_request_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    invalid = ApiError(400000001, "TaskId too long", ACTION_GET_STATUS, "req-bad")
    engine = Driven(FakeApi([invalid] * 1000), ["a"], discovery=False)
    with caplog.at_level(logging.WARNING, logger="zego_exporter"):
        engine.run(120)
    lines = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(lines) == 1  # repeated at most every PROBLEM_LOG_EVERY
    assert getattr(lines[0], "request_id", None) == "req-bad"
    assert "TaskId too long" in lines[0].getMessage()
    assert engine.tracker.api_up is True
