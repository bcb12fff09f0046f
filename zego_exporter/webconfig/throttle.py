"""`rate_limit`: the token bucket exporter-toolkit puts in front of every request.

It behaves as golang.org/x/time/rate's `Limiter.Allow` with `rate.Every(interval)` and `burst`:
the bucket starts full, refills one request per interval, and a request that finds it empty is
refused (429), never queued. A burst of 0 refuses everything, as it does there. It only counts;
the web layer decides which paths it guards.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from zego_exporter.webconfig.schema import RateLimit


class TokenBucket:
    """Requests allowed: `burst` at once, then one per `interval` seconds."""

    def __init__(
        self, limit: RateLimit, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens = float(limit.burst)
        self._last = clock()

    def allow(self) -> bool:
        """Take one request's token if there is one."""
        with self._lock:
            now = self._clock()
            refill = max(0.0, now - self._last) / self.limit.interval
            self._tokens = min(float(self.limit.burst), self._tokens + refill)
            self._last = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False
