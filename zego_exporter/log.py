"""Logging set-up: logfmt or JSON lines on stderr, with secrets scrubbed as a last line of defence.

Code logs through `logging.getLogger(__name__)` with structured fields in `extra={...}`; this
module only decides how records look. It must never log anything itself.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterable
from typing import TextIO

LEVELS = ("debug", "info", "warn", "error")
FORMATS = ("logfmt", "json")

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
_LEVEL_NAMES = {"WARNING": "warn", "CRITICAL": "error"}


def _fields(record: logging.LogRecord) -> dict[str, object]:
    ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    fields: dict[str, object] = {
        "ts": f"{ts}.{int(record.msecs):03d}Z",
        "level": _LEVEL_NAMES.get(record.levelname, record.levelname.lower()),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    fields.update((k, v) for k, v in vars(record).items() if k not in _STANDARD)
    if record.exc_info and record.exc_info[0] is not None:
        fields["exc"] = logging.Formatter().formatException(record.exc_info)
    return fields


def _logfmt_value(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if text and not any(ch in text for ch in ' ="\\\n\t') and text.isprintable():
        return text
    return json.dumps(text, ensure_ascii=False)


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{k}={_logfmt_value(v)}" for k, v in _fields(record).items())


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_fields(record), default=str, ensure_ascii=False)


class _Scrubbing(logging.Formatter):
    """Replaces any secret that reached a log line, whatever path it took."""

    def __init__(self, inner: logging.Formatter, secrets: Iterable[str]) -> None:
        super().__init__()
        self._inner = inner
        # Also the forms the formatters write a secret in once quoted: JSON-escaped, once or
        # twice (a JSON value inside a quoted logfmt value); longest first.
        forms = {s for s in secrets if len(s) >= 4}
        for _ in range(2):
            forms |= {json.dumps(form, ensure_ascii=ascii_only)[1:-1]
                      for form in forms for ascii_only in (True, False)}
        self._secrets = sorted(forms, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        line = self._inner.format(record)
        for secret in self._secrets:
            line = line.replace(secret, "[REDACTED]")
        return line


def configure(
    level: str = "info",
    fmt: str = "logfmt",
    *,
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> None:
    """Send zego_exporter's logs (and warnings of libraries) to `stream` in `fmt`."""
    formatter: logging.Formatter = JsonFormatter() if fmt == "json" else LogfmtFormatter()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_Scrubbing(formatter, secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    numeric = logging.WARNING if level == "warn" else getattr(logging, level.upper())
    logging.getLogger("zego_exporter").setLevel(numeric)
