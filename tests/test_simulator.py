"""The simulated ZEGO API: wire protocol, lifecycle, admin API, faults, rate limit, stats.

Everything that crosses HTTP does so on real loopback sockets; time-dependent behaviour of
the world and the limiter is driven by hand-held clocks instead of sleeps.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import requests

from tests.support.clock import FakeClock
from zego_exporter.responses import ACTION_GET_STATUS, ACTION_QUERY_TASKS
from zego_exporter.signing import Secret, api_signature, new_nonce
from zego_exporter.simulator import (
    FAIL_REASONS,
    BadEntries,
    ClockSkew,
    Drop,
    EmptyList,
    ErrorCode,
    ErrorStatus,
    Faults,
    GatewayLimiter,
    HtmlPage,
    HttpStatus,
    Latency,
    Lifecycle,
    LoggedRequest,
    MalformedJson,
    Oversized,
    Simulator,
    Slow,
    Stats,
    World,
    WrongTypes,
)
from zego_exporter.states import (
    STATUS_INIT_FAILED,
    STATUS_INITIALIZING,
    STATUS_STOPPED,
    STATUS_STOPPING,
    STATUS_STREAMING,
)

START = 1_750_000_000.0


def signed(app_id: int, secret: Secret, action: str, *, timestamp: int | None = None,
           overrides: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """Correctly signed common parameters; an override of None leaves the parameter out."""
    nonce = new_nonce()
    stamp = int(time.time()) if timestamp is None else timestamp
    params = {"Action": action, "AppId": str(app_id), "SignatureNonce": nonce,
              "Timestamp": str(stamp), "Signature": api_signature(app_id, nonce, secret, stamp),
              "SignatureVersion": "2.0"}
    for key, value in (overrides or {}).items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = value
    return params


def post(sim: Simulator, params: dict[str, str], body: bytes = b"{}",
         timeout: float = 5.0) -> requests.Response:
    return requests.post(sim.url + "/", params=params, data=body, timeout=timeout)


def call(sim: Simulator, secret: Secret, action: str, body: dict[str, Any] | None = None,
         overrides: Mapping[str, str | None] | None = None) -> dict[str, Any]:
    response = post(sim, signed(sim.app_id, secret, action, overrides=overrides),
                    json.dumps(body if body is not None else {}).encode())
    assert response.status_code == 200
    doc: dict[str, Any] = response.json()
    return doc


def admin(sim: Simulator, method: str, path: str, body: Any = None) -> requests.Response:
    data = None if body is None else json.dumps(body)
    return requests.request(method, f"{sim.url}/admin/{path}", data=data, timeout=5)


@pytest.fixture
def sim(app_id: int, secret: Secret) -> Iterator[Simulator]:
    world = World.static(5, seed=1)
    world.add_showcase(stop_after=0)
    with Simulator(app_id, secret, world=world) as simulator:
        yield simulator


# -- wire protocol ---------------------------------------------------------------------


def test_answers_the_documented_envelope_over_http11_keepalive(
    sim: Simulator, secret: Secret
) -> None:
    task_id = sim.showcase["init_failed"][0]
    with requests.Session() as session:
        answers = [session.post(sim.url + "/", data=json.dumps({"TaskId": task_id}),
                                params=signed(sim.app_id, secret, ACTION_GET_STATUS),
                                timeout=5) for _ in range(2)]
    for response in answers:
        assert response.status_code == 200
        assert response.raw.version == 11
        assert response.headers["Content-Length"] == str(len(response.content))
        assert response.headers.get("Connection", "keep-alive").lower() != "close"
        doc = response.json()
        assert set(doc) == {"Code", "Message", "RequestId", "Data"}
        assert doc["Code"] == 0 and isinstance(doc["RequestId"], str) and doc["RequestId"]
        assert set(doc["Data"]) == {"Status", "RoomId", "StreamId", "CreateTime", "FailReason"}
        assert doc["Data"]["Status"] == STATUS_INIT_FAILED
        assert doc["Data"]["FailReason"] in FAIL_REASONS
    assert answers[0].json()["RequestId"] != answers[1].json()["RequestId"]
    assert sim.url == f"http://127.0.0.1:{sim.port}"


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"Action": None}, 100000006),
        ({"Action": ""}, 100000006),
        ({"Action": "CreateDigitalHumanStreamTask"}, 100000007),
        ({"Action": "NoSuchAction"}, 100000007),
        ({"AppId": "abc"}, 100000001),
        ({"AppId": None}, 100000001),
        ({"AppId": "4294967296"}, 100000001),
        ({"Timestamp": None}, 100000002),
        ({"Timestamp": "17e8"}, 100000003),
        ({"SignatureNonce": None}, 100000008),
        ({"Signature": None}, 100000009),
        ({"SignatureVersion": None}, 100000013),
        ({"SignatureVersion": "1.0"}, 100000014),
        ({"Signature": "0" * 32}, 100000005),
        ({"AppId": "42"}, 100000005),
        # Several defects at once: the first check in the documented order wins.
        ({"Action": None, "AppId": "abc", "Timestamp": None}, 100000006),
        ({"AppId": "abc", "Timestamp": None, "Signature": None}, 100000001),
        ({"Timestamp": "x", "SignatureNonce": None}, 100000003),
        ({"SignatureNonce": None, "Signature": None, "SignatureVersion": None}, 100000008),
        ({"SignatureVersion": "1.0", "Signature": "0" * 32}, 100000014),
    ],
)
def test_gateway_checks_answer_the_documented_codes_in_order(
    sim: Simulator, secret: Secret, overrides: dict[str, str | None], code: int
) -> None:
    doc = call(sim, secret, ACTION_QUERY_TASKS, overrides=overrides)
    assert doc["Code"] == code
    assert doc.get("Data") is None
    assert doc["Message"]


def test_a_wrong_secret_is_an_invalid_signature(sim: Simulator) -> None:
    doc = call(sim, Secret("not-the-secret"), ACTION_QUERY_TASKS)
    assert doc["Code"] == 100000005


def test_timestamps_up_to_600_seconds_away_are_accepted(app_id: int, secret: Secret) -> None:
    clock = FakeClock(START)
    with Simulator(app_id, secret, world=World.static(1, clock=clock), clock=clock) as sim:
        codes = {offset: post(sim, signed(app_id, secret, ACTION_QUERY_TASKS,
                                          timestamp=int(START) + offset)).json()["Code"]
                 for offset in (-601, -600, 600, 601)}
    assert codes == {-601: 100000004, -600: 0, 600: 0, 601: 100000004}


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{}", "TaskId"),
        (b'{"TaskId": 42}', "TaskId"),
        (b'{"TaskId": ""}', "TaskId"),
        (b"[1, 2]", "JSON object"),
        (b"not json", "JSON object"),
        (b"", "JSON object"),
    ],
)
def test_bad_bodies_are_invalid_parameters(
    sim: Simulator, secret: Secret, body: bytes, fragment: str
) -> None:
    doc = post(sim, signed(sim.app_id, secret, ACTION_GET_STATUS), body).json()
    assert doc["Code"] == 400000001
    assert fragment in doc["Message"]


def test_query_rejects_a_body_that_is_not_an_object(sim: Simulator, secret: Secret) -> None:
    doc = post(sim, signed(sim.app_id, secret, ACTION_QUERY_TASKS), b"[]").json()
    assert doc["Code"] == 400000001


def test_unknown_and_removed_tasks_are_not_found(sim: Simulator, secret: Secret) -> None:
    for task_id in ("f" * 32, sim.showcase["not_found"][0]):
        doc = call(sim, secret, ACTION_GET_STATUS, {"TaskId": task_id})
        assert doc["Code"] == 400000005
        assert doc.get("Data") is None


def test_status_answers_carry_fail_reason_only_when_failed(
    sim: Simulator, secret: Secret
) -> None:
    expected = {"initializing": 1, "init_failed": 2, "streaming": 3, "stopping": 4,
                "unknown": 7}
    for state, status in expected.items():
        data = call(sim, secret, ACTION_GET_STATUS, {"TaskId": sim.showcase[state][0]})["Data"]
        assert data["Status"] == status
        assert ("FailReason" in data) == (status == STATUS_INIT_FAILED)
        assert re.fullmatch(r"room_\d{4,}", data["RoomId"])
        assert re.fullmatch(r"stream_\d{4,}_[0-9a-f]{4}", data["StreamId"])
        assert isinstance(data["CreateTime"], int)


@pytest.mark.parametrize(("ended", "stopped_answer"), [
    ("not-found", (400000005, None)),  # ZEGO's current docs: GetStatus lists Status 1-4
    ("status-5", (0, 5)),  # the docs before Nov 2025
])
def test_a_stopped_task_answers_as_the_chosen_reading_of_the_docs(
    app_id: int, secret: Secret, ended: str, stopped_answer: tuple[int, int | None]
) -> None:
    clock = FakeClock(time.time())
    world = World(tasks=0, arrival_rate=0.0, clock=clock,
                  lifecycle=Lifecycle(stopping=(2.0, 2.0), stopped=(30.0, 30.0),
                                      init_failed=(20.0, 20.0)))
    running = world.add_task(status=STATUS_STREAMING)
    failing = world.add_task(status=STATUS_INITIALIZING)
    world.stop(running)
    world.fail(failing, "no render node available")
    with Simulator(app_id, secret, world=world, ended_tasks=ended) as sim:
        def answer(task_id: str) -> tuple[int, int | None]:
            doc = call(sim, secret, ACTION_GET_STATUS, {"TaskId": task_id})
            return doc["Code"], (doc.get("Data") or {}).get("Status")

        assert answer(running) == (0, STATUS_STOPPING)
        assert answer(failing) == (0, STATUS_INIT_FAILED)  # Status 2 is documented: answered
        clock.now += 3
        assert answer(running) == stopped_answer
        clock.now += 40
        assert answer(running) == (400000005, None)  # gone, in either reading
        assert answer(failing) == (0, STATUS_INIT_FAILED)  # pinned by hand: stays
        assert sim.world.get(running) is None
    with pytest.raises(ValueError, match="ended tasks"):
        Simulator(app_id, secret, world=world, ended_tasks="sometimes")


def test_a_failed_task_answers_status_2_for_a_while_then_not_found(
    app_id: int, secret: Secret
) -> None:
    clock = FakeClock(time.time())
    world = World(tasks=0, arrival_rate=0.0, clock=clock,
                  lifecycle=Lifecycle(initializing=(6.0, 6.0), init_failure_rate=1.0,
                                      init_failed=(10.0, 10.0)))
    task_id = world.add_task()
    with Simulator(app_id, secret, world=world) as sim:
        codes = []
        for _ in range(5):  # failed at 6 s, gone at 16 s
            doc = call(sim, secret, ACTION_GET_STATUS, {"TaskId": task_id})
            codes.append((doc["Code"], (doc.get("Data") or {}).get("Status")))
            clock.now += 5
    assert codes == [(0, 1), (0, 1), (0, 2), (0, 2), (400000005, None)]


def test_query_lists_only_initializing_and_streaming_tasks(
    sim: Simulator, secret: Secret
) -> None:
    data = call(sim, secret, ACTION_QUERY_TASKS)["Data"]
    listed = {task["TaskId"]: task for task in data["TaskList"]}
    expected = {task.task_id for task in sim.world.tasks() if task.status in {1, 3}}
    assert set(listed) == expected
    assert {*sim.showcase["initializing"], *sim.showcase["streaming"]} <= set(listed)
    assert len(listed) == 5 + 2
    for task in listed.values():
        assert set(task) == {"TaskId", "RoomId", "StreamId", "CreateTime", "Status"}
        assert re.fullmatch(r"[0-9a-f]{32}", task["TaskId"])


def test_other_paths_and_methods(sim: Simulator) -> None:
    assert requests.get(sim.url + "/", timeout=5).status_code == 200
    assert requests.put(sim.url + "/", timeout=5).status_code == 405
    assert requests.post(sim.url + "/v1/other", timeout=5).status_code == 404
    assert sim.stats.actions() == {}


# -- the world ---------------------------------------------------------------------------


def test_same_seed_and_clock_give_the_same_world() -> None:
    def history(seed: int) -> list[list[tuple[str, int]]]:
        clock = FakeClock(START)
        world = World(seed=seed, tasks=30, arrival_rate=0.5, clock=clock)
        seen = []
        for _ in range(120):
            clock.now += 5
            seen.append([(task.task_id, task.status) for task in world.tasks()])
        return seen

    first = history(11)
    assert first == history(11)
    assert first != history(12)
    statuses = {status for moment in first for _, status in moment}
    assert statuses == {STATUS_INITIALIZING, STATUS_INIT_FAILED, STATUS_STREAMING,
                        STATUS_STOPPING, STATUS_STOPPED}


def test_a_task_steps_through_initializing_streaming_stopping_stopped_not_found() -> None:
    clock = FakeClock(START)
    lifecycle = Lifecycle(init_failure_rate=0.0, stopping_rate=1.0)
    world = World(seed=3, tasks=0, arrival_rate=0.0, lifecycle=lifecycle, clock=clock)
    task_id = world.add_task()
    schedule = world.schedule(task_id)
    assert schedule is not None
    assert [status for _, status in schedule] == [1, 3, 4, 5, None]
    times = [when for when, _ in schedule]
    assert times[0] == START
    assert 1.0 <= times[1] - times[0] <= 6.0
    assert 120.0 <= times[2] - times[1] <= 3600.0
    assert 2.0 <= times[3] - times[2] <= 5.0
    assert 30.0 <= times[4] - times[3] <= 60.0
    for (since, status), (until, _) in itertools.pairwise(schedule):
        for moment in (since, (since + until) / 2, until - 1e-3):
            clock.now = moment
            view = world.get(task_id)
            assert view is not None and view.status == status
    clock.now = times[-1]
    assert world.get(task_id) is None


def test_a_failing_task_reports_its_reason_then_disappears() -> None:
    clock = FakeClock(START)
    world = World(seed=4, tasks=0, arrival_rate=0.0,
                  lifecycle=Lifecycle(init_failure_rate=1.0), clock=clock)
    task_id = world.add_task()
    schedule = world.schedule(task_id)
    assert schedule is not None
    assert [status for _, status in schedule] == [1, 2, None]
    clock.now = schedule[1][0]
    view = world.get(task_id)
    assert view is not None and view.status == STATUS_INIT_FAILED
    assert view.fail_reason in FAIL_REASONS
    clock.now = schedule[2][0]
    assert world.get(task_id) is None


def test_about_15_percent_of_tasks_fail_to_initialize() -> None:
    world = World(seed=7, tasks=0, arrival_rate=0.0, clock=FakeClock(START))
    schedules = [world.schedule(world.add_task()) for _ in range(2000)]
    failed = sum(1 for steps in schedules
                 if steps and any(s == STATUS_INIT_FAILED for _, s in steps))
    assert 0.12 < failed / len(schedules) < 0.18
    stopping = sum(1 for steps in schedules
                   if steps and any(s == STATUS_STOPPING for _, s in steps))
    assert 0.55 < stopping / (len(schedules) - failed) < 0.85


def test_tasks_arrive_as_a_seeded_poisson_process() -> None:
    clock = FakeClock(START)
    world = World(seed=5, tasks=0, arrival_rate=2.0, lifecycle=Lifecycle.forever(),
                  clock=clock)
    assert world.count() == 0
    clock.now += 100
    arrived = world.tasks()
    assert 150 < len(arrived) < 250
    assert all(START <= task.create_time <= START + 100 for task in arrived)
    assert len({task.task_id for task in arrived}) == len(arrived)


def test_static_world_streams_forever_without_arrivals() -> None:
    clock = FakeClock(START)
    world = World.static(50, seed=2, clock=clock)
    clock.now += 86400 * 30
    assert world.count(STATUS_STREAMING) == 50 == world.count()
    assert len(world.running()) == 50


def test_demo_lifecycle_passes_every_state_within_about_ten_seconds() -> None:
    world = World(seed=9, tasks=0, arrival_rate=0.0, lifecycle=Lifecycle.demo(),
                  clock=FakeClock(START))
    for _ in range(50):
        schedule = world.schedule(world.add_task())
        assert schedule is not None
        assert schedule[-1][0] - schedule[0][0] < 20.0
    assert Lifecycle().scaled(0.1).initializing == pytest.approx((0.1, 0.6))
    assert Lifecycle.forever().scaled(0.1).streaming == (math.inf, math.inf)
    with pytest.raises(ValueError, match="time scale"):
        Lifecycle().scaled(0)


def test_status_can_be_set_by_hand() -> None:
    clock = FakeClock(START)
    world = World.static(1, clock=clock)
    task_id = world.add_task(status=STATUS_STREAMING, room_id="room_x", stream_id="stream_x")
    view = world.get(task_id)
    assert view is not None and (view.room_id, view.stream_id, view.pinned) == (
        "room_x", "stream_x", True)
    world.fail(task_id, "invalid DigitalHumanId")
    assert world.get(task_id) == view._replace(status=2, fail_reason="invalid DigitalHumanId")
    world.set_status(task_id, 7)
    assert (world.get(task_id) or view).status == 7
    world.stream(task_id)
    world.stop(task_id)
    assert (world.get(task_id) or view).status == STATUS_STOPPING
    clock.now += 5.0
    assert (world.get(task_id) or view).status == STATUS_STOPPED
    clock.now += 60.0
    assert world.get(task_id) is None
    other = world.add_task(status=STATUS_STREAMING)
    world.remove(other)
    assert world.get(other) is None
    with pytest.raises(KeyError):
        world.fail("f" * 32)


def test_the_showcase_stopped_task_streams_first_then_stops() -> None:
    clock = FakeClock(START)
    world = World(tasks=0, arrival_rate=0.0, clock=clock)
    [stopped] = world.add_showcase(stop_after=4.0)["stopped"]
    view = world.get(stopped)
    assert view is not None and view.status == STATUS_STREAMING
    clock.now += 4.0
    view = world.get(stopped)
    assert view is not None and view.status == STATUS_STOPPED
    clock.now += 1e6
    assert world.get(stopped) is not None  # stays stopped: pinned
    other = World(tasks=0, clock=clock)
    [at_once] = other.add_showcase(stop_after=0)["stopped"]
    view = other.get(at_once)
    assert view is not None and view.status == STATUS_STOPPED


def test_long_gone_tasks_are_forgotten() -> None:
    clock = FakeClock(START)
    world = World(seed=1, tasks=0, arrival_rate=0.0, clock=clock, prune_after=300.0)
    task_id = world.add_task(status=STATUS_STREAMING)
    world.remove(task_id)
    clock.now += 299
    assert world.schedule(task_id) is not None
    clock.now += 302
    assert world.schedule(task_id) is None
    assert world.get(task_id) is None


def test_showcase_holds_every_state(app_id: int, secret: Secret) -> None:
    sim = Simulator.from_options(app_id=app_id, server_secret=secret, showcase=True,
                                 lifecycle="demo", tasks=3)
    try:
        ids = sim.showcase
        assert set(ids) == {"initializing", "init_failed", "streaming", "stopping", "stopped",
                            "not_found", "unknown"}
        statuses = {state: [(sim.world.get(i) or None) for i in task_ids]
                    for state, task_ids in ids.items()}
        assert statuses["not_found"] == [None]
        assert sim.world.schedule(ids["not_found"][0]) is None  # it never existed
        assert [view.status for view in statuses["unknown"] if view] == [7]
        assert [view.status for view in statuses["stopping"] if view] == [4]
    finally:
        sim.stop()
    with pytest.raises(ValueError, match="lifecycle"):
        Simulator.from_options(app_id=app_id, server_secret=secret, lifecycle="fast")


# -- admin API ---------------------------------------------------------------------------


def test_admin_api_controls_tasks(sim: Simulator, secret: Secret) -> None:
    created = admin(sim, "POST", "tasks", {"Status": 3, "RoomId": "room_9", "StreamId": "s9"})
    assert created.status_code == 201
    task_id = created.json()["TaskId"]
    assert re.fullmatch(r"[0-9a-f]{32}", task_id)
    one = admin(sim, "GET", f"tasks/{task_id}").json()
    assert (one["Status"], one["RoomId"], one["StreamId"], one["Pinned"]) == (
        3, "room_9", "s9", True)
    assert one["Schedule"] == [[pytest.approx(one["CreateTime"], abs=1), 3]]

    failed = admin(sim, "POST", f"tasks/{task_id}/fail", {"FailReason": "no render node"})
    assert (failed.json()["Status"], failed.json()["FailReason"]) == (2, "no render node")
    data = call(sim, secret, ACTION_GET_STATUS, {"TaskId": task_id})["Data"]
    assert (data["Status"], data["FailReason"]) == (2, "no render node")

    assert admin(sim, "POST", f"tasks/{task_id}/status", {"Status": 7}).json()["Status"] == 7
    assert admin(sim, "POST", f"tasks/{task_id}/stream").json()["Status"] == 3
    assert admin(sim, "POST", f"tasks/{task_id}/stop").json()["Status"] == 4
    listed = admin(sim, "GET", "tasks?status=4").json()
    assert task_id in {task["TaskId"] for task in listed["Tasks"]}
    assert listed["Count"] == len(listed["Tasks"]) == 2
    assert admin(sim, "GET", "tasks?limit=3").json()["Count"] == 5 + 6 + 1
    assert len(admin(sim, "GET", "tasks?limit=3").json()["Tasks"]) == 3

    assert admin(sim, "DELETE", f"tasks/{task_id}").json()["Status"] is None
    assert call(sim, secret, ACTION_GET_STATUS, {"TaskId": task_id})["Code"] == 400000005
    assert admin(sim, "GET", "showcase").json() == sim.showcase

    # Without a Status the task follows the world's lifecycle: the static world's streams
    # from its creation on.
    followed = admin(sim, "GET", f"tasks/{admin(sim, 'POST', 'tasks', {}).json()['TaskId']}")
    assert (followed.json()["Status"], followed.json()["Pinned"]) == (STATUS_STREAMING, False)


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "fragment"),
    [
        ("GET", "nothing", None, 404, "no admin endpoint"),
        ("GET", "tasks/" + "f" * 32, None, 404, "no task"),
        ("POST", "tasks/" + "f" * 32 + "/stop", None, 404, "no task"),
        ("POST", "tasks", {"Status": "3"}, 400, "Status must be a number"),
        ("POST", "tasks", {"Colour": "red"}, 400, "unknown task fields"),
        ("POST", "tasks", [1], 400, "JSON object"),
        ("POST", "faults", {"slow": {"seconds": "long"}}, 400, "slow.seconds"),
        ("POST", "faults", {"flood": {}}, 400, "unknown fault"),
        ("GET", "tasks?limit=many", None, 400, "limit"),
    ],
)
def test_admin_api_says_what_is_wrong(
    sim: Simulator, method: str, path: str, body: Any, status: int, fragment: str
) -> None:
    response = admin(sim, method, path, body)
    assert response.status_code == status
    assert fragment in response.json()["error"]


def test_admin_api_says_a_body_is_not_json_and_what_to_send(sim: Simulator) -> None:
    response = requests.post(f"{sim.url}/admin/faults", data="latency=1", timeout=5)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error.startswith("the request body is not JSON (") and "send a JSON object" in error


def test_admin_api_sets_faults_and_reads_stats(sim: Simulator, secret: Secret) -> None:
    settings: dict[str, dict[str, Any]] = {
        "error": {"rate": 1.0, "code": 400010000, "action": ACTION_QUERY_TASKS},
        "latency": {"seconds": 0.01}}
    assert admin(sim, "POST", "faults", settings).status_code == 200
    stored = admin(sim, "GET", "faults").json()
    assert stored["error"] == {**settings["error"]}
    assert stored["latency"] == {"rate": 1.0, "action": None, "seconds": 0.01}
    assert call(sim, secret, ACTION_QUERY_TASKS)["Code"] == 400010000
    assert call(sim, secret, ACTION_GET_STATUS, {"TaskId": "x"})["Code"] == 400000005

    stats = admin(sim, "GET", "stats").json()
    assert stats["actions"][ACTION_QUERY_TASKS] == {
        "requests": 1, "accepted": 1, "rate_limited": 0, "codes": {"400010000": 1},
        "faults": {"error": 1, "latency": 1}}
    assert stats["actions"][ACTION_GET_STATUS]["faults"] == {"latency": 1}
    assert stats["peak_per_second"]["all"] == 2
    log = admin(sim, "GET", "requests?limit=1").json()["requests"]
    assert [(r["action"], r["task_id"], r["code"]) for r in log] == [
        (ACTION_GET_STATUS, "x", "400000005")]

    assert admin(sim, "DELETE", "faults").json() == {}
    assert sim.faults == Faults()
    assert admin(sim, "POST", "stats/reset").json()["actions"] == {}
    assert sim.stats.requests() == []
    assert secret.reveal() not in json.dumps(stats) + repr(sim)


# -- faults ------------------------------------------------------------------------------


def test_latency_and_error_code_faults(sim: Simulator, secret: Secret) -> None:
    sim.faults = Faults(latency=Latency(seconds=0.2), error=ErrorCode(code=400010002))
    started = time.monotonic()
    doc = call(sim, secret, ACTION_QUERY_TASKS)
    assert time.monotonic() - started >= 0.2
    assert (doc["Code"], doc.get("Data")) == (400010002, None)


def test_faults_limited_to_one_action(sim: Simulator, secret: Secret) -> None:
    sim.faults = Faults(error=ErrorCode(code=400010000, action=ACTION_GET_STATUS))
    assert call(sim, secret, ACTION_QUERY_TASKS)["Code"] == 0
    assert call(sim, secret, ACTION_GET_STATUS, {"TaskId": "x"})["Code"] == 400010000


@pytest.mark.parametrize("status", [503, 429])
def test_http_status_fault(sim: Simulator, secret: Secret, status: int) -> None:
    sim.faults = Faults(http_status=HttpStatus(status=status))
    response = post(sim, signed(sim.app_id, secret, ACTION_QUERY_TASKS))
    assert response.status_code == status
    assert response.text.startswith(str(status))
    assert sim.stats.action(ACTION_QUERY_TASKS).codes == {f"http_{status}": 1}


@pytest.mark.parametrize(("status", "label"), [(502, "http_502"), (200, "html")])
def test_html_fault(sim: Simulator, secret: Secret, status: int, label: str) -> None:
    sim.faults = Faults(html=HtmlPage(status=status))
    response = post(sim, signed(sim.app_id, secret, ACTION_QUERY_TASKS))
    assert response.status_code == status
    assert response.headers["Content-Type"] == "text/html"
    assert response.text.startswith("<html>") and "502 Bad Gateway" in response.text
    assert sim.stats.action(ACTION_QUERY_TASKS).codes == {label: 1}


def test_malformed_json_fault(sim: Simulator, secret: Secret) -> None:
    sim.faults = Faults(malformed_json=MalformedJson())
    response = post(sim, signed(sim.app_id, secret, ACTION_QUERY_TASKS))
    assert response.status_code == 200
    with pytest.raises(ValueError):
        json.loads(response.content)


def test_wrong_types_fault(sim: Simulator, secret: Secret) -> None:
    """Wrong types, not numbers written as strings (a client should read those)."""
    sim.faults = Faults(wrong_types=WrongTypes())
    listed = call(sim, secret, ACTION_QUERY_TASKS)["Data"]["TaskList"]
    assert isinstance(listed, dict) and listed["Tasks"]
    one = call(sim, secret, ACTION_GET_STATUS, {"TaskId": sim.showcase["streaming"][0]})
    assert one["Data"]["Status"] == {"Value": 3} and one["Data"]["CreateTime"] == "yesterday"
    assert call(sim, secret, ACTION_GET_STATUS, {"TaskId": "x"})["Code"] == [400000005]


@pytest.mark.parametrize(("status", "code", "expected"), [
    (0, 100000005, 401), (0, 400010001, 403), (0, 400000005, 404), (0, 400010009, 429),
    (0, 400010000, 500), (0, 400010002, 503), (0, 400000001, 400), (502, 400000005, 502),
])
def test_error_status_fault_sends_error_envelopes_with_a_non_200_status(
    sim: Simulator, secret: Secret, status: int, code: int, expected: int
) -> None:
    sim.faults = Faults(error_status=ErrorStatus(status=status),
                        error=ErrorCode(code=code, action=ACTION_QUERY_TASKS))
    response = post(sim, signed(sim.app_id, secret, ACTION_QUERY_TASKS))
    assert response.status_code == expected
    assert response.json()["Code"] == code and response.json()["RequestId"]
    assert sim.stats.action(ACTION_QUERY_TASKS).codes == {str(code): 1}
    ok = post(sim, signed(sim.app_id, secret, ACTION_GET_STATUS),
              json.dumps({"TaskId": sim.showcase["streaming"][0]}).encode())
    assert ok.status_code == 200 and ok.json()["Code"] == 0  # successes stay 200


@pytest.mark.parametrize(("form", "data"), [
    ("null_data", {"Data": None}), ("no_data", {}), ("null_list", {"Data": {"TaskList": None}}),
    ("no_list", {"Data": {}}), ("empty_list", {"Data": {"TaskList": []}}),
])
def test_empty_list_fault_sends_an_empty_list_in_each_form(
    app_id: int, secret: Secret, form: str, data: dict[str, Any]
) -> None:
    with Simulator(app_id, secret, world=World(tasks=0, arrival_rate=0.0),
                   faults=Faults(empty_list=EmptyList(form=form))) as sim:
        doc = call(sim, secret, ACTION_QUERY_TASKS)
        sim.world.add_task(status=STATUS_STREAMING)
        unchanged = call(sim, secret, ACTION_QUERY_TASKS)  # only an empty list changes
    assert {k: v for k, v in doc.items() if k == "Data"} == data
    assert len(unchanged["Data"]["TaskList"]) == 1
    with pytest.raises(ValueError, match="form"):
        EmptyList(form="nothing")


def test_bad_entries_fault_spoils_every_nth_entry(sim: Simulator, secret: Secret) -> None:
    sim.faults = Faults(bad_entries=BadEntries(every=3))
    listed = call(sim, secret, ACTION_QUERY_TASKS)["Data"]["TaskList"]
    assert len(listed) == 7
    spoiled = [n for n, task in enumerate(listed)
               if "TaskId" not in task or not isinstance(task["Status"], int)]
    assert spoiled == [2, 5]


def test_the_new_faults_round_trip_through_the_admin_api(sim: Simulator) -> None:
    settings = {"error_status": {"status": 0}, "empty_list": {"form": "no_data"},
                "bad_entries": {"every": 4}}
    assert admin(sim, "POST", "faults", settings).status_code == 200
    assert sim.faults == Faults(error_status=ErrorStatus(), empty_list=EmptyList(form="no_data"),
                                bad_entries=BadEntries(every=4))
    assert admin(sim, "POST", "faults", {"empty_list": {"form": 3}}).status_code == 400


def test_slow_fault_outlasts_a_client_timeout_and_stop_wakes_it(
    app_id: int, secret: Secret
) -> None:
    sim = Simulator(app_id, secret, world=World.static(1), faults=Faults(slow=Slow(seconds=30)))
    sim.start()
    with pytest.raises(requests.ReadTimeout):
        post(sim, signed(app_id, secret, ACTION_QUERY_TASKS), timeout=0.3)
    assert sim.stats.action(ACTION_QUERY_TASKS).faults == {"slow": 1}
    started = time.monotonic()
    sim.stop()
    assert time.monotonic() - started < 2.0


def test_oversized_fault_streams_valid_padded_json_in_chunks(
    sim: Simulator, secret: Secret
) -> None:
    sim.faults = Faults(oversized=Oversized(size=50_000, chunk_size=10_000, chunk_delay=0.05))
    started = time.monotonic()
    response = post(sim, signed(sim.app_id, secret, ACTION_QUERY_TASKS))
    assert time.monotonic() - started >= 0.2  # at least 5 chunks, 4 pauses
    assert response.headers["Content-Length"] == "50000"
    assert len(response.content) == 50_000
    doc = response.json()
    assert doc["Code"] == 0 and len(doc["Data"]["TaskList"]) == 7
    assert set(doc["Padding"]) == {"x"}


def test_drop_fault_hangs_up_without_an_answer(sim: Simulator, secret: Secret) -> None:
    sim.faults = Faults(drop=Drop())
    with pytest.raises(requests.ConnectionError):
        post(sim, signed(sim.app_id, secret, ACTION_QUERY_TASKS))
    assert sim.stats.action(ACTION_QUERY_TASKS).codes == {"drop": 1}


@pytest.mark.parametrize("skew", [601.0, -601.0])
def test_clock_skew_fault_makes_signatures_look_expired(
    app_id: int, secret: Secret, skew: float
) -> None:
    clock = FakeClock(START)  # the request's Timestamp is exactly the simulator's time

    def code(sim: Simulator) -> int:
        params = signed(app_id, secret, ACTION_QUERY_TASKS, timestamp=int(START))
        return int(post(sim, params).json()["Code"])

    with Simulator(app_id, secret, world=World.static(1, clock=clock), clock=clock) as sim:
        sim.faults = Faults(clock_skew=ClockSkew(seconds=skew))
        assert code(sim) == 100000004
        sim.faults = Faults(clock_skew=ClockSkew(seconds=skew / 2))
        assert code(sim) == 0


def test_fault_rates_are_seeded(app_id: int, secret: Secret) -> None:
    def codes(seed: int) -> list[int]:
        faults = Faults(error=ErrorCode(rate=0.5, code=400010002))
        with Simulator(app_id, secret, world=World.static(1), faults=faults, seed=seed,
                       qps=0) as sim, requests.Session() as session:
            return [session.post(sim.url + "/", params=signed(app_id, secret,
                                                              ACTION_QUERY_TASKS),
                                 data="{}", timeout=5).json()["Code"] for _ in range(40)]

    first = codes(1)
    assert first == codes(1)
    assert first != codes(2)
    assert 10 < first.count(400010002) < 30
    assert set(first) == {0, 400010002}


# -- rate limit and request log ----------------------------------------------------------


def test_30_simultaneous_requests_see_exactly_10_accepted(app_id: int, secret: Secret) -> None:
    with Simulator(app_id, secret, world=World.static(3)) as sim:
        barrier = threading.Barrier(30)
        codes: list[int] = []
        lock = threading.Lock()

        def fire() -> None:
            params = signed(app_id, secret, ACTION_GET_STATUS)
            barrier.wait()
            code = post(sim, params, b'{"TaskId": "x"}').json()["Code"]
            with lock:
                codes.append(code)

        threads = [threading.Thread(target=fire) for _ in range(30)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        log = sim.stats.requests()
        stats = sim.stats.action(ACTION_GET_STATUS)
    assert sorted(codes) == [400000005] * 10 + [400010009] * 20
    assert (stats.accepted, stats.rate_limited) == (10, 20)
    first = min(request.arrival for request in log)
    assert sum(1 for r in log if r.accepted and r.arrival - first < 1.0) == 10
    assert sim.stats.peak(action=ACTION_GET_STATUS, accepted_only=True) == 10
    assert sim.stats.peak() == 30


def test_limiter_is_a_strict_sliding_window_that_does_not_count_rejections() -> None:
    clock = FakeClock(0.0)
    limiter = GatewayLimiter(3, monotonic=clock)

    def at(moment: float, action: str = "A") -> bool:
        clock.now = moment
        return limiter.acquire(action)[0]

    assert [at(t) for t in (0.0, 0.1, 0.2, 0.3, 0.999)] == [True, True, True, False, False]
    assert at(0.5, "B")  # each Action has its own window
    assert at(1.0)  # the request at 0.0 is now a full second old
    assert not at(1.05)  # 0.1, 0.2 and 1.0 are in the window; the rejected ones are not
    assert at(1.1)
    assert limiter.acquire("A") == (False, 1.1)


def test_limiter_limits_per_action_and_zero_means_unlimited() -> None:
    clock = FakeClock(0.0)
    limiter = GatewayLimiter({"A": 1, "B": 0}, default=2, monotonic=clock)
    assert [limiter.acquire("A")[0] for _ in range(2)] == [True, False]
    assert all(limiter.acquire("B")[0] for _ in range(100))
    assert [limiter.acquire("C")[0] for _ in range(3)] == [True, True, False]
    with pytest.raises(ValueError):
        GatewayLimiter(-1)


def test_limiter_is_exact_across_threads() -> None:
    limiter = GatewayLimiter(10, monotonic=lambda: 0.0)
    accepted: list[bool] = []
    lock = threading.Lock()

    def hammer() -> None:
        results = [limiter.acquire("A")[0] for _ in range(200)]
        with lock:
            accepted.extend(results)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert accepted.count(True) == 10 and len(accepted) == 1600


def test_peak_counts_the_busiest_sliding_window() -> None:
    stats = Stats(log_size=5)
    for arrival, action, accepted in [(0.0, "A", True), (0.5, "B", True),
                                      (0.999, "A", False), (1.0, "A", True),
                                      (1.5, "A", True), (9.0, "A", True)]:
        stats.record(LoggedRequest(arrival, action, None, "0", accepted=accepted))
    assert len(stats.requests()) == 5  # the log is bounded: the first entry fell out
    assert stats.peak() == 3  # 0.5, 0.999, 1.0: 1.5 is a full second after 0.5
    assert stats.peak(action="A") == 3  # 0.999, 1.0, 1.5
    assert stats.peak(action="A", accepted_only=True) == 2
    assert stats.peak(window=10.0) == 5
    assert stats.action("A").requests == 5  # counters are not bounded by the log
    stats.reset()
    assert stats.peak() == 0 and stats.action("A").requests == 0


# -- serving ----------------------------------------------------------------------------


def test_stop_hangs_up_idle_connections_and_frees_the_port(
    app_id: int, secret: Secret
) -> None:
    sim = Simulator(app_id, secret, world=World.static(1)).start()
    session = requests.Session()
    assert session.post(sim.url + "/", params=signed(app_id, secret, ACTION_QUERY_TASKS),
                        data="{}", timeout=5).json()["Code"] == 0
    started = time.monotonic()
    sim.stop()
    sim.stop()  # idempotent
    assert time.monotonic() - started < 1.0
    with pytest.raises(ConnectionRefusedError), socket.create_connection(
        ("127.0.0.1", sim.port), timeout=1
    ):
        pass
    session.close()
    with pytest.raises(RuntimeError):
        sim.start()


def test_serve_forever_returns_when_stopped(app_id: int, secret: Secret) -> None:
    sim = Simulator(app_id, secret, world=World.static(1))
    server = threading.Thread(target=sim.serve_forever)
    server.start()
    assert post(sim, signed(app_id, secret, ACTION_QUERY_TASKS)).json()["Code"] == 0
    sim.stop()
    server.join(timeout=2)
    assert not server.is_alive()
