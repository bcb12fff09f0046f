"""Scrapes streamed over real loopback HTTP: the real renderer and exporter behind the web layer.

A body sent in chunks (gzip flushed piece by piece) decoded by http.client and compared byte for
byte with prometheus_client's generate_latest of the same snapshot; HEAD, which renders nothing;
a client that hangs up midway, which ends the scrape and releases its snapshot; and what
zego_digital_human_scrape_duration_seconds measures. The scrape timer is a fake driven by hand.
"""

from __future__ import annotations

import gzip
import http.client
import logging
import socket
import struct
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.registry import CollectorRegistry

from tests.support.credentials import APP_ID, SECRET_TEXT
from tests.support.processes import get_chunks
from zego_exporter.collector import ZegoCollector
from zego_exporter.exporter import Exporter, ExporterConfig
from zego_exporter.exposition import PIECE_CHARS, TextRenderer
from zego_exporter.responses import ACTIONS, TaskStatus
from zego_exporter.signing import Secret
from zego_exporter.tracker import Snapshot, Tracker
from zego_exporter.web import Endpoints, WebServer

NOW = 1_750_000_000.0
PROMETHEUS_HEADERS = {
    "Accept": "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
    "Accept-Encoding": "gzip",
    "X-Prometheus-Scrape-Timeout-Seconds": "10",
}


def fill(tracker: Tracker, count: int) -> None:
    """`count` tasks in every state, a few with labels and reasons that need escaping."""
    task_ids = [f"task-{n:05d}" for n in range(count)]
    tracker.set_configured("static", task_ids)
    while tracker.claim_due() is not None:
        pass
    for n, task_id in enumerate(task_ids):
        room = f'room "{n}"' if n % 397 == 0 else f"room_{n}"
        reason = "avatar \\ not found" if n % 5 == 1 else ""
        tracker.record_lookup(TaskStatus(task_id, 1 + n % 5, room, f"stream_{n}",
                                         int(NOW) - 7 * n, reason))
    tracker.record_api(True)


def fixed_tracker(count: int) -> Tracker:
    tracker = Tracker(clock=lambda: NOW)
    fill(tracker, count)
    return tracker


@pytest.mark.parametrize("openmetrics", [False, True])
def test_a_chunked_gzip_body_decodes_to_what_generate_latest_writes(openmetrics: bool) -> None:
    tracker = fixed_tracker(3000)
    collector = ZegoCollector(tracker.snapshot, dict.fromkeys(ACTIONS, 10.0), tracker.policy)
    renderer = TextRenderer(collector)
    endpoints = Endpoints(
        "/metrics",
        lambda accept, timeout: (renderer.pieces(tracker.snapshot(), openmetrics=openmetrics),
                                 "text/plain"),
        is_ready=lambda: True, landing_html=lambda: "")
    registry = CollectorRegistry()
    registry.register(collector)
    # prometheus_client's OpenMetrics generate_latest has no annotations.
    expected = (generate_openmetrics(registry)  # type: ignore[no-untyped-call]
                if openmetrics else generate_latest(registry))
    server = WebServer("127.0.0.1:0", endpoints)
    server.start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        try:
            conn.request("GET", "/metrics", headers={"Accept-Encoding": "gzip"})
            answer = conn.getresponse()
            assert answer.getheader("Transfer-Encoding") == "chunked"
            assert answer.getheader("Content-Encoding") == "gzip"
            assert answer.getheader("Content-Length") is None
            assert gzip.decompress(answer.read()) == expected
        finally:
            conn.close()
        _, chunks = get_chunks(server.port, "/metrics", {})
    finally:
        server.stop()
    # Sent in pieces as rendered: many chunks, none much bigger than a piece.
    assert b"".join(chunks) == expected
    assert len(chunks) > len(expected) // (2 * PIECE_CHARS)
    assert max(map(len, chunks)) < 2 * PIECE_CHARS


# -- the exporter's own scrapes ----------------------------------------------------------------

@dataclass
class Watched:
    """An exporter on loopback whose snapshots and scrape timer the test sees and drives."""

    exporter: Exporter
    now: float = 0.0
    """The scrape timer's reading (seconds)."""
    snapshots: list[weakref.ref[Snapshot]] = field(default_factory=list)
    released: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.exporter.web.port

    def scrape(self, headers: dict[str, str] | None = None, method: str = "GET") -> bytes:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, "/metrics", headers=headers or {})
            answer = conn.getresponse()
            assert answer.status == 200
            body = answer.read()
        finally:
            conn.close()
        return gzip.decompress(body) if answer.getheader("Content-Encoding") == "gzip" else body


@pytest.fixture
def watched() -> Iterator[Watched]:
    config = ExporterConfig(app_id=APP_ID, server_secret=Secret(SECRET_TEXT),
                            api_url="http://127.0.0.1:9/", listen_address="127.0.0.1:0",
                            discovery=False, idle_after=None, max_scrape_wait=0.0)
    holder: list[Watched] = []
    exporter = Exporter(config, clock=lambda: NOW, timer=lambda: holder[0].now)
    state = Watched(exporter)
    holder.append(state)
    fill(exporter.tracker, 5000)
    take_snapshot: Callable[[], Snapshot] = exporter.tracker.snapshot

    def snapshot() -> Snapshot:
        snap = take_snapshot()
        state.snapshots.append(weakref.ref(snap))
        weakref.finalize(snap, state.released.set)
        state.threads.append(threading.current_thread())
        return snap

    exporter.tracker.snapshot = snapshot  # type: ignore[method-assign]
    exporter.web.start()  # the web layer only: no refreshing, the data stays put
    yield state
    exporter.web.stop()
    exporter.client.close()


def test_the_exporter_streams_what_generate_latest_writes(watched: Watched) -> None:
    body = watched.scrape(PROMETHEUS_HEADERS)
    collector = watched.exporter.collector
    registry = CollectorRegistry()
    registry.register(collector)
    # prometheus_client's OpenMetrics generate_latest has no annotations.
    expected = generate_openmetrics(registry).decode()  # type: ignore[no-untyped-call]
    # The tracker's families are the same to the byte; the process, GC and API families that
    # follow them move between two renderings.
    ours = body.decode().partition("# HELP zego_digital_human_api_request")[0]
    assert ours and expected.startswith(ours)
    assert body.endswith(b"# EOF\n") and body.count(b"# EOF") == 1


def test_head_takes_no_snapshot(watched: Watched) -> None:
    for headers in ({}, PROMETHEUS_HEADERS):
        assert watched.scrape(headers, method="HEAD") == b""
    assert watched.snapshots == []
    watched.scrape()
    assert len(watched.snapshots) == 1


def value_of(body: bytes, name: str) -> float:
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in the scrape")


def test_scrape_duration_counts_sending_and_shows_in_the_next_scrape(watched: Watched) -> None:
    """The scrape ends when its last piece is sent, so a reader that takes its time makes it
    longer; the figure is the previous scrape's, the one in progress cannot know its own."""
    with small_window_connection(watched.port) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")
        watched.now += 2.5  # the server is stuck sending: the client has not read on
        while sock.recv(1 << 20):
            pass
    assert watched.exporter.collector.last_scrape_duration == 2.5
    duration = "zego_digital_human_scrape_duration_seconds"
    assert value_of(watched.scrape(), duration) == 2.5
    assert value_of(watched.scrape(PROMETHEUS_HEADERS), duration) == 0.0


def test_a_client_hanging_up_midway_releases_the_snapshot_and_the_thread(
    watched: Watched, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    watched.exporter.collector.last_scrape_duration = 1.25
    for headers in ({}, PROMETHEUS_HEADERS):
        watched.released.clear()
        with small_window_connection(watched.port) as sock:
            request = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
            sock.sendall(f"GET /metrics HTTP/1.1\r\nHost: x\r\n{request}\r\n".encode())
            assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")
            watched.now += 1.0
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        assert watched.released.wait(10), "the abandoned scrape still holds its snapshot"
        assert watched.snapshots[-1]() is None
        watched.threads[-1].join(10)
        assert not watched.threads[-1].is_alive()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert [r.getMessage() for r in caplog.records].count("scrape abandoned by the client") == 2
    # Abandoned scrapes say nothing of how long a scrape takes.
    assert watched.exporter.collector.last_scrape_duration == 1.25
    assert value_of(watched.scrape(), "zego_digital_human_scrape_duration_seconds") == 1.25


@pytest.mark.parametrize("headers", [{}, PROMETHEUS_HEADERS], ids=["text", "prometheus"])
def test_a_slow_reader_gets_the_snapshot_of_its_start_whatever_changes_meanwhile(
    watched: Watched, headers: dict[str, str],
) -> None:
    """The snapshot is taken when the scrape starts and nothing the tracker does afterwards
    reaches it: the body equals generate_latest of that moment's cache, to the byte."""
    tracker = watched.exporter.tracker
    registry = CollectorRegistry()
    registry.register(watched.exporter.collector)
    render = generate_openmetrics if headers else generate_latest
    before = render(registry).decode()
    task_ids = tracker.task_ids()
    with small_window_connection(watched.port) as sock:
        request = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        sock.sendall(f"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     f"{request}\r\n".encode())
        stream = sock.makefile("rb")
        head = b"".join(iter(stream.readline, b"\r\n"))
        assert head.startswith(b"HTTP/1.1 200 ") and len(watched.snapshots) == 1
        # Meanwhile every task changes: states, rooms, reasons; half are forgotten.
        for n, task_id in enumerate(task_ids):
            tracker.record_lookup(TaskStatus(task_id, 2, f"moved_{n}", "s", 1, "late change"))
        tracker.set_configured("static", task_ids[::2])
        tracker.record_api(False)
        assert watched.snapshots[0]() is not None, "the scrape ended before the changes"
        chunks = []
        while size := int(stream.readline(), 16):
            chunks.append(stream.read(size))
            assert stream.read(2) == b"\r\n"
    body = b"".join(chunks)
    if headers:
        body = gzip.decompress(body)
    ours = body.decode().partition("# HELP zego_digital_human_api_request")[0]
    assert len(ours) > 1_000_000 and before.startswith(ours)
    assert "moved_" not in ours and "late change" not in ours
    assert "moved_" in render(registry).decode()  # the next scrape sees the changes


@contextmanager
def small_window_connection(port: int) -> Iterator[socket.socket]:
    """A client socket with a tiny receive buffer, so that a server sending megabytes blocks
    until the client reads (or hangs up)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(10)
        sock.connect(("127.0.0.1", port))
        yield sock
