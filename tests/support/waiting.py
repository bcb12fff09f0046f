"""Waiting for something that happens in another thread or process, with a deadline.

Only the tests that run real servers, processes or threads wait; unit tests move a FakeClock.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimedOut(AssertionError):
    """What `wait_until` raises when the time is up (a failed test, like any assertion)."""


def wait_until(check: Callable[[], T | None], *, timeout: float, what: str, every: float = 0.02,
               proc: subprocess.Popen[str] | None = None) -> T:
    """Call `check` until it returns something truthy, and return that. Fails (an
    AssertionError naming `what`) after `timeout` seconds (WaitTimedOut), or as soon as `proc`
    has ended."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process ended with {proc.returncode} while waiting for {what}")
        if time.monotonic() > deadline:
            raise WaitTimedOut(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)
