"""The real ZegoClient against the simulated ZEGO API on loopback: every way a call can end.

Each failure test checks the outcome label (the `code` of zego_digital_human_api_requests_total)
and whether retrying can help, since the refresh engine acts on both.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from zego_exporter import __version__
from zego_exporter.client import ZegoClient
from zego_exporter.errors import ApiError, InvalidResponse, TaskNotFound, TransportError, ZegoError
from zego_exporter.responses import ACTION_GET_STATUS, ACTION_QUERY_TASKS, TaskStatus
from zego_exporter.signing import Secret
from zego_exporter.simulator import (
    BadEntries,
    Drop,
    EmptyList,
    ErrorCode,
    ErrorStatus,
    Faults,
    HtmlPage,
    HttpStatus,
    MalformedJson,
    Oversized,
    Simulator,
    Slow,
    World,
    WrongTypes,
)

Call = Callable[[ZegoClient], object]


@pytest.fixture
def sim(app_id: int, secret: Secret) -> Iterator[Simulator]:
    world = World.static(3, seed=1)
    world.add_showcase()
    with Simulator(app_id, secret, world=world) as simulator:
        yield simulator


@pytest.fixture
def client(sim: Simulator, app_id: int, secret: Secret) -> Iterator[ZegoClient]:
    zego = ZegoClient(app_id, secret, sim.url)
    yield zego
    zego.close()


def get_status(task_id: str) -> Call:
    return lambda zego: zego.get_task_status(task_id)


def query(zego: ZegoClient) -> object:
    return zego.query_running_tasks()


def failure(call: Call, zego: ZegoClient) -> ZegoError:
    with pytest.raises(ZegoError) as info:
        call(zego)
    return info.value


# -- answers -----------------------------------------------------------------------------


def test_get_task_status_returns_the_task(sim: Simulator, client: ZegoClient) -> None:
    for state in ("initializing", "init_failed", "streaming", "stopping", "unknown"):
        task_id = sim.showcase[state][0]
        view = sim.world.get(task_id)
        assert view is not None
        assert client.get_task_status(task_id) == TaskStatus(
            task_id, view.status, view.room_id, view.stream_id, view.create_time,
            view.fail_reason)
    assert client.get_task_status(sim.showcase["init_failed"][0]).fail_reason


def test_query_running_tasks_returns_every_running_task(
    sim: Simulator, client: ZegoClient
) -> None:
    listed = client.query_running_tasks()
    assert {task.task_id for task in listed.tasks} == {
        task.task_id for task in sim.world.running()}
    assert {task.status for task in listed.tasks} == {1, 3}
    assert len(listed.tasks) == 3 + 3  # the showcase's "stopped" task streams for 5 s first
    assert listed.skipped == 0 and len(listed.request_id) == 32


def test_a_100000_task_list_fits_the_default_size_cap(app_id: int, secret: Secret) -> None:
    with Simulator(app_id, secret, world=World.static(100_000)) as sim:
        zego = ZegoClient(app_id, secret, sim.url)
        listed = zego.query_running_tasks().tasks
        zego.close()
    assert len(listed) == 100_000
    assert len({task.task_id for task in listed}) == 100_000


def test_an_oversized_answer_within_the_cap_still_parses(
    sim: Simulator, app_id: int, secret: Secret
) -> None:
    sim.faults = Faults(oversized=Oversized(size=50_000))
    zego = ZegoClient(app_id, secret, sim.url, max_response_bytes=60_000)
    assert len(zego.query_running_tasks().tasks) == 6


# -- ZEGO error codes --------------------------------------------------------------------


@pytest.mark.parametrize(("status", "outcome", "kind"), [
    (0, "100000005", ApiError),  # a status that fits the Code: 401 here
    (401, "100000005", ApiError),
    (500, "100000005", ApiError),
])
def test_zegos_code_wins_over_the_http_status(
    sim: Simulator, app_id: int, status: int, outcome: str, kind: type[ZegoError]
) -> None:
    """Observed: a signature rejection inside an HTTP 401 was counted as http_401, so ZEGO's
    Code (100000005) was lost and the signature alert could never fire."""
    sim.faults = Faults(error_status=ErrorStatus(status=status))
    seen: list[tuple[str, str, float]] = []
    zego = ZegoClient(app_id, Secret("fedcba9876543210fedcba9876543210"), sim.url,
                      observer=lambda *args: seen.append(args))
    error = failure(query, zego)
    assert isinstance(error, kind)
    assert (error.outcome, error.retryable, error.api_down) == (outcome, False, True)
    assert error.http_status == (status or 401)
    assert len(error.request_id) == 32  # ZEGO's RequestId, for ZEGO support
    assert "check ZEGO_APP_ID and the server secret" in error.message
    assert [outcome for _, outcome, _ in seen] == [outcome]


def test_a_task_not_found_inside_an_http_404_is_still_not_found(
    sim: Simulator, client: ZegoClient
) -> None:
    sim.faults = Faults(error_status=ErrorStatus())
    error = failure(get_status("f" * 32), client)
    assert isinstance(error, TaskNotFound) and error.http_status == 404


def test_every_failed_call_is_logged_with_its_request_id(
    sim: Simulator, client: ZegoClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="zego_exporter.client"):
        error = failure(get_status("f" * 32), client)
        sim.faults = Faults(http_status=HttpStatus(status=503))
        failure(query, client)
    logged = [(getattr(r, "outcome", None), getattr(r, "request_id", None),
               getattr(r, "http_status", None)) for r in caplog.records]
    assert logged == [("400000005", error.request_id, 200), ("http_503", None, 503)]
    assert all(r.levelno == logging.DEBUG for r in caplog.records)


@pytest.mark.parametrize("form", ["null_data", "no_data", "null_list", "no_list",
                                  "empty_list"])
def test_an_empty_running_list_in_any_form_is_an_empty_list(
    app_id: int, secret: Secret, form: str
) -> None:
    with Simulator(app_id, secret, world=World(tasks=0, arrival_rate=0),
                   faults=Faults(empty_list=EmptyList(form=form))) as sim:
        zego = ZegoClient(app_id, secret, sim.url)
        assert zego.query_running_tasks().tasks == []
        zego.close()


def test_unreadable_list_entries_are_skipped_and_counted(
    sim: Simulator, client: ZegoClient
) -> None:
    sim.faults = Faults(bad_entries=BadEntries(every=2))
    listed = client.query_running_tasks()
    assert (len(listed.tasks), listed.skipped) == (3, 3)
    assert "TaskList[1]" in listed.problem


def test_an_action_can_be_denied_alone(sim: Simulator, client: ZegoClient) -> None:
    sim.faults = Faults(error=ErrorCode(code=400010001, action=ACTION_QUERY_TASKS))
    error = failure(query, client)
    assert error.denied and not error.api_down and not error.pauses_all
    assert client.get_task_status(sim.showcase["streaming"][0]).status == 3


def test_task_not_found(sim: Simulator, client: ZegoClient) -> None:
    for task_id in ("f" * 32, sim.showcase["not_found"][0]):
        error = failure(get_status(task_id), client)
        assert isinstance(error, TaskNotFound)
        assert (error.outcome, error.code, error.retryable) == ("400000005", 400000005, False)


@pytest.mark.parametrize("call", [get_status("x"), query])
def test_a_wrong_secret_says_what_to_check(sim: Simulator, app_id: int, call: Call) -> None:
    zego = ZegoClient(app_id, Secret("fedcba9876543210fedcba9876543210"), sim.url)
    error = failure(call, zego)
    assert isinstance(error, ApiError)
    assert (error.outcome, error.retryable, error.api_down) == ("100000005", False, True)
    assert "check ZEGO_APP_ID and the server secret" in error.message


def test_a_wrong_app_id_is_a_rejected_signature(sim: Simulator, secret: Secret) -> None:
    error = failure(query, ZegoClient(42, secret, sim.url))
    assert (error.outcome, error.retryable) == ("100000005", False)


def test_a_skewed_client_clock_expires_the_signature(
    sim: Simulator, app_id: int, secret: Secret
) -> None:
    zego = ZegoClient(app_id, secret, sim.url, clock=lambda: time.time() - 15 * 60)
    error = failure(query, zego)
    assert (error.outcome, error.retryable) == ("100000004", True)
    assert "clock" in error.message


def test_rate_limited(app_id: int, secret: Secret) -> None:
    with Simulator(app_id, secret, world=World.static(1), qps=2) as sim:
        zego = ZegoClient(app_id, secret, sim.url)
        query(zego)
        query(zego)
        error = failure(query, zego)
        zego.get_task_status(sim.world.tasks()[0].task_id)  # each Action has its own window
    assert (error.outcome, error.retryable, error.throttled) == ("400010009", True, True)
    assert "--zego.qps" in error.message


def test_an_http_429_without_zegos_envelope_is_a_rate_limit(
        sim: Simulator, client: ZegoClient) -> None:
    """A proxy or gateway in front of ZEGO that rate-limits answers a bare 429: the engine must
    slow down (throttled), and the message must not send the user to --zego.api-url."""
    sim.faults = Faults(http_status=HttpStatus(status=429))
    error = failure(query, client)
    assert (error.outcome, error.retryable, error.api_down, error.throttled) == (
        "http_429", True, False, True)
    assert "--zego.api-url" not in error.message and "--zego.qps" in error.message


@pytest.mark.parametrize(
    ("code", "retryable"),
    [(400010002, True), (400010000, True), (400010007, True), (100000005, False)],
)
def test_injected_error_codes(
    sim: Simulator, client: ZegoClient, code: int, retryable: bool
) -> None:
    sim.faults = Faults(error=ErrorCode(code=code))
    for call in (query, get_status(sim.showcase["streaming"][0])):
        error = failure(call, client)
        assert (error.outcome, error.retryable) == (str(code), retryable)


# -- transport and malformed answers -----------------------------------------------------


@pytest.mark.parametrize(
    ("faults", "outcome", "kind"),
    [
        (Faults(http_status=HttpStatus(status=503)), "http_503", TransportError),
        (Faults(html=HtmlPage(status=502)), "http_502", TransportError),
        (Faults(html=HtmlPage(status=200)), "invalid_response", InvalidResponse),
        (Faults(malformed_json=MalformedJson()), "invalid_response", InvalidResponse),
        (Faults(wrong_types=WrongTypes()), "invalid_response", InvalidResponse),
        (Faults(drop=Drop()), "connection_error", TransportError),
    ],
)
def test_broken_answers(
    sim: Simulator, client: ZegoClient, faults: Faults, outcome: str, kind: type[ZegoError]
) -> None:
    sim.faults = faults
    for call in (query, get_status(sim.showcase["streaming"][0])):
        error = failure(call, client)
        assert isinstance(error, kind)
        assert (error.outcome, error.retryable, error.api_down) == (outcome, True, True)


def test_html_answer_is_named_as_such(sim: Simulator, client: ZegoClient) -> None:
    sim.faults = Faults(html=HtmlPage(status=200))
    assert "HTML page" in failure(query, client).message


def test_a_slow_server_is_a_timeout(sim: Simulator, app_id: int, secret: Secret) -> None:
    sim.faults = Faults(slow=Slow(seconds=30))
    zego = ZegoClient(app_id, secret, sim.url, read_timeout=0.2)
    started = time.monotonic()
    error = failure(query, zego)
    assert time.monotonic() - started < 2.0
    assert (error.outcome, error.retryable, error.throttled) == ("timeout", True, True)
    assert "within 0.2s" in error.message


def test_a_trickling_answer_is_a_timeout(sim: Simulator, app_id: int, secret: Secret) -> None:
    sim.faults = Faults(oversized=Oversized(size=200_000, chunk_size=20_000, chunk_delay=0.05))
    zego = ZegoClient(app_id, secret, sim.url, connect_timeout=0.1, read_timeout=0.2)
    error = failure(query, zego)
    assert (error.outcome, error.retryable) == ("timeout", True)


def test_nothing_listening_is_a_connection_error(app_id: int, secret: Secret) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    zego = ZegoClient(app_id, secret, f"http://127.0.0.1:{port}")
    error = failure(query, zego)
    assert isinstance(error, TransportError)
    assert (error.outcome, error.retryable, error.api_down) == ("connection_error", True, True)
    assert "check --zego.api-url" in error.message


def test_an_answer_beyond_the_size_cap_is_invalid(
    sim: Simulator, app_id: int, secret: Secret
) -> None:
    sim.faults = Faults(oversized=Oversized(size=200_000))
    zego = ZegoClient(app_id, secret, sim.url, max_response_bytes=100_000)
    for call in (query, get_status(sim.showcase["streaming"][0])):
        error = failure(call, zego)
        assert isinstance(error, InvalidResponse)
        assert (error.outcome, error.retryable) == ("invalid_response", True)
        assert "size cap" in error.message


# -- what every call does ----------------------------------------------------------------


def test_the_observer_sees_each_call_once(sim: Simulator, app_id: int, secret: Secret) -> None:
    seen: list[tuple[str, str, float]] = []
    zego = ZegoClient(app_id, secret, sim.url, read_timeout=0.2,
                      observer=lambda *args: seen.append(args))
    zego.get_task_status(sim.showcase["streaming"][0])
    zego.query_running_tasks()
    failure(get_status("x"), zego)
    sim.faults = Faults(slow=Slow(seconds=30, action=ACTION_QUERY_TASKS))
    failure(query, zego)
    assert [(action, outcome) for action, outcome, _ in seen] == [
        (ACTION_GET_STATUS, "0"), (ACTION_QUERY_TASKS, "0"),
        (ACTION_GET_STATUS, "400000005"), (ACTION_QUERY_TASKS, "timeout")]
    assert all(duration >= 0 for _, _, duration in seen)
    assert seen[-1][2] >= 0.2


def test_requests_carry_the_user_agent(sim: Simulator, client: ZegoClient) -> None:
    client.query_running_tasks()
    failure(get_status("x"), client)
    assert [request.user_agent for request in sim.stats.requests()] == [
        f"zego-exporter/{__version__}"] * 2


def test_the_secret_never_shows(sim: Simulator, app_id: int, secret: Secret) -> None:
    text = secret.reveal()
    zego = ZegoClient(app_id, secret, sim.url, read_timeout=0.2, max_response_bytes=1000)
    errors: list[ZegoError] = [failure(get_status("x"), zego)]
    for faults in (Faults(slow=Slow(seconds=30)), Faults(drop=Drop()),
                   Faults(malformed_json=MalformedJson()), Faults(oversized=Oversized()),
                   Faults(http_status=HttpStatus())):
        sim.faults = faults
        errors.append(failure(query, zego))
    sim.faults = Faults()
    errors.append(failure(query, ZegoClient(app_id, Secret(text[::-1]), sim.url)))
    shown: list[Any] = [zego, secret, sim, *errors]
    for item in shown:
        assert text not in repr(item)
        assert text not in str(item)
    assert {error.outcome for error in errors} == {
        "400000005", "timeout", "connection_error", "invalid_response", "http_503",
        "100000005"}
