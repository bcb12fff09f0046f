"""The simulated ZEGO API over HTTP: wire protocol, admin API, and the `Simulator` facade.

`Simulator` binds a ThreadingHTTPServer (HTTP/1.1, keep-alive, 127.0.0.1 and a free port by
default) and answers `POST /?Action=...` exactly as zego-api.md describes: gateway checks,
then the per-Action rate limit, then the Action, with faults applied on the way and every
request counted in `stats`. JSON endpoints under `/admin/` control the world, the faults and
the stats without a signature and are never counted. This module wires the pieces together
and moves bytes; it must never log, echo or expose the server secret, and never read the
time except through the injected clocks.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

from zego_exporter.errors import CODE_OK, CODE_RATE_LIMITED
from zego_exporter.responses import ACTION_QUERY_TASKS
from zego_exporter.signing import Secret
from zego_exporter.simulator.actions import ACTIONS, ENDED_NOT_FOUND, ENDED_TASKS, parse_body
from zego_exporter.simulator.callbacks import CallbackFaults, CallbackSender
from zego_exporter.simulator.faults import (
    Decision,
    FaultInjector,
    Faults,
    Oversized,
    corrupt_types,
    empty_list_data,
    error_status_for,
    spoil_entries,
    truncate,
)
from zego_exporter.simulator.gateway import (
    CODE_BODY_UNREADABLE,
    GatewayLimiter,
    check_common_params,
    message_for,
)
from zego_exporter.simulator.stats import DEFAULT_LOG_SIZE, LoggedRequest, Stats
from zego_exporter.simulator.world import LIFECYCLES, World

_log = logging.getLogger(__name__)

MAX_REQUEST_BODY = 1024 * 1024
_POLL_INTERVAL = 0.02  # how quickly stop() ends the accept loop
_IDLE_CONNECTION_TIMEOUT = 60.0

_HTML_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)
_LANDING = (
    b"ZEGO Digital Human API simulator.\n"
    b"POST signed requests to /?Action=...; JSON control endpoints live under /admin/\n"
    b"(tasks, faults, stats, requests, showcase).\n"
)

JsonDoc = dict[str, Any]


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # a burst of simultaneous connections must not be refused

    def __init__(self, address: tuple[str, int], simulator: Simulator) -> None:
        self.simulator = simulator
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _SimulatorHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Hang up on every open connection, idle keep-alive ones included."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the peer
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):  # the client went away
            _log.debug("connection from %s ended: %s", client_address, error)
        else:  # a bug in the simulator: the client only sees a dropped connection
            _log.error("error while handling a request from %s", client_address,
                       exc_info=True)


class _SimulatorHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "zego-simulator"
    timeout = _IDLE_CONNECTION_TIMEOUT
    # Headers and body leave in separate writes: without this, Nagle's algorithm and the
    # client's delayed ACK hold every answer on a keep-alive connection for ~40 ms.
    disable_nagle_algorithm = True

    def version_string(self) -> str:
        return self.server_version  # without Python's version and the space before it

    def do_POST(self) -> None:
        self._simulator().handle(self, "POST")

    def do_GET(self) -> None:
        self._simulator().handle(self, "GET")

    def do_PUT(self) -> None:
        self._simulator().handle(self, "PUT")

    def do_DELETE(self) -> None:
        self._simulator().handle(self, "DELETE")

    def _simulator(self) -> Simulator:
        return cast(_HttpServer, self.server).simulator

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("%s %s", self.address_string(), format % args)

    def read_body(self) -> bytes | None:
        """The request body, or None when it cannot be read (then the connection closes)."""
        length = self.headers.get("Content-Length")
        if length is None:
            if self.headers.get("Transfer-Encoding"):
                self.close_connection = True
                return None
            return b""
        if not length.isdigit() or int(length) > MAX_REQUEST_BODY:
            self.close_connection = True
            return None
        body = self.rfile.read(int(length))
        if len(body) != int(length):
            self.close_connection = True
            return None
        return body

    def send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_chunks(status, content_type, len(body), iter((body,)))

    def send_chunks(self, status: int, content_type: str, length: int,
                    chunks: Iterator[bytes], *, delay: float = 0.0,
                    stopping: threading.Event | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(length))
            self.end_headers()
            for index, chunk in enumerate(chunks):
                if index and delay and stopping is not None and stopping.wait(delay):
                    self.close_connection = True
                    return
                self.wfile.write(chunk)
        except OSError:  # the client hung up (a size cap, a timeout): nothing to answer
            self.close_connection = True


class Simulator:
    """A running stand-in for the ZEGO Digital Human API.

    Binds at construction (so `url` is known at once); `start()` serves in a background
    thread, `serve_forever()` in the calling one; `stop()` (or leaving a `with` block)
    ends both, hanging up on open connections and waking requests that sleep for a fault.

    `ended_tasks` is what GetStatus answers for a stopped task: "not-found" (400000005, as
    ZEGO's current docs imply; the default) or "status-5" (as the docs said before Nov 2025).
    `qps` is the per-Action limit (an int for all, or a mapping per Action; 0: no limit).
    `clock` (unix seconds) checks Timestamps and drives a default World; `monotonic`
    stamps arrivals for the rate limiter and the request log. With `callback_url` and
    `callback_secret`, every task status change is also POSTed there as a signed callback
    (see `enable_callbacks`).
    """

    def __init__(
        self,
        app_id: int,
        server_secret: Secret,
        *,
        world: World | None = None,
        faults: Faults | None = None,
        qps: int | Mapping[str, int] = 10,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 0,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        log_size: int = DEFAULT_LOG_SIZE,
        callback_url: str | None = None,
        callback_secret: Secret | None = None,
        ended_tasks: str = ENDED_NOT_FOUND,
    ) -> None:
        if ended_tasks not in ENDED_TASKS:
            raise ValueError(f"ended tasks {ended_tasks!r}: choose one of "
                             f"{', '.join(ENDED_TASKS)}")
        self.ended_tasks = ended_tasks
        self.app_id = app_id
        self._secret = server_secret
        self._clock = clock
        self._monotonic = monotonic
        self.world = world if world is not None else World(seed=seed, clock=clock)
        self.injector = FaultInjector(faults, seed=seed)
        self.limiter = GatewayLimiter(qps, monotonic=monotonic)
        self.stats = Stats(log_size)
        self._stopping = threading.Event()
        self._state_lock = threading.Lock()
        self._serving = False
        self._thread: threading.Thread | None = None
        self.callbacks: CallbackSender | None = None
        if callback_url is not None or callback_secret is not None:
            if callback_url is None or callback_secret is None:
                raise ValueError("callbacks need both a callback URL and a callback secret")
            self.enable_callbacks(callback_url, callback_secret)
        self._httpd = _HttpServer((host, port), self)

    @classmethod
    def from_options(
        cls,
        *,
        app_id: int,
        server_secret: Secret,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 0,
        tasks: int = 20,
        arrival_rate: float = 0.1,
        lifecycle: str = "realistic",
        time_scale: float = 1.0,
        static: bool = False,
        showcase: bool = False,
        qps: int = 10,
        faults: Faults | None = None,
        clock: Callable[[], float] = time.time,
        callback_url: str | None = None,
        callback_secret: Secret | None = None,
        ended_tasks: str = ENDED_NOT_FOUND,
        showcase_stop_after: float = 5.0,
    ) -> Simulator:
        """A simulator from plain option values (the `simulate` and `demo` commands).

        `lifecycle` names a preset of LIFECYCLES: "realistic" (minutes to an hour of
        streaming), "demo" (every state within about ten seconds) or "forever";
        `time_scale` multiplies its durations (0.1: ten times faster). `static` means
        `tasks` tasks that stream forever and no arrivals (then `lifecycle`, `time_scale`
        and `arrival_rate` are unused). `showcase` adds one pinned task per state, listed by
        `showcase` (its "stopped" task stops `showcase_stop_after` seconds from now).
        `callback_url` and `callback_secret` turn on callbacks; `ended_tasks` is what GetStatus
        answers for a stopped task ("not-found" or "status-5"). Binds the port
        at once; raises ValueError with a message a user can act on for a bad value, OSError
        when the address cannot be bound.
        """
        if static:
            world = World.static(tasks, seed=seed, clock=clock)
        else:
            if lifecycle not in LIFECYCLES:
                raise ValueError(f"unknown lifecycle {lifecycle!r}; choose one of "
                                 f"{', '.join(LIFECYCLES)}")
            world = World(seed=seed, tasks=tasks, arrival_rate=arrival_rate,
                          lifecycle=LIFECYCLES[lifecycle].scaled(time_scale), clock=clock)
        if showcase:
            world.add_showcase(stop_after=showcase_stop_after)
        return cls(app_id, server_secret, world=world, faults=faults, qps=qps, host=host,
                   port=port, seed=seed, clock=clock, callback_url=callback_url,
                   callback_secret=callback_secret, ended_tasks=ended_tasks)

    def __repr__(self) -> str:
        return f"Simulator(url={self.url!r}, app_id={self.app_id})"

    # -- running -------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """`http://<host>:<port>`, the value for `--zego.api-url`."""
        host = self.host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    @property
    def showcase(self) -> dict[str, list[str]]:
        """TaskIds per state of the showcase tasks (empty without a showcase)."""
        return self.world.showcase

    def start(self) -> Simulator:
        """Serve in a background daemon thread; returns self."""
        with self._state_lock:
            if self._serving or self._stopping.is_set():
                raise RuntimeError("the simulator is already serving or has been stopped")
            self._serving = True
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": _POLL_INTERVAL},
                name=f"zego-simulator-{self.port}", daemon=True)
            self._thread.start()
            if self.callbacks is not None:
                self.callbacks.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until Ctrl-C (KeyboardInterrupt) or `stop()`."""
        with self._state_lock:
            if self._serving or self._stopping.is_set():
                raise RuntimeError("the simulator is already serving or has been stopped")
            self._serving = True
            if self.callbacks is not None:
                self.callbacks.start()
        try:
            self._httpd.serve_forever(poll_interval=_POLL_INTERVAL)
        except KeyboardInterrupt:
            pass
        finally:
            self._close()

    def stop(self) -> None:
        """Stop serving, hang up on every connection and release the port. Idempotent."""
        with self._state_lock:
            self._stopping.set()
            serving, self._serving = self._serving, False
            thread, self._thread = self._thread, None
        if serving:
            self._httpd.shutdown()
        if thread is not None:
            thread.join()
        self._close()

    def _close(self) -> None:
        self._stopping.set()
        if self.callbacks is not None:
            self.callbacks.stop()
        self._httpd.close_connections()
        self._httpd.server_close()

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, _kind: type[BaseException] | None, _error: BaseException | None,
                 _traceback: TracebackType | None) -> None:
        self.stop()

    # -- control from Python -------------------------------------------------------------

    @property
    def faults(self) -> Faults:
        return self.injector.faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self.injector.faults = faults

    def reset_stats(self) -> None:
        """Forget counters and the request log (the rate limiter's window stays)."""
        self.stats.reset()

    def enable_callbacks(
        self,
        url: str,
        secret: Secret,
        *,
        retry_scale: float = 1.0,
        timeout: float = 5.0,
        check_interval: float = 0.1,
        faults: CallbackFaults | None = None,
    ) -> CallbackSender:
        """POST a signed EventType 3 callback to `url` for every task status change.

        Before `start()`, or while serving (then delivering begins at once); replaces any
        earlier sender. `retry_scale` multiplies ZEGO's retry gaps (2, 4, 8, 16, 32 s), e.g.
        0.01 for tests. Raises ValueError for a URL that is not http(s) or an empty secret.
        """
        sender = CallbackSender(url, secret, self.world, app_id=self.app_id,
                                retry_scale=retry_scale, timeout=timeout,
                                check_interval=check_interval, faults=faults)
        with self._state_lock:
            if self._stopping.is_set():
                raise RuntimeError("the simulator has been stopped")
            previous, self.callbacks = self.callbacks, sender
            if self._serving:
                sender.start()
        if previous is not None:
            previous.stop()
        return sender

    # -- requests ------------------------------------------------------------------------

    def handle(self, handler: _SimulatorHandler, method: str) -> None:
        received = self._monotonic()
        url = urlsplit(handler.path)
        if url.path == "/admin" or url.path.startswith("/admin/"):
            self._admin(handler, method, url.path, parse_qs(url.query))
        elif url.path != "/":
            handler.send(404, b"not found: the API is at / and the admin API under /admin/\n",
                         "text/plain; charset=utf-8")
        elif method == "POST":
            self._api(handler, url.query, received)
        elif method == "GET":
            handler.send(200, _LANDING, "text/plain; charset=utf-8")
        else:
            handler.send(405, b"method not allowed: POST signed requests\n",
                         "text/plain; charset=utf-8")

    def _api(self, handler: _SimulatorHandler, query: str, received: float) -> None:
        params = {key: values[0] for key, values in
                  parse_qs(query, keep_blank_values=True).items()}
        action = params.get("Action", "")
        body = handler.read_body()
        request = parse_body(body) if body is not None else None
        task_id = request.get("TaskId") if request is not None else None
        decision = self.injector.decide(action)
        entry = LoggedRequest(received, action[:64],
                              task_id if isinstance(task_id, str) else None,
                              code="", faults=decision.fired,
                              user_agent=handler.headers.get("User-Agent", "")[:200])

        if decision.drop:
            self._finish(handler, entry, "drop", decision, None)
            return
        if decision.http_status is not None:
            status = decision.http_status
            text = f"{status} {handler.responses.get(status, ('Error',))[0]}\n".encode()
            self._finish(handler, entry, f"http_{status}", decision,
                         (status, text, "text/plain; charset=utf-8"))
            return
        if decision.html_status is not None:
            status = decision.html_status
            self._finish(handler, entry, "html" if status == 200 else f"http_{status}",
                         decision, (status, _HTML_502, "text/html"))
            return

        code, message = check_common_params(
            params, app_id=self.app_id, secret=self._secret,
            now=self._clock() + decision.clock_skew, actions=ACTIONS)
        data: JsonDoc | None = None
        if code == CODE_OK and body is None:
            code, message = CODE_BODY_UNREADABLE, message_for(CODE_BODY_UNREADABLE)
        if code == CODE_OK:
            accepted, stamp = self.limiter.acquire(action)
            entry = replace(entry, arrival=stamp, accepted=accepted,
                             rate_limited=not accepted)
            if not accepted:
                code, message = CODE_RATE_LIMITED, message_for(CODE_RATE_LIMITED)
            elif decision.error_code is not None:
                code, message = decision.error_code, message_for(decision.error_code)
            else:
                answer = ACTIONS[action](self.world, request, self.ended_tasks)
                code, message, data = answer.code, answer.message, answer.data
        envelope: JsonDoc = {"Code": code, "Message": message, "RequestId": uuid.uuid4().hex}
        if code == CODE_OK:
            envelope["Data"] = data
            if action == ACTION_QUERY_TASKS and data is not None:
                if decision.bad_entries is not None:
                    data["TaskList"] = spoil_entries(data["TaskList"], decision.bad_entries)
                if decision.empty_list is not None and not data["TaskList"]:
                    del envelope["Data"]
                    envelope.update(empty_list_data(decision.empty_list))
        if decision.wrong_types:
            envelope = corrupt_types(envelope)
        payload = json.dumps(envelope, separators=(",", ":")).encode()
        if decision.malformed_json:
            payload = truncate(payload)
        status = 200
        if code != CODE_OK and decision.error_status is not None:
            status = decision.error_status or error_status_for(code)
        self._finish(handler, entry, str(code), decision,
                     (status, payload, "application/json; charset=utf-8"))

    def _finish(self, handler: _SimulatorHandler, entry: LoggedRequest, code: str,
                decision: Decision, answer: tuple[int, bytes, str] | None) -> None:
        """Record the request, wait out any delay fault, then answer (None: hang up)."""
        # Recorded before answering, so whoever reads the stats after the answer sees it.
        self.stats.record(replace(entry, code=code))
        if decision.delay and self._stopping.wait(decision.delay):
            answer = None
        if answer is None:
            handler.close_connection = True
            return
        status, payload, content_type = answer
        oversized = decision.oversized
        if oversized is None or oversized.size <= len(payload) or not payload.startswith(b"{"):
            handler.send(status, payload, content_type)
            return
        length, chunks = _padded(payload, oversized)
        handler.send_chunks(status, content_type, length, chunks,
                            delay=oversized.chunk_delay, stopping=self._stopping)

    # -- admin API -----------------------------------------------------------------------

    def _admin(self, handler: _SimulatorHandler, method: str, path: str,
               query: dict[str, list[str]]) -> None:
        parts = [unquote(part) for part in path.split("/") if part][1:]
        body = handler.read_body()
        try:
            if body is None:
                raise _AdminError(400, "could not read the request body")
            try:
                doc: object = json.loads(body) if body.strip() else {}
            except (ValueError, RecursionError) as exc:
                raise _AdminError(400, f"the request body is not JSON ({exc}): send a JSON "
                                       "object, e.g. {\"Status\": 3}") from exc
            status, answer = self._admin_route(method, parts, doc, query)
        except _AdminError as exc:
            status, answer = exc.status, {"error": exc.message}
        except ValueError as exc:  # a value the world or Faults refused
            status, answer = 400, {"error": str(exc)}
        except KeyError as exc:
            status, answer = 404, {"error": f"no task {exc.args[0]!r} in the world"}
        payload = json.dumps(answer, separators=(",", ":")).encode()
        handler.send(status, payload, "application/json; charset=utf-8")

    def _admin_route(self, method: str, parts: list[str], doc: object,
                     query: dict[str, list[str]]) -> tuple[int, object]:
        route = tuple(parts)
        if route == ("tasks",) and method == "GET":
            return 200, self._admin_list(query)
        if route == ("tasks",) and method == "POST":
            return 201, {"TaskId": self.world.add_task(**_task_fields(_object(doc)))}
        if route[:1] == ("tasks",):
            return self._admin_task(method, route[1], route[2:], _object(doc))
        if route == ("faults",):
            if method in {"POST", "PUT"}:
                self.faults = Faults.from_json(doc)
            elif method == "DELETE":
                self.faults = Faults()
            elif method != "GET":
                raise _AdminError(405, "use GET, POST (replace) or DELETE (clear) on faults")
            return 200, self.faults.to_json()
        if route == ("stats",) and method == "GET":
            return 200, self.stats.to_json()
        if route in {("stats",), ("stats", "reset")} and method in {"POST", "DELETE"}:
            self.reset_stats()
            return 200, self.stats.to_json()
        if route == ("requests",) and method == "GET":
            limit = _int_query(query, "limit", 1000)
            return 200, {"requests": [
                {"arrival": r.arrival, "action": r.action, "task_id": r.task_id,
                 "code": r.code, "accepted": r.accepted, "rate_limited": r.rate_limited,
                 "faults": list(r.faults), "user_agent": r.user_agent}
                for r in self.stats.requests(limit)]}
        if route == ("showcase",) and method == "GET":
            return 200, self.showcase
        if route == ("callbacks",) and method in {"GET", "POST", "PUT"}:
            sender = self.callbacks
            if sender is None:
                raise _AdminError(404, "callbacks are off: start the simulator with "
                                       "--callback-url and --callback-secret")
            if method != "GET":
                sender.faults = CallbackFaults.from_json(doc)
            return 200, {"URL": sender.url, "Faults": sender.faults.to_json(),
                         "Stats": sender.stats.to_json()}
        raise _AdminError(404, f"no admin endpoint {method} /admin/{'/'.join(parts)}; the "
                               "admin API is listed in docs/simulator.md")

    def _admin_list(self, query: dict[str, list[str]]) -> JsonDoc:
        status = _int_query(query, "status", None)
        tasks = self.world.tasks(None if status is None else frozenset({status}))
        limit = _int_query(query, "limit", None)
        shown = tasks if limit is None else tasks[:limit]
        return {"Now": self.world.now(), "Count": len(tasks),
                "Tasks": [task.to_json() for task in shown]}

    def _admin_task(self, method: str, task_id: str, verb: tuple[str, ...],
                    doc: JsonDoc) -> tuple[int, object]:
        world = self.world
        if verb == () and method == "GET":
            schedule = world.schedule(task_id)
            if schedule is None:
                raise KeyError(task_id)
            view = world.get(task_id)
            return 200, {**(view.to_json() if view else {"TaskId": task_id, "Status": None}),
                         "Schedule": [[when, status] for when, status in schedule]}
        if verb == () and method == "DELETE":
            world.remove(task_id)
        elif verb == ("status",) and method == "POST":
            status = doc.get("Status")
            if not isinstance(status, int) or isinstance(status, bool):
                raise _AdminError(400, "body must be {\"Status\": <integer>} "
                                       "(and optionally \"FailReason\")")
            world.set_status(task_id, status, _optional_str(doc, "FailReason"))
        elif verb == ("fail",) and method == "POST":
            world.fail(task_id, _optional_str(doc, "FailReason"))
        elif verb == ("stop",) and method == "POST":
            world.stop(task_id)
        elif verb == ("stream",) and method == "POST":
            world.stream(task_id)
        else:
            raise _AdminError(404, f"no admin endpoint {method} /admin/tasks/<id>/"
                                   f"{'/'.join(verb)}")
        view = world.get(task_id)
        return 200, view.to_json() if view else {"TaskId": task_id, "Status": None}


class _AdminError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _object(doc: object) -> JsonDoc:
    if not isinstance(doc, dict):
        raise _AdminError(400, "the request body must be a JSON object")
    return doc


def _optional_str(doc: JsonDoc, key: str) -> str | None:
    value = doc.get(key)
    if value is not None and not isinstance(value, str):
        raise _AdminError(400, f"{key} must be a string")
    return value


def _task_fields(doc: JsonDoc) -> dict[str, Any]:
    """World.add_task keywords from `{"Status", "RoomId", "StreamId", "FailReason",
    "TaskId", "CreateTime"}`, every one optional."""
    known = {"Status": "status", "RoomId": "room_id", "StreamId": "stream_id",
             "FailReason": "fail_reason", "TaskId": "task_id", "CreateTime": "create_time"}
    unknown = set(doc) - set(known)
    if unknown:
        raise _AdminError(400, f"unknown task fields {sorted(unknown)}; known: {list(known)}")
    fields: dict[str, Any] = {}
    for key, name in known.items():
        value = doc.get(key)
        if value is None:
            continue
        numeric = key in {"Status", "CreateTime"}
        if isinstance(value, bool) or (
            not isinstance(value, (int, float)) if numeric else not isinstance(value, str)
        ) or (key == "Status" and not isinstance(value, int)):
            raise _AdminError(400, f"{key} must be {'a number' if numeric else 'a string'}")
        fields[name] = value
    return fields


def _int_query(query: dict[str, list[str]], name: str, default: int | None) -> int | None:
    values = query.get(name)
    if not values:
        return default
    try:
        return int(values[0])
    except ValueError:
        raise _AdminError(400, f"query parameter {name} must be an integer") from None


def _padded(payload: bytes, oversized: Oversized) -> tuple[int, Iterator[bytes]]:
    """The answer padded to `oversized.size` bytes by a leading `"Padding"` field: still
    valid JSON, so a client whose size cap is large enough parses it. Streamed, never built
    whole; the caller makes sure `payload` is a JSON object smaller than the size."""
    head = b'{"Padding":"'
    tail = b'",' + payload[1:]
    filler = oversized.size - len(head) - len(tail)
    if filler < 0:
        return len(payload), iter((payload,))
    chunk = oversized.chunk_size

    def pieces() -> Iterator[bytes]:
        for start in range(0, len(head), chunk):
            yield head[start:start + chunk]
        whole, rest = divmod(filler, chunk)
        block = b"x" * chunk
        for _ in range(whole):
            yield block
        if rest:
            yield b"x" * rest
        for start in range(0, len(tail), chunk):
            yield tail[start:start + chunk]

    return oversized.size, pieces()
