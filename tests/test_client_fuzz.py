"""The client against a raw HTTP stub: whatever an answer carries, data or a ZegoError.

test_responses.py fuzzes the parser with bytes in hand; these tests send the bytes over a real
socket, so HTTP framing (length, chunked, close-delimited, lying lengths), Content-Encoding
(real, claimed but absent, unknown), the HTTP status (ZEGO's docs never say which one an error
comes with), the size cap and the total time limit are in play too: the client must still
return parsed data or raise a ZegoError carrying an outcome label, judge any answer carrying
ZEGO's envelope by its Code whatever the status, count each call exactly once, and never
buffer an endless body or wait on a trickle.
"""

from __future__ import annotations

import gzip
import json
import re
import socket
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from conftest import APP_ID, SECRET_TEXT
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from test_responses import json_values

from zego_exporter.client import ZegoClient
from zego_exporter.errors import InvalidResponse, TransportError, ZegoError
from zego_exporter.responses import RunningTasks, TaskStatus, parse_task_list, parse_task_status
from zego_exporter.signing import Secret

OUTCOME = re.compile(r"^(-?\d+|invalid_response|connection_error|timeout|http_\d{3})$")

Answer = Callable[[socket.socket], None]


class Stub:
    """A loopback HTTP server that reads each request and sends `answer`, then hangs up."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self.answer: Answer = lambda conn: None
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="stub", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                try:
                    _read_request(conn)
                    self.answer(conn)
                    conn.shutdown(socket.SHUT_WR)
                except OSError:  # the client gave up (size cap, time limit): fine
                    pass

    def send(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        self.sent += len(data)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._listener.close()


def _read_request(conn: socket.socket) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        piece = conn.recv(65536)
        if not piece:
            return
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
    missing = int(length.group(1)) - len(body) if length else 0
    while missing > 0:
        piece = conn.recv(missing)
        if not piece:
            return
        missing -= len(piece)


@pytest.fixture(scope="module")
def stub() -> Iterator[Stub]:
    server = Stub()
    yield server
    server.close()


@dataclass
class Calls:
    outcomes: list[str]

    def __call__(self, action: str, outcome: str, seconds: float) -> None:
        self.outcomes.append(outcome)


def client_for(stub: Stub, calls: Calls, **options: float) -> ZegoClient:
    timeout = options.pop("timeout", 2.0)
    return ZegoClient(APP_ID, Secret(SECRET_TEXT), stub.url, connect_timeout=timeout,
                      read_timeout=timeout, observer=calls, **options)  # type: ignore[arg-type]


# -- the fuzz --------------------------------------------------------------------------------

def _chunked(body: bytes, sizes: list[int]) -> bytes:
    out, rest = [], body
    for size in sizes:
        if not rest:
            break
        piece, rest = rest[:size], rest[size:]
        out.append(b"%x\r\n%s\r\n" % (len(piece), piece))
    if rest:
        out.append(b"%x\r\n%s\r\n" % (len(rest), rest))
    return b"".join(out) + b"0\r\n\r\n"


ENCODINGS: dict[str, tuple[str, Callable[[bytes], bytes], bool]] = {
    # name -> (Content-Encoding header, how the body is sent, sent as encoded?)
    "identity": ("", lambda b: b, True),
    "gzip": ("gzip", gzip.compress, True),
    "deflate": ("deflate", zlib.compress, True),
    "gzip_claimed": ("gzip", lambda b: b, False),  # says gzip, is not
    "unknown": ("x-zego-custom", lambda b: b, False),
}
FRAMINGS = ("length", "chunked", "close", "short_length", "long_length")


@dataclass(frozen=True)
class Wire:
    body: bytes
    """The body the server means."""
    raw: bytes
    """The whole answer as sent."""
    intact: bool
    """Framing and encoding are right: the client must see exactly `body`."""
    undecodable: bool
    """Whole, but its Content-Encoding is a lie: an invalid response, not a network error."""
    status: int = 200


@st.composite
def answers(draw: st.DrawFn) -> Wire:
    body = draw(
        st.binary(max_size=300)
        | json_values.map(lambda v: json.dumps(v).encode())
        | json_values.map(lambda data: json.dumps(
            {"Code": 0, "Message": "success", "RequestId": "r", "Data": data}).encode())
        | st.fixed_dictionaries({"TaskId": st.text(max_size=8), "Status": st.integers(0, 9),
                                 "CreateTime": st.integers(0, 2**40)}).map(
            lambda task: json.dumps({"Code": 0, "Data": {"TaskList": [task], **task}}).encode())
        | st.fixed_dictionaries({"Code": st.sampled_from([100000005, 400000005, 400010001,
                                                          400010009, 400010000]),
                                 "Message": st.text(max_size=8), "RequestId": st.text(max_size=8)
                                 }).map(lambda doc: json.dumps(doc).encode())
    )
    status = draw(st.sampled_from([200, 200, 200, 400, 401, 403, 404, 429, 500, 502, 503]))
    encoding = draw(st.sampled_from(sorted(ENCODINGS)))
    header, encode, faithful = ENCODINGS[encoding]
    payload = encode(body)
    framing = draw(st.sampled_from(FRAMINGS))
    content_type = draw(st.sampled_from(["application/json; charset=utf-8", "text/html", ""]))
    head = [b"HTTP/1.1 %d Whatever" % status, b"Connection: close"]
    if content_type:
        head.append(b"Content-Type: " + content_type.encode())
    if header:
        head.append(b"Content-Encoding: " + header.encode())
    intact = faithful and framing in ("length", "chunked", "close")
    if framing == "length":
        head.append(b"Content-Length: %d" % len(payload))
    elif framing == "chunked":
        head.append(b"Transfer-Encoding: chunked")
        payload = _chunked(payload, draw(st.lists(st.integers(1, 64), max_size=8)))
    elif framing == "short_length":
        head.append(b"Content-Length: %d" % max(0, len(payload) - 1 - draw(st.integers(0, 20))))
    elif framing == "long_length":
        head.append(b"Content-Length: %d" % (len(payload) + 1 + draw(st.integers(0, 20))))
    undecodable = encoding == "gzip_claimed" and bool(body) and framing in (
        "length", "chunked", "close")
    event(f"{encoding}, {framing}")
    event(f"HTTP {status}")
    return Wire(body, b"\r\n".join(head) + b"\r\n\r\n" + payload, intact, undecodable,
                status)


def expected(parse: Callable[[bytes], object], body: bytes, status: int) -> object:
    """What the parser alone makes of `body`: the data, or the outcome of its error; with a
    status other than 200, `http_<status>` unless the body is ZEGO's envelope."""
    try:
        return parse(body)
    except InvalidResponse as exc:
        return exc.outcome if status == 200 or exc.in_envelope else f"http_{status}"
    except ZegoError as exc:
        return exc.outcome


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(answer=answers())
def test_any_answer_gives_data_or_a_labelled_zego_error(stub: Stub, answer: Wire) -> None:
    stub.answer = lambda conn: stub.send(conn, answer.raw)
    calls = Calls([])
    client = client_for(stub, calls)
    try:
        for call, parse in (
            (lambda: client.get_task_status("t"), lambda b: parse_task_status(b, "t")),
            (client.query_running_tasks, parse_task_list),
        ):
            try:
                result: object = call()
            except ZegoError as exc:
                assert OUTCOME.match(exc.outcome), exc.outcome
                assert exc.message
                result = exc.outcome
            else:
                assert isinstance(result, (TaskStatus, RunningTasks))
            assert calls.outcomes[-1] == (result if isinstance(result, str) else "0")
            if answer.intact:  # what arrives whole must mean exactly what the parser says
                assert result == expected(parse, answer.body, answer.status)
            if answer.undecodable:
                assert result == ("invalid_response" if answer.status == 200
                                  else f"http_{answer.status}")
        assert len(calls.outcomes) == 2  # each call counted once
    finally:
        client.close()


# -- size cap and total time limit ----------------------------------------------------------

HUGE = 50 * 1024 * 1024
PIECE = 64 * 1024
STUB_PATIENCE = 10.0  # a client that waits for everything fails the test instead of hanging it


def chunked_forever(stub: Stub, delay: float, size: int = PIECE) -> Answer:
    """A 200 answer whose body starts like JSON and goes on in chunks for 50 MB, no length."""
    def answer(conn: socket.socket) -> None:
        stub.send(conn, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\n")
        first = b'{"Padding":"'
        stub.send(conn, b"%x\r\n%s\r\n" % (len(first), first))
        block = b"%x\r\n%s\r\n" % (size, b"x" * size)
        give_up_at = time.monotonic() + STUB_PATIENCE
        for _ in range(HUGE // size):
            stub.send(conn, block)
            if delay:
                time.sleep(delay)
            if time.monotonic() > give_up_at:
                return
    return answer


def trickle(stub: Stub, delay: float) -> Answer:
    """A 200 answer with an honest Content-Length whose body comes a byte at a time."""
    def answer(conn: socket.socket) -> None:
        body = json.dumps({"Code": 0, "Data": {"TaskList": []}, "Pad": " " * 4000}).encode()
        stub.send(conn, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\n\r\n" % len(body))
        give_up_at = time.monotonic() + STUB_PATIENCE
        for byte in body:
            stub.send(conn, bytes([byte]))
            time.sleep(delay)
            if time.monotonic() > give_up_at:
                return
    return answer


def measured(call: Callable[[], object]) -> tuple[ZegoError, float, int]:
    """The error `call` raises, the seconds it took and the peak traced memory (bytes)."""
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(ZegoError) as caught:
            call()
        took = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return caught.value, took, peak


@pytest.mark.slow
def test_an_endless_body_without_a_length_stops_at_the_size_cap(stub: Stub) -> None:
    stub.sent = 0
    stub.answer = chunked_forever(stub, delay=0.001)
    calls = Calls([])
    client = client_for(stub, calls, max_response_bytes=1024 * 1024)
    try:
        error, took, peak = measured(client.query_running_tasks)
    finally:
        client.close()
    assert isinstance(error, InvalidResponse) and "size cap" in error.message
    assert calls.outcomes == ["invalid_response"]
    assert took < 5
    assert peak < 8 * 1024 * 1024, f"{peak / 2**20:.1f} MiB traced"  # not 50 MB
    time.sleep(0.2)
    assert stub.sent < HUGE / 4  # the client hung up long before the end


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["chunked_slowly", "byte_by_byte"])
def test_a_slow_body_gives_up_at_the_total_time_limit(stub: Stub, kind: str) -> None:
    """Each piece arrives well within the 1 s read timeout; the whole answer must still end
    within connect + read timeout (2 s), not when the last byte arrives."""
    stub.answer = (chunked_forever(stub, delay=0.2) if kind == "chunked_slowly"
                   else trickle(stub, delay=0.2))
    calls = Calls([])
    client = client_for(stub, calls, timeout=1.0)
    try:
        error, took, peak = measured(client.query_running_tasks)
    finally:
        client.close()
    assert isinstance(error, TransportError) and error.outcome == "timeout", error
    assert calls.outcomes == ["timeout"]
    assert 1.9 <= took < 5, took
    assert peak < 8 * 1024 * 1024
