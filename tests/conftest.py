"""Shared fixtures: the simulated ZEGO API on loopback, credentials, free ports, a place for
end-to-end tests to report the figures they measured (printed after the test summary), and
reading a chunked HTTP answer chunk by chunk."""

from __future__ import annotations

import os
import shutil
import socket

import pytest

from zego_exporter.signing import Secret

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

APP_ID = 1234567890
SECRET_TEXT = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def app_id() -> int:
    return APP_ID


@pytest.fixture
def secret() -> Secret:
    return Secret(SECRET_TEXT)


def require_binary(name: str) -> str:
    """The path of a real component; a failure in CI when it is missing, a skip elsewhere."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} not found: run `bash scripts/test.sh`, which installs it"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


FIGURES = pytest.StashKey[list[str]]()


@pytest.fixture(scope="session")
def figures(pytestconfig: pytest.Config) -> list[str]:
    """Lines a test wants in CI's output, e.g. how long a build took: a measurement to read,
    not an assertion."""
    return pytestconfig.stash.setdefault(FIGURES, [])


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter,
                            config: pytest.Config) -> None:
    lines = config.stash.get(FIGURES, [])
    if lines:
        terminalreporter.section("measured")
        for line in lines:
            terminalreporter.write_line(line)


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
