"""Typed results of ZEGO calls, and the parser that turns answer bytes into them.

The parser takes what a real service plausibly sends and still refuses garbage. It accepts a
Number field (Code, Status, CreateTime) as a JSON integer, an exact-integer float (`3.0`) or a
numeric string (`"3"`), within int64; reads `Data` null or missing on a successful list as no
running tasks; ignores fields it does not know; reads a missing RoomId or StreamId as "" (not
known). One malformed entry of a running-task list is skipped and counted, not the whole list.
An answer that is not ZEGO's envelope (`{Code, Message, RequestId, Data}`) is
`InvalidResponse`. Parsing never raises anything but `InvalidResponse` or `ApiError`: whatever
bytes arrive, the caller gets data or a client error. This module does no I/O.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from zego_exporter.errors import InvalidResponse, api_error

ACTION_GET_STATUS = "GetDigitalHumanStreamTaskStatus"
ACTION_QUERY_TASKS = "QueryDigitalHumanStreamTasks"
ACTIONS = (ACTION_GET_STATUS, ACTION_QUERY_TASKS)


@dataclass(frozen=True, slots=True)
class TaskStatus:
    """One task as ZEGO reports it (GetDigitalHumanStreamTaskStatus or an entry of the list)."""

    task_id: str
    status: int
    room_id: str
    stream_id: str
    create_time: int
    fail_reason: str = ""


@dataclass(frozen=True, slots=True)
class RunningTasks:
    """The answer of QueryDigitalHumanStreamTasks: every running task it could read."""

    tasks: list[TaskStatus] = field(default_factory=list)
    skipped: int = 0
    """Entries of TaskList that were not a readable task, and were left out."""
    problem: str = ""
    """Why the first skipped entry was left out ("" when none was)."""
    request_id: str = ""
    """ZEGO's RequestId of the answer, to quote to ZEGO support about skipped entries."""


MAX_FAIL_REASON = 256
_INT64 = range(-(2**63), 2**63)
# A decimal integer, optionally written with a zero fraction ("17", "-3", "1750298304.0").
_INTEGER_TEXT = re.compile(r"-?[0-9]{1,19}(?:\.0*)?")


def clean_fail_reason(reason: str) -> str:
    """FailReason made safe to show (a label, a terminal): control characters removed, at
    most 256 characters."""
    cleaned = "".join(ch for ch in reason if ch.isprintable() or ch == " ")
    return cleaned[:MAX_FAIL_REASON]


def json_integer(value: object) -> int | None:
    """A documented Number as an int: an integer, an exact-integer float or a numeric string,
    within int64; None for anything else (true and false are not numbers here)."""
    number: int | None = None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, float):
        number = int(value) if value.is_integer() else None  # False for inf and nan
    elif isinstance(value, str) and _INTEGER_TEXT.fullmatch(value):
        number = int(value.split(".", 1)[0])
    return number if number is not None and number in _INT64 else None


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _number(obj: dict[str, Any], key: str, where: str) -> int:
    if obj.get(key) is None:
        raise InvalidResponse(f"{where}: field {key} is missing")
    number = json_integer(obj[key])
    if number is None:
        raise InvalidResponse(f"{where}: field {key} should be an integer, got "
                              f"{_type_name(obj[key])} {str(obj[key])[:20]!r}")
    return number


def optional_text(obj: dict[str, Any], key: str) -> str | None:
    """An optional string field of ZEGO's JSON: "" when missing or null, None when it holds
    anything but a string (the caller says how that is refused)."""
    value = obj.get(key)
    if value is None:
        return ""
    return value if isinstance(value, str) else None


def _text(obj: dict[str, Any], key: str, where: str) -> str:
    text = optional_text(obj, key)
    if text is None:
        raise InvalidResponse(f"{where}: field {key} should be str, got "
                              f"{_type_name(obj[key])}")
    return text


@dataclass(frozen=True, slots=True)
class _Envelope:
    data: Any
    request_id: str


def _envelope(body: bytes, action: str) -> _Envelope:
    """Check the `{Code, Message, RequestId, Data}` envelope; `Data` and RequestId of a success.

    A non-zero Code raises the matching ApiError; anything that is not the envelope raises
    InvalidResponse (with in_envelope False).
    """
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        start = body[:40].decode("utf-8", "replace").strip()
        kind = "an HTML page" if start[:1] == "<" else "not JSON"
        raise InvalidResponse(f"{action}: answer is {kind}") from None
    if not isinstance(doc, dict):
        raise InvalidResponse(f"{action}: answer is a JSON {_type_name(doc)}, not an object")
    code = _number(doc, "Code", action)
    # Message and RequestId are only ever shown: a value of another type is left out.
    message = doc.get("Message")
    request_id = doc.get("RequestId")
    request_id = request_id[:128] if isinstance(request_id, str) else ""
    if code != 0:
        raise api_error(code, message if isinstance(message, str) else "", action, request_id)
    return _Envelope(doc.get("Data"), request_id)


def _task(obj: Any, where: str, task_id: str | None) -> TaskStatus:
    if not isinstance(obj, dict):
        raise InvalidResponse(f"{where}: task should be an object, got {_type_name(obj)}")
    if task_id is None:
        task_id = _text(obj, "TaskId", where)
        if not task_id:
            raise InvalidResponse(f"{where}: field TaskId is missing or empty")
    return TaskStatus(
        task_id=task_id,
        status=_number(obj, "Status", where),
        # ZEGO may leave these out (for instance on ended tasks): "" means "not known".
        room_id=_text(obj, "RoomId", where),
        stream_id=_text(obj, "StreamId", where),
        create_time=_number(obj, "CreateTime", where),
        fail_reason=_text(obj, "FailReason", where),
    )


def parse_task_status(body: bytes, task_id: str) -> TaskStatus:
    """The answer of GetDigitalHumanStreamTaskStatus for `task_id`."""
    envelope = _envelope(body, ACTION_GET_STATUS)
    try:
        return _task(envelope.data, f"{ACTION_GET_STATUS} Data", task_id)
    except InvalidResponse as exc:
        raise InvalidResponse(exc.message, in_envelope=True,
                              request_id=envelope.request_id) from None


def parse_task_list(body: bytes) -> RunningTasks:
    """The answer of QueryDigitalHumanStreamTasks: every running task, malformed entries left
    out and counted."""
    envelope = _envelope(body, ACTION_QUERY_TASKS)
    where = f"{ACTION_QUERY_TASKS} Data"
    data = envelope.data
    # No running task may come as Data null or missing, or TaskList null or missing (a Go
    # service serialises an empty slice as null): all are an empty list.
    if data is None:
        return RunningTasks(request_id=envelope.request_id)
    if not isinstance(data, dict):
        raise InvalidResponse(f"{where} should be an object, got {_type_name(data)}",
                              in_envelope=True, request_id=envelope.request_id)
    entries = data.get("TaskList")
    if entries is None:
        return RunningTasks(request_id=envelope.request_id)
    if not isinstance(entries, list):
        raise InvalidResponse(f"{where}: field TaskList should be a list, got "
                              f"{_type_name(entries)}", in_envelope=True,
                              request_id=envelope.request_id)
    tasks: list[TaskStatus] = []
    skipped = 0
    problem = ""
    for index, entry in enumerate(entries):
        try:
            tasks.append(_task(entry, f"{where}.TaskList[{index}]", None))
        except InvalidResponse as exc:
            skipped += 1
            problem = problem or exc.message
    return RunningTasks(tasks, skipped, problem, envelope.request_id)
