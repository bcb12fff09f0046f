"""Paces request starts so ZEGO's per-Action limit is never exceeded, wherever it is counted.

A `SlidingWindowLimiter` owns Q slots. A request takes a slot when it starts and gives it back
one window (1 s) after its *answer* arrived, so even if the network delays or bunches requests,
the server can never see more than Q of them in any sliding second (design-notes.md, "Pacing is
judged where the server counts"). On throttling signals it lowers the number of usable slots and
pauses with jittered backoff, then recovers one slot at a time. It never calls the API itself,
and it takes its clock, its wait function and its random source as parameters so tests can drive
time by hand.
"""

from __future__ import annotations

import itertools
import math
import random
import threading
import time
from collections.abc import Callable
from typing import Final

WaitFn = Callable[[threading.Condition, "float | None"], object]
"""Waits on a held condition for at most the given seconds (None: until notified)."""

_IN_FLIGHT: Final = math.inf


def wait_on(condition: threading.Condition, timeout: float | None) -> object:
    """The real wait (a WaitFn): `condition.wait(timeout)`."""
    return condition.wait(timeout)


class Permit:
    """The right to start one request. Call `release` when its answer (or failure) arrived."""

    __slots__ = ("_limiter", "_token")

    def __init__(self, limiter: SlidingWindowLimiter, token: int) -> None:
        self._limiter = limiter
        self._token = token

    def release(self, answered_at: float | None = None) -> None:
        """Hold the slot until one window after the answer, then free it."""
        self._limiter._release(self._token, answered_at)

    def cancel(self) -> None:
        """Give the slot back at once: no request was sent with this permit."""
        self._limiter._cancel(self._token)


class SlidingWindowLimiter:
    """At most `qps` request starts in any sliding window of `window` seconds, judged at the server.

    With an integer `qps` of Q there are Q slots, each held from a request's start until `window`
    after its answer. A fractional budget below 1 becomes one slot held `window / qps` seconds;
    above 1 it is rounded down, since the window guarantee cannot be kept for a fraction.
    """

    def __init__(
        self,
        qps: float,
        *,
        window: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        wait: WaitFn = wait_on,
        rng: random.Random | None = None,
        recovery_step: float = 5.0,
        backoff_base: float = 1.0,
        backoff_cap: float = 30.0,
    ) -> None:
        if not qps > 0:
            raise ValueError(f"qps must be positive, got {qps}")
        self.qps = qps
        self.slots = max(1, math.floor(qps))
        self.hold = window * max(1.0, self.slots / qps)
        self._clock = clock
        self._wait = wait
        self._rng = rng or random.Random()
        self._recovery_step = recovery_step
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._cond = threading.Condition(threading.Lock())
        self._busy_until: dict[int, float] = {}  # token -> when its slot frees (inf: in flight)
        self._tokens = itertools.count()
        self._usable = self.slots
        self._paused_until = -math.inf
        self._throttle_streak = 0
        self._last_change = -math.inf
        self._closed = False

    # -- state a reader may want to see --

    def now(self) -> float:
        """This limiter's clock: deadlines given to `acquire` are on it."""
        return self._clock()

    @property
    def usable_slots(self) -> int:
        """Slots currently usable: `slots`, or fewer after throttling."""
        return self._usable

    @property
    def paused_until(self) -> float:
        return self._paused_until

    # -- taking and giving back slots --

    def try_acquire(self) -> Permit | None:
        """A permit if a slot is free now, else None. Never waits."""
        with self._cond:
            return self._try_acquire_locked(self._clock())

    def acquire(self, deadline: float | None = None) -> Permit | None:
        """Wait for a free slot; None if `deadline` (on this limiter's clock) passes or on close."""
        with self._cond:
            while not self._closed:
                now = self._clock()
                permit = self._try_acquire_locked(now)
                if permit is not None:
                    return permit
                wake = self._next_change_locked(now)
                if deadline is not None:
                    if now >= deadline:
                        return None
                    wake = deadline if wake is None else min(wake, deadline)
                self._wait(self._cond, None if wake is None else max(0.0, wake - now))
            return None

    def close(self) -> None:
        """Wake every waiter; `acquire` returns None from now on."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _try_acquire_locked(self, now: float) -> Permit | None:
        if now < self._paused_until:
            return None
        for token, until in list(self._busy_until.items()):
            if until <= now:
                del self._busy_until[token]
        if len(self._busy_until) >= self._usable:
            return None
        token = next(self._tokens)
        self._busy_until[token] = _IN_FLIGHT
        return Permit(self, token)

    def _next_change_locked(self, now: float) -> float | None:
        """When a waiter might next get a slot; None when only a release can free one."""
        if now < self._paused_until:
            return self._paused_until
        finite = [until for until in self._busy_until.values() if until != _IN_FLIGHT]
        return min(finite) if finite else None

    def _release(self, token: int, answered_at: float | None) -> None:
        with self._cond:
            if token in self._busy_until:
                answered = self._clock() if answered_at is None else answered_at
                self._busy_until[token] = answered + self.hold
                self._cond.notify_all()

    def _cancel(self, token: int) -> None:
        with self._cond:
            if self._busy_until.pop(token, None) is not None:
                self._cond.notify_all()

    # -- adapting to what the server says --

    def throttled(self) -> float:
        """The server pushed back: halve the usable slots and pause. Returns the pause in s."""
        with self._cond:
            now = self._clock()
            self._usable = max(1, self._usable // 2)
            backoff = min(self._backoff_cap, self._backoff_base * 2.0**self._throttle_streak)
            pause = backoff * self._rng.uniform(0.5, 1.0)  # jitter spreads replicas apart
            self._throttle_streak += 1
            self._paused_until = max(self._paused_until, now + pause)
            self._last_change = now
            return pause

    def pause(self, seconds: float) -> None:
        """Start nothing for `seconds` (for instance while the signature is being rejected)."""
        with self._cond:
            self._paused_until = max(self._paused_until, self._clock() + seconds)

    def succeeded(self) -> None:
        """A request got through: after a quiet `recovery_step`, give back one slot."""
        with self._cond:
            self._throttle_streak = 0
            now = self._clock()
            if self._usable < self.slots and now - self._last_change >= self._recovery_step:
                self._usable += 1
                self._last_change = now
                self._cond.notify_all()
