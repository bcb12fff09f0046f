"""What the simulated API has seen: per-Action counters and a bounded request log.

Tests and benchmarks judge pacing here, where the server counts (design-notes.md): `peak`
gives the most request arrivals in any sliding window, overall, per Action or for accepted
requests only. Thread-safe. Only API requests are recorded, never admin calls; this module
never decides anything about a request, it only remembers what the server decided.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

DEFAULT_LOG_SIZE = 100_000


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    """One API request. `arrival` is on the monotonic clock: for requests that reached the
    rate limiter, the limiter's own stamp; for the others, when handling began."""

    arrival: float
    action: str
    task_id: str | None
    code: str
    """The ZEGO Code answered, `http_<status>` for a non-200 answer, or the fault's name."""
    accepted: bool = False
    """Passed the rate limiter (and so counts in its window)."""
    rate_limited: bool = False
    faults: tuple[str, ...] = ()
    user_agent: str = ""


@dataclass(frozen=True, slots=True)
class ActionStats:
    """Counters of one Action since the last reset."""

    requests: int = 0
    accepted: int = 0
    rate_limited: int = 0
    codes: dict[str, int] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"requests": self.requests, "accepted": self.accepted,
                "rate_limited": self.rate_limited, "codes": dict(self.codes),
                "faults": dict(self.faults)}


@dataclass
class _Counters:
    requests: int = 0
    accepted: int = 0
    rate_limited: int = 0
    codes: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)


class Stats:
    """Counters per Action and the last `log_size` requests."""

    def __init__(self, log_size: int = DEFAULT_LOG_SIZE) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, _Counters] = {}
        self._log: deque[LoggedRequest] = deque(maxlen=log_size)

    def record(self, request: LoggedRequest) -> None:
        with self._lock:
            counters = self._counters.setdefault(request.action, _Counters())
            counters.requests += 1
            counters.accepted += request.accepted
            counters.rate_limited += request.rate_limited
            counters.codes[request.code] += 1
            counters.faults.update(request.faults)
            self._log.append(request)

    def reset(self) -> None:
        """Forget every counter and the log."""
        with self._lock:
            self._counters.clear()
            self._log.clear()

    def action(self, action: str) -> ActionStats:
        """The counters of one Action (zeros if it was never called)."""
        with self._lock:
            counters = self._counters.get(action, _Counters())
            return ActionStats(counters.requests, counters.accepted, counters.rate_limited,
                               dict(counters.codes), dict(counters.faults))

    def actions(self) -> dict[str, ActionStats]:
        with self._lock:
            names = list(self._counters)
        return {name: self.action(name) for name in names}

    def requests(self, limit: int | None = None) -> list[LoggedRequest]:
        """The logged requests, oldest first; the last `limit` only, if given."""
        with self._lock:
            log = list(self._log)
        return log if limit is None else log[-limit:] if limit > 0 else []

    def peak(self, *, action: str | None = None, accepted_only: bool = False,
             window: float = 1.0) -> int:
        """The most logged arrivals in any `window` seconds (a strict sliding window).

        Two arrivals share a window when the later minus the earlier is less than `window`,
        the same test the rate limiter applies.
        """
        arrivals = sorted(
            request.arrival for request in self.requests()
            if (action is None or request.action == action)
            and (request.accepted or not accepted_only)
        )
        most = 0
        first = 0
        for last, stamp in enumerate(arrivals):
            while stamp - arrivals[first] >= window:
                first += 1
            most = max(most, last - first + 1)
        return most

    def to_json(self) -> dict[str, Any]:
        actions = self.actions()
        return {
            "actions": {name: counters.to_json() for name, counters in actions.items()},
            "peak_per_second": {
                "all": self.peak(),
                "accepted": self.peak(accepted_only=True),
                "actions": {name: {"all": self.peak(action=name),
                                   "accepted": self.peak(action=name, accepted_only=True)}
                            for name in actions},
            },
            "logged": len(self.requests()),
        }
