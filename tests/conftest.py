"""Shared fixtures: the test credentials, and a place for end-to-end tests to report the
figures they measured (printed after the test summary, also when xdist runs the tests).
The helpers themselves are in tests/support."""

from __future__ import annotations

import pytest

from tests.support.credentials import APP_ID, SECRET
from zego_exporter.signing import Secret


@pytest.fixture
def app_id() -> int:
    return APP_ID


@pytest.fixture
def secret() -> Secret:
    return SECRET


FIGURES = pytest.StashKey[list[str]]()


@pytest.fixture(scope="session")
def figures(pytestconfig: pytest.Config) -> list[str]:
    """Lines a test wants in CI's output, e.g. how long a build took: a measurement to read,
    not an assertion."""
    return pytestconfig.stash.setdefault(FIGURES, [])


def pytest_sessionfinish(session: pytest.Session) -> None:
    """An xdist worker hands its figures to the controller, which prints them."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["figures"] = session.config.stash.get(FIGURES, [])


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    """(xdist, in the controller) collect the figures of a worker that finished."""
    lines = getattr(node, "workeroutput", {}).get("figures", [])
    config: pytest.Config = node.config  # type: ignore[attr-defined]
    config.stash.setdefault(FIGURES, []).extend(lines)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter,
                            config: pytest.Config) -> None:
    lines = config.stash.get(FIGURES, [])
    if lines:
        terminalreporter.section("measured")
        for line in lines:
            terminalreporter.write_line(line)
