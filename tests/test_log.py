"""Log lines: logfmt and JSON, levels, structured fields, and secrets scrubbed on the way out."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Callable, Iterator

import pytest

from zego_exporter import log as logsetup
from zego_exporter.signing import Secret

SECRET = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"

Configure = Callable[..., io.StringIO]


@pytest.fixture
def configure() -> Iterator[Configure]:
    """log.configure into a StringIO; the logging set-up of the test run is put back after."""
    root = logging.getLogger()
    ours = logging.getLogger("zego_exporter")
    saved = (list(root.handlers), root.level, ours.level)

    def setup(level: str = "info", fmt: str = "logfmt", secrets: tuple[str, ...] = ()) -> (
        io.StringIO
    ):
        stream = io.StringIO()
        logsetup.configure(level, fmt, secrets=secrets, stream=stream)
        return stream

    yield setup
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])
    ours.setLevel(saved[2])


log = logging.getLogger("zego_exporter.test")

_PAIR = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|[^ "]*)(?: |$)')


def parse_logfmt(line: str) -> dict[str, str]:
    """A strict logfmt reader: every character of the line must belong to a key=value pair."""
    pairs = list(_PAIR.finditer(line))
    assert "".join(m.group(0) for m in pairs) == line, line
    return {m.group(1): json.loads(m.group(2)) if m.group(2).startswith('"') else m.group(2)
            for m in pairs}


def test_logfmt_has_time_level_logger_message_and_extra_fields(configure: Configure) -> None:
    out = configure()
    log.info("task file changed: reloaded", extra={"path": "/etc/tasks", "tasks": 3,
                                                    "ok": True})
    [line] = out.getvalue().splitlines()
    fields = parse_logfmt(line)
    assert list(fields)[:4] == ["ts", "level", "logger", "msg"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", fields["ts"])
    assert fields["level"] == "info" and fields["logger"] == "zego_exporter.test"
    assert fields["msg"] == "task file changed: reloaded"
    assert (fields["path"], fields["tasks"], fields["ok"]) == ("/etc/tasks", "3", "true")


@pytest.mark.parametrize("value", [
    "two words", 'say "hi"', "a=b", "back\\slash", "line\nbreak", "tab\there", "", "ünïcode ok",
    "bell\x07",
])
def test_logfmt_quotes_what_needs_quoting_and_stays_one_line(
    configure: Configure, value: str,
) -> None:
    out = configure()
    log.warning("msg", extra={"value": value})
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert parse_logfmt(lines[0])["value"] == value


def test_logfmt_leaves_simple_values_bare(configure: Configure) -> None:
    out = configure()
    log.info("started", extra={"url": "http://127.0.0.1:9877/metrics", "qps": 10.0})
    line = out.getvalue()
    assert " msg=started " in line
    assert " url=http://127.0.0.1:9877/metrics " in line and line.endswith(" qps=10.0\n")


def test_json_lines_are_valid_json_with_extra_fields(configure: Configure) -> None:
    out = configure(fmt="json")
    log.info("zego-exporter started", extra={"tasks": 7, "discovery": True, "url": "http://x"})
    log.warning('quote " and\nnewline', extra={"nested": {"a": [1, 2]}})
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["msg"] == "zego-exporter started" and first["level"] == "info"
    assert (first["tasks"], first["discovery"], first["url"]) == (7, True, "http://x")
    assert second["msg"] == 'quote " and\nnewline' and second["level"] == "warn"
    assert second["nested"] == {"a": [1, 2]}


def test_exceptions_stay_on_one_line(configure: Configure) -> None:
    for fmt in ("json", "logfmt"):
        out = configure(fmt=fmt)
        try:
            raise ValueError("broken")
        except ValueError:
            log.exception("rendering metrics failed")
        [line] = out.getvalue().splitlines()
        exc = json.loads(line)["exc"] if fmt == "json" else parse_logfmt(line)["exc"]
        assert "Traceback" in exc and "ValueError: broken" in exc


@pytest.mark.parametrize(("level", "shown"), [
    ("debug", ["debug", "info", "warn", "error", "error"]),
    ("info", ["info", "warn", "error", "error"]),
    ("warn", ["warn", "error", "error"]),
    ("error", ["error", "error"]),
])
def test_levels(configure: Configure, level: str, shown: list[str]) -> None:
    out = configure(level=level, fmt="json")
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    log.critical("c")
    assert [json.loads(line)["level"] for line in out.getvalue().splitlines()] == shown


def test_libraries_log_warnings_only(configure: Configure) -> None:
    out = configure(level="debug", fmt="json")
    library = logging.getLogger("urllib3.connectionpool")
    library.debug("Starting new HTTP connection")
    library.info("noise")
    library.warning("Retrying")
    assert [json.loads(line)["msg"] for line in out.getvalue().splitlines()] == ["Retrying"]


def log_the_secret_every_way(secret: str) -> None:
    log.info(f"configured with {secret}")
    log.info("configured with %s", secret)
    log.warning("config", extra={"server_secret": secret, "nested": {"secret": secret},
                                 "spaced": f"the secret is {secret}"})
    try:
        raise RuntimeError(f"signature {secret} rejected")
    except RuntimeError:
        log.exception("call failed")
    log.info("as an object", extra={"secret": Secret(secret)})


def escapes(secret: str) -> set[str]:
    """The secret as written inside JSON strings, escaped once or twice, ASCII-only or not."""
    once = {json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}
    return {secret, *once, *(json.dumps(form, ensure_ascii=ascii_only)[1:-1]
                             for form in once for ascii_only in (True, False))}


@pytest.mark.parametrize("fmt", ["logfmt", "json"])
@pytest.mark.parametrize("secret", [SECRET, 'cb-"quoted"\\and\\slashed', "clé-secrète-ü"])
def test_secrets_are_scrubbed_whatever_way_they_are_logged(
    configure: Configure, fmt: str, secret: str,
) -> None:
    out = configure(level="debug", fmt=fmt, secrets=(secret, "abc"))
    log_the_secret_every_way(secret)
    text = out.getvalue()
    lines = text.splitlines()
    assert len(lines) == 5
    for escaped in escapes(secret):
        assert escaped not in text
    assert text.count("[REDACTED]") >= 6
    if fmt == "json":
        assert all(isinstance(json.loads(line), dict) for line in lines)
    else:
        for line in lines:
            parse_logfmt(line)


def test_short_values_are_not_treated_as_secrets(configure: Configure) -> None:
    out = configure(secrets=("abc",))
    log.info("abc stays")
    assert "abc stays" in out.getvalue()
