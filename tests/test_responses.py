"""Strict parsing of ZEGO answers: data or a client error, never another exception."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zego_exporter.errors import ApiError, InvalidResponse, TaskNotFound, ZegoError
from zego_exporter.responses import TaskStatus, parse_task_list, parse_task_status


def envelope(data: Any, code: int = 0, message: str = "success") -> bytes:
    return json.dumps({"Code": code, "Message": message, "RequestId": "r1", "Data": data}).encode()


def test_task_status_parses_every_field() -> None:
    body = envelope({"Status": 2, "RoomId": "room_1", "StreamId": "s1",
                     "CreateTime": 1750298304, "FailReason": "bad avatar"})
    assert parse_task_status(body, "t1") == TaskStatus(
        "t1", 2, "room_1", "s1", 1750298304, "bad avatar"
    )


def test_missing_room_and_stream_mean_unknown() -> None:
    status = parse_task_status(envelope({"Status": 5, "CreateTime": 1}), "t1")
    assert (status.room_id, status.stream_id, status.fail_reason) == ("", "", "")


def test_task_list_parses_and_null_list_is_empty() -> None:
    body = envelope({"TaskList": [{"TaskId": "a", "RoomId": "r", "StreamId": "s",
                                   "CreateTime": 5, "Status": 3}]})
    assert parse_task_list(body) == [TaskStatus("a", 3, "r", "s", 5)]
    assert parse_task_list(envelope({"TaskList": None})) == []


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"<html><body>502 Bad Gateway</body></html>", "HTML"),
        (b'{"Code": 0, "Data": {', "not JSON"),
        (b"[1, 2]", "JSON list"),
        (envelope({"Status": "3", "CreateTime": 1}), "Status should be int, got str"),
        (envelope({"Status": True, "CreateTime": 1}), "Status should be int, got bool"),
        (envelope({"Status": 3}), "CreateTime is missing"),
        (envelope({"Status": 3, "CreateTime": 1, "RoomId": 7}), "RoomId should be str"),
        (envelope(None), "task should be an object, got null"),
        (json.dumps({"Code": "0"}).encode(), "Code should be int"),
        (b"\xff\xfe\x00garbage", "not JSON"),
    ],
)
def test_malformed_answers_are_invalid_responses(body: bytes, fragment: str) -> None:
    with pytest.raises(InvalidResponse) as info:
        parse_task_status(body, "t1")
    assert fragment in info.value.message
    assert info.value.outcome == "invalid_response"


def test_task_list_entry_without_task_id_is_invalid() -> None:
    with pytest.raises(InvalidResponse, match=r"TaskList\[0\]: field TaskId is missing"):
        parse_task_list(envelope({"TaskList": [{"Status": 3, "CreateTime": 1}]}))


def test_non_zero_code_becomes_api_error_with_outcome_label() -> None:
    with pytest.raises(TaskNotFound) as info:
        parse_task_status(envelope(None, code=400000005, message="task not exist"), "t1")
    assert info.value.outcome == "400000005"
    assert not info.value.retryable
    with pytest.raises(ApiError) as info2:
        parse_task_list(envelope(None, code=400010009))
    assert info2.value.retryable and info2.value.throttled
    assert "lower --zego.qps" in info2.value.message


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["Code", "Message", "Data", "TaskList", "TaskId", "Status", "RoomId",
                         "StreamId", "CreateTime", "FailReason", "x"]) | st.text(max_size=5),
        inner, max_size=6),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_any_answer_parses_or_raises_a_client_error(body: bytes) -> None:
    for parse in (lambda b: parse_task_status(b, "t"), parse_task_list):
        try:
            result = parse(body)
        except ZegoError as exc:
            assert exc.outcome  # every failure carries its metric label
        else:
            assert isinstance(result, (TaskStatus, list))


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_any_data_inside_a_success_envelope_parses_or_is_invalid(data: Any) -> None:
    for parse in (lambda b: parse_task_status(b, "t"), parse_task_list):
        try:
            result = parse(envelope(data))
        except InvalidResponse as exc:
            assert exc.message.startswith(("GetDigitalHuman", "QueryDigitalHuman"))
        else:
            assert isinstance(result, (TaskStatus, list))
