"""The simulated Actions: a request body in, ZEGO's Code, Message and Data out.

Only the two Actions the exporter calls are implemented; the gateway answers every other
Action with 100000007. The functions here read the task table and shape `Data` exactly as
the real service documents it (zego-api.md sections 1 and 3). ZEGO's docs have changed on what
GetStatus answers for a stopped task, so that is a choice (`ENDED_TASKS`): by default it follows
the current docs, which describe GetStatus for running tasks and list Status 1-4 only (a stopped
task answers "task not found", 400000005); "status-5" answers Status 5 as the docs did before
Nov 2025. They never check signatures, apply faults or do HTTP, and they never change the task
table.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from zego_exporter.errors import CODE_OK, CODE_TASK_NOT_FOUND
from zego_exporter.responses import ACTION_GET_STATUS, ACTION_QUERY_TASKS
from zego_exporter.simulator.gateway import message_for
from zego_exporter.simulator.world import INIT_FAILED, STOPPED, World

CODE_INVALID_PARAMETER = 400000001

ENDED_NOT_FOUND = "not-found"
"""A stopped task answers 400000005: ZEGO's current docs (GetStatus lists Status 1-4)."""
ENDED_STATUS_5 = "status-5"
"""A stopped task answers Status 5 until it is gone: the docs before Nov 2025."""
ENDED_TASKS = (ENDED_NOT_FOUND, ENDED_STATUS_5)


@dataclass(frozen=True, slots=True)
class Answer:
    """An Action's result; `data` is None unless `code` is 0."""

    code: int
    message: str
    data: dict[str, Any] | None = None


def parse_body(body: bytes) -> dict[str, Any] | None:
    """The JSON object of a request body, or None when the body is not a JSON object."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None


def get_task_status(world: World, request: dict[str, Any] | None,
                    ended: str = ENDED_NOT_FOUND) -> Answer:
    """GetDigitalHumanStreamTaskStatus: `{"TaskId": str}` in; Status and the task's ids out."""
    if request is None:
        return _invalid("request body must be a JSON object")
    task_id = request.get("TaskId")
    if not isinstance(task_id, str) or not task_id:
        return _invalid("TaskId is required and must be a non-empty string")
    task = world.get(task_id)
    if task is None or (task.status == STOPPED and ended == ENDED_NOT_FOUND):
        return Answer(CODE_TASK_NOT_FOUND, message_for(CODE_TASK_NOT_FOUND))
    data: dict[str, Any] = {"Status": task.status, "RoomId": task.room_id,
                            "StreamId": task.stream_id, "CreateTime": task.create_time}
    if task.status == INIT_FAILED:
        data["FailReason"] = task.fail_reason
    return Answer(CODE_OK, message_for(CODE_OK), data)


def query_tasks(world: World, request: dict[str, Any] | None,
                ended: str = ENDED_NOT_FOUND) -> Answer:
    """QueryDigitalHumanStreamTasks: `{}` in; every initializing or streaming task out."""
    if request is None:
        return _invalid("request body must be a JSON object")
    task_list = [{"TaskId": task.task_id, "RoomId": task.room_id, "StreamId": task.stream_id,
                  "CreateTime": task.create_time, "Status": task.status}
                 for task in world.running()]
    return Answer(CODE_OK, message_for(CODE_OK), {"TaskList": task_list})


def _invalid(detail: str) -> Answer:
    return Answer(CODE_INVALID_PARAMETER, f"{message_for(CODE_INVALID_PARAMETER)}: {detail}")


ACTIONS: dict[str, Callable[[World, dict[str, Any] | None, str], Answer]] = {
    ACTION_GET_STATUS: get_task_status,
    ACTION_QUERY_TASKS: query_tasks,
}
"""The implemented Actions by name."""
