"""The web layer alone: a real WebServer on loopback around fake endpoints and a fake security.

What is checked here is HTTP, not metrics: listen addresses, IPv6, keep-alive, streamed bodies
for each HTTP version, headers handed to the endpoints, request bodies that must never be read
as the next request, the callback endpoint's body limits, and basic auth on every path but the
health check and the callback.
"""

from __future__ import annotations

import gzip
import http.client
import logging
import socket
import ssl
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.support.processes import Response, fetch, get_chunks
from zego_exporter import __version__
from zego_exporter.web import (
    SCRAPE_TIMEOUT_HEADER,
    Endpoints,
    ListenAddressError,
    WebServer,
    landing_page,
    parse_listen_address,
)

METRICS = b"# TYPE fake gauge\nfake 1.0\n" * 50
PIECES = [METRICS[:400], METRICS[400:900], METRICS[900:]]


# -- listen addresses ------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1:9877", ("127.0.0.1", 9877)),
    ("localhost:80", ("localhost", 80)),
    (":9877", ("", 9877)),
    (":0", ("", 0)),
    ("[::]:9877", ("::", 9877)),
    ("[::1]:65535", ("::1", 65535)),
    ("[fe80::1%eth0]:1", ("fe80::1%eth0", 1)),
])
def test_parse_listen_address(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen_address(text) == expected


@pytest.mark.parametrize(("text", "says"), [
    ("", "needs a port"),
    ("9877", "needs a port"),
    ("localhost", "needs a port"),
    ("localhost:", "needs a port"),
    ("localhost:http", "needs a port"),
    ("host:9877:x", "needs a port"),
    (":-1", "needs a port"),
    (":65536", "0 to 65535"),
    ("::1:9877", "brackets"),
    ("::9877", "brackets"),
    ("[::1]", "needs a port"),
    ("[zz::q]:80", "no IPv6 address"),
])
def test_parse_listen_address_errors_say_what_to_write(text: str, says: str) -> None:
    with pytest.raises(ListenAddressError) as caught:
        parse_listen_address(text)
    assert says in str(caught.value)
    assert repr(text) in str(caught.value)


# -- fakes -----------------------------------------------------------------------------------

@dataclass
class FakeEndpoints:
    """Metrics come in pieces (PIECES, METRICS in all, unless `pieces` is set), as the exporter
    renders them; `fail` breaks the rendering after `fail_after` pieces."""

    ready: bool = True
    fail: bool = False
    fail_after: int = 0
    pieces: list[bytes] | None = None
    scrapes: list[tuple[str, float | None]] = field(default_factory=list)
    started: int = 0
    """Bodies whose rendering began (a first piece was asked for)."""
    finished: threading.Event = field(default_factory=threading.Event)
    """Set when a body generator ends, however it ends (sent, closed, failed)."""
    renderer_threads: list[threading.Thread] = field(default_factory=list)
    callbacks: list[bytes | None] = field(default_factory=list)

    def render(self, accept: str, timeout: float | None) -> tuple[Iterator[bytes], str]:
        self.scrapes.append((accept, timeout))
        return self._body(), "text/plain; version=0.0.4; charset=utf-8"

    def _body(self) -> Iterator[bytes]:
        self.started += 1
        self.renderer_threads.append(threading.current_thread())
        try:
            for n, piece in enumerate(self.pieces if self.pieces is not None else PIECES):
                if self.fail and n == self.fail_after:
                    raise RuntimeError("boom")
                yield piece
        finally:
            self.finished.set()

    def callback(self, body: bytes | None) -> tuple[int, bytes]:
        self.callbacks.append(body)
        if body is None:
            return 413, b'{"error":"too large"}'
        return 200, b'{"code":0}'

    def endpoints(self, **overrides: object) -> Endpoints:
        options: dict[str, object] = {
            "telemetry_path": "/metrics", "render_metrics": self.render,
            "is_ready": lambda: self.ready, "landing_html": lambda: "<p>landing</p>",
            "callback_path": "/zego/callback", "handle_callback": self.callback,
            "max_callback_bytes": 100,
        }
        options.update(overrides)
        return Endpoints(**options)  # type: ignore[arg-type]


class FakeSecurity:
    """Basic auth with one good header, and a header to add to every response; `refusal` is a
    status every request gets before any login (a rate limit, a broken web config file)."""

    GOOD = "Basic Z29vZDpwYXNz"

    def __init__(self, auth_required: bool = True, refusal: int | None = None) -> None:
        self._auth_required = auth_required
        self.refusal = refusal
        self.checked: list[str | None] = []
        self.admitted: list[bool] = []
        """`login` of every admit() call."""

    @property
    def response_headers(self) -> Mapping[str, str]:
        return {"X-Frame-Options": "deny"}

    def admit(self, authorization_header: str | None,
              client_certificate: Mapping[str, Any] | None, *, login: bool = True) -> int | None:
        assert client_certificate is None  # plain HTTP
        self.admitted.append(login)
        if self.refusal is not None:
            return self.refusal
        if not login or not self._auth_required:
            return None
        self.checked.append(authorization_header)
        return None if authorization_header == self.GOOD else 401

    def ssl_context(self) -> ssl.SSLContext | None:
        return None


@pytest.fixture
def fake() -> FakeEndpoints:
    return FakeEndpoints()


@pytest.fixture
def serve() -> Iterator[Callable[..., WebServer]]:
    """Start WebServers on loopback; every one is stopped at the end of the test."""
    started: list[WebServer] = []

    def start(endpoints: Endpoints, security: FakeSecurity | None = None,
              address: str = "127.0.0.1:0") -> WebServer:
        server = WebServer(address, endpoints, lambda: security)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def request(server: WebServer, method: str, path: str, *, body: bytes | None = None,
            headers: dict[str, str] | None = None, host: str = "127.0.0.1") -> Response:
    authority = f"[{host}]" if ":" in host else host
    return fetch(f"http://{authority}:{server.port}", path, method=method, headers=headers,
                 body=body, timeout=5)


def raw(server: WebServer, data: bytes) -> bytes:
    """Send `data` as is and read the answer until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


# -- serving ---------------------------------------------------------------------------------

def test_routes_and_head(serve: Callable[..., WebServer], fake: FakeEndpoints) -> None:
    server = serve(fake.endpoints())
    assert server.url == f"http://127.0.0.1:{server.port}"
    metrics = request(server, "GET", "/metrics")
    assert metrics.status == 200 and metrics.body == METRICS
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert request(server, "GET", "/metrics?debug=1").body == METRICS
    landing = request(server, "GET", "/")
    assert landing.body == b"<p>landing</p>" and "text/html" in landing.headers["content-type"]
    assert request(server, "GET", "/-/healthy").status == 200
    assert request(server, "GET", "/-/ready").status == 200
    fake.ready = False
    assert request(server, "GET", "/-/ready").status == 503
    assert request(server, "GET", "/-/healthy").status == 200
    assert request(server, "GET", "/nope").status == 404
    assert request(server, "GET", "/metrics/").status == 404
    post = request(server, "POST", "/metrics", body=b"a=1")
    assert post.status == 405 and post.headers["allow"] == "GET, HEAD"
    assert request(server, "HEAD", "/nope").status == 404
    assert metrics.headers["server"] == f"zego-exporter/{__version__}"  # no trailing space


def test_metrics_are_sent_chunked_as_they_are_rendered(
    serve: Callable[..., WebServer], fake: FakeEndpoints,
) -> None:
    server = serve(fake.endpoints())
    answer = raw(server, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"\r\nTransfer-Encoding: chunked" in head
    assert b"Content-Length" not in head
    # One chunk per piece, in order, then the last (empty) chunk.
    expected = b"".join(b"%X\r\n%b\r\n" % (len(piece), piece) for piece in PIECES)
    assert body == expected + b"0\r\n\r\n"
    assert fake.finished.is_set()


def test_head_sends_the_headers_of_get_and_renders_nothing(
    serve: Callable[..., WebServer], fake: FakeEndpoints,
) -> None:
    server = serve(fake.endpoints())
    headers = {"Accept-Encoding": "gzip"}
    get = request(server, "GET", "/metrics", headers=headers)
    head = request(server, "HEAD", "/metrics", headers=headers)
    assert head.status == 200 and head.body == b""
    assert head.headers.keys() == get.headers.keys()
    for name in ("content-type", "content-encoding", "transfer-encoding", "vary"):
        assert head.headers[name] == get.headers[name], name
    assert "content-length" not in head.headers
    assert fake.started == 1  # the GET's: HEAD asked for no piece
    # The connection stays usable after a HEAD (no body is expected on it).
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request("HEAD", "/metrics")
        assert conn.getresponse().read() == b""
        conn.request("GET", "/metrics")
        assert conn.getresponse().read() == METRICS
    finally:
        conn.close()


def test_http_1_0_gets_the_body_until_the_connection_closes(
    serve: Callable[..., WebServer], fake: FakeEndpoints,
) -> None:
    server = serve(fake.endpoints())
    answer = raw(server, b"GET /metrics HTTP/1.0\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"\r\nConnection: close" in head
    assert b"chunked" not in head and body == METRICS


def test_http_0_9_gets_the_bare_body(
    serve: Callable[..., WebServer], fake: FakeEndpoints,
) -> None:
    """A request line without a version is HTTP/0.9: no status line and no headers go back, so
    the body can be neither chunked nor gzipped."""
    server = serve(fake.endpoints())
    assert raw(server, b"GET /metrics\r\nAccept-Encoding: gzip\r\n\r\n") == METRICS


def test_http_1_0_is_read_as_a_version_not_as_text(
    serve: Callable[..., WebServer], fake: FakeEndpoints,
) -> None:
    server = serve(fake.endpoints())
    head, _, body = raw(server, b"GET /metrics HTTP/1.00\r\n\r\n").partition(b"\r\n\r\n")
    assert b"chunked" not in head and body == METRICS


def test_headers_reach_the_renderer(serve: Callable[..., WebServer], fake: FakeEndpoints) -> None:
    server = serve(fake.endpoints())
    request(server, "GET", "/metrics", headers={
        "Accept": "application/openmetrics-text; version=1.0.0",
        SCRAPE_TIMEOUT_HEADER: "1.5"})
    request(server, "GET", "/metrics")
    request(server, "GET", "/metrics", headers={SCRAPE_TIMEOUT_HEADER: "soon"})
    assert fake.scrapes == [("application/openmetrics-text; version=1.0.0", 1.5),
                            ("", None), ("", None)]


def test_gzip_only_when_asked(serve: Callable[..., WebServer], fake: FakeEndpoints) -> None:
    server = serve(fake.endpoints())
    zipped = request(server, "GET", "/metrics", headers={"Accept-Encoding": "gzip, deflate"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.headers["vary"] == "Accept, Accept-Encoding"
    assert gzip.decompress(zipped.body) == METRICS
    plain = request(server, "GET", "/metrics", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.body == METRICS
    assert plain.headers["vary"] == "Accept, Accept-Encoding"  # it varies even when not zipped
    refused = request(server, "GET", "/metrics", headers={"Accept-Encoding": "gzip;q=0, br"})
    assert "content-encoding" not in refused.headers and refused.body == METRICS


def test_gzip_is_one_stream_flushed_piece_by_piece(
    serve: Callable[..., WebServer], fake: FakeEndpoints,
) -> None:
    """Each chunk holds everything compressed so far: a reader can decompress as it goes."""
    fake.pieces = [bytes([65 + n]) * 50_000 for n in range(5)]
    server = serve(fake.endpoints())
    _, chunks = get_chunks(server.port, "/metrics", {"Accept-Encoding": "gzip"})
    inflate = zlib.decompressobj(31)
    decoded = [inflate.decompress(chunk) for chunk in chunks]
    assert decoded[:5] == fake.pieces  # one piece out of each chunk, at once
    assert b"".join(decoded) + inflate.flush() == b"".join(fake.pieces)
    assert inflate.eof and not inflate.unused_data


def test_a_failing_renderer_is_a_500(serve: Callable[..., WebServer],
                                     fake: FakeEndpoints) -> None:
    server = serve(fake.endpoints())
    fake.fail = True
    answer = request(server, "GET", "/metrics")
    assert answer.status == 500 and b"log" in answer.body
    fake.fail = False
    assert request(server, "GET", "/metrics").status == 200


def test_a_renderer_failing_midway_cuts_the_body_short(
    serve: Callable[..., WebServer], fake: FakeEndpoints, caplog: pytest.LogCaptureFixture,
) -> None:
    """Once the 200 is out, the only honest signal left is a body without its end."""
    fake.fail, fake.fail_after = True, 2
    server = serve(fake.endpoints())
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request("GET", "/metrics")
        answer = conn.getresponse()
        assert answer.status == 200
        with pytest.raises(http.client.IncompleteRead) as cut:
            answer.read()
        assert cut.value.partial == PIECES[0] + PIECES[1]
    finally:
        conn.close()
    assert any(r.getMessage() == "rendering metrics failed while sending them"
               for r in caplog.records)


def test_a_client_that_hangs_up_midway_ends_the_scrape_quietly(
    serve: Callable[..., WebServer], fake: FakeEndpoints, caplog: pytest.LogCaptureFixture,
) -> None:
    """More than socket buffers hold, so the server is still sending when the client goes."""
    fake.pieces = [b"x" * 1_000_000] * 64
    server = serve(fake.endpoints())
    caplog.set_level(logging.DEBUG, logger="zego_exporter.web")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
    assert fake.finished.wait(10), "the body generator was never closed"
    handler = fake.renderer_threads[0]
    handler.join(10)
    assert not handler.is_alive(), "the handler thread is still busy with the gone client"
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert "scrape abandoned by the client" in [r.getMessage() for r in caplog.records]
    assert request(server, "GET", "/metrics").status == 200


def test_a_failing_endpoint_is_logged_as_an_error_not_hidden_with_connection_noise(
    serve: Callable[..., WebServer], fake: FakeEndpoints, caplog: pytest.LogCaptureFixture,
) -> None:
    def broken() -> bool:
        raise RuntimeError("a bug in is_ready")

    server = serve(fake.endpoints(is_ready=broken))
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        request(server, "GET", "/-/ready")
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None
    assert "a bug in is_ready" in str(errors[0].exc_info[1])
    assert request(server, "GET", "/-/healthy").status == 200


def test_keep_alive_serves_two_requests_on_one_connection(
    serve: Callable[..., WebServer], fake: FakeEndpoints,
) -> None:
    server = serve(fake.endpoints())
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request("GET", "/metrics")
        first = conn.getresponse()
        assert first.version == 11 and first.getheader("Connection") is None
        assert first.read() == METRICS
        sock = conn.sock
        conn.request("GET", "/-/healthy")
        second = conn.getresponse()
        assert second.status == 200 and second.read() == b"Healthy\n"
        assert conn.sock is sock  # http.client reconnects (new socket) if the server hung up
    finally:
        conn.close()


SMUGGLED = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize(("method", "path"), [("GET", "/-/healthy"), ("HEAD", "/-/ready"),
                                              ("GET", "/"), ("POST", "/metrics")])
def test_a_body_the_request_does_not_use_is_never_read_as_the_next_request(
    serve: Callable[..., WebServer], fake: FakeEndpoints, method: str, path: str,
) -> None:
    """Framing does not depend on the method: a proxy in front that forwards a GET with a body
    must not see the body answered as a request of its own (responses would get out of step)."""
    server = serve(fake.endpoints())
    answer = raw(server, f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: "
                         f"{len(SMUGGLED)}\r\n\r\n".encode() + SMUGGLED
                 + b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer.count(b"HTTP/1.1 ") == 2  # the request, then the next real one
    assert answer.rstrip().endswith(b"Healthy")
    assert fake.scrapes == []


@pytest.mark.parametrize(("method", "path", "length"), [
    ("GET", "/-/healthy", None), ("POST", "/metrics", None), ("POST", "/zego/callback", None),
    ("POST", "/zego/callback", 5), ("GET", "/-/healthy", 5),
])
def test_a_chunked_body_closes_the_connection_after_the_answer(
    serve: Callable[..., WebServer], fake: FakeEndpoints, method: str, path: str,
    length: int | None,
) -> None:
    """A chunked request body is not read here, and Transfer-Encoding outweighs a
    Content-Length: the only safe end is to close the connection once answered."""
    server = serve(fake.endpoints())
    chunked = b"%X\r\n%b\r\n0\r\n\r\n" % (len(SMUGGLED), SMUGGLED)
    content_length = b"" if length is None else b"Content-Length: %d\r\n" % length
    answer = raw(server, f"{method} {path} HTTP/1.1\r\nHost: x\r\n".encode() + content_length
                 + b"Transfer-Encoding: chunked\r\n\r\n" + chunked)
    assert answer.count(b"HTTP/1.1 ") == 1
    assert b"\r\nConnection: close\r\n" in answer
    assert fake.scrapes == [] and fake.callbacks == []


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("length", [b"\xb2", b"-1", b"1e3", b" "])  # \xb2: superscript two
def test_a_content_length_that_is_not_a_number_is_answered_and_the_connection_closed(
    serve: Callable[..., WebServer], fake: FakeEndpoints, method: str, length: bytes,
) -> None:
    """"²".isdigit() is true, but int("²") fails: a header like that must not end the handler
    without an answer."""
    server = serve(fake.endpoints())
    for path, status in [("/-/healthy", b"200" if method == "GET" else b"405"),
                         ("/zego/callback", b"405" if method == "GET" else b"411")]:
        answer = raw(server, f"{method} {path} HTTP/1.1\r\nHost: x\r\n".encode()
                     + b"Content-Length: " + length + b"\r\n\r\n" + SMUGGLED)
        assert answer.startswith(b"HTTP/1.1 " + status), (path, answer[:40])
        assert answer.count(b"HTTP/1.1 ") == 1 and b"\r\nConnection: close\r\n" in answer
    assert fake.callbacks == [] and fake.scrapes == []


def ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def test_serves_on_ipv6_loopback(serve: Callable[..., WebServer], fake: FakeEndpoints) -> None:
    if not ipv6_loopback():
        pytest.skip("no IPv6 loopback on this machine")
    server = serve(fake.endpoints(), address="[::1]:0")
    assert server.url == f"http://[::1]:{server.port}"
    answer = request(server, "GET", "/metrics", host="::1")
    assert answer.status == 200 and answer.body == METRICS


# -- the callback endpoint -------------------------------------------------------------------

def test_callback_body_within_the_limit_reaches_the_handler(
    serve: Callable[..., WebServer], fake: FakeEndpoints,
) -> None:
    server = serve(fake.endpoints())
    body = b'{"EventType":3}'.ljust(100)
    answer = request(server, "POST", "/zego/callback", body=body)
    assert (answer.status, answer.body) == (200, b'{"code":0}')
    assert answer.headers["content-type"] == "application/json"
    assert fake.callbacks == [body]
    assert request(server, "GET", "/zego/callback").status == 405


def test_callback_over_the_limit_is_not_read_and_the_handler_gets_none(
    serve: Callable[..., WebServer], fake: FakeEndpoints,
) -> None:
    server = serve(fake.endpoints())
    # Claims a gigabyte and sends none of it: the answer must come without reading the body.
    started = time.monotonic()
    answer = raw(server, b"POST /zego/callback HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Length: 1000000000\r\n\r\n")
    assert time.monotonic() - started < 2
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"\r\nConnection: close\r\n" in answer
    assert fake.callbacks == [None]


def test_callback_without_content_length_is_411(
    serve: Callable[..., WebServer], fake: FakeEndpoints,
) -> None:
    server = serve(fake.endpoints())
    answer = raw(server, b"POST /zego/callback HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 411 ")
    chunked = raw(server, b"POST /zego/callback HTTP/1.1\r\nHost: x\r\n"
                          b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    assert chunked.startswith(b"HTTP/1.1 411 ")
    assert fake.callbacks == []


def test_without_callbacks_the_path_is_unknown(
    serve: Callable[..., WebServer], fake: FakeEndpoints,
) -> None:
    server = serve(fake.endpoints(callback_path=None, handle_callback=None))
    assert request(server, "POST", "/zego/callback", body=b"{}").status == 404
    assert request(server, "GET", "/zego/callback").status == 404
    assert request(server, "POST", "/nope", body=b"{}").status == 404
    assert fake.callbacks == []


# -- basic auth and response headers ---------------------------------------------------------

PROTECTED = [("GET", "/"), ("GET", "/metrics"), ("HEAD", "/metrics"), ("GET", "/-/ready"),
             ("GET", "/nope"), ("POST", "/metrics"), ("HEAD", "/")]


def test_basic_auth_protects_every_endpoint_but_health_and_callback(
    serve: Callable[..., WebServer], fake: FakeEndpoints,
) -> None:
    server = serve(fake.endpoints(), FakeSecurity())
    for method, path in PROTECTED:
        denied = request(server, method, path)
        assert denied.status == 401, (method, path)
        assert denied.headers["www-authenticate"].startswith("Basic realm=")
        wrong = request(server, method, path, headers={"Authorization": "Basic bm9wZTpub3Bl"})
        assert wrong.status == 401, (method, path)
    assert fake.scrapes == []  # nothing rendered for anyone without the password
    for method, path in PROTECTED:
        allowed = request(server, method, path, headers={"Authorization": FakeSecurity.GOOD})
        expected = {"/nope": 404, "/metrics": 405 if method == "POST" else 200}.get(path, 200)
        assert allowed.status == expected, (method, path)
    assert len(fake.scrapes) == 2


def test_health_and_callback_need_no_auth(
    serve: Callable[..., WebServer], fake: FakeEndpoints,
) -> None:
    security = FakeSecurity()
    server = serve(fake.endpoints(), security)
    assert request(server, "GET", "/-/healthy").status == 200
    assert request(server, "POST", "/zego/callback", body=b"{}").status == 200
    assert security.checked == []
    assert security.admitted == [False]  # the callback: rate limit and such, but no login


@pytest.mark.parametrize(("status", "says"), [
    (429, b"Too Many Requests\n"),
    (500, b"the web configuration cannot be used; see the exporter's log"),
    (403, b"none of the allowed SANs"),
])
def test_a_refusal_reaches_every_endpoint_but_health(
    serve: Callable[..., WebServer], fake: FakeEndpoints, status: int, says: bytes,
) -> None:
    server = serve(fake.endpoints(), FakeSecurity(refusal=status))
    for method, path in [*PROTECTED, ("POST", "/zego/callback")]:
        answer = request(server, method, path, headers={"Authorization": FakeSecurity.GOOD},
                         body=b"{}" if method == "POST" else None)
        assert answer.status == status, (method, path)
        assert "www-authenticate" not in answer.headers
        if method != "HEAD":
            assert says in answer.body
    assert request(server, "GET", "/-/healthy").status == 200
    assert fake.scrapes == [] and fake.callbacks == []


def test_a_refused_callback_closes_the_connection_so_its_body_is_never_read_as_a_request(
    serve: Callable[..., WebServer], fake: FakeEndpoints,
) -> None:
    server = serve(fake.endpoints(), FakeSecurity(refusal=429))
    smuggled = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
    answer = raw(server, b"POST /zego/callback HTTP/1.1\r\nHost: x\r\nContent-Length: "
                 + str(len(smuggled)).encode() + b"\r\n\r\n" + smuggled)
    assert answer.startswith(b"HTTP/1.1 429 ")
    assert b"Connection: close" in answer
    assert answer.count(b"HTTP/1.1 ") == 1


def test_auth_not_required_lets_everyone_in(
    serve: Callable[..., WebServer], fake: FakeEndpoints,
) -> None:
    server = serve(fake.endpoints(), FakeSecurity(auth_required=False))
    assert request(server, "GET", "/metrics").status == 200


def test_response_headers_are_sent_on_every_answer(
    serve: Callable[..., WebServer], fake: FakeEndpoints,
) -> None:
    server = serve(fake.endpoints(), FakeSecurity())
    for method, path, auth in [
        ("GET", "/metrics", True), ("GET", "/", True), ("GET", "/metrics", False),
        ("GET", "/-/healthy", False), ("POST", "/zego/callback", False), ("GET", "/nope", True),
        ("POST", "/metrics", True),
    ]:
        headers = {"Authorization": FakeSecurity.GOOD} if auth else {}
        body = b"{}" if method == "POST" else None
        answer = request(server, method, path, headers=headers, body=body)
        assert answer.headers["x-frame-options"] == "deny", (method, path, auth)


def test_landing_page_escapes_and_links() -> None:
    page = landing_page('/m"<x>', [("AppId", "<b>1</b>")])
    assert 'href="/m&quot;&lt;x&gt;"' in page
    assert "&lt;b&gt;1&lt;/b&gt;" in page and "<b>1</b>" not in page
    assert 'href="/-/healthy"' in page and 'href="/-/ready"' in page


@pytest.mark.parametrize(
    ("header", "expected"),
    [("gzip", True), ("gzip, deflate, br", True), ("deflate, GZIP;q=0.5", True),
     ("gzip;q=0", False), ("identity", False), ("", False), ("x-gzip", True)],
)
def test_accept_encoding_is_read_with_its_quality(header: str, expected: bool) -> None:
    from zego_exporter.web import accepts_gzip

    assert accepts_gzip(header) is expected
