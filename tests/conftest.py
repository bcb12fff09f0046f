"""Shared fixtures: the simulated ZEGO API on loopback, credentials, free ports, and a place
for end-to-end tests to report the figures they measured (printed after the test summary)."""

from __future__ import annotations

import os
import shutil

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
