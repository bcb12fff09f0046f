"""Flag and environment values turned into configuration: parsers, secret files, cross-checks.

The command line hands over what click parsed as typed values (`Connection`, `ServeOptions`);
this module checks what no single flag can check alone (both a secret and its file, a callback
path equal to the telemetry path, a task file or a storage directory that is not there), reads
the secret files, and builds the `ExporterConfig` that `serve` runs. The value parsers raise
ValueError with a message a user can act on; anything else wrong raises ConfigError, shown as
one line with exit code 2. No message ever includes a secret. It never starts anything, opens
no socket, and knows nothing of click.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from zego_exporter.client import DEFAULT_API_URL
from zego_exporter.exporter import ExporterConfig
from zego_exporter.signing import Secret
from zego_exporter.sources import TaskIdError, check_task_id, split_task_ids
from zego_exporter.storage import path_problem as storage_path_problem
from zego_exporter.tracker import RefreshPolicy
from zego_exporter.web import ListenAddressError, parse_listen_address

MAX_SECRET_CHARS = 4096
RESERVED_PATHS = ("/", "/-/healthy", "/-/ready")


class ConfigError(Exception):
    """A flag or environment value that cannot work; shown as one line, exit code 2."""


# -- values of one flag (ValueError with the fix) --

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Go-style durations (`30s`, `1m30s`, `500ms`, `1h`) or plain seconds; ValueError if not."""
    text = text.strip()
    problem = f"{text!r} is not a duration: write e.g. 30s, 5m, 1h30m or 500ms"
    try:
        seconds = float(text)
    except ValueError:
        parts = _DURATION.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            raise ValueError(problem) from None
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    if not math.isfinite(seconds):  # float() takes "nan" and "inf"; timers do not
        raise ValueError(problem)
    return seconds


def duration(text: str) -> float:
    """A duration of 0s or more."""
    seconds = parse_duration(text)
    if seconds < 0:
        raise ValueError(f"{text!r} is negative: write e.g. 30s, 5m or 0s")
    return seconds


def positive_duration(text: str) -> float:
    """A duration longer than 0s."""
    seconds = duration(text)
    if seconds <= 0:
        raise ValueError(f"{text!r} must be longer than 0s: write e.g. 5s")
    return seconds


def app_id(text: str) -> int:
    """An AppId: a number from 1 to 2**32 - 1."""
    stripped = text.strip()
    if stripped.isascii() and stripped.isdigit() and 1 <= int(stripped) <= 2**32 - 1:
        return int(stripped)
    # A long value may be the server secret given in the AppId's place: never echo it.
    shown = repr(text) if len(text) <= 12 else f"a value of {len(text)} characters"
    raise ValueError(f"{shown} is not an AppId: use your project's AppId from the ZEGO "
                     "console, a number from 1 to 4294967295")


def qps(text: str) -> float:
    """A request budget per second, above 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise ValueError(f"{text!r} is not a number of requests per second above 0: "
                         "write e.g. 10 (ZEGO's limit per AppId) or 2.5")
    return value


def task_ids(given: Sequence[str], environment: str) -> tuple[str, ...]:
    """The --task-id values, or else ZEGO_TASK_IDS (`environment`, TaskIds separated by commas
    and whitespace); each checked, duplicates dropped, in order."""
    ids = list(given) or split_task_ids(environment)
    try:
        return tuple(dict.fromkeys(check_task_id(task_id) for task_id in ids))
    except TaskIdError as exc:
        raise ValueError(str(exc) if given else f"{exc} (in ZEGO_TASK_IDS)") from None


def checked_task_ids(given: Sequence[str]) -> tuple[str, ...]:
    """TaskIds named as arguments, each checked, in the order given."""
    return tuple(check_task_id(task_id) for task_id in given)


def listen_address(text: str) -> tuple[str, int]:
    """(host, port) of a listen address; ConfigError if it cannot be one."""
    try:
        return parse_listen_address(text)
    except ListenAddressError as exc:
        raise ConfigError(str(exc)) from None


# -- secrets --

def read_secret(flag_value: str | None, file_value: str | None, *, what: str, flag: str,
                env: str, required: bool) -> Secret | None:
    """The secret of `flag` or of its `-file` twin (one of them, not both)."""
    if flag_value and file_value:
        # One of them often comes from the environment (an exported ZEGO_*_FILE) while the
        # other is typed on the command line: name both places.
        raise ConfigError(f"both {flag} and {flag}-file are set (as flags, or as {env} and "
                          f"{env}_FILE in the environment): give only one of them, e.g. "
                          f"unset {env}_FILE to use {flag}")
    if file_value:
        try:
            with open(file_value, encoding="utf-8") as handle:
                # Bounded: a path such as /dev/zero must not read on until memory runs out.
                text = handle.read(MAX_SECRET_CHARS + 1).rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(f"cannot read {what} file {file_value}: "
                              f"{exc.strerror or exc}: check {flag}-file or {env}_FILE, and "
                              "that this user may read the file") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{what} file {file_value} is not UTF-8 text") from None
        if not text.strip():
            raise ConfigError(f"{what} file {file_value} is empty")
        if len(text) > MAX_SECRET_CHARS:
            raise ConfigError(f"{what} file {file_value} is longer than {MAX_SECRET_CHARS} "
                              "characters: it must hold the secret only")
        return Secret(text)
    if flag_value:
        return Secret(flag_value)
    if required:
        raise ConfigError(f"the {what} is missing: set {env}_FILE (a file) or {env}, "
                          f"or pass {flag}-file or {flag}")
    return None


# -- the commands' options --

@dataclass(frozen=True)
class Connection:
    """The `--zego.*` connection flags, shared by `serve` and `check`, as parsed."""

    app_id: int | None
    server_secret: str | None = field(repr=False)  # a repr in a log or traceback: no secret
    server_secret_file: str | None
    api_url: str
    qps: float
    timeout: float

    def credentials(self) -> tuple[int, Secret]:
        """The AppId and the server secret (read from its file if given); the URL checked."""
        if self.app_id is None:
            raise ConfigError("the AppId is missing: set ZEGO_APP_ID or pass --zego.app-id")
        if not re.fullmatch(r"https?://[^/\s]+(/\S*)?", self.api_url) or not _valid_port(
                self.api_url):
            raise ConfigError(f"--zego.api-url {self.api_url!r} is not an http(s) URL: write "
                              f"e.g. {DEFAULT_API_URL}")
        secret = read_secret(self.server_secret, self.server_secret_file, what="server secret",
                             flag="--zego.server-secret", env="ZEGO_SERVER_SECRET",
                             required=True)
        assert secret is not None
        return self.app_id, secret


def _valid_port(url: str) -> bool:
    try:
        return urlsplit(url).port != 0
    except ValueError:  # not a number, or above 65535
        return False


@dataclass(frozen=True)
class ServeOptions:
    """Every `serve` flag but the log flags, as parsed (durations in seconds)."""

    connection: Connection
    task_ids: tuple[str, ...]
    task_file: str | None
    discovery: bool
    discovery_interval: float
    refresh_interval: float
    fast_interval: float
    workers: int
    idle_after: float
    """0: never pause."""
    callback_interval: float
    retention: float
    callback_secret: str | None = field(repr=False)
    callback_secret_file: str | None
    callback_path: str
    listen_address: str
    telemetry_path: str
    web_config_file: str | None
    max_scrape_wait: float
    storage_path: str | None


def callback_secret_of(secret: str | None, secret_file: str | None,
                       path: str) -> Secret | None:
    """The callback secret of the `--zego.callback-*` flags (None: callbacks off), and the
    endpoint's path checked; raises ConfigError."""
    _check_path("--zego.callback-path", path)
    return read_secret(secret, secret_file, what="callback secret",
                       flag="--zego.callback-secret", env="ZEGO_CALLBACK_SECRET",
                       required=False)


def _check_path(flag: str, path: str) -> None:
    if not path.startswith("/") or path in RESERVED_PATHS:
        raise ConfigError(f"{flag} {path!r} must start with / and not be /, /-/healthy "
                          "or /-/ready")


def exporter_config(options: ServeOptions) -> ExporterConfig:
    """What `serve` runs, after the checks no single flag can make; raises ConfigError."""
    o = options
    app_id, secret = o.connection.credentials()
    callback_secret = callback_secret_of(o.callback_secret, o.callback_secret_file,
                                         o.callback_path)
    listen_address(o.listen_address)
    _check_path("--web.telemetry-path", o.telemetry_path)
    if callback_secret is not None and o.callback_path == o.telemetry_path:
        raise ConfigError("--zego.callback-path and --web.telemetry-path must differ")
    if o.storage_path and (problem := storage_path_problem(o.storage_path)):
        raise ConfigError(problem)
    if o.task_file and not os.path.isfile(o.task_file):
        raise ConfigError(f"task file {o.task_file} does not exist or is not a file: create it "
                          "(one TaskId per line) or fix --task-file / ZEGO_TASK_FILE")
    for flag, value in (("--refresh.interval", o.refresh_interval),
                        ("--refresh.fast-interval", o.fast_interval),
                        ("--discovery.interval", o.discovery_interval),
                        ("--zego.timeout", o.connection.timeout)):
        if value <= 0:
            raise ConfigError(f"{flag} must be longer than 0s")
    policy = RefreshPolicy(
        interval=o.refresh_interval, fast_interval=o.fast_interval,
        discovery_interval=o.discovery_interval, retention=o.retention,
        callback_reconcile=o.callback_interval,
    )
    return ExporterConfig(
        app_id=app_id, server_secret=secret, api_url=o.connection.api_url,
        qps=o.connection.qps, task_ids=o.task_ids, task_file=o.task_file,
        discovery=o.discovery, callback_secret=callback_secret,
        callback_path=o.callback_path, listen_address=o.listen_address,
        telemetry_path=o.telemetry_path, web_config_file=o.web_config_file,
        policy=policy, workers=o.workers, idle_after=o.idle_after or None,
        timeout=o.connection.timeout, max_scrape_wait=o.max_scrape_wait,
        storage_path=o.storage_path or None,
    )
