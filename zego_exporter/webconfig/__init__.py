"""`--web.config.file`: TLS, basic auth and rate limits in the exporter-toolkit format.

`load_web_config` turns the file into a `WebConfig` (its schema is `schema.py`, its TLS context
`tls.py`, its logins `auth.py`, its rate limit `throttle.py`), and `WebConfigWatcher` keeps the
current one, re-reading the file and the certificate files it names when they change. The web
layer wraps each new connection with `current().ssl_context()` and asks `current().admit()`
whether a request may pass, so every change applies to the next connection and request without
a restart; a file that breaks fails closed. What Python cannot match in exporter-toolkit's format
is refused at start (docs/web-config.md has the table). This package knows nothing of HTTP
routing and must never log, or put into an error message, a password, a password hash or key
material.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from zego_exporter.filewatch import FileWatch
from zego_exporter.webconfig.auth import BasicAuth
from zego_exporter.webconfig.schema import (
    INSTALL_HINT,
    Settings,
    TLSServerConfig,
    WebConfigError,
    read_settings,
)
from zego_exporter.webconfig.throttle import TokenBucket
from zego_exporter.webconfig.tls import client_certificate_allowed, server_context

__all__ = [
    "INSTALL_HINT",
    "BrokenWebConfig",
    "TLSServerConfig",
    "WebConfig",
    "WebConfigError",
    "WebConfigWatcher",
    "load_web_config",
]

# What admit() answers, as HTTP statuses; the web layer words the response.
UNAUTHORIZED = 401
FORBIDDEN = 403  # client certificate without an allowed SAN
TOO_MANY_REQUESTS = 429
BROKEN = 500  # the file is invalid: nothing passes until it is fixed

log = logging.getLogger(__name__)


class WebConfig:
    """One loaded web config file. Build it with `load_web_config`; its settings never change."""

    def __init__(
        self,
        path: str,
        settings: Settings,
        context: ssl.SSLContext | None,
        *,
        auth: BasicAuth,
        limiter: TokenBucket | None,
    ) -> None:
        self.path = path
        self.settings = settings
        self.response_headers: Mapping[str, str] = dict(settings.response_headers)
        """Extra headers (http_server_config.headers) the web layer sends on every response."""
        self._context = context
        self.auth = auth
        self.limiter = limiter

    def __repr__(self) -> str:
        return (
            f"WebConfig(path={self.path!r}, tls={self.tls is not None}, "
            f"users={len(self.auth)}, rate_limit={self.settings.rate_limit})"
        )

    @property
    def tls(self) -> TLSServerConfig | None:
        return self.settings.tls

    @property
    def files(self) -> tuple[str, ...]:
        """The config file and every file it names: what a watcher must stat."""
        return (self.path, *(self.tls.files if self.tls else ()))

    def ssl_context(self) -> ssl.SSLContext | None:
        """The server-side context (the same object on every call), or None without TLS."""
        return self._context

    def admit(
        self,
        authorization_header: str | None,
        client_certificate: Mapping[str, Any] | None,
        *,
        login: bool = True,
    ) -> int | None:
        """None when a request may pass, else the HTTP status to refuse it with. In
        exporter-toolkit's order: client certificate (Go checks it in the handshake), rate
        limit, then the login unless `login` is False (an endpoint with its own credentials)."""
        sans = self.tls.client_allowed_sans if self.tls else None
        if sans is not None and not client_certificate_allowed(client_certificate, sans):
            return FORBIDDEN
        if self.limiter is not None and not self.limiter.allow():
            return TOO_MANY_REQUESTS
        if login and not self.auth.check(authorization_header):
            return UNAUTHORIZED
        return None


class BrokenWebConfig:
    """What applies while the file is invalid: every request refused with a 500, as
    exporter-toolkit does, until the file is fixed. Connections still get the last good TLS
    context and headers, so that `/-/healthy` keeps answering over the same scheme."""

    def __init__(self, last_good: WebConfig, error: str) -> None:
        self.last_good = last_good
        self.error = error
        self.response_headers: Mapping[str, str] = last_good.response_headers

    def __repr__(self) -> str:
        return f"BrokenWebConfig(path={self.last_good.path!r})"

    def ssl_context(self) -> ssl.SSLContext | None:
        return self.last_good.ssl_context()

    def admit(
        self,
        authorization_header: str | None,
        client_certificate: Mapping[str, Any] | None,
        *,
        login: bool = True,
    ) -> int | None:
        return BROKEN


def load_web_config(path: str, *, previous: WebConfig | None = None) -> WebConfig:
    """Read, validate and load a web config file (certificates included).

    With `previous` (the config it replaces), what the file does not change carries over: the
    recent login results, and the rate limiter's bucket while the limit stays the same.
    Raises WebConfigError, whose message is one line naming the file, the key and the fix.
    """
    settings = read_settings(path)
    context = server_context(path, settings.tls) if settings.tls else None
    limiter = None
    if settings.rate_limit is not None:
        if previous is not None and previous.limiter is not None and (
            previous.limiter.limit == settings.rate_limit
        ):
            limiter = previous.limiter
        else:
            limiter = TokenBucket(settings.rate_limit)
    auth = BasicAuth(settings.basic_auth_users,
                     results=previous.auth.results if previous is not None else None)
    return WebConfig(path, settings, context, auth=auth, limiter=limiter)


class WebConfigWatcher:
    """The current web config, re-read when its file or a file it names changes.

    `current()` is cheap enough for every request: it stats the files at most once per
    `check_interval` seconds. A file that stops loading fails closed: `current()` is then a
    `BrokenWebConfig` (every request but /-/healthy answered 500), with one error logged per
    distinct problem, and the file is retried every interval until it loads again.
    `on_reload(valid)` hears the outcome of every read, the first one included.

    A broken file at construction raises WebConfigError: at startup, fail.
    """

    def __init__(
        self,
        path: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        stat: Callable[[str], os.stat_result] = os.stat,
        check_interval: float = 1.0,
        on_reload: Callable[[bool], None] = lambda valid: None,
    ) -> None:
        self.path = path
        self._clock = clock
        self._check_interval = check_interval
        self._on_reload = on_reload
        self._lock = threading.Lock()
        self._watch = FileWatch([path], stat=stat)  # before reading: an edit meanwhile shows
        self._last_good = load_web_config(path)
        self._config: WebConfig | BrokenWebConfig = self._last_good
        self._watch.follow(self._last_good.files)
        self._last_check = clock()
        on_reload(True)

    def current(self) -> WebConfig | BrokenWebConfig:
        """The config to apply to this request or connection."""
        with self._lock:
            now = self._clock()
            if now - self._last_check < self._check_interval:
                return self._config
            self._last_check = now
            # A file that failed to load is retried even unchanged: it may name a file that
            # is not there yet.
            if self._watch.changed() or isinstance(self._config, BrokenWebConfig):
                self._reload()
            return self._config

    def _reload(self) -> None:
        broken = self._config if isinstance(self._config, BrokenWebConfig) else None
        try:
            config = load_web_config(self.path, previous=self._last_good)
        except Exception as exc:  # current() runs in the accept loop: fail closed, never raise
            # Anything but a WebConfigError is a bug here; its message may hold what the file
            # holds, so only its type is logged.
            problem = str(exc) if isinstance(exc, WebConfigError) else (
                f"web config {self.path}: cannot be loaded ({type(exc).__name__}, a bug in "
                "zego-exporter: please report it)")
            if broken is None or broken.error != problem:
                log.error(
                    "web config invalid: every request but /-/healthy is answered 500 until "
                    "the file is fixed",
                    extra={"web_config_file": self.path, "error": problem},
                )
            self._config = BrokenWebConfig(self._last_good, problem)
            self._on_reload(False)
            return
        self._watch.follow(config.files)
        self._config = self._last_good = config
        log.info("web config valid again: serving requests" if broken else "web config reloaded",
                 extra={"web_config_file": self.path})
        self._on_reload(True)
