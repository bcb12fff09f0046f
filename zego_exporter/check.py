"""The `check` workflow: are the credentials and the API host right, and what do the tasks say?

With TaskIds it looks each one up (within the rate limit); without, it lists the running
tasks. A task ZEGO answers "task not found" for shows as not_found: it has ended (ZEGO
describes task status for running tasks only) or the TaskId is wrong. When none of the named
TaskIds is found and nothing runs, it warns that the setup looks wrong (AppId, or the region's
API host). The report renders as a table or as JSON (a failure too, as JSON with `ok`
false); the command line prints it. It makes only read-only API calls and never prints
anything itself, least of all the secret.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from zego_exporter.client import ZegoClient
from zego_exporter.errors import TaskNotFound, ZegoError
from zego_exporter.ratelimit import SlidingWindowLimiter
from zego_exporter.responses import TaskStatus, clean_fail_reason
from zego_exporter.signing import Secret
from zego_exporter.states import NOT_FOUND, state_of


class CheckFailed(Exception):
    """The API did not answer, or refused the credentials: one line, exit code 1."""


@dataclass(frozen=True)
class TaskRow:
    """One task as `check` shows it (the JSON output's fields, in this order)."""

    task_id: str
    room_id: str
    stream_id: str
    status: int | None
    state: str
    create_time: int | None
    age_seconds: int | None
    fail_reason: str

    @classmethod
    def of(cls, task: TaskStatus, now: float) -> TaskRow:
        age = max(0, int(now) - task.create_time) if task.create_time else None
        return cls(task.task_id, task.room_id, task.stream_id, task.status,
                   state_of(task.status), task.create_time, age,
                   clean_fail_reason(task.fail_reason))

    @classmethod
    def not_found(cls, task_id: str) -> TaskRow:
        return cls(task_id, "", "", None, NOT_FOUND, None, None, "")


@dataclass(frozen=True)
class Report:
    """What `check` found: the tasks, and warnings about the setup."""

    app_id: int
    api_url: str
    named: bool
    """True when TaskIds were named (looked up), False when the running tasks were listed."""
    rows: list[TaskRow]
    warnings: list[str]

    def to_json(self) -> str:
        return json.dumps({"api_url": self.api_url, "app_id": self.app_id, "ok": True,
                           "tasks": [asdict(row) for row in self.rows],
                           "warnings": self.warnings}, indent=2)

    def to_text(self) -> str:
        what = "task(s) looked up" if self.named else "running task(s)"
        lines = [f"ZEGO API OK: AppId {self.app_id} at {self.api_url}, {len(self.rows)} {what}"]
        if self.rows:
            lines.append(_table(self.rows))
        if any(row.state == NOT_FOUND for row in self.rows):
            lines.append("not_found: ZEGO does not know the task now: it has ended, or the "
                         "TaskId is wrong")
        return "\n".join(lines)


def failure_json(app_id: int, api_url: str, error: str) -> str:
    """The JSON output when the check failed: the same fields, `ok` false and the error, so a
    script reading `.ok` gets an answer either way (the error also goes to stderr)."""
    return json.dumps({"api_url": api_url, "app_id": app_id, "ok": False, "error": error,
                       "tasks": [], "warnings": []}, indent=2)


def run_check(app_id: int, secret: Secret, api_url: str, *, timeout: float, qps: float,
              task_ids: Sequence[str], clock: Callable[[], float] = time.time) -> Report:
    """Look up `task_ids` (or list the running tasks when there are none). Raises
    CheckFailed with the cause and the fix when the API fails."""
    client = ZegoClient(app_id, secret, api_url, connect_timeout=timeout, read_timeout=timeout)
    limiter = SlidingWindowLimiter(qps)
    now = clock()
    rows: list[TaskRow] = []
    warnings: list[str] = []
    try:
        if task_ids:
            for task_id in task_ids:
                permit = limiter.acquire()
                assert permit is not None
                try:
                    rows.append(TaskRow.of(client.get_task_status(task_id), now))
                except TaskNotFound:
                    rows.append(TaskRow.not_found(task_id))
                finally:
                    permit.release()
            if all(row.state == NOT_FOUND for row in rows):
                warnings += _setup_warnings(client, app_id, api_url, len(rows))
        else:
            listed = client.query_running_tasks()
            rows = [TaskRow.of(task, now) for task in listed.tasks]
            if listed.skipped:
                warnings.append(f"{listed.skipped} entries of the running-task list could not "
                                f"be read and were left out ({listed.problem}; RequestId "
                                f"{listed.request_id or 'none'})")
    except ZegoError as exc:
        fix = ""
        if exc.denied and not task_ids:
            fix = ("; or name the TaskIds to look up (check TASK_ID ...) and run serve with "
                   "--no-discovery")
        request = f" (RequestId {exc.request_id})" if exc.request_id else ""
        raise CheckFailed(f"ZEGO API check failed: {exc.message}{fix}{request}") from None
    finally:
        client.close()
    return Report(app_id, api_url, bool(task_ids), rows, warnings)


def _setup_warnings(client: ZegoClient, app_id: int, api_url: str, named: int) -> list[str]:
    """When no named TaskId is found: is anything running at all for this AppId and host?"""
    try:
        running = client.query_running_tasks()
    except ZegoError:
        return []  # cannot tell (e.g. the Action is not enabled): say nothing rather than guess
    if running.tasks:
        return []
    return [f"none of the {named} TaskId(s) is known to ZEGO and no task is running for "
            f"AppId {app_id} at {api_url}: the setup looks wrong. Check that the TaskIds "
            "belong to this AppId (ZEGO_APP_ID), and that --zego.api-url is the host of the "
            "region your tasks run in: the default serves mainland China, and ZEGO gives "
            "overseas hosts on request (aigc@zego.im)"]


def _age(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _table(rows: list[TaskRow]) -> str:
    header = ("TASK", "ROOM", "STREAM", "STATE", "AGE", "FAIL REASON")
    lines = [header] + [
        (r.task_id, r.room_id or "-", r.stream_id or "-", r.state, _age(r.age_seconds),
         r.fail_reason or "") for r in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    return "\n".join(
        ("  ".join(cell.ljust(width) for cell, width in zip(line[:-1], widths, strict=True))
         + "  " + line[-1]).rstrip()
        for line in lines
    )
