"""The gate in front of the simulated Actions: common parameters, signature, rate limit.

`check_common_params` applies ZEGO's gateway checks in the documented order and returns the
Code and Message of the first failure (CODE_OK when the request may pass), and
`SlidingWindowLimiter` is the strict per-Action sliding one-second window, counted when a
request arrives at it. Both are pure logic over their inputs and an injected clock: they do
no I/O, and the server secret is only ever handed to `api_signature`, never kept or shown.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Mapping

from zego_exporter.errors import (
    CODE_OK,
    CODE_RATE_LIMITED,
    CODE_SIGNATURE_EXPIRED,
    CODE_SIGNATURE_INVALID,
)
from zego_exporter.signing import Secret, api_signature, signature_matches

MAX_CLOCK_SKEW = 600.0
"""Seconds a request Timestamp may differ from the server's clock (zego-api.md section 2)."""

CODE_BAD_APP_ID = 100000001
CODE_TIMESTAMP_MISSING = 100000002
CODE_TIMESTAMP_MALFORMED = 100000003
CODE_ACTION_MISSING = 100000006
CODE_ACTION_UNSUPPORTED = 100000007
CODE_NONCE_MISSING = 100000008
CODE_SIGNATURE_MISSING = 100000009
CODE_BODY_UNREADABLE = 100000012
CODE_VERSION_MISSING = 100000013
CODE_VERSION_UNSUPPORTED = 100000014

MESSAGES: dict[int, str] = {
    CODE_OK: "success",
    CODE_BAD_APP_ID: "AppId format error",
    CODE_TIMESTAMP_MISSING: "Timestamp is missing",
    CODE_TIMESTAMP_MALFORMED: "Timestamp format error",
    CODE_SIGNATURE_EXPIRED: "signature expired",
    CODE_SIGNATURE_INVALID: "signature invalid",
    CODE_ACTION_MISSING: "Action is missing",
    CODE_ACTION_UNSUPPORTED: "Action not supported",
    CODE_NONCE_MISSING: "SignatureNonce is missing",
    CODE_SIGNATURE_MISSING: "Signature is missing",
    CODE_BODY_UNREADABLE: "failed to read the HTTP body",
    CODE_VERSION_MISSING: "SignatureVersion is missing",
    CODE_VERSION_UNSUPPORTED: "SignatureVersion not supported",
    400000001: "invalid parameter",
    400000002: "digital human api service not enabled",
    400000005: "task not found",
    400010000: "system error",
    400010001: "no api call permission",
    400010002: "system busy",
    400010007: "insufficient resources",
    CODE_RATE_LIMITED: "api rate limit exceeded",
}

_UINT32 = re.compile(r"[0-9]{1,10}")
_INT64 = re.compile(r"-?[0-9]{1,19}")


def message_for(code: int) -> str:
    return MESSAGES.get(code, "error")


def check_common_params(
    params: Mapping[str, str],
    *,
    app_id: int,
    secret: Secret,
    now: float,
    actions: Collection[str],
) -> tuple[int, str]:
    """The (Code, Message) of the first failing gateway check, or (0, "success").

    Order: Action, AppId, Timestamp, SignatureNonce, Signature, SignatureVersion, clock skew,
    then AppId and signature together (a wrong AppId looks like a bad signature).
    """
    action = params.get("Action", "")
    if not action:
        return _fail(CODE_ACTION_MISSING)
    if action not in actions:
        return _fail(CODE_ACTION_UNSUPPORTED)
    given_app_id = params.get("AppId", "")
    if not _UINT32.fullmatch(given_app_id) or int(given_app_id) >= 2**32:
        return _fail(CODE_BAD_APP_ID)
    timestamp_text = params.get("Timestamp", "")
    if not timestamp_text:
        return _fail(CODE_TIMESTAMP_MISSING)
    if not _INT64.fullmatch(timestamp_text) or not -(2**63) <= int(timestamp_text) < 2**63:
        return _fail(CODE_TIMESTAMP_MALFORMED)
    nonce = params.get("SignatureNonce", "")
    if not nonce:
        return _fail(CODE_NONCE_MISSING)
    signature = params.get("Signature", "")
    if not signature:
        return _fail(CODE_SIGNATURE_MISSING)
    version = params.get("SignatureVersion", "")
    if not version:
        return _fail(CODE_VERSION_MISSING)
    if version != "2.0":
        return _fail(CODE_VERSION_UNSUPPORTED)
    timestamp = int(timestamp_text)
    if abs(timestamp - now) > MAX_CLOCK_SKEW:
        return _fail(CODE_SIGNATURE_EXPIRED)
    if int(given_app_id) != app_id:
        return _fail(CODE_SIGNATURE_INVALID)
    expected = api_signature(app_id, nonce, secret, timestamp)
    if not signature_matches(expected, signature):
        return _fail(CODE_SIGNATURE_INVALID)
    return CODE_OK, message_for(CODE_OK)


def _fail(code: int) -> tuple[int, str]:
    return code, message_for(code)


class SlidingWindowLimiter:
    """At most `limit` accepted requests per Action in any `window` seconds; thread-safe.

    A request is stamped with the monotonic clock when it reaches the limiter, under the
    lock, so stamps never go backwards and the check is exact: it is accepted when fewer
    than `limit` accepted requests have stamps less than `window` seconds old. A rejected
    request is not counted. `limit` is one number for every Action or a mapping (Actions
    missing from it get `default`); 0 means no limit.
    """

    def __init__(
        self,
        limit: int | Mapping[str, int] = 10,
        *,
        default: int = 10,
        window: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limits = {} if isinstance(limit, int) else dict(limit)
        self._default = limit if isinstance(limit, int) else default
        if self._default < 0 or any(value < 0 for value in self._limits.values()):
            raise ValueError("rate limits must be >= 0 requests per window (0: no limit)")
        self._window = window
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._accepted: dict[str, deque[float]] = {}

    @property
    def window(self) -> float:
        return self._window

    def limit_for(self, action: str) -> int:
        return self._limits.get(action, self._default)

    def acquire(self, action: str) -> tuple[bool, float]:
        """(accepted, stamp): whether the request may pass, and its arrival stamp."""
        with self._lock:
            stamp = self._monotonic()
            limit = self.limit_for(action)
            if limit == 0:
                return True, stamp
            recent = self._accepted.setdefault(action, deque())
            # `stamp - oldest >= window` is the same test Stats.peak uses: they must agree.
            while recent and stamp - recent[0] >= self._window:
                recent.popleft()
            if len(recent) >= limit:
                return False, stamp
            recent.append(stamp)
            return True, stamp

    def reset(self) -> None:
        with self._lock:
            self._accepted.clear()
