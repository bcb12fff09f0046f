"""The callback endpoint's logic: ZEGO's signed task-status callbacks, straight into the tracker.

`CallbackReceiver.handle` takes the body of a POST to the callback path and returns the HTTP
status and a small JSON answer. It checks the signature as zego-api.md documents it (SHA-1 of
the sorted callback secret, Timestamp and Nonce, compared in constant time), refuses a
correctly signed callback for another AppId (403, counted `wrong_app`), reads the few
fields it needs strictly (a Number as the API's answers may write it: an integer, an
exact-integer float or a numeric string) and ignores every field and EventType it does not
know, hands stream task status changes (EventType 3) to the tracker at once, and counts each
callback by EventType and result. It must never do I/O beyond that tracker update (ZEGO waits
for the answer), never act on a body whose signature does not match, never let an unsigned body
choose label values, and never log or echo the secret.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any, Final

from zego_exporter.responses import TaskStatus, json_integer, optional_text
from zego_exporter.signing import Secret, callback_signature, signature_matches
from zego_exporter.tracker import Tracker

log = logging.getLogger(__name__)

EVENT_TASK_STATUS: Final = 3
"""EventType of stream-task status changes, the only one that changes metrics."""
DOCUMENTED_EVENT_TYPES: Final = frozenset({3, 4})
"""The EventTypes an unverified body may name in a label; any other is counted "unknown"."""

ACCEPTED, BAD_SIGNATURE, INVALID, IGNORED = "accepted", "bad_signature", "invalid", "ignored"
WRONG_APP: Final = "wrong_app"
UNKNOWN_EVENT: Final = "unknown"

# Repeat the warning about rejected signatures at most this often (a misconfigured secret,
# or someone probing the public endpoint, would otherwise fill the log).
REJECTED_LOG_EVERY = 300.0


class _Invalid(Exception):
    """A field the receiver needs is missing or has the wrong JSON type."""


class CallbackReceiver:
    """Verifies, reads and applies ZEGO callbacks; `handle` is the web layer's callable.

    `count(event_type, result)` is told about every callback (Instruments.count_callback).
    Thread-safe: the web layer calls `handle` from one thread per connection.
    """

    def __init__(
        self,
        secret: Secret,
        tracker: Tracker,
        count: Callable[[str, str], None],
        *,
        app_id: int,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._secret = secret
        self._tracker = tracker
        self._count = count
        self._app_id = app_id
        self._mono = monotonic
        self._log_lock = threading.Lock()
        # result -> (refused since the last log line, when that line was written)
        self._refused: dict[str, tuple[int, float]] = {}

    def handle(self, body: bytes | None) -> tuple[int, bytes]:
        """(request body, or None when it was too large to read) -> (HTTP status, JSON body)."""
        if body is None:
            return self._answer(UNKNOWN_EVENT, INVALID, 413, "body too large")
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested absurdly deep
            return self._answer(UNKNOWN_EVENT, INVALID, 400, "body is not JSON")
        if not isinstance(doc, dict):
            return self._answer(UNKNOWN_EVENT, INVALID, 400, "body is not a JSON object")
        event_type = json_integer(doc.get("EventType"))
        # Until the signature is checked, anyone may have written the body: only documented
        # EventTypes become label values, so forged requests cannot create series at will.
        label = str(event_type) if event_type in DOCUMENTED_EVENT_TYPES else UNKNOWN_EVENT
        try:
            signed = self._signature_ok(doc)
        except _Invalid as exc:
            return self._answer(label, INVALID, 400, str(exc))
        if not signed:
            self._log_refused(BAD_SIGNATURE, (
                "callback rejected: signature missing or wrong; check that the callback "
                "secret (--zego.callback-secret-file) is the one in the ZEGO console"), {})
            return self._answer(label, BAD_SIGNATURE, 401, "signature missing or wrong")

        label = UNKNOWN_EVENT if event_type is None else str(event_type)
        app_id = doc.get("AppId")
        if app_id is not None and json_integer(app_id) is None:
            return self._answer(label, INVALID, 400, "AppId must be a number")
        if app_id is not None and json_integer(app_id) != self._app_id:
            # Signed with our callback secret, but about another project: applying it would
            # mix two AppIds' tasks. ZEGO retries a refusal a few times, then drops it.
            shown = json_integer(app_id)
            self._log_refused(WRONG_APP, (
                f"callback for AppId {shown} refused: this exporter serves AppId "
                f"{self._app_id}; ask ZEGO technical support to send AppId {shown}'s "
                "callbacks to its own exporter"), {"callback_app_id": shown})
            return self._answer(label, WRONG_APP, 403, f"AppId {shown} is not this "
                                                       "exporter's AppId")
        if event_type is None:
            return self._answer(UNKNOWN_EVENT, INVALID, 400, "EventType missing or not an "
                                                             "integer")
        if event_type != EVENT_TASK_STATUS:
            return self._answer(label, IGNORED, 200, "EventType not used by this exporter")
        try:
            task, event_time = _task_status(doc)
        except _Invalid as exc:
            return self._answer(label, INVALID, 400, str(exc))
        if not self._tracker.record_callback(task, event_time):
            log.debug("callback older than one already applied: ignored", extra={
                "task_id": task.task_id, "status": task.status, "event_time": event_time})
            return self._answer(label, IGNORED, 200, "older than a callback already applied")
        log.debug("task status from callback", extra={
            "task_id": task.task_id, "status": task.status, "event_time": event_time})
        return self._answer(label, ACCEPTED, 200)

    def _signature_ok(self, doc: dict[str, Any]) -> bool:
        """Whether Signature matches Timestamp and Nonce; _Invalid for values of a wrong type."""
        given = doc.get("Signature")
        if given is not None and not isinstance(given, str):
            raise _Invalid("Signature must be a string")
        # ZEGO documents both as strings; a number is read as its decimal digits.
        timestamp = _text(doc.get("Timestamp"), "Timestamp")
        nonce = _text(doc.get("Nonce"), "Nonce")
        if not given or timestamp is None or nonce is None:
            return False
        return signature_matches(callback_signature(self._secret, timestamp, nonce), given)

    def _answer(self, event_type: str, result: str, status: int,
                reason: str | None = None) -> tuple[int, bytes]:
        self._count(event_type, result)
        answer = {"result": result} if reason is None else {"result": result, "reason": reason}
        return status, json.dumps(answer, separators=(",", ":")).encode()

    def _log_refused(self, result: str, message: str, fields: dict[str, object]) -> None:
        """Warn about refused callbacks of one kind at most every REJECTED_LOG_EVERY."""
        with self._log_lock:
            unlogged, logged_at = self._refused.get(result, (0, -math.inf))
            now = self._mono()
            if now - logged_at < REJECTED_LOG_EVERY:
                self._refused[result] = (unlogged + 1, logged_at)
                return
            self._refused[result] = (0, now)
        log.warning(message, extra={"rejected": unlogged + 1, **fields})


def _integer(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: object, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value or None
    if (number := _integer(value)) is not None:
        return str(number)
    raise _Invalid(f"{name} must be a string")


def _optional_str(obj: dict[str, Any], key: str, where: str) -> str:
    text = optional_text(obj, key)
    if text is None:
        raise _Invalid(f"{where}{key} must be a string")
    return text


def _task_status(doc: dict[str, Any]) -> tuple[TaskStatus, float | None]:
    """The TaskStatus and EventTime (ms) of an EventType 3 body; _Invalid if unusable."""
    task_id = doc.get("TaskId")
    if not isinstance(task_id, str) or not task_id:
        raise _Invalid("TaskId must be a non-empty string")
    detail = doc.get("Detail")
    if not isinstance(detail, dict):
        raise _Invalid("Detail must be an object")
    # ZEGO documents these as Numbers; like the API's answers (responses.py), a callback may
    # write one as 3.0 or "3", and refusing it would lose the event after ZEGO's retries.
    status = json_integer(detail.get("Status"))
    if status is None:
        raise _Invalid("Detail.Status must be an integer")
    event_time = doc.get("EventTime")
    if isinstance(event_time, str):
        event_time = json_integer(event_time)
        if event_time is None:
            raise _Invalid("EventTime must be a number")
    if event_time is not None and (
        isinstance(event_time, bool) or not isinstance(event_time, (int, float))
        or not math.isfinite(event_time)
    ):
        raise _Invalid("EventTime must be a number")
    # Callbacks carry no CreateTime: 0 tells the tracker to keep the one it knows.
    task = TaskStatus(
        task_id=task_id,
        status=status,
        room_id=_optional_str(detail, "RoomId", "Detail."),
        stream_id=_optional_str(detail, "StreamId", "Detail."),
        create_time=0,
        fail_reason=_optional_str(detail, "FailReason", "Detail."),
    )
    return task, None if event_time is None else float(event_time)
