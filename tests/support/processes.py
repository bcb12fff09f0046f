"""`zego-exporter` as a user starts it: a subprocess on a free loopback port, asked over HTTP.

`exporter_process` runs `python -m zego_exporter <args>` configured through the environment,
with its output in files, and stops it when the block ends; `fetch` is one plain HTTP request,
and `get_chunks` reads a chunked answer chunk by chunk, as sent.
Every server a test starts listens on 127.0.0.1 only and is stopped by that test.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from tests.support.credentials import APP_ID, SECRET_TEXT
from tests.support.waiting import wait_until
from zego_exporter.signing import Secret
from zego_exporter.simulator import Simulator, World

LOCALHOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOCALHOST, 0))
        return int(probe.getsockname()[1])


def clean_env(**values: str) -> dict[str, str]:
    """The test's environment without any ZEGO_* variable, plus `values`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZEGO_")}
    env.update(values)
    return env


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()


def fetch(base: str, path: str, *, method: str = "GET", headers: dict[str, str] | None = None,
          body: bytes | None = None, timeout: float = 10.0) -> Response:
    url = urlsplit(base)
    assert url.hostname is not None and url.port is not None
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        answer = conn.getresponse()
        return Response(answer.status, {k.lower(): v for k, v in answer.getheaders()},
                        answer.read())
    finally:
        conn.close()


def get_chunks(port: int, path: str, headers: dict[str, str]) -> tuple[bytes, list[bytes]]:
    """GET `path` over a new connection and read the answer as sent: (status line and headers,
    the body's chunks in order). Fails unless the body is chunked and ends properly."""
    request = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     f"{request}\r\n".encode())
        stream = sock.makefile("rb")
        head = b"".join(iter(stream.readline, b"\r\n"))
        assert b"\r\ntransfer-encoding: chunked" in head.lower(), head
        chunks = []
        while size := int(stream.readline(), 16):
            chunks.append(stream.read(size))
            assert stream.read(2) == b"\r\n"
        assert stream.read(2) == b"\r\n" and stream.read() == b""
    return head, chunks


def answers(base: str, path: str, status: int) -> Callable[[], bool]:
    """A check for wait_until: `path` answers `status` (connection errors: not yet)."""
    def check() -> bool:
        try:
            return fetch(base, path, timeout=2).status == status
        except OSError:
            return False
    return check


@dataclass
class ExporterRun:
    """A running `python -m zego_exporter` and where its output goes."""

    proc: subprocess.Popen[str]
    url: str
    stdout_path: Path
    stderr_path: Path

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def stdout(self) -> str:
        return self.stdout_path.read_text()

    def wait_ready(self, timeout: float = 10.0) -> None:
        wait_until(answers(self.url, "/-/ready", 200), timeout=timeout, what="/-/ready",
                   proc=self.proc)

    def terminate(self, timeout: float = 5.0) -> tuple[int, float]:
        """SIGTERM, then (exit code, seconds it took to exit)."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        return code, time.monotonic() - started


@contextmanager
def exporter_process(args: list[str], env: dict[str, str], workdir: Path,
                     port: int | None = None) -> Iterator[ExporterRun]:
    """`python -m zego_exporter <args>` listening on 127.0.0.1:<port>; stopped on exit.

    Without `port`, a free port is passed with --web.listen-address; with one, the caller
    has told the process where to listen (e.g. in ZEGO_EXPORTER_LISTEN_ADDRESS)."""
    listen: list[str] = []
    if port is None:
        port = free_port()
        listen = ["--web.listen-address", f"{LOCALHOST}:{port}"]
    workdir.mkdir(parents=True, exist_ok=True)
    stdout_path, stderr_path = workdir / "stdout", workdir / "stderr"
    with open(stdout_path, "w") as out, open(stderr_path, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "zego_exporter", *args, *listen],
            env=env, stdout=out, stderr=err, text=True,
        )
    try:
        yield ExporterRun(proc, f"http://{LOCALHOST}:{port}", stdout_path, stderr_path)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def showcase_simulator(streaming: int = 4, **options: object) -> Simulator:
    """A simulator with `streaming` tasks that stream forever and one task in every state."""
    world = World.static(streaming)
    world.add_showcase()
    return Simulator(APP_ID, Secret(SECRET_TEXT), world=world, **options)  # type: ignore[arg-type]


def serve_env(sim: Simulator, **values: str) -> dict[str, str]:
    """A clean environment that points `serve` at `sim` with its credentials, plus `values`."""
    return clean_env(ZEGO_APP_ID=str(APP_ID), ZEGO_SERVER_SECRET=SECRET_TEXT,
                     ZEGO_API_URL=sim.url, **values)
