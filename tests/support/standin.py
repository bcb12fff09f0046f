"""A strict stand-in for ZEGO's Digital Human server API, written from ZEGO's doc pages alone.

Our simulator (zego_exporter.simulator) is our own model of ZEGO; tests that only ever meet it
test our model against itself. This stand-in is written independently, from the pages in
ZEGOCLOUD/docs_all (core_products/digital-human/en/server/streaming-apis/: API calling methods,
GetDigitalHumanStreamTaskStatus, QueryDigitalHumanStreamTasks, return codes, callbacks) and
imports nothing from zego_exporter: it signs and verifies with its own MD5 and SHA-1 as the
docs' signing pages write them, so a mistake in the exporter's signing cannot agree with it.
Where the docs are silent or have changed (zego-api.md section 7), `Reading` picks one
interpretation, so a test can run against each:

- `ended`: what GetStatus answers for an ended task. "not_found": the current page describes
  GetStatus "for a currently running task" and lists Status 1-4: a stopped task answers
  400000005 at once, a failed one answers Status 2 for `failed_visible` seconds, then
  400000005. "status_5": the page before Nov 2025: Status 5 (or 2) for `ended_visible` seconds.
- `errors`: the HTTP status of an error envelope: "http_200", or "http_4xx" (401 signature,
  403 permission, 404 task not found, 429 rate limit, 500 system, 400 otherwise).
- `empty`: how an empty running list is written: "empty_list" (`"TaskList": []`, the doc's
  example shape), "null_data" (`"Data": null`), "no_data" (no Data), "null_list".
- `numbers`: how Number fields (Code, Status, CreateTime) are written: "int", "float" or
  "string".
- `request_id`: whether answers carry RequestId (each Action page lists it; the calling-methods
  page's common return parameters do not).
- `nonce`: what SignatureNonce the gateway takes: "any" string (the calling-methods page's
  example is the 14-digit decimal `15215528852396`), or only "hex16", the 16 lowercase hex
  characters the signing page asks for (refused as a bad signature, 100000005).

It is strict where the docs are clear: POST with the common parameters in the query, MD5
signature (AppId + SignatureNonce + ServerSecret + Timestamp), at most 10 minutes of skew,
SignatureVersion 2.0, a JSON object body, and at most `limit` requests of each Action in any
sliding second, counted at arrival, rejected ones included. An Action can be denied to the AppId
(400010001). Task timelines are set by hand on an injectable clock; it listens on 127.0.0.1
only, on a free port, and stops when its `with` block ends.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

GET_STATUS = "GetDigitalHumanStreamTaskStatus"
QUERY = "QueryDigitalHumanStreamTasks"

# The codes of the return-codes page this stand-in answers.
OK = 0
SIGNATURE_EXPIRED = 100000004
SIGNATURE_ERROR = 100000005
INVALID_PARAMETER = 400000001
TASK_NOT_FOUND = 400000005
NO_PERMISSION = 400010001
RATE_LIMITED = 400010009

_STATUS_FOR_ERRORS = {SIGNATURE_EXPIRED: 401, SIGNATURE_ERROR: 401, NO_PERMISSION: 403,
                      TASK_NOT_FOUND: 404, RATE_LIMITED: 429, 400010000: 500}

INITIALIZING, FAILED, STREAMING, STOPPING, STOPPED = 1, 2, 3, 4, 5

_HEX16 = re.compile(r"[0-9a-f]{16}")


@dataclass(frozen=True)
class Reading:
    """One interpretation of what the docs leave open (see the module docstring)."""

    ended: str = "not_found"
    errors: str = "http_200"
    empty: str = "empty_list"
    numbers: str = "int"
    request_id: bool = True
    nonce: str = "any"

    def __post_init__(self) -> None:
        allowed = {"ended": ("not_found", "status_5"), "errors": ("http_200", "http_4xx"),
                   "empty": ("empty_list", "null_data", "no_data", "null_list"),
                   "numbers": ("int", "float", "string"), "nonce": ("any", "hex16")}
        for name, values in allowed.items():
            if getattr(self, name) not in values:
                raise ValueError(f"reading {name} must be one of {values}")


@dataclass
class _Task:
    task_id: str
    room_id: str
    stream_id: str
    created: float
    steps: list[tuple[float, int]]
    """(from when, Status), in time order."""
    fail_reason: str = ""

    def status_at(self, now: float) -> tuple[int, float] | None:
        """(Status, since when) at `now`; None before the task exists."""
        current = None
        for since, status in self.steps:
            if since <= now:
                current = (status, since)
        return current


@dataclass
class Request:
    arrival: float
    action: str
    task_id: str | None
    code: int
    http_status: int


@dataclass
class StandIn:
    """The stand-in API. Use as a context manager; `url` is the value for --zego.api-url."""

    app_id: int
    secret: str
    reading: Reading = field(default_factory=Reading)
    limit: int = 10
    failed_visible: float = 8.0
    """With ended="not_found": how long a failed task answers Status 2 before 400000005."""
    ended_visible: float = 3600.0
    """With ended="status_5": how long an ended task answers Status 2 or 5."""
    clock: Callable[[], float] = time.time
    denied: set[str] = field(default_factory=set)
    """Actions this AppId may not call (400010001)."""

    def __post_init__(self) -> None:
        self.requests: list[Request] = []
        self._tasks: dict[str, _Task] = {}
        self._arrivals: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> StandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    # -- tasks, by hand ------------------------------------------------------------------

    def add_task(self, *, status: int = STREAMING, at: float | None = None,
                 initializing_for: float | None = None, then_fail: str | None = None,
                 room_id: str | None = None, stream_id: str | None = None) -> str:
        """A task created at `at` (default now): in `status` from then on, or initializing for
        `initializing_for` seconds and then streaming, or failed with `then_fail`."""
        created = self.clock() if at is None else at
        task_id = uuid.uuid4().hex
        steps = [(created, status)]
        if initializing_for is not None:
            steps = [(created, INITIALIZING),
                     (created + initializing_for, FAILED if then_fail else STREAMING)]
        with self._lock:
            self._tasks[task_id] = _Task(task_id, room_id or f"room-{task_id[:6]}",
                                         stream_id or f"stream-{task_id[:6]}", created, steps,
                                         then_fail or "")
        return task_id

    def set_status(self, task_id: str, status: int, fail_reason: str = "") -> None:
        """From now on the task is in `status`."""
        with self._lock:
            task = self._tasks[task_id]
            task.steps.append((self.clock(), status))
            if fail_reason:
                task.fail_reason = fail_reason

    def lookups(self, task_id: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.action == GET_STATUS and r.task_id == task_id]

    # -- answering -----------------------------------------------------------------------

    def answer(self, query: str, body: bytes) -> tuple[int, bytes]:
        """(HTTP status, body) for one POST."""
        params = {key: values[0] for key, values in parse_qs(query).items()}
        action = params.get("Action", "")
        now = self.clock()
        try:
            request = json.loads(body)
        except ValueError:
            request = None
        task_id = request.get("TaskId") if isinstance(request, dict) else None
        code, data = self._decide(params, action, request, now)
        http_status = 200
        if code != OK and self.reading.errors == "http_4xx":
            http_status = _STATUS_FOR_ERRORS.get(code, 400)
        doc: dict[str, Any] = {"Code": self._number(code),
                               "Message": "success" if code == OK else f"error {code}"}
        if self.reading.request_id:
            doc["RequestId"] = str(uuid.uuid4())
        if code == OK:
            doc.update(data)
        with self._lock:
            self.requests.append(Request(now, action, task_id if isinstance(task_id, str)
                                         else None, code, http_status))
        return http_status, json.dumps(doc).encode()

    def _decide(self, params: dict[str, str], action: str, request: Any,
                now: float) -> tuple[int, dict[str, Any]]:
        try:
            app_id = int(params["AppId"])
            timestamp = int(params["Timestamp"])
            nonce = params["SignatureNonce"]
            signature = params["Signature"]
        except (KeyError, ValueError):
            return SIGNATURE_ERROR, {}
        if params.get("SignatureVersion") != "2.0" or app_id != self.app_id:
            return SIGNATURE_ERROR, {}
        if self.reading.nonce == "hex16" and not _HEX16.fullmatch(nonce):
            return SIGNATURE_ERROR, {}
        if abs(timestamp - now) > 600:
            return SIGNATURE_EXPIRED, {}
        if signature != request_signature(app_id, nonce, self.secret, timestamp):
            return SIGNATURE_ERROR, {}
        if not self._within_limit(action, now):
            return RATE_LIMITED, {}
        if action in self.denied:
            return NO_PERMISSION, {}
        if not isinstance(request, dict):
            return INVALID_PARAMETER, {}
        if action == GET_STATUS:
            return self._status(request.get("TaskId"), now)
        if action == QUERY:
            return OK, self._running(now)
        return INVALID_PARAMETER, {}

    def _within_limit(self, action: str, now: float) -> bool:
        with self._lock:
            arrivals = self._arrivals.setdefault(action, deque())
            while arrivals and now - arrivals[0] >= 1.0:
                arrivals.popleft()
            arrivals.append(now)  # a rejected request counts too: strict
            return len(arrivals) <= self.limit

    def _status(self, task_id: object, now: float) -> tuple[int, dict[str, Any]]:
        if not isinstance(task_id, str) or not task_id:
            return INVALID_PARAMETER, {}
        with self._lock:
            task = self._tasks.get(task_id)
        state = task.status_at(now) if task is not None else None
        if task is None or state is None:
            return TASK_NOT_FOUND, {}
        status, since = state
        if status in (FAILED, STOPPED):
            if self.reading.ended == "not_found":
                visible = self.failed_visible if status == FAILED else 0.0
            else:
                visible = self.ended_visible
            if now - since >= visible:
                return TASK_NOT_FOUND, {}
        data: dict[str, Any] = {"Status": self._number(status), "RoomId": task.room_id,
                                "StreamId": task.stream_id,
                                "CreateTime": self._number(int(task.created))}
        if status == FAILED:
            data["FailReason"] = task.fail_reason
        return OK, {"Data": data}

    def _running(self, now: float) -> dict[str, Any]:
        with self._lock:
            tasks = list(self._tasks.values())
        listed = []
        for task in tasks:
            state = task.status_at(now)
            if state is not None and state[0] in (INITIALIZING, STREAMING):
                listed.append({"TaskId": task.task_id, "RoomId": task.room_id,
                               "StreamId": task.stream_id,
                               "CreateTime": self._number(int(task.created)),
                               "Status": self._number(state[0])})
        if listed or self.reading.empty == "empty_list":
            return {"Data": {"TaskList": listed}}
        empty: dict[str, dict[str, Any]] = {
            "null_data": {"Data": None}, "no_data": {}, "null_list": {"Data": {"TaskList": None}}}
        return empty[self.reading.empty]

    def _number(self, value: int) -> int | float | str:
        if self.reading.numbers == "float":
            return float(value)
        if self.reading.numbers == "string":
            return str(value)
        return value


def _handler(stand_in: StandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            if url.path != "/":
                status, answer = 404, b"not found"
            else:
                status, answer = stand_in.answer(url.query, body)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def request_signature(app_id: int, nonce: str, secret: str, timestamp: int) -> str:
    """The signing page: `md5(AppId + SignatureNonce + ServerSecret + Timestamp)`, 32 lowercase
    hex characters (its Python sample, `str(appId) + signatureNonce + ...`)."""
    text = str(app_id) + nonce + secret + str(timestamp)
    return hashlib.md5(text.encode("utf8"), usedforsecurity=False).hexdigest()


def callback_signature(secret: str, timestamp: str, nonce: str) -> str:
    """The signature-verification page: the callback secret, timestamp and nonce sorted in
    dictionary order, concatenated, SHA-1 as lowercase hex (its PHP sample)."""
    joined = "".join(sorted([secret, timestamp, nonce]))
    return hashlib.sha1(joined.encode("utf8"), usedforsecurity=False).hexdigest()


def callback_body(secret: str, app_id: int, task_id: str, status: int, *, room_id: str = "",
                  stream_id: str = "", fail_reason: str = "") -> bytes:
    """A signed stream-task status callback (EventType 3), as the callback page shows it."""
    nonce, timestamp = secrets.token_hex(5), str(int(time.time()))
    detail: dict[str, Any] = {"Status": status, "RoomId": room_id, "StreamId": stream_id}
    if status == FAILED:
        detail["FailReason"] = fail_reason
    return json.dumps({
        "AppId": app_id, "TaskId": task_id, "EventType": 3, "Nonce": nonce,
        "Timestamp": timestamp,
        "Signature": callback_signature(secret, timestamp, nonce),
        "EventTime": int(time.time() * 1000), "Detail": detail,
    }).encode()
