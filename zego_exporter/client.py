"""Signs and calls the ZEGO Digital Human server API; knows nothing of Prometheus or pacing.

One `requests.Session` (keep-alive, pooled for concurrent workers) sends each Action as a POST
with the common parameters, freshly signed, in the query string. An answer carrying ZEGO's JSON
envelope is judged by its `Code` whatever the HTTP status it came with (ZEGO's docs never say
which status an error comes with); only an answer without the envelope is `http_<status>`.
Every call reports its outcome and duration to an optional observer, which is how the exporter
counts API calls without this module importing prometheus_client, and every failed call is
logged at debug level with ZEGO's RequestId. Pacing is the caller's job (see ratelimit.py).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Final, TypeVar

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter

from zego_exporter import __version__
from zego_exporter.errors import InvalidResponse, TransportError, ZegoError
from zego_exporter.responses import (
    ACTION_GET_STATUS,
    ACTION_QUERY_TASKS,
    RunningTasks,
    TaskStatus,
    parse_task_list,
    parse_task_status,
)
from zego_exporter.signing import Secret, api_signature, new_nonce

log = logging.getLogger(__name__)

DEFAULT_API_URL: Final = "https://aigc-digitalhuman-api.zegotech.cn"
DEFAULT_TIMEOUT: Final = 5.0
# A running-task list of 100,000 tasks is about 12 MiB of JSON.
DEFAULT_MAX_RESPONSE_BYTES: Final = 16 * 1024 * 1024
USER_AGENT: Final = f"zego-exporter/{__version__}"
# An error envelope is a few hundred bytes; a bigger body with a non-200 status is some proxy's
# page, and is not read further.
MAX_ERROR_BODY_BYTES: Final = 64 * 1024

T = TypeVar("T")

Observer = Callable[[str, str, float], None]
"""Called once per API call with (action, outcome, duration in seconds)."""


class ZegoClient:
    """A client for GetDigitalHumanStreamTaskStatus and QueryDigitalHumanStreamTasks."""

    def __init__(
        self,
        app_id: int,
        server_secret: Secret,
        api_url: str = DEFAULT_API_URL,
        *,
        connect_timeout: float = DEFAULT_TIMEOUT,
        read_timeout: float = DEFAULT_TIMEOUT,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        pool_size: int = 8,
        observer: Observer | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app_id = app_id
        self._secret = server_secret
        self.api_url = api_url.rstrip("/") + "/"
        self._timeout = (connect_timeout, read_timeout)
        self._max_bytes = max_response_bytes
        self._observer = observer
        self._clock = clock
        self._monotonic = monotonic
        self._session = requests.Session()
        self._session.headers.update(
            {"User-Agent": USER_AGENT, "Content-Type": "application/json"}
        )
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    def __repr__(self) -> str:
        return f"ZegoClient(app_id={self.app_id}, api_url={self.api_url!r})"

    def close(self) -> None:
        self._session.close()

    def signed_params(self, action: str) -> dict[str, str]:
        """The common query parameters for one request, with a fresh nonce and timestamp."""
        nonce = new_nonce()
        timestamp = int(self._clock())
        return {
            "Action": action,
            "AppId": str(self.app_id),
            "SignatureNonce": nonce,
            "Timestamp": str(timestamp),
            "Signature": api_signature(self.app_id, nonce, self._secret, timestamp),
            "SignatureVersion": "2.0",
        }

    def get_task_status(self, task_id: str) -> TaskStatus:
        """The status of one task. Raises TaskNotFound (code 400000005) for an ended task."""
        return self._call(ACTION_GET_STATUS, {"TaskId": task_id},
                          lambda body: parse_task_status(body, task_id))

    def query_running_tasks(self) -> RunningTasks:
        """Every running (initializing or streaming) task of the AppId, in one call."""
        return self._call(ACTION_QUERY_TASKS, {}, parse_task_list)

    def _call(self, action: str, body: dict[str, str], parse: Callable[[bytes], T]) -> T:
        started = self._monotonic()
        outcome = "0"
        status: int | None = None
        try:
            status, answer = self._post(action, body)
            try:
                return parse(answer)  # ZEGO's envelope: its Code decides, not the status
            except InvalidResponse as exc:
                if status == 200 or exc.in_envelope:
                    raise
                raise self._http_error(action, status) from None  # the status is all there is
        except ZegoError as exc:
            outcome = exc.outcome
            exc.http_status = status
            # Every failure, with the RequestId ZEGO support asks for; the refresh engine
            # reports ongoing problems at warning level, at most every few minutes.
            log.debug("ZEGO API call failed: %s", exc.message,
                      extra={"action": action, **exc.log_fields()})
            raise
        finally:
            if self._observer is not None:
                self._observer(action, outcome, self._monotonic() - started)

    def _http_error(self, action: str, status: int) -> TransportError:
        """A non-200 answer without ZEGO's envelope: a proxy, a load balancer, a wrong host."""
        if status >= 500:
            advice = "ZEGO is having trouble, retrying with backoff"
        elif status == 429:
            advice = ("rate limited before reaching ZEGO, retrying with backoff: lower "
                      "--zego.qps if it goes on")
        else:
            advice = "check --zego.api-url"
        return TransportError(
            f"{action}: HTTP {status} from {self.api_url}: {advice}",
            outcome=f"http_{status}",
            retryable=status >= 500 or status == 429,
            api_down=status != 429,
        )

    def _post(self, action: str, body: dict[str, str]) -> tuple[int, bytes]:
        """(HTTP status, body) of one signed request."""
        try:
            with self._session.post(
                self.api_url,
                params=self.signed_params(action),
                data=json.dumps(body),
                timeout=self._timeout,
                stream=True,
            ) as response:
                status = response.status_code
                if status == 200:
                    return status, self._read_capped(response, action, self._max_bytes)
                try:
                    return status, self._read_capped(response, action, MAX_ERROR_BODY_BYTES)
                except (ZegoError, requests.RequestException, urllib3.exceptions.HTTPError):
                    # Too big, too slow or undecodable: not an error envelope. The status
                    # is all there is to go by.
                    return status, b""
        # Reading the body through urllib3 raises its own exceptions, not requests' wrappers.
        except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
            if isinstance(exc, (requests.exceptions.ContentDecodingError,
                                urllib3.exceptions.DecodeError)):
                raise InvalidResponse(
                    f"{action}: answer body cannot be decoded as its Content-Encoding says"
                ) from None
            if not _is_timeout(exc):
                raise TransportError(
                    f"{action}: cannot reach {self.api_url} ({_short_reason(exc)}): "
                    "check --zego.api-url, DNS and the network",
                    outcome="connection_error", retryable=True, api_down=True,
                ) from None
            raise TransportError(
                f"{action}: no answer from {self.api_url} within {self._timeout[1]:g}s",
                outcome="timeout", retryable=True, api_down=True,
            ) from None

    def _read_capped(self, response: requests.Response, action: str, cap: int) -> bytes:
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > cap:
            raise InvalidResponse(f"{action}: answer of {declared} bytes exceeds the size cap")
        # requests' read timeout applies to each socket read; a slow trickle needs a total cap.
        give_up_at = self._monotonic() + self._timeout[0] + self._timeout[1]
        chunks: list[bytes] = []
        size = 0
        for chunk in _body_pieces(response):
            if self._monotonic() > give_up_at:
                raise requests.Timeout("answer body arrived too slowly")
            size += len(chunk)
            if size > cap:
                raise InvalidResponse(f"{action}: answer exceeds the size cap of {cap} bytes")
            chunks.append(chunk)
        return b"".join(chunks)


def _body_pieces(response: requests.Response) -> Iterator[bytes]:
    """The (decoded) body in pieces of at most 64 KiB, each as soon as it arrives.

    `iter_content` waits until a whole piece has arrived, so a body trickling in a byte at a
    time (each socket read well within the read timeout) could hold a worker for hours before
    the caller's total time check ever runs. urllib3 2's `read1` returns after one socket read.
    """
    read1 = getattr(response.raw, "read1", None)
    if read1 is None:  # urllib3 1.x: no read1; the total time is checked per 64 KiB only
        yield from response.iter_content(chunk_size=65536)
        return
    while piece := read1(65536, decode_content=True):
        yield piece


def _is_timeout(exc: BaseException) -> bool:
    """requests reports a read timeout while streaming the body as a ConnectionError."""
    cause: BaseException | None = exc
    for _ in range(8):  # exception chains are short; the bound guards against cycles
        if cause is None:
            return False
        # urllib3 2 makes NewConnectionError (connection refused, no route...) a subclass of
        # ConnectTimeoutError for backward compatibility; it is not a timeout.
        if isinstance(cause, urllib3.exceptions.NewConnectionError):
            return False
        if isinstance(cause, (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError)):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _short_reason(exc: BaseException) -> str:
    """The innermost cause of a connection failure, without URLs or repr noise."""
    cause: BaseException = exc
    for _ in range(8):
        inner = cause.__cause__ or cause.__context__
        if inner is None:
            break
        cause = inner
    text = str(cause) or type(cause).__name__
    return text.split(": ", 1)[-1][:120]
