"""Typed results of ZEGO calls, and the strict parser that turns answer bytes into them.

Parsing never raises anything but `InvalidResponse` or `ApiError`: whatever bytes arrive,
the caller gets data or a client error. This module does no I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
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


MAX_FAIL_REASON = 256


def clean_fail_reason(reason: str) -> str:
    """FailReason made safe to show (a label, a terminal): control characters removed, at
    most 256 characters."""
    cleaned = "".join(ch for ch in reason if ch.isprintable() or ch == " ")
    return cleaned[:MAX_FAIL_REASON]


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _field(obj: dict[str, Any], key: str, kind: type, where: str, *, required: bool) -> Any:
    if key not in obj or (obj[key] is None and not required):
        if required:
            raise InvalidResponse(f"{where}: field {key} is missing")
        return None
    value = obj[key]
    # bool is an int subclass in Python; JSON true is never a valid Status or time.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidResponse(
            f"{where}: field {key} should be {kind.__name__}, got {_type_name(value)}"
        )
    return value


def parse_envelope(body: bytes, action: str) -> Any:
    """Check the `{Code, Message, RequestId, Data}` envelope and return `Data`.

    A non-zero Code raises the matching ApiError; anything that is not the envelope raises
    InvalidResponse.
    """
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:
        start = body[:40].decode("utf-8", "replace").strip()
        kind = "an HTML page" if start[:1] == "<" else "not JSON"
        raise InvalidResponse(f"{action}: answer is {kind} ({exc.__class__.__name__})") from None
    if not isinstance(doc, dict):
        raise InvalidResponse(f"{action}: answer is a JSON {_type_name(doc)}, not an object")
    code = _field(doc, "Code", int, action, required=True)
    message = _field(doc, "Message", str, action, required=False) or ""
    if code != 0:
        raise api_error(code, message, action)
    return doc.get("Data")


def _task(obj: Any, where: str, task_id: str | None) -> TaskStatus:
    if not isinstance(obj, dict):
        raise InvalidResponse(f"{where}: task should be an object, got {_type_name(obj)}")
    if task_id is None:
        task_id = _field(obj, "TaskId", str, where, required=True)
        if not task_id:
            raise InvalidResponse(f"{where}: field TaskId is empty")
    return TaskStatus(
        task_id=task_id,
        status=_field(obj, "Status", int, where, required=True),
        # ZEGO may leave these out (for instance on ended tasks): "" means "not known".
        room_id=_field(obj, "RoomId", str, where, required=False) or "",
        stream_id=_field(obj, "StreamId", str, where, required=False) or "",
        create_time=_field(obj, "CreateTime", int, where, required=True),
        fail_reason=_field(obj, "FailReason", str, where, required=False) or "",
    )


def parse_task_status(body: bytes, task_id: str) -> TaskStatus:
    """The answer of GetDigitalHumanStreamTaskStatus for `task_id`."""
    data = parse_envelope(body, ACTION_GET_STATUS)
    return _task(data, f"{ACTION_GET_STATUS} Data", task_id)


def parse_task_list(body: bytes) -> list[TaskStatus]:
    """The answer of QueryDigitalHumanStreamTasks: every running task."""
    data = parse_envelope(body, ACTION_QUERY_TASKS)
    where = f"{ACTION_QUERY_TASKS} Data"
    if not isinstance(data, dict):
        raise InvalidResponse(f"{where} should be an object, got {_type_name(data)}")
    # A service written in Go serialises an empty slice as null: treat it as no tasks.
    tasks = _field(data, "TaskList", list, where, required=False) or []
    return [_task(item, f"{where}.TaskList[{i}]", None) for i, item in enumerate(tasks)]
