"""`--web.config.file`: TLS and basic auth in the exporter-toolkit format Go exporters use.

`load_web_config` turns the file into a `WebConfig` (its schema is `schema.py`, its TLS context
`tls.py`, its logins `auth.py`), and `WebConfigWatcher` keeps the current one, re-reading the file
and the certificate files it names when they change. The web layer wraps each new connection with
`current().ssl_context()` and asks it whether a request may pass, so every change applies to the
next connection and request without a restart. This package knows nothing of HTTP routing and
must never log, or put into an error message, a password, a password hash or key material.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
import time
from collections.abc import Callable, Mapping

from zego_exporter.filewatch import FileWatch
from zego_exporter.webconfig.auth import BasicAuth
from zego_exporter.webconfig.schema import (
    HASH_HINT,
    INSTALL_HINT,
    TLSServerConfig,
    WebConfigError,
    read_settings,
)
from zego_exporter.webconfig.tls import server_context

__all__ = [
    "HASH_HINT",
    "INSTALL_HINT",
    "TLSServerConfig",
    "WebConfig",
    "WebConfigError",
    "WebConfigWatcher",
    "load_web_config",
]

log = logging.getLogger(__name__)


class WebConfig:
    """One loaded web config file. Build it with `load_web_config`; it never changes."""

    def __init__(
        self,
        path: str,
        *,
        tls: TLSServerConfig | None,
        context: ssl.SSLContext | None,
        basic_auth_users: Mapping[str, bytes],
        response_headers: Mapping[str, str],
    ) -> None:
        self.path = path
        self.tls = tls
        self.response_headers: Mapping[str, str] = dict(response_headers)
        """Extra headers (http_server_config.headers) the web layer sends on every response."""
        self._context = context
        self._auth = BasicAuth(basic_auth_users)

    def __repr__(self) -> str:
        return (
            f"WebConfig(path={self.path!r}, tls={self.tls is not None}, "
            f"users={len(self._auth)})"
        )

    @property
    def files(self) -> tuple[str, ...]:
        """The config file and every file it names: what a watcher must stat."""
        return (self.path, *(self.tls.files if self.tls else ()))

    def ssl_context(self) -> ssl.SSLContext | None:
        """The server-side context (the same object on every call), or None without TLS."""
        return self._context

    @property
    def auth_required(self) -> bool:
        return bool(len(self._auth))

    def check_basic_auth(self, authorization_header: str | None) -> bool:
        """True when the request may pass: no users configured, or valid Basic credentials."""
        return self._auth.check(authorization_header)


def load_web_config(path: str) -> WebConfig:
    """Read, validate and load a web config file (certificates included).

    Raises WebConfigError, whose message is one line naming the file, the key and the fix.
    """
    settings = read_settings(path)
    return WebConfig(
        path,
        tls=settings.tls,
        context=server_context(path, settings.tls) if settings.tls else None,
        basic_auth_users=settings.basic_auth_users,
        response_headers=settings.response_headers,
    )


class WebConfigWatcher:
    """The current web config, re-read when its file or a file it names changes.

    `current()` is cheap enough for every request: it stats the files at most once per
    `check_interval` seconds. A new file that does not load keeps the last good config, logs
    one warning per distinct error, and is retried every interval until it loads.

    A broken file at construction raises WebConfigError: at startup, fail.
    """

    def __init__(
        self,
        path: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        stat: Callable[[str], os.stat_result] = os.stat,
        check_interval: float = 1.0,
    ) -> None:
        self.path = path
        self._clock = clock
        self._check_interval = check_interval
        self._lock = threading.Lock()
        self._watch = FileWatch([path], stat=stat)  # before reading: an edit meanwhile shows
        self._config = load_web_config(path)
        self._watch.follow(self._config.files)
        self._last_check = clock()
        self._last_error: str | None = None

    def current(self) -> WebConfig:
        """The config to apply to this request or connection."""
        with self._lock:
            now = self._clock()
            if now - self._last_check < self._check_interval:
                return self._config
            self._last_check = now
            # A file that failed to load is retried even unchanged: it may name a file that
            # is not there yet.
            if self._watch.changed() or self._last_error is not None:
                self._reload()
            return self._config

    def _reload(self) -> None:
        try:
            config = load_web_config(self.path)
        except WebConfigError as exc:
            if str(exc) != self._last_error:
                log.warning(
                    "web config not reloaded, keeping the last good one",
                    extra={"web_config_file": self.path, "error": str(exc)},
                )
            self._last_error = str(exc)
            return
        self._watch.follow(config.files)
        self._config = config
        self._last_error = None
        log.info("web config reloaded", extra={"web_config_file": self.path})
