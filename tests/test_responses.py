"""Parsing ZEGO answers: tolerant of what a real service sends, strict about garbage.

Whatever bytes arrive, the parser returns data or raises a client error; a Number field may come
as an integer, an exact-integer float or a numeric string; an empty list may come as Data null
or missing; one malformed list entry is skipped and counted, never the whole list.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.strategies import json_values
from zego_exporter.errors import ApiError, InvalidResponse, TaskNotFound, ZegoError
from zego_exporter.responses import (
    RunningTasks,
    TaskStatus,
    json_integer,
    parse_task_list,
    parse_task_status,
)


def envelope(data: Any, code: Any = 0, message: str = "success", **extra: Any) -> bytes:
    return json.dumps({"Code": code, "Message": message, "RequestId": "r1", "Data": data,
                       **extra}).encode()


def test_task_status_parses_every_field() -> None:
    body = envelope({"Status": 2, "RoomId": "room_1", "StreamId": "s1",
                     "CreateTime": 1750298304, "FailReason": "bad avatar"})
    assert parse_task_status(body, "t1") == TaskStatus(
        "t1", 2, "room_1", "s1", 1750298304, "bad avatar"
    )


def test_missing_room_and_stream_mean_unknown() -> None:
    status = parse_task_status(envelope({"Status": 4, "CreateTime": 1}), "t1")
    assert (status.room_id, status.stream_id, status.fail_reason) == ("", "", "")
    listed = parse_task_list(envelope({"TaskList": [{"TaskId": "a", "Status": 1,
                                                      "CreateTime": 2, "RoomId": None}]}))
    assert listed.tasks == [TaskStatus("a", 1, "", "", 2)] and listed.skipped == 0


def test_task_list_parses() -> None:
    body = envelope({"TaskList": [{"TaskId": "a", "RoomId": "r", "StreamId": "s",
                                   "CreateTime": 5, "Status": 3}]})
    assert parse_task_list(body) == RunningTasks([TaskStatus("a", 3, "r", "s", 5)],
                                                 request_id="r1")


@pytest.mark.parametrize("body", [
    pytest.param(envelope(None), id="data-null"),
    pytest.param(json.dumps({"Code": 0, "Message": "success", "RequestId": "r1"}).encode(),
                 id="data-missing"),
    pytest.param(envelope({}), id="task-list-missing"),
    pytest.param(envelope({"TaskList": None}), id="task-list-null"),
    pytest.param(envelope({"TaskList": []}), id="task-list-empty"),
])
def test_every_form_of_an_empty_running_list_is_an_empty_list(body: bytes) -> None:
    assert parse_task_list(body) == RunningTasks(request_id="r1")


def written_like(example: Any, number: int) -> Any:
    """`number` written the way `example` is: integer, float, string, string with ".0"."""
    if isinstance(example, float):
        return float(number)
    if isinstance(example, str):
        return f"{number}.0" if "." in example else str(number)
    return number


@pytest.mark.parametrize("number", [3, 3.0, "3", "3.0", "3.00"])
def test_numbers_may_be_integers_exact_floats_or_numeric_strings(number: Any) -> None:
    created = written_like(number, 1750298304)
    body = envelope({"Status": number, "CreateTime": created, "RoomId": "r", "StreamId": "s"})
    assert parse_task_status(body, "t") == TaskStatus("t", 3, "r", "s", 1750298304)
    listed = parse_task_list(envelope({"TaskList": [{"TaskId": "t", "Status": number,
                                                      "CreateTime": created}]}))
    assert listed.tasks == [TaskStatus("t", 3, "", "", 1750298304)]
    with pytest.raises(TaskNotFound):
        parse_task_status(envelope(None, code=written_like(number, 400000005)), "t")


@pytest.mark.parametrize("value", [3.5, "3.5", "three", "", " 3", "0x3", True, False, [3],
                                   {"v": 3}, 2**63, -(2**63) - 1, 1e30, "9" * 25])
def test_what_is_not_an_integer_is_refused(value: Any) -> None:
    assert json_integer(value) is None
    with pytest.raises(InvalidResponse, match="Status should be an integer"):
        parse_task_status(envelope({"Status": value, "CreateTime": 1}), "t")


def test_unknown_fields_are_ignored() -> None:
    body = envelope({"TaskList": [{"TaskId": "a", "Status": 3, "CreateTime": 5,
                                   "Region": "sgp", "Extra": {"x": [1]}}], "Total": 1},
                    Extra="new")
    assert parse_task_list(body).tasks == [TaskStatus("a", 3, "", "", 5)]
    body = envelope({"Status": 1, "CreateTime": 5, "TTL": 86400, "TaskId": "other"})
    assert parse_task_status(body, "t").task_id == "t"


def test_a_malformed_entry_is_skipped_and_counted_not_the_whole_list() -> None:
    good = {"TaskId": "a", "Status": 3, "CreateTime": 5, "RoomId": "r", "StreamId": "s"}
    body = envelope({"TaskList": [
        {**good, "TaskId": "first"}, {"Status": 3, "CreateTime": 1}, "not an object",
        {**good, "TaskId": "second", "Status": "streaming"}, {**good, "TaskId": "last"}]})
    listed = parse_task_list(body)
    assert [task.task_id for task in listed.tasks] == ["first", "last"]
    assert listed.skipped == 3
    assert listed.problem == (
        "QueryDigitalHumanStreamTasks Data.TaskList[1]: field TaskId is missing or empty")
    assert listed.request_id == "r1"


@pytest.mark.parametrize(
    ("body", "fragment", "in_envelope"),
    [
        (b"<html><body>502 Bad Gateway</body></html>", "HTML", False),
        (b'{"Code": 0, "Data": {', "not JSON", False),
        (b"[1, 2]", "JSON list", False),
        (b"\xff\xfe\x00garbage", "not JSON", False),
        (json.dumps({"Code": "zero"}).encode(), "Code should be an integer", False),
        (json.dumps({"code": 0, "data": {}}).encode(), "Code is missing", False),
        (envelope({"Status": "three", "CreateTime": 1}), "Status should be an integer", True),
        (envelope({"Status": True, "CreateTime": 1}), "Status should be an integer", True),
        (envelope({"Status": 3}), "CreateTime is missing", True),
        (envelope({"Status": 3, "CreateTime": 1, "RoomId": 7}), "RoomId should be str", True),
        (envelope(None), "task should be an object, got null", True),
    ],
)
def test_malformed_answers_are_invalid_responses(body: bytes, fragment: str,
                                                 in_envelope: bool) -> None:
    with pytest.raises(InvalidResponse) as info:
        parse_task_status(body, "t1")
    assert fragment in info.value.message
    assert info.value.outcome == "invalid_response"
    assert info.value.in_envelope == in_envelope
    assert info.value.request_id == ("r1" if in_envelope else "")


@pytest.mark.parametrize(("data", "fragment"), [
    ([1, 2], "Data should be an object, got list"),
    ("tasks", "Data should be an object, got str"),
    ({"TaskList": {"a": 1}}, "TaskList should be a list, got dict"),
    ({"TaskList": "none"}, "TaskList should be a list, got str"),
])
def test_a_list_answer_that_is_not_a_list_is_invalid(data: Any, fragment: str) -> None:
    with pytest.raises(InvalidResponse, match=fragment) as info:
        parse_task_list(envelope(data))
    assert info.value.in_envelope


def test_non_zero_code_becomes_api_error_with_outcome_label_and_request_id() -> None:
    with pytest.raises(TaskNotFound) as info:
        parse_task_status(envelope(None, code=400000005, message="task not exist"), "t1")
    assert info.value.outcome == "400000005" and info.value.request_id == "r1"
    assert not info.value.retryable
    with pytest.raises(ApiError) as info2:
        parse_task_list(envelope(None, code=400010009))
    assert info2.value.retryable and info2.value.throttled
    assert "lower --zego.qps" in info2.value.message
    with pytest.raises(ApiError) as info3:  # Message and RequestId of another type: left out
        parse_task_list(json.dumps({"Code": 400010001, "Message": 5, "RequestId": []}).encode())
    assert info3.value.denied and info3.value.request_id == ""


# -- properties ------------------------------------------------------------------------------

@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_any_answer_parses_or_raises_a_client_error(body: bytes) -> None:
    for parse in (lambda b: parse_task_status(b, "t"), parse_task_list):
        try:
            result = parse(body)
        except ZegoError as exc:
            assert exc.outcome  # every failure carries its metric label
        else:
            assert isinstance(result, (TaskStatus, RunningTasks))


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_any_data_inside_a_success_envelope_parses_or_is_invalid(data: Any) -> None:
    for parse in (lambda b: parse_task_status(b, "t"), parse_task_list):
        try:
            result = parse(envelope(data))
        except InvalidResponse as exc:
            assert exc.message.startswith(("GetDigitalHuman", "QueryDigitalHuman"))
            assert exc.in_envelope
        else:
            assert isinstance(result, (TaskStatus, RunningTasks))


int64s = st.integers(min_value=-(2**63), max_value=2**63 - 1)


def encoded(number: int) -> st.SearchStrategy[Any]:
    """The ways a service may write `number`: integer, float (when exact), numeric string."""
    ways: list[Any] = [number, str(number), f"{number}.0"]
    if abs(number) <= 2**53:
        ways.append(float(number))
    return st.sampled_from(ways)


ids = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=12)
optional_text = st.none() | st.text(max_size=8)


@st.composite
def good_entry(draw: st.DrawFn) -> tuple[dict[str, Any], TaskStatus]:
    """A readable list entry, however it is written, and the task it must parse to."""
    task = TaskStatus(draw(ids), draw(int64s), draw(st.text(max_size=8)),
                      draw(st.text(max_size=8)), draw(int64s))
    entry: dict[str, Any] = {"TaskId": task.task_id, "Status": draw(encoded(task.status)),
                             "CreateTime": draw(encoded(task.create_time))}
    for key, value in (("RoomId", task.room_id), ("StreamId", task.stream_id)):
        if value or draw(st.booleans()):  # "" may also be written as a missing field
            entry[key] = value
    entry.update(draw(st.dictionaries(st.sampled_from(["Extra", "Region", "TTL"]),
                                      st.none() | st.integers() | st.text(max_size=3)
                                      | st.lists(st.integers(), max_size=2), max_size=2)))
    return entry, task


broken_values = (st.text(st.characters(codec="ascii", categories=["L"]), min_size=1)
                 | st.booleans() | st.lists(st.integers(), max_size=2)
                 | st.floats(allow_nan=False).filter(lambda f: not f.is_integer())
                 | st.integers(min_value=2**63, max_value=2**80))


@st.composite
def bad_entry(draw: st.DrawFn) -> Any:
    """An entry that is not a readable task: one thing about a good one is broken."""
    entry, _ = draw(good_entry())
    how = draw(st.sampled_from(["not-object", "no-task-id", "empty-task-id", "task-id-number",
                                "Status", "CreateTime", "no-status", "room-not-text"]))
    if how == "not-object":
        return draw(st.none() | st.integers() | st.text() | st.lists(st.integers(), max_size=2))
    if how == "no-task-id":
        del entry["TaskId"]
    elif how == "empty-task-id":
        entry["TaskId"] = ""
    elif how == "task-id-number":
        entry["TaskId"] = draw(st.integers())
    elif how == "no-status":
        del entry["Status"]
    elif how == "room-not-text":
        entry["RoomId"] = draw(st.integers() | st.lists(st.text(), max_size=1))
    else:
        entry[how] = draw(broken_values)
    return entry


@settings(max_examples=200, deadline=None)
@given(st.lists(good_entry().map(lambda good: (True, good))
                | bad_entry().map(lambda bad: (False, bad)), max_size=8))
def test_good_entries_are_kept_in_order_and_each_bad_one_is_counted(
    picks: list[tuple[bool, Any]],
) -> None:
    entries = [pick[0] if good else pick for good, pick in picks]
    expected = [pick[1] for good, pick in picks if good]
    listed = parse_task_list(envelope({"TaskList": entries}))
    assert listed.tasks == expected
    assert listed.skipped == sum(1 for good, _ in picks if not good)
    assert bool(listed.problem) == (listed.skipped > 0)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1, max_value=2**63 - 1).flatmap(
    lambda code: st.tuples(st.just(code), encoded(code))))
def test_a_non_zero_code_in_any_encoding_is_that_code(pair: tuple[int, Any]) -> None:
    code, written = pair
    with pytest.raises(ApiError) as info:
        parse_task_list(envelope(None, code=written))
    assert info.value.code == code and info.value.outcome == str(code)
