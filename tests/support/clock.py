"""A clock that moves only when a test moves it: what unit tests use instead of sleeping."""

from __future__ import annotations

import threading


class FakeClock:
    """Call it for the time; set `now` or `advance()` to move it.

    `wait` has the signature of the waits the exporter takes as parameters (ratelimit.WaitFn):
    instead of blocking it moves the clock by the timeout (or `idle_step` when there is none or
    it is 0), so code that would sleep until a deadline reaches it at once.
    """

    def __init__(self, now: float = 1000.0, *, idle_step: float = 0.01) -> None:
        self.now = now
        self.idle_step = idle_step

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def wait(self, _condition: threading.Condition, timeout: float | None) -> None:
        self.now += timeout or self.idle_step

    def sleep(self, seconds: float) -> None:
        """time.sleep's signature, for code that takes a sleep function: moves the clock."""
        self.now += seconds
