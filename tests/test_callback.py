"""ZEGO callbacks: the receiver, the tracker's ordering, the simulator's deliveries, end to end.

The receiver is tested on its own with the documented example signature; everything that
crosses HTTP does so on real loopback sockets, from the simulated API (or a plain client) to a
real exporter, both on free ports and stopped by the test. Waits poll for a condition.
"""

from __future__ import annotations

import base64
import http.client
import itertools
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import bcrypt
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.clock import FakeClock
from tests.support.credentials import APP_ID, SECRET_TEXT
from tests.support.waiting import wait_until
from zego_exporter.callback import REJECTED_LOG_EVERY, CallbackReceiver
from zego_exporter.cli import cli, main
from zego_exporter.exporter import Exporter, ExporterConfig
from zego_exporter.responses import ACTION_GET_STATUS, TaskStatus
from zego_exporter.signing import Secret, callback_signature
from zego_exporter.simulator import (
    RETRY_GAPS,
    CallbackFaults,
    CallbackSender,
    Lifecycle,
    Simulator,
    World,
)
from zego_exporter.tracker import RefreshPolicy, Tracker
from zego_exporter.webconfig import load_web_config

CALLBACK_SECRET = "cb-0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c"
DOC_SECRET, DOC_NONCE, DOC_TIMESTAMP = "secret", "123412", "1470820198"
DOC_SIGNATURE = "5bd59fd62953a8059fb7eaba95720f66d19e4517"
T0 = 1_750_000_000.0
SLOW = RefreshPolicy(interval=3600, fast_interval=3600, callback_reconcile=3600)


# -- helpers ---------------------------------------------------------------------------------

def body_of(doc: dict[str, Any], *, secret: str = CALLBACK_SECRET, nonce: str = "n-1",
            timestamp: str = "1750000000", signature: str | None = None) -> bytes:
    """A callback body, signed with `secret` unless a `signature` is given."""
    signed = {"AppId": APP_ID, "Nonce": nonce, "Timestamp": timestamp,
              "Signature": signature if signature is not None else
              callback_signature(Secret(secret), timestamp, nonce), **doc}
    return json.dumps(signed).encode()


def status_event(task_id: str, status: int, *, room: str = "room_1", stream: str = "stream_1",
                 reason: str | None = None, event_time: int | None = 1_750_000_000_000,
                 ) -> dict[str, Any]:
    detail: dict[str, Any] = {"Status": status, "RoomId": room, "StreamId": stream}
    if reason is not None:
        detail["FailReason"] = reason
    doc: dict[str, Any] = {"EventType": 3, "TaskId": task_id, "Detail": detail}
    if event_time is not None:
        doc["EventTime"] = event_time
    return doc


def receiver(secret: str = CALLBACK_SECRET) -> tuple[CallbackReceiver, Tracker, Counter[
        tuple[str, str]]]:
    tracker = Tracker(clock=FakeClock(T0))
    counts: Counter[tuple[str, str]] = Counter()

    def count(event_type: str, result: str) -> None:
        counts[event_type, result] += 1

    return CallbackReceiver(Secret(secret), tracker, count, app_id=APP_ID), tracker, counts


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=5)
    try:
        connection.request("POST", parts.path, body=body,
                           headers={"Content-Type": "application/json", **(headers or {})})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=5)
    try:
        connection.request("GET", parts.path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of the one sample `name` with (at least) `labels`, or None."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


def scrape(exporter: Exporter) -> str:
    status, text = get(exporter.web.url + "/metrics")
    assert status == 200
    return text


def callbacks_counted(exporter: Exporter, event_type: str, result: str) -> float:
    value = metric(scrape(exporter), "zego_digital_human_callbacks_total",
                   event_type=event_type, result=result)
    return value or 0.0


def api_requests(sim: Simulator) -> dict[str, int]:
    return {action: stats.requests for action, stats in sim.stats.actions().items()}


@contextmanager
def callback_pair(
    *task_statuses: int, policy: RefreshPolicy = SLOW, retry_scale: float = 0.01,
    security: Any = None,
) -> Iterator[tuple[Simulator, Exporter, list[str]]]:
    """A simulator with pinned tasks that sends callbacks to a running exporter watching them.

    Discovery is off; the exporter looks each task up once at start, then as `policy` says.
    """
    world = World(tasks=0, arrival_rate=0.0)
    task_ids = [world.add_task(status=status, room_id=f"room_{n}", stream_id=f"stream_{n}")
                for n, status in enumerate(task_statuses)]
    sim = Simulator(APP_ID, Secret(SECRET_TEXT), world=world, qps=0)
    exporter = Exporter(
        ExporterConfig(app_id=APP_ID, server_secret=Secret(SECRET_TEXT), api_url=sim.url,
                       task_ids=tuple(task_ids), discovery=False,
                       callback_secret=Secret(CALLBACK_SECRET),
                       listen_address="127.0.0.1:0", policy=policy, idle_after=None),
        security=security or (lambda: None),
    )
    sim.enable_callbacks(exporter.web.url + "/zego/callback", Secret(CALLBACK_SECRET),
                         retry_scale=retry_scale, check_interval=0.05)
    sim.start()
    exporter.start()
    try:
        wait_until(lambda: exporter.refresher.ready, timeout=5, what="the exporter's first lookups")
        yield sim, exporter, task_ids
    finally:
        exporter.stop()
        sim.stop()


class StubReceiver:
    """A callback endpoint that records every POST and answers as `answer(doc)` says."""

    def __init__(self, answer: Callable[[dict[str, Any]], int]) -> None:
        self.received: list[tuple[float, dict[str, Any]]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                doc = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.received.append((time.monotonic(), doc))
                self.send_response(answer(doc))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/zego/callback"
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> StubReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- the receiver on its own -------------------------------------------------------------------

def test_documented_example_signature_is_accepted_and_updates_the_tracker() -> None:
    handle, tracker, counts = receiver(DOC_SECRET)
    body = body_of(status_event("t1", 3, room="r1", stream="s1"), secret=DOC_SECRET,
                   nonce=DOC_NONCE, timestamp=DOC_TIMESTAMP, signature=DOC_SIGNATURE)
    status, answer = handle.handle(body)
    assert (status, json.loads(answer)) == (200, {"result": "accepted"})
    assert counts == {("3", "accepted"): 1}
    view = tracker.view("t1")
    assert view is not None
    assert (view.state, view.room_id, view.stream_id, view.create_time) == (
        "streaming", "r1", "s1", None)
    assert tracker.snapshot().sources["callback"] == 1


def test_numbers_for_timestamp_and_nonce_are_read_as_their_digits() -> None:
    handle, _, counts = receiver(DOC_SECRET)
    doc = {**status_event("t1", 1), "Nonce": int(DOC_NONCE), "Timestamp": int(DOC_TIMESTAMP),
           "Signature": DOC_SIGNATURE.upper(), "AppId": APP_ID}
    assert handle.handle(json.dumps(doc).encode())[0] == 200
    assert counts == {("3", "accepted"): 1}


@pytest.mark.parametrize("timestamp", ["1750000000", "1750000000123"])
def test_the_timestamp_is_verified_as_text_in_seconds_or_milliseconds(timestamp: str) -> None:
    """zego-api.md section 7.5: the docs changed Timestamp to milliseconds but their examples
    still show seconds. It is signed as the text it is; no freshness window is applied."""
    handle, _, counts = receiver()
    assert handle.handle(body_of(status_event("t1", 3), timestamp=timestamp))[0] == 200
    assert counts == {("3", "accepted"): 1}


def test_numbers_written_as_strings_or_floats_mean_the_same_status_and_time() -> None:
    """A callback's Numbers are read as the API's answers are: "2" is init_failed, and an
    EventTime of "…000" orders against a later 2.0 like the integers would."""
    handle, tracker, counts = receiver()
    failed = status_event("t1", 2, reason="no render node available", event_time=None)
    failed["Detail"]["Status"] = "2"
    assert handle.handle(body_of({**failed, "EventTime": "1750000001000"}))[0] == 200
    older = status_event("t1", 1, event_time=None)
    older["Detail"]["Status"] = 1.0
    assert handle.handle(body_of({**older, "EventTime": 1_750_000_000_000.0}))[0] == 200
    assert counts == {("3", "accepted"): 1, ("3", "ignored"): 1}
    view = tracker.view("t1")
    assert view is not None
    assert (view.state, view.status, view.fail_reason) == (
        "init_failed", 2, "no render node available")


def test_a_callback_keeps_the_create_time_a_lookup_found() -> None:
    handle, tracker, _ = receiver()
    tracker.set_configured("static", ["t1"])
    tracker.claim_due()
    tracker.record_lookup(TaskStatus("t1", 1, "room_1", "stream_1", 1_749_999_000))
    assert handle.handle(body_of(status_event("t1", 3)))[0] == 200
    view = tracker.view("t1")
    assert view is not None and (view.state, view.create_time) == ("streaming", 1_749_999_000)


SIGNED = status_event("t1", 3)


@pytest.mark.parametrize(("body", "status", "event_type", "result"), [
    pytest.param(None, 413, "unknown", "invalid", id="oversized"),
    pytest.param(b"EventType=3", 400, "unknown", "invalid", id="not-json"),
    pytest.param(b"\xff\xfe{\x00", 400, "unknown", "invalid", id="not-utf8"),
    pytest.param(b"[3]", 400, "unknown", "invalid", id="not-an-object"),
    pytest.param(b"[" * 100_000 + b"]" * 100_000, 400, "unknown", "invalid", id="deep"),
    pytest.param(body_of(SIGNED, signature=""), 401, "3", "bad_signature", id="empty-signature"),
    pytest.param(json.dumps({k: v for k, v in json.loads(body_of(SIGNED)).items()
                             if k != "Signature"}).encode(),
                 401, "3", "bad_signature", id="missing-signature"),
    pytest.param(json.dumps({k: v for k, v in json.loads(body_of(SIGNED)).items()
                             if k != "Nonce"}).encode(),
                 401, "3", "bad_signature", id="missing-nonce"),
    pytest.param(body_of(SIGNED, secret="wrong"), 401, "3", "bad_signature", id="forged"),
    pytest.param(body_of({**SIGNED, "EventType": 4}, secret="wrong"), 401, "4",
                 "bad_signature", id="forged-drive-event"),
    pytest.param(body_of({**SIGNED, "EventType": 123456}, secret="wrong"), 401, "unknown",
                 "bad_signature", id="forged-event-type-gets-no-label-of-its-own"),
    pytest.param(json.dumps({**json.loads(body_of(SIGNED)), "Signature": 5}).encode(), 400,
                 "3", "invalid", id="signature-not-a-string"),
    pytest.param(json.dumps({**json.loads(body_of(SIGNED)), "Nonce": {}}).encode(), 400,
                 "3", "invalid", id="nonce-an-object"),
    pytest.param(body_of({**SIGNED, "EventType": None}), 400, "unknown", "invalid",
                 id="no-event-type"),
    pytest.param(body_of({**SIGNED, "EventType": "three"}), 400, "unknown", "invalid",
                 id="event-type-a-word"),
    pytest.param(body_of({**SIGNED, "EventType": 3.5}), 400, "unknown", "invalid",
                 id="event-type-a-fraction"),
    pytest.param(body_of({**SIGNED, "EventType": True}), 400, "unknown", "invalid",
                 id="event-type-a-bool"),
    pytest.param(body_of({**SIGNED, "TaskId": 7}), 400, "3", "invalid", id="task-id-number"),
    pytest.param(body_of({**SIGNED, "TaskId": ""}), 400, "3", "invalid", id="task-id-empty"),
    pytest.param(body_of({**SIGNED, "Detail": [3]}), 400, "3", "invalid", id="detail-list"),
    pytest.param(body_of({**SIGNED, "Detail": {"RoomId": "r"}}), 400, "3", "invalid",
                 id="no-status"),
    pytest.param(body_of({**SIGNED, "Detail": {"Status": "stopped"}}), 400, "3", "invalid",
                 id="status-a-word"),
    pytest.param(body_of({**SIGNED, "Detail": {"Status": True}}), 400, "3", "invalid",
                 id="status-a-bool"),
    pytest.param(body_of({**SIGNED, "Detail": {"Status": 3, "RoomId": 1}}), 400, "3",
                 "invalid", id="room-a-number"),
    pytest.param(body_of({**SIGNED, "EventTime": "soon"}), 400, "3", "invalid",
                 id="event-time-a-word"),
    # Numbers written as the API's answers may write them (responses.py reads them alike).
    pytest.param(body_of({**SIGNED, "EventType": "3"}), 200, "3", "accepted",
                 id="event-type-as-a-string"),
    pytest.param(body_of({**SIGNED, "EventType": 3.0, "Detail": {"Status": "3"}}), 200, "3",
                 "accepted", id="event-type-a-float-status-a-string"),
    pytest.param(body_of({**SIGNED, "Detail": {"Status": 3.0},
                          "EventTime": "1750000000000"}), 200, "3", "accepted",
                 id="status-a-float-event-time-a-string"),
    pytest.param(body_of({**SIGNED, "EventType": 4, "Detail": {"DriveId": "d", "Status": 2}}),
                 200, "4", "ignored", id="drive-status"),
    pytest.param(body_of({"EventType": 1, "Whatever": [1, 2]}), 200, "1", "ignored",
                 id="undocumented-event-type"),
    pytest.param(body_of({**SIGNED, "Surprise": {"x": 1},
                          "Detail": {"Status": 3, "NewField": True}}),
                 200, "3", "accepted", id="unknown-fields"),
    pytest.param(body_of({**SIGNED, "Detail": {"Status": 9}}), 200, "3", "accepted",
                 id="undocumented-status"),
    pytest.param(body_of({**SIGNED, "AppId": APP_ID + 1}), 403, "3", "wrong_app",
                 id="another-app-id"),
    pytest.param(body_of({**SIGNED, "EventType": 4, "AppId": 7}), 403, "4", "wrong_app",
                 id="another-app-id-drive-event"),
    pytest.param(body_of({**SIGNED, "AppId": str(APP_ID)}), 200, "3", "accepted",
                 id="app-id-as-a-string"),
    pytest.param(body_of({**SIGNED, "AppId": "mine"}), 400, "3", "invalid",
                 id="app-id-not-a-number"),
    pytest.param(body_of({**SIGNED, "AppId": APP_ID + 1}, secret="wrong"), 401, "3",
                 "bad_signature", id="another-app-id-unsigned"),
])
def test_every_callback_is_answered_and_counted_once(
    body: bytes | None, status: int, event_type: str, result: str
) -> None:
    handle, tracker, counts = receiver()
    answered, answer = handle.handle(body)
    assert answered == status
    assert json.loads(answer)["result"] == result
    assert len(answer) < 200
    assert counts == {(event_type, result): 1}
    assert (tracker.task_ids() == ["t1"]) == (result == "accepted")


def test_a_signed_callback_for_another_app_id_is_refused_and_logged_rarely(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock(0.0)
    tracker = Tracker(clock=FakeClock(T0))
    counts: Counter[tuple[str, str]] = Counter()
    handle = CallbackReceiver(Secret(CALLBACK_SECRET), tracker,
                              lambda e, r: counts.update([(e, r)]), app_id=APP_ID,
                              monotonic=clock)
    other = body_of({**status_event("t1", 2, reason="boom"), "AppId": 987654321})
    with caplog.at_level(logging.WARNING, logger="zego_exporter.callback"):
        for _ in range(3):
            status, answer = handle.handle(other)
            assert status == 403 and json.loads(answer)["result"] == "wrong_app"
    assert tracker.task_ids() == [] and tracker.snapshot().failures == {}
    assert counts == {("3", "wrong_app"): 3}
    [line] = caplog.records
    assert "AppId 987654321" in line.getMessage() and str(APP_ID) in line.getMessage()
    assert getattr(line, "callback_app_id", None) == 987654321


def test_out_of_order_callbacks_never_roll_a_task_back() -> None:
    handle, tracker, counts = receiver()
    stopping = body_of(status_event("t1", 4, event_time=2_000), nonce="a")
    assert handle.handle(stopping)[0] == 200
    older = body_of(status_event("t1", 3, event_time=1_000), nonce="b")
    status, answer = handle.handle(older)
    assert status == 200  # answered, so ZEGO does not retry it
    assert json.loads(answer)["result"] == "ignored"
    view = tracker.view("t1")
    assert view is not None and view.state == "stopping"
    assert handle.handle(stopping)[0] == 200  # a retry of the newest one is applied again
    assert handle.handle(body_of(status_event("t1", 5, event_time=3_000)))[0] == 200
    view = tracker.view("t1")
    assert view is not None and view.state == "stopped"
    assert counts == {("3", "accepted"): 3, ("3", "ignored"): 1}


def test_retried_init_failure_is_counted_once() -> None:
    handle, tracker, counts = receiver()
    failed = body_of(status_event("t1", 2, reason="model load timeout"))
    for _ in range(3):
        assert handle.handle(failed)[0] == 200
    assert tracker.snapshot().failures == {("room_1", "stream_1"): 1}
    view = tracker.view("t1")
    assert view is not None and view.fail_reason == "model load timeout"
    assert counts == {("3", "accepted"): 3}


def test_rejected_signatures_are_logged_rarely_and_never_with_the_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock(0.0)
    counts: Counter[tuple[str, str]] = Counter()
    handle = CallbackReceiver(Secret(CALLBACK_SECRET), Tracker(clock=FakeClock(T0)),
                              lambda e, r: counts.update([(e, r)]), app_id=APP_ID,
                              monotonic=clock)
    forged = body_of(SIGNED, secret="wrong")
    with caplog.at_level(logging.DEBUG, logger="zego_exporter.callback"):
        for _ in range(3):
            _, answer = handle.handle(forged)
            assert CALLBACK_SECRET.encode() not in answer
        clock.now += REJECTED_LOG_EVERY
        handle.handle(forged)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [getattr(r, "rejected", None) for r in warnings] == [1, 3]
    assert all(CALLBACK_SECRET not in r.getMessage() for r in caplog.records)
    assert counts == {("3", "bad_signature"): 4}


# -- the tracker's ordering of callbacks -------------------------------------------------------

def test_tracker_applies_callbacks_unless_older_than_the_newest_applied() -> None:
    tracker = Tracker(clock=FakeClock(T0))
    a = TaskStatus("a", 3, "r", "s", 0)
    assert tracker.record_callback(a, 2_000.0)
    assert not tracker.record_callback(TaskStatus("a", 1, "r", "s", 0), 1_999.0)
    assert tracker.record_callback(a, 2_000.0)  # the same moment: a retry, applied again
    assert tracker.record_callback(TaskStatus("b", 1, "r", "s2", 0), 1_000.0)  # per task
    tracker.record_lookup(TaskStatus("a", 4, "r", "s", 10))  # a lookup does not reset it
    assert not tracker.record_callback(TaskStatus("a", 3, "r", "s", 0), 1_500.0)
    assert tracker.record_callback(TaskStatus("a", 5, "r", "s", 0), None)  # no time: applied
    view = tracker.view("a")
    assert view is not None and view.state == "stopped"
    assert not tracker.record_callback(TaskStatus("a", 3, "r", "s", 0), 1_000.0)


# -- the simulator's deliveries ----------------------------------------------------------------

def test_simulator_sends_every_lifecycle_step_with_its_scheduled_time() -> None:
    clock = FakeClock(T0)
    lifecycle = Lifecycle(initializing=(2.0, 2.0), init_failure_rate=0.0,
                          streaming=(10.0, 10.0), stopping_rate=1.0, stopping=(1.0, 1.0),
                          stopped=(5.0, 5.0))
    world = World(tasks=0, arrival_rate=0.0, lifecycle=lifecycle, clock=clock)
    with StubReceiver(lambda doc: 200) as stub:
        sender = CallbackSender(stub.url, Secret(CALLBACK_SECRET), world, app_id=APP_ID,
                                check_interval=0.02).start()
        try:
            task_id = world.add_task(room_id="room_x", stream_id="stream_x")
            wait_until(lambda: len(stub.received) == 1, timeout=5, what="the creation event")
            clock.now += 15.0  # streaming at +2, stopping at +12, stopped at +13, gone at +18
            sender.check()
            wait_until(lambda: len(stub.received) == 4, timeout=5, what="three lifecycle steps")
            clock.now += 10.0  # gone: no status, so no event
            sender.check()
            assert sender.wait_idle(2.0)
        finally:
            sender.stop()
    docs = [doc for _, doc in stub.received]
    assert [(d["TaskId"], d["Detail"]["Status"], d["EventTime"]) for d in docs] == [
        (task_id, 1, int(T0 * 1000)), (task_id, 3, int(T0 * 1000) + 2_000),
        (task_id, 4, int(T0 * 1000) + 12_000), (task_id, 5, int(T0 * 1000) + 13_000)]
    for doc in docs:
        assert doc["AppId"] == APP_ID and doc["EventType"] == 3
        assert doc["Detail"]["RoomId"] == "room_x" and doc["Detail"]["StreamId"] == "stream_x"
        assert doc["Signature"] == callback_signature(
            Secret(CALLBACK_SECRET), doc["Timestamp"], doc["Nonce"])
    assert sender.stats.to_json() == {"events": 4, "sent": 4, "acked": 4, "retried": 0,
                                      "given_up": 0, "dropped": 0}
    assert not [t for t in threading.enumerate() if t.name.startswith("zego-simulator-callback")]


def test_simulator_retries_on_zegos_schedule_until_acknowledged_or_given_up() -> None:
    """ZEGO's own schedule (2, 4, 8, 16 and 32 s), on a fake clock: the delivery thread's wait
    for the next retry moves the clock instead of sleeping, the POSTs are real."""
    clock = FakeClock(0.0)

    def wait(condition: threading.Condition, timeout: float | None) -> None:
        if timeout is None:
            condition.wait(0.05)  # nothing queued: wait (for real) to be told of a delivery
        else:
            clock.advance(timeout)  # a retry due later: its time comes at once

    answers = {"always-500": [500] * 6, "third-time": [500, 503, 204]}
    with StubReceiver(lambda doc: answers[doc["TaskId"]].pop(0)) as stub:
        world = World(tasks=0, arrival_rate=0.0)
        sender = CallbackSender(stub.url, Secret(CALLBACK_SECRET), world, app_id=APP_ID,
                                monotonic=clock, wait=wait).start()
        try:
            sender.deliver(status_event("always-500", 3))
            sender.deliver(status_event("third-time", 3))
            assert sender.wait_idle(1000.0)  # seconds of the fake clock
        finally:
            sender.stop()
    started: dict[str, list[float]] = {}
    for attempt in sender.attempts():
        started.setdefault(attempt.task_id, []).append(attempt.at)
    gaps = [later - earlier for earlier, later in itertools.pairwise(started["always-500"])]
    assert gaps == pytest.approx(list(RETRY_GAPS))
    assert [round(at - started["third-time"][0], 6) for at in started["third-time"]] == [
        0, 2, 6]
    assert len([doc for _, doc in stub.received if doc["TaskId"] == "always-500"]) == 6
    bodies = [json.dumps(doc, sort_keys=True) for _, doc in stub.received
              if doc["TaskId"] == "always-500"]
    assert len(set(bodies)) == 1  # a retry is the same request, signature included
    assert sender.stats.to_json() == {"events": 2, "sent": 9, "acked": 1, "retried": 7,
                                      "given_up": 1, "dropped": 0}
    assert [a.outcome for a in sender.attempts() if a.task_id == "third-time"] == [
        "500", "503", "204"]


def test_simulator_retries_when_nobody_answers() -> None:
    with StubReceiver(lambda doc: 200) as stub:
        url = stub.url
    world = World(tasks=0, arrival_rate=0.0)  # the stub is closed: connections are refused
    sender = CallbackSender(url, Secret(CALLBACK_SECRET), world, app_id=APP_ID,
                            retry_scale=0.005, timeout=1.0).start()
    try:
        sender.deliver(status_event("t1", 3))
        assert sender.wait_idle(5.0)
    finally:
        sender.stop()
    assert [a.outcome for a in sender.attempts()] == ["connection_error"] * 6
    assert (sender.stats.given_up, sender.stats.retried) == (1, 5)


def test_simulator_refuses_callbacks_it_cannot_send() -> None:
    world = World(tasks=0)
    with pytest.raises(ValueError, match="http"):
        CallbackSender("ftp://example.invalid/cb", Secret("s"), world, app_id=APP_ID)
    with pytest.raises(ValueError, match="secret"):
        CallbackSender("http://127.0.0.1:1/cb", Secret(""), world, app_id=APP_ID)
    with pytest.raises(ValueError, match="both"):
        Simulator(APP_ID, Secret(SECRET_TEXT), world=world,
                  callback_url="http://127.0.0.1:1/cb")
    with pytest.raises(ValueError, match="true or false"):
        CallbackFaults.from_json({"drop": "yes"})


# -- simulator to exporter, over HTTP ----------------------------------------------------------

def test_a_status_change_reaches_metrics_in_milliseconds_without_an_api_call() -> None:
    with callback_pair(3) as (sim, exporter, (task_id,)):
        text = scrape(exporter)
        assert metric(text, "zego_digital_human_task_state", task_id=task_id,
                      state="streaming") == 1
        before = api_requests(sim)
        assert before.get(ACTION_GET_STATUS) == 1

        changed = time.monotonic()
        sim.world.fail(task_id, "RTC room login failed: token expired")

        def failed() -> str | None:
            text = scrape(exporter)
            state = metric(text, "zego_digital_human_task_state", task_id=task_id,
                           state="init_failed")
            return text if state == 1 else None

        text = wait_until(failed, timeout=2.0, what="init_failed on /metrics")
        elapsed = time.monotonic() - changed
        print(f"fail -> /metrics in {elapsed * 1000:.0f} ms")
        assert elapsed < 0.5
        assert metric(text, "zego_digital_human_task_info", task_id=task_id,
                      fail_reason="RTC room login failed: token expired") == 1
        assert metric(text, "zego_digital_human_task_status", task_id=task_id) == 2
        assert metric(text, "zego_digital_human_task_failures_total", room_id="room_0",
                      stream_id="stream_0") == 1
        assert metric(text, "zego_digital_human_callbacks_total", event_type="3",
                      result="accepted") == 1
        assert api_requests(sim) == before  # not one API call since the change
        sender = sim.callbacks
        assert sender is not None
        # Recorded once the answer has been read.
        wait_until(lambda: sender.stats.acked == 1, timeout=5, what="the acknowledgement")


def test_forged_replayed_unsigned_and_oversized_callbacks_are_rejected_and_counted() -> None:
    with callback_pair(3) as (_, exporter, (task_id,)):
        url = exporter.web.url + "/zego/callback"
        genuine = body_of(status_event(task_id, 2, reason="boom"), nonce="a1")
        doc = json.loads(genuine)
        replayed = json.dumps({**doc, "Signature": callback_signature(
            Secret(CALLBACK_SECRET), doc["Timestamp"], "other-nonce")}).encode()
        unsigned = json.dumps({k: v for k, v in doc.items() if k != "Signature"}).encode()
        forged = body_of(status_event(task_id, 2, reason="boom"), secret="guessed")
        oversized = body_of({**status_event(task_id, 2), "Padding": "x" * 70_000})
        for body in (forged, replayed, unsigned):
            status, answer = post(url, body)
            assert (status, json.loads(answer)["result"]) == (401, "bad_signature")
        status, _ = post(url, oversized)
        assert status == 413
        status, _ = post(url, b"{not json")
        assert status == 400
        text = scrape(exporter)
        assert metric(text, "zego_digital_human_task_state", task_id=task_id,
                      state="streaming") == 1  # nothing rejected reached the tracker
        assert metric(text, "zego_digital_human_callbacks_total", event_type="3",
                      result="bad_signature") == 3
        assert metric(text, "zego_digital_human_callbacks_total", event_type="unknown",
                      result="invalid") == 2
        assert metric(text, "zego_digital_human_callbacks_total", event_type="3",
                      result="accepted") == 0
        assert post(url, genuine)[0] == 200
        assert callbacks_counted(exporter, "3", "accepted") == 1


def test_an_init_failure_seen_by_callback_and_by_polling_is_counted_once() -> None:
    policy = RefreshPolicy(interval=3600, fast_interval=0.2, callback_reconcile=3600)
    with callback_pair(1, 1, policy=policy) as (sim, exporter, (first, second)):
        assert sim.callbacks is not None

        def polled_after(task_id: str, since: float) -> bool:
            return any(r.task_id == task_id and r.arrival > since and r.code == "0"
                       for r in sim.stats.requests())

        # Callback first, then the lookup that confirms the ending.
        since = time.monotonic()
        sim.world.fail(first, "model load timeout")
        wait_until(lambda: callbacks_counted(exporter, "3", "accepted") == 1, timeout=5,
                   what="the first callback")
        wait_until(lambda: polled_after(first, since), timeout=5, what="the confirming lookup")
        wait_until(lambda: exporter.tracker.is_settled({first}), timeout=5, what="its answer")
        # Polling first (the callback is lost), then ZEGO's late delivery.
        sim.callbacks.faults = CallbackFaults(drop=True)
        since = time.monotonic()
        sim.world.fail(second, "invalid DigitalHumanId")
        wait_until(lambda: polled_after(second, since), timeout=5,
                   what="a lookup of the failed task")
        wait_until(lambda: metric(scrape(exporter), "zego_digital_human_task_state",
                                task_id=second, state="init_failed") == 1,
                   timeout=5, what="init_failed shown")
        sim.callbacks.faults = CallbackFaults()
        sim.callbacks.deliver(status_event(second, 2, room="room_1", stream="stream_1",
                                           reason="invalid DigitalHumanId", event_time=None))
        wait_until(lambda: callbacks_counted(exporter, "3", "accepted") == 2, timeout=5,
                   what="the late callback")
        text = scrape(exporter)
        for room, stream in (("room_0", "stream_0"), ("room_1", "stream_1")):
            assert metric(text, "zego_digital_human_task_failures_total", room_id=room,
                          stream_id=stream) == 1
        assert sim.callbacks.stats.dropped == 1


def test_simulator_faults_reach_the_exporter_as_zego_would_send_them() -> None:
    with callback_pair(3, 3, 3, 3) as (sim, exporter, (dropped, duplicated, forged, late)):
        sender = sim.callbacks
        assert sender is not None
        # Faults apply when the watcher turns a change into an event: one change at a time.
        for task_id, faults in ((dropped, CallbackFaults(drop=True)),
                                (duplicated, CallbackFaults(duplicate=True)),
                                (forged, CallbackFaults(bad_signature=True))):
            events = sender.stats.events
            sender.faults = faults
            sim.world.fail(task_id)

            def next_event(events: int = events) -> bool:
                return sender.stats.events == events + 1

            wait_until(next_event, timeout=5, what="the next event")
        sender.faults = CallbackFaults(out_of_order=True)
        sim.world.set_status(late, 4)  # held back ...
        wait_until(lambda: sender.stats.events == 4, timeout=5, what="four events")
        sim.world.set_status(late, 5)  # ... until this one has been sent
        assert sender.wait_idle(3.0)  # the forged event's retries included
        text = scrape(exporter)
        states = {task_id: next(state for state in ("streaming", "init_failed", "stopping",
                                                    "stopped")
                                if metric(text, "zego_digital_human_task_state",
                                          task_id=task_id, state=state) == 1)
                  for task_id in (dropped, duplicated, forged, late)}
        assert states == {dropped: "streaming", duplicated: "init_failed", forged: "streaming",
                          late: "stopped"}
        assert metric(text, "zego_digital_human_task_failures_total", room_id="room_1",
                      stream_id="stream_1") == 1
        assert metric(text, "zego_digital_human_callbacks_total", event_type="3",
                      result="ignored") == 1  # the stopping event, older than stopped
        # 401 is not a 2xx, so ZEGO would retry the forged one on its schedule, as here.
        assert Counter(a.outcome for a in sender.attempts()) == {"200": 4, "401": 6}
        assert sender.stats.to_json() == {"events": 5, "sent": 10, "acked": 4, "retried": 5,
                                          "given_up": 1, "dropped": 1}
        assert callbacks_counted(exporter, "3", "bad_signature") == 6
        assert callbacks_counted(exporter, "3", "accepted") == 3


def test_a_callback_for_another_app_id_is_refused_over_http_and_counted() -> None:
    with callback_pair(3) as (sim, exporter, (task_id,)):
        assert callbacks_counted(exporter, "3", "wrong_app") == 0  # there from the start
        sender = sim.callbacks
        assert sender is not None
        sender.deliver({**status_event(task_id, 2, reason="boom"), "AppId": APP_ID + 1})
        assert sender.wait_idle(3.0)
        text = scrape(exporter)
        assert metric(text, "zego_digital_human_task_state", task_id=task_id,
                      state="streaming") == 1
        assert metric(text, "zego_digital_human_callbacks_total", event_type="3",
                      result="wrong_app") == 6  # ZEGO's first try and its five retries
        assert {a.outcome for a in sender.attempts()} == {"403"}


def test_unknown_event_types_are_acknowledged_and_counted_ignored() -> None:
    with callback_pair(3) as (sim, exporter, (task_id,)):
        sender = sim.callbacks
        assert sender is not None
        sender.deliver({"EventType": 4, "TaskId": task_id, "EventTime": 1,
                        "Detail": {"DriveId": "d1", "Status": 2}})
        sender.deliver({"EventType": 42, "TaskId": task_id, "Detail": {"Anything": [1]},
                        "FutureField": {"nested": True}})
        assert sender.wait_idle(3.0)
        assert [a.outcome for a in sender.attempts()] == ["200", "200"]
        text = scrape(exporter)
        assert metric(text, "zego_digital_human_callbacks_total", event_type="4",
                      result="ignored") == 1
        assert metric(text, "zego_digital_human_callbacks_total", event_type="42",
                      result="ignored") == 1
        assert metric(text, "zego_digital_human_task_state", task_id=task_id,
                      state="streaming") == 1


def test_the_callback_endpoint_answers_in_well_under_100_ms() -> None:
    with callback_pair(1) as (_, exporter, (task_id,)):
        url = exporter.web.url + "/zego/callback"
        timings = []
        for n in range(20):
            body = body_of(status_event(task_id, 1 if n % 2 else 3, event_time=1_000 + n),
                           nonce=f"n{n}")
            started = time.perf_counter()
            status, _ = post(url, body)  # a fresh connection each time, as ZEGO would
            timings.append(time.perf_counter() - started)
            assert status == 200
    timings.sort()
    print(f"callback round trips: median {timings[10] * 1000:.1f} ms, "
          f"95th percentile {timings[18] * 1000:.1f} ms, max {timings[19] * 1000:.1f} ms")
    assert timings[18] < 0.1


def test_basic_auth_guards_metrics_but_not_the_callback_path(tmp_path: Path) -> None:
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    config_file = tmp_path / "web.yml"
    config_file.write_text(f"basic_auth_users:\n  alice: '{hashed}'\n")
    web_config = load_web_config(str(config_file))
    with callback_pair(3, security=lambda: web_config) as (sim, exporter, (task_id,)):
        assert get(exporter.web.url + "/metrics")[0] == 401
        status, answer = post(exporter.web.url + "/zego/callback",
                              body_of(status_event(task_id, 4)))
        assert status == 200 and json.loads(answer)["result"] == "accepted"
        sim.world.fail(task_id, "boom")
        assert sim.callbacks is not None and sim.callbacks.wait_idle(3.0)
        assert [a.outcome for a in sim.callbacks.attempts()] == ["200"]
        auth = {"Authorization": "Basic " + base64.b64encode(b"alice:s3cret").decode()}
        status, text = get(exporter.web.url + "/metrics", auth)
        assert status == 200
        assert metric(text, "zego_digital_human_task_state", task_id=task_id,
                      state="init_failed") == 1


def test_the_simulator_admin_api_shows_and_sets_callback_faults() -> None:
    with callback_pair(3) as (sim, _, _ids):
        status, answer = post(sim.url + "/admin/callbacks", b'{"drop": true}')
        assert status == 200
        doc = json.loads(answer)
        assert doc["Faults"]["drop"] is True and doc["Stats"]["events"] == 0
        assert sim.callbacks is not None and sim.callbacks.faults.drop
        status, text = get(sim.url + "/admin/callbacks")
        assert status == 200 and CALLBACK_SECRET not in text
        assert post(sim.url + "/admin/callbacks", b'{"lose": true}')[0] == 400


# -- command line --------------------------------------------------------------------------------

def test_serve_has_a_callback_reconcile_interval_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    class Built(Exception):
        """Raised in the exporter's place: the configuration is all this test wants."""

    configs: list[ExporterConfig] = []

    def record(config: ExporterConfig) -> None:
        configs.append(config)
        raise Built

    monkeypatch.setattr("zego_exporter.cli.Exporter", record)
    monkeypatch.setattr("zego_exporter.cli.logsetup.configure", lambda *a, **k: None)
    for key in [key for key in os.environ if key.startswith("ZEGO_")]:
        monkeypatch.delenv(key)
    args = ["serve", "--zego.app-id", "1", "--zego.server-secret", "x" * 32]
    with pytest.raises(Built):
        cli.main(args=args, standalone_mode=False)
    monkeypatch.setenv("ZEGO_REFRESH_CALLBACK_INTERVAL", "2m30s")
    with pytest.raises(Built):
        cli.main(args=args, standalone_mode=False)
    assert [config.policy.callback_reconcile for config in configs] == [300, 150]


def test_simulate_wants_a_secret_with_a_callback_url(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("zego_exporter.cli.logsetup.configure", lambda *a, **k: None)
    with pytest.raises(SystemExit) as exit_info:
        main(["simulate", "--listen-address", "127.0.0.1:0", "--callback-url",
              "http://127.0.0.1:9877/zego/callback"])
    assert exit_info.value.code == 2
    assert "callback secret" in capsys.readouterr().err


def test_demo_delivers_callbacks_to_its_exporter() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "zego_exporter", "demo", "--web.listen-address",
         "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert process.stdout is not None
        base = None
        for line in process.stdout:
            if match := re.search(r"metrics:\s+(http://\S+)/metrics", line):
                base = match.group(1)
                break
        assert base is not None

        def accepted() -> bool:
            status, text = get(base + "/metrics")
            value = metric(text, "zego_digital_human_callbacks_total", event_type="3",
                           result="accepted")
            return status == 200 and (value or 0) > 0

        wait_until(accepted, timeout=15.0, what="the demo's first accepted callback")
        _, landing = get(base + "/")
        assert "Callbacks" in landing and "on at POST /zego/callback" in landing
    finally:
        process.send_signal(signal.SIGTERM)
        _, errors = process.communicate(timeout=10)
    assert process.returncode == 0, errors
