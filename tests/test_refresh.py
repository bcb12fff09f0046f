"""The refresh engine against the simulated API: budget, freshness, discovery, backoff."""

from __future__ import annotations

import logging
import threading
import time

import pytest
import requests

from bench.harness import APP_ID, SECRET, run_pacing
from zego_exporter.errors import ApiError, TaskNotFound, TransportError
from zego_exporter.exporter import Exporter, ExporterConfig
from zego_exporter.ratelimit import SlidingWindowLimiter
from zego_exporter.refresh import Refresher
from zego_exporter.responses import ACTION_GET_STATUS, ACTION_QUERY_TASKS, ACTIONS, TaskStatus
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
    """An in-process API whose answers the test scripts, one outcome per call."""

    def __init__(self, outcomes: list[Exception | None] | None = None) -> None:
        self.outcomes = list(outcomes or [])
        self.calls: list[str] = []
        self.lock = threading.Lock()

    def get_task_status(self, task_id: str) -> TaskStatus:
        with self.lock:
            self.calls.append(task_id)
            outcome = self.outcomes.pop(0) if self.outcomes else None
        if outcome is not None:
            raise outcome
        return TaskStatus(task_id, 3, "room", "stream", int(time.time()) - 10)

    def query_running_tasks(self) -> list[TaskStatus]:
        return []


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
