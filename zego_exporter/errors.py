"""The client's error hierarchy: one exception type per way a ZEGO call can go wrong.

Every error carries the ZEGO `Code` (when there is one), ZEGO's `RequestId` (which ZEGO support
asks for), a message a user can act on, whether retrying can help, how far the failure reaches
(this task, this Action, or every Action of the AppId), and the `outcome` label used by
`zego_digital_human_api_requests_total`. Messages never contain the server secret.
"""

from __future__ import annotations

# ZEGO return codes the exporter treats specially (see shared/zego-api.md section 4).
CODE_OK = 0
CODE_SIGNATURE_EXPIRED = 100000004
CODE_SIGNATURE_INVALID = 100000005
CODE_TASK_NOT_FOUND = 400000005
CODE_SYSTEM_ERROR = 400010000
CODE_NO_PERMISSION = 400010001
CODE_SYSTEM_BUSY = 400010002
CODE_INSUFFICIENT_RESOURCES = 400010007
CODE_RATE_LIMITED = 400010009

_HINTS: dict[int, str] = {
    100000000: "wrong Host header: check --zego.api-url",
    100000001: "AppId has a bad format: check ZEGO_APP_ID",
    100000002: "Timestamp missing: this is a bug in zego-exporter, please report it",
    100000003: "Timestamp malformed: this is a bug in zego-exporter, please report it",
    CODE_SIGNATURE_EXPIRED: (
        "signature expired: check the system clock (NTP); ZEGO accepts at most 10 minutes of skew"
    ),
    CODE_SIGNATURE_INVALID: "signature rejected: check ZEGO_APP_ID and the server secret",
    100000006: "Action missing: this is a bug in zego-exporter, please report it",
    100000007: "Action not supported: check that --zego.api-url is the Digital Human API host",
    100000010: "ZEGO could not load the server secret: check that ZEGO_APP_ID is provisioned",
    100000011: "ZEGO could not load the app config: check that ZEGO_APP_ID is provisioned",
    100000015: "ZEGO gateway internal error: transient, retrying with backoff",
    100000017: "service not enabled for this AppId: ask ZEGO support to enable Digital Human",
    400000001: "invalid parameter",
    400000002: "Digital Human API not enabled for this AppId: ask ZEGO support to enable it",
    CODE_TASK_NOT_FOUND: "task not found: it has ended or the TaskId is wrong",
    CODE_SYSTEM_ERROR: "ZEGO system error: transient, retrying with backoff",
    CODE_NO_PERMISSION: "no permission for this API: ask ZEGO support to grant it to the AppId",
    CODE_SYSTEM_BUSY: "ZEGO system busy: retrying with backoff",
    CODE_INSUFFICIENT_RESOURCES: "ZEGO has insufficient resources: retrying with backoff",
    CODE_RATE_LIMITED: (
        "rate limit exceeded: lower --zego.qps, or check what else calls this API with the AppId"
    ),
}

# Codes after which the same request may succeed later.
RETRYABLE_CODES = frozenset(
    {
        CODE_SIGNATURE_EXPIRED,
        100000012,
        100000015,
        400000006,
        CODE_SYSTEM_ERROR,
        CODE_SYSTEM_BUSY,
        CODE_INSUFFICIENT_RESOURCES,
        CODE_RATE_LIMITED,
    }
)

# Codes that mean ZEGO is overloaded or throttling us: the refresh engine slows down.
THROTTLE_CODES = frozenset({CODE_RATE_LIMITED, CODE_SYSTEM_BUSY})

# The gateway's codes (signature, AppId, provisioning): every Action of the AppId fails alike, so
# a failure pauses both Actions, not just the one that met it.
GATEWAY_CODES = range(100000000, 100000100)

# This Action is not enabled for the AppId: it alone is paused and probed now and then, while
# the other Action goes on (zego-api.md section 4; ZEGO may enable one Action and not the other).
PERMISSION_CODES = frozenset({400000002, CODE_NO_PERMISSION})

# Codes that mean ZEGO could not serve the AppId at all (zego_digital_human_up = 0): gateway,
# signature and provisioning errors, and ZEGO's own system error. A denied Action, a rate limit
# or a task that is not found is an answer: the API is up.
_API_DOWN_CODES = frozenset({*GATEWAY_CODES, CODE_SYSTEM_ERROR})


def hint_for_code(code: int) -> str:
    return _HINTS.get(code, "see ZEGO's return-code documentation")


class ZegoError(Exception):
    """A ZEGO call that did not produce a usable answer."""

    outcome: str
    """The `code` label of zego_digital_human_api_requests_total for this failure."""

    def __init__(
        self,
        message: str,
        *,
        outcome: str,
        retryable: bool,
        api_down: bool,
        code: int | None = None,
        request_id: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.outcome = outcome
        self.retryable = retryable
        self.api_down = api_down
        """True when the API as a whole is unreachable or rejects us (not just this task)."""
        self.code = code
        self.request_id = request_id
        """ZEGO's RequestId of the answer ("" without one): what ZEGO support asks for."""
        self.http_status: int | None = None
        """The HTTP status the answer came with, when one came (set by the client)."""

    @property
    def pauses_all(self) -> bool:
        """True for the gateway's codes (1000000xx): every Action of the AppId fails alike."""
        return self.code in GATEWAY_CODES

    @property
    def denied(self) -> bool:
        """True when this Action is not enabled for the AppId (400010001, 400000002)."""
        return self.code in PERMISSION_CODES

    @property
    def throttled(self) -> bool:
        """True when the failure asks us to send less: rate limit (ZEGO's code or HTTP 429),
        busy, 5xx, timeout."""
        return self.code in THROTTLE_CODES or self.outcome in ("timeout", "http_429") or (
            self.outcome.startswith("http_5")
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(outcome={self.outcome!r}, message={self.message!r})"

    def log_fields(self) -> dict[str, object]:
        """What a log line about this failure shows besides its message."""
        fields: dict[str, object] = {"outcome": self.outcome}
        if self.request_id:
            fields["request_id"] = self.request_id
        if self.http_status is not None:
            fields["http_status"] = self.http_status
        return fields


class ApiError(ZegoError):
    """ZEGO answered with a non-zero `Code`."""

    def __init__(self, code: int, zego_message: str, action: str, request_id: str = "") -> None:
        detail = f": {zego_message}" if zego_message and code == 400000001 else ""
        super().__init__(
            f"{action}: {hint_for_code(code)} (code {code}){detail}",
            outcome=str(code),
            retryable=code in RETRYABLE_CODES,
            api_down=code in _API_DOWN_CODES,
            code=code,
            request_id=request_id,
        )


class TaskNotFound(ApiError):
    """Code 400000005: the task has ended or never existed. For the exporter, an answer."""


class TransportError(ZegoError):
    """No ZEGO answer at all: timeout, connection failure, or a non-200 HTTP status whose body
    is not ZEGO's envelope (with the envelope, ZEGO's Code decides: see the client)."""


class InvalidResponse(ZegoError):
    """An answer that is not the documented JSON envelope (HTML, bad JSON, wrong types, too big),
    or an envelope saying success around `Data` that cannot be read."""

    def __init__(self, message: str, *, in_envelope: bool = False,
                 request_id: str = "") -> None:
        super().__init__(message, outcome="invalid_response", retryable=True, api_down=True,
                         request_id=request_id)
        self.in_envelope = in_envelope
        """True when the body was ZEGO's envelope (Code 0) and only its Data was unusable."""


def api_error(code: int, zego_message: str, action: str, request_id: str = "") -> ApiError:
    """The ApiError subclass for a ZEGO `Code`."""
    if code == CODE_TASK_NOT_FOUND:
        return TaskNotFound(code, zego_message, action, request_id)
    return ApiError(code, zego_message, action, request_id)
