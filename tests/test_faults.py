"""The fault matrix: a real exporter keeps serving, and keeps what it knew, whatever ZEGO does.

Each case runs the simulated ZEGO API and an in-process `Exporter` (short intervals, a 1 s API
timeout, short backoff caps) on loopback, scraped over HTTP with a scrape deadline. A case
starts healthy (every task fetched), injects one fault, holds it, then clears it, and checks
throughout that `/metrics` answers 200 within the deadline, that `up`, the per-task lookup
success and the API call counter say what happened, that the last good task data (state,
room, stream, last success) is kept, and that the exporter recovers by itself within a bound,
with threads and memory bounded. Recovery times are printed (`pytest -s` shows them).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support.credentials import APP_ID, SECRET_TEXT
from tests.support.processes import free_port
from zego_exporter.exporter import Exporter, ExporterConfig
from zego_exporter.responses import ACTION_GET_STATUS, TaskStatus
from zego_exporter.signing import Secret
from zego_exporter.simulator import (
    ClockSkew,
    Drop,
    ErrorCode,
    Faults,
    HtmlPage,
    HttpStatus,
    Latency,
    MalformedJson,
    Oversized,
    Simulator,
    Slow,
    World,
    WrongTypes,
)
from zego_exporter.tracker import STATIC, RefreshPolicy, Tracker
from zego_exporter.web import SCRAPE_TIMEOUT_HEADER

TASKS = 3
API_TIMEOUT = 1.0
SCRAPE_DEADLINE = 2.0  # sent as X-Prometheus-Scrape-Timeout-Seconds; every answer must beat it
HOLD = 1.0  # how long a fault is held after it showed, checking that nothing is lost
SHOW_BOUND = 20.0  # a fault must show in the metrics within this
RECOVERY_BOUND = 15.0  # and the exporter must recover within this after it clears
THREAD_SLACK = 8  # keep-alive connections are re-opened after a fault: a few threads either way
RSS_SLACK = 40 * 1024 * 1024  # a 50 MB answer buffered whole would exceed this
POLICY = RefreshPolicy(interval=0.5, fast_interval=0.25, failure_backoff_cap=1.0,
                       discovery_interval=1.0)

RECOVERY_TIMES: dict[str, float] = {}


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


# -- one scrape, parsed ----------------------------------------------------------------------

@dataclass
class Scrape:
    took: float
    values: dict[tuple[str, frozenset[tuple[str, str]]], float] = field(default_factory=dict)

    def get(self, name: str, **labels: str) -> float | None:
        return self.values.get((name, frozenset(labels.items())))

    def matching(self, name: str, **labels: str) -> list[tuple[dict[str, str], float]]:
        wanted = set(labels.items())
        return [(dict(key), value) for (n, key), value in self.values.items()
                if n == name and wanted <= key]

    @property
    def up(self) -> float | None:
        return self.get("zego_digital_human_up")

    def lookup_ok(self, task_id: str) -> float | None:
        return self.get("zego_digital_human_task_lookup_success", task_id=task_id)

    def task_data(self, task_id: str) -> tuple[str, str, str, float | None]:
        """(state, room_id, stream_id, last success) as the scrape shows them."""
        states = [labels for labels, value in
                  self.matching("zego_digital_human_task_state", task_id=task_id) if value == 1]
        assert len(states) == 1, states
        labels = states[0]
        last = self.matching("zego_digital_human_task_last_success_timestamp_seconds",
                             task_id=task_id)
        return (labels["state"], labels["room_id"], labels["stream_id"],
                last[0][1] if last else None)

    def summary(self, task_ids: list[str]) -> str:
        codes = {labels["code"]: value for labels, value in
                 self.matching("zego_digital_human_api_requests_total") if value}
        return (f"up={self.up} lookups={[self.lookup_ok(t) for t in task_ids]} "
                f"calls={codes}")

    def calls(self, code: str) -> float:
        """API calls of every Action that ended with `code`."""
        return sum(value for _, value in
                   self.matching("zego_digital_human_api_requests_total", code=code))


# -- the stack under test --------------------------------------------------------------------

@dataclass
class Stack:
    sim: Simulator
    exporter: Exporter
    session: requests.Session
    task_ids: list[str]
    extra: list[Simulator] = field(default_factory=list)
    max_threads: int = 0

    @property
    def metrics_url(self) -> str:
        return self.exporter.web.url + "/metrics"

    def point_api_at(self, url: str) -> None:
        """Send the exporter's next API calls to `url` (as if ZEGO moved, or DNS broke)."""
        self.exporter.client.api_url = url.rstrip("/") + "/"

    def scrape(self) -> Scrape:
        started = time.monotonic()
        answer = self.session.get(self.metrics_url, timeout=SCRAPE_DEADLINE + 10,
                                  headers={SCRAPE_TIMEOUT_HEADER: f"{SCRAPE_DEADLINE:g}"})
        took = time.monotonic() - started
        assert answer.status_code == 200, answer.text[:200]
        assert took < SCRAPE_DEADLINE, f"scrape took {took:.2f}s, deadline {SCRAPE_DEADLINE}s"
        self.max_threads = max(self.max_threads, threading.active_count())
        scrape = Scrape(took)
        for family in text_string_to_metric_families(answer.text):
            for sample in family.samples:
                key = (sample.name, frozenset(sample.labels.items()))
                scrape.values[key] = sample.value
        return scrape

    def poll(self, condition: Callable[[Scrape], bool], timeout: float, what: str,
             check: Callable[[Scrape], None] | None = None) -> Scrape:
        """Scrape until `condition` holds (running `check` on every scrape); the last scrape."""
        deadline = time.monotonic() + timeout
        while True:
            scrape = self.scrape()
            if check is not None:
                check(scrape)
            if condition(scrape):
                return scrape
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; last "
                                     f"scrape: {scrape.summary(self.task_ids)}")
            time.sleep(0.05)

    def all_lookups(self, scrape: Scrape, value: float) -> bool:
        return all(scrape.lookup_ok(task_id) == value for task_id in self.task_ids)


@pytest.fixture
def stack() -> Iterator[Stack]:
    world = World.static(TASKS)
    sim = Simulator(APP_ID, Secret(SECRET_TEXT), world=world).start()
    task_ids = [task.task_id for task in world.tasks()]
    config = ExporterConfig(
        app_id=APP_ID, server_secret=Secret(SECRET_TEXT), api_url=sim.url,
        task_ids=tuple(task_ids), discovery=False, listen_address="127.0.0.1:0",
        policy=POLICY, idle_after=None, timeout=API_TIMEOUT, backoff_cap=1.0,
        rejected_retry=1.5,
    )
    exporter = Exporter(config)
    exporter.start()
    session = requests.Session()
    built = Stack(sim, exporter, session, task_ids)
    try:
        yield built
    finally:
        session.close()
        exporter.stop()
        for extra in built.extra:
            extra.stop()
        sim.stop()


# -- the cases -------------------------------------------------------------------------------

Action = Callable[[Stack], None]


def set_faults(faults: Faults) -> Action:
    def inject(stack: Stack) -> None:
        stack.sim.faults = faults
    return inject


def closed_port(stack: Stack) -> None:
    stack.point_api_at(f"http://127.0.0.1:{free_port()}")


def unresolvable_host(stack: Stack) -> None:
    stack.point_api_at("http://nonexistent.invalid")


def wrong_secret(stack: Stack) -> None:
    """An API that checks signatures with another secret: ours is wrong for it."""
    other = Simulator(APP_ID, Secret("another-secret-0123456789abcdef"),
                      world=stack.sim.world).start()
    stack.extra.append(other)
    stack.point_api_at(other.url)


def heal(stack: Stack) -> None:
    stack.sim.faults = Faults()
    stack.point_api_at(stack.sim.url)


@dataclass(frozen=True)
class Case:
    name: str
    inject: Action
    code: str
    """The `code` label of zego_digital_human_api_requests_total the fault produces."""
    up: float
    """zego_digital_human_up while the fault lasts."""
    lookups_fail: bool = True


CASES = [
    Case("connection_refused", closed_port, "connection_error", up=0),
    Case("unresolvable_host", unresolvable_host, "connection_error", up=0),
    Case("connection_dropped", set_faults(Faults(drop=Drop())), "connection_error", up=0),
    Case("timeout", set_faults(Faults(slow=Slow(seconds=2.5))), "timeout", up=0),
    Case("slow_within_timeout", set_faults(Faults(latency=Latency(seconds=0.4))), "0", up=1,
         lookups_fail=False),
    Case("http_503", set_faults(Faults(http_status=HttpStatus(status=503))), "http_503", up=0),
    Case("html_page", set_faults(Faults(html=HtmlPage(status=200))), "invalid_response", up=0),
    Case("malformed_json", set_faults(Faults(malformed_json=MalformedJson())),
         "invalid_response", up=0),
    Case("wrong_types", set_faults(Faults(wrong_types=WrongTypes())), "invalid_response", up=0),
    Case("oversized_50mb", set_faults(Faults(oversized=Oversized(
        size=50 * 1024 * 1024, chunk_size=64 * 1024, chunk_delay=0.05))),
        "invalid_response", up=0),
    # ZEGO answered: it is reachable, so up stays 1 while every lookup fails.
    Case("rate_limit_storm", set_faults(Faults(error=ErrorCode(code=400010009))), "400010009",
         up=1),
    Case("signature_rejected", wrong_secret, "100000005", up=0),
    Case("signature_expired", set_faults(Faults(clock_skew=ClockSkew(seconds=900))),
         "100000004", up=0),
]


def healthy(stack: Stack) -> tuple[Scrape, dict[str, tuple[str, str, str]]]:
    """Wait until every task has been fetched; its (state, room, stream)."""
    scrape = stack.poll(lambda s: s.up == 1 and stack.all_lookups(s, 1), 10, "a healthy start")
    known = {}
    for task_id in stack.task_ids:
        state, room, stream, last = scrape.task_data(task_id)
        assert state == "streaming" and room and stream and last, (task_id, state, room)
        known[task_id] = (state, room, stream)
    return scrape, known


def kept(stack: Stack, known: dict[str, tuple[str, str, str]]) -> Callable[[Scrape], None]:
    """A check that every task still shows its last good state, room and stream."""
    def check(scrape: Scrape) -> None:
        for task_id, data in known.items():
            assert scrape.task_data(task_id)[:3] == data, task_id
    return check


def last_success(stack: Stack, scrape: Scrape) -> dict[str, float | None]:
    return {task_id: scrape.task_data(task_id)[3] for task_id in stack.task_ids}


def recover(stack: Stack, case_name: str, known: dict[str, tuple[str, str, str]],
            before: dict[str, float | None]) -> float:
    """Clear the fault; seconds until up is 1, every lookup succeeds and last success moved."""
    cleared = time.monotonic()
    heal(stack)

    def recovered(scrape: Scrape) -> bool:
        after = last_success(stack, scrape)
        return scrape.up == 1 and stack.all_lookups(scrape, 1) and all(
            (after[t] or 0) > (before[t] or 0) for t in stack.task_ids)

    stack.poll(recovered, RECOVERY_BOUND, f"recovery from {case_name}",
               check=kept(stack, known))
    took = time.monotonic() - cleared
    RECOVERY_TIMES[case_name] = took
    print(f"\nRECOVERY {case_name}: {took:.2f}s")
    return took


def bounded_resources(stack: Stack, threads_before: int, rss_before: int) -> None:
    deadline = time.monotonic() + 10
    while threading.active_count() > threads_before + THREAD_SLACK:
        assert time.monotonic() < deadline, (
            f"threads {threading.active_count()} > {threads_before} + {THREAD_SLACK}")
        time.sleep(0.1)
    assert stack.max_threads <= threads_before + 40, (stack.max_threads, threads_before)
    grown = rss_bytes() - rss_before
    assert grown < RSS_SLACK, f"RSS grew by {grown / 2**20:.1f} MiB"


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_the_exporter_survives_and_recovers_from(stack: Stack, case: Case) -> None:
    _, known = healthy(stack)
    threads_before, rss_before = threading.active_count(), rss_bytes()
    stack.max_threads = threads_before
    check = kept(stack, known)
    calls_before = stack.scrape().calls(case.code)

    case.inject(stack)

    def shows(scrape: Scrape) -> bool:
        lookups = 0 if case.lookups_fail else 1
        return (scrape.calls(case.code) > calls_before and scrape.up == case.up
                and stack.all_lookups(scrape, lookups))

    injected = time.monotonic()
    scrape = stack.poll(shows, SHOW_BOUND, f"{case.name} to show", check=check)
    print(f"\nSHOWN {case.name}: {time.monotonic() - injected:.2f}s")
    during, shown = last_success(stack, scrape), scrape
    held_until = time.monotonic() + HOLD
    while time.monotonic() < held_until:
        scrape = stack.scrape()
        check(scrape)
        assert scrape.up == case.up
        assert scrape.calls(case.code) >= shown.calls(case.code)
        if case.lookups_fail:
            assert stack.all_lookups(scrape, 0)
            assert last_success(stack, scrape) == during  # the last good data is kept
        time.sleep(0.1)
    if not case.lookups_fail:  # slow answers are still answers: data keeps coming
        assert all((last or 0) > (during[t] or 0)
                   for t, last in last_success(stack, scrape).items())
        histogram = "zego_digital_human_api_request_duration_seconds"
        calls = [s.get(histogram + "_count", action=ACTION_GET_STATUS) or 0 for s in (shown,
                                                                                       scrape)]
        spent = [s.get(histogram + "_sum", action=ACTION_GET_STATUS) or 0 for s in (shown,
                                                                                     scrape)]
        assert calls[1] > calls[0]
        assert (spent[1] - spent[0]) / (calls[1] - calls[0]) >= 0.4  # the latency shows

    recover(stack, case.name, known, last_success(stack, scrape))
    bounded_resources(stack, threads_before, rss_before)


@pytest.mark.slow
def test_flapping_between_healthy_and_failing(stack: Stack) -> None:
    _, known = healthy(stack)
    threads_before, rss_before = threading.active_count(), rss_bytes()
    stack.max_threads = threads_before
    check = kept(stack, known)
    first = stack.scrape()
    failing = Faults(http_status=HttpStatus(status=503))
    ups: set[float | None] = set()
    for flip in range(6):
        stack.sim.faults = failing if flip % 2 == 0 else Faults()
        switch_at = time.monotonic() + 1.2
        while time.monotonic() < switch_at:
            scrape = stack.scrape()
            check(scrape)
            ups.add(scrape.up)
            time.sleep(0.05)
    stack.sim.faults = failing
    scrape = stack.poll(lambda s: s.up == 0, SHOW_BOUND, "the last failure to show", check=check)
    assert scrape.calls("http_503") > first.calls("http_503")
    assert scrape.calls("0") > first.calls("0")  # it got answers between the failures
    assert ups >= {0.0, 1.0}
    recover(stack, "flapping", known, last_success(stack, scrape))
    bounded_resources(stack, threads_before, rss_before)


def test_a_task_whose_lookups_keep_failing_does_not_take_every_turn() -> None:
    """Under a throttled budget (one lookup per round here) failing and healthy tasks take
    turns: staleness counts from the last attempt too, not only from the last answer."""
    now = [1000.0]
    tracker = Tracker(RefreshPolicy(interval=1, fast_interval=1, failure_backoff_cap=1),
                      clock=lambda: now[0])
    tracker.set_configured(STATIC, ["failing", "healthy"])
    for task_id in ("failing", "healthy"):  # both fetched once, "failing" first (the stalest)
        assert tracker.claim_due() == task_id
        tracker.record_lookup(TaskStatus(task_id, 3, "r", "s", 1))
        now[0] += 0.1
    turns = []
    for _ in range(6):
        now[0] += 2  # both due again; the budget allows one lookup
        claimed = tracker.claim_due()
        assert claimed is not None
        turns.append(claimed)
        if claimed == "failing":
            tracker.record_lookup_failure(claimed)
        else:
            tracker.record_lookup(TaskStatus(claimed, 3, "r", "s", 1))
    assert turns == ["failing", "healthy"] * 3


@pytest.mark.slow
def test_a_scrape_does_not_wait_for_lookups_that_a_backoff_keeps_from_starting() -> None:
    """Tasks never fetched are urgent, and a scrape waits a little for urgent lookups; not
    while the engine is backing off (here 30 s after a rejected signature): none can start."""
    world = World.static(2)
    with Simulator(APP_ID, Secret(SECRET_TEXT), world=world) as sim:
        exporter = Exporter(ExporterConfig(
            app_id=APP_ID, server_secret=Secret("a-wrong-secret-0123456789abcdef"),
            api_url=sim.url, task_ids=tuple(t.task_id for t in world.tasks()),
            discovery=False, listen_address="127.0.0.1:0", policy=POLICY, idle_after=None,
            timeout=API_TIMEOUT, rejected_retry=30.0,
        ))
        exporter.start()
        try:
            url = exporter.web.url + "/metrics"
            headers = {SCRAPE_TIMEOUT_HEADER: "10"}  # a scrape may wait up to 2 s
            with requests.Session() as session:
                deadline = time.monotonic() + 10
                while "zego_digital_human_up 0" not in session.get(url, headers=headers,
                                                                    timeout=15).text:
                    assert time.monotonic() < deadline, "the rejection did not show"
                    time.sleep(0.05)
                time.sleep(POLICY.fast_interval * 2)  # the failed tasks are urgently due again
                assert exporter.tracker.urgent_or_in_flight()
                took = []
                for _ in range(3):
                    started = time.monotonic()
                    assert session.get(url, headers=headers, timeout=15).status_code == 200
                    took.append(time.monotonic() - started)
        finally:
            exporter.stop()
    assert max(took) < 1.0, took
