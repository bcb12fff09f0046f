"""config.py in-process: the value parsers, secret files and the checks across flags.

What a user sees of the same rules (exit code 2, one line, the environment twins) is
tests/test_cli.py's, through real processes; these tests are the fast loop's view of them.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from zego_exporter import config
from zego_exporter.config import ConfigError, Connection, ServeOptions, exporter_config

SECRET = "s3cret-0123456789abcdef"


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30.0), ("1m30s", 90.0), ("500ms", 0.5), ("1h", 3600.0), ("2d", 172800.0),
    ("1.5", 1.5), (" 5m ", 300.0), ("0s", 0.0),
])
def test_durations_read_go_style_or_plain_seconds(text: str, seconds: float) -> None:
    assert config.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "5 parsecs", "1h 30m", "nan", "inf", "", "m5"])
def test_what_is_not_a_duration_says_how_to_write_one(text: str) -> None:
    with pytest.raises(ValueError, match=r"write e\.g\. 30s"):
        config.parse_duration(text)


def test_durations_below_or_at_zero_are_refused_where_they_cannot_work() -> None:
    with pytest.raises(ValueError, match="negative"):
        config.duration("-5")
    assert config.duration("0") == 0
    with pytest.raises(ValueError, match="longer than 0s"):
        config.positive_duration("0s")


@pytest.mark.parametrize(("text", "expected"), [("1", 1), (" 42 ", 42), ("4294967295", 2**32 - 1)])
def test_app_ids_are_numbers_from_1_to_2_to_the_32_minus_1(text: str, expected: int) -> None:
    assert config.app_id(text) == expected


@pytest.mark.parametrize("text", ["0", "4294967296", "-5", "abc", "١٢٣", SECRET])
def test_what_is_not_an_app_id_is_refused_without_echoing_a_secret(text: str) -> None:
    with pytest.raises(ValueError, match="not an AppId") as failure:
        config.app_id(text)
    assert SECRET not in str(failure.value)


@pytest.mark.parametrize("text", ["0", "-1", "fast", "inf", "nan"])
def test_a_budget_must_be_a_number_above_zero(text: str) -> None:
    with pytest.raises(ValueError, match="above 0"):
        config.qps(text)


def test_task_ids_come_from_the_flags_or_else_the_environment_deduplicated() -> None:
    assert config.task_ids(("a", "b", "a"), "x,y") == ("a", "b")
    assert config.task_ids((), "x, y\ny  x") == ("x", "y")
    with pytest.raises(ValueError, match="in ZEGO_TASK_IDS"):
        config.task_ids((), "good,tâche")
    with pytest.raises(ValueError, match="ASCII") as failure:
        config.task_ids(("tâche",), "")
    assert "ZEGO_TASK_IDS" not in str(failure.value)


def test_a_secret_comes_from_its_flag_or_its_file_not_both(tmp_path: Path) -> None:
    read = dict(what="server secret", flag="--zego.server-secret", env="ZEGO_SERVER_SECRET")
    path = tmp_path / "secret"
    path.write_text(SECRET + "\r\n")
    file_secret = config.read_secret(None, str(path), **read, required=True)
    assert file_secret is not None and file_secret.reveal() == SECRET
    flag_secret = config.read_secret(SECRET, None, **read, required=True)
    assert flag_secret is not None and flag_secret.reveal() == SECRET
    assert config.read_secret(None, None, **read, required=False) is None
    with pytest.raises(ConfigError, match="only one") as both:
        config.read_secret(SECRET, str(path), **read, required=True)
    # One of the two is often an exported variable: the line names the environment too.
    assert "ZEGO_SERVER_SECRET_FILE in the environment" in str(both.value)
    with pytest.raises(ConfigError) as unreadable:
        config.read_secret(None, str(tmp_path / "missing"), **read, required=True)
    assert "check --zego.server-secret-file or ZEGO_SERVER_SECRET_FILE" in str(unreadable.value)
    with pytest.raises(ConfigError, match="ZEGO_SERVER_SECRET_FILE"):
        config.read_secret(None, None, **read, required=True)


@pytest.mark.parametrize(("content", "says"), [
    (b"", "is empty"), (b"\n\r\n", "is empty"), ("clé".encode("latin-1"), "not UTF-8"),
    (b"x" * (config.MAX_SECRET_CHARS + 1), "longer than 4096"),
])
def test_a_secret_file_that_cannot_hold_a_secret_is_refused(
    tmp_path: Path, content: bytes, says: str,
) -> None:
    path = tmp_path / "secret"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=says):
        config.read_secret(None, str(path), what="callback secret",
                           flag="--zego.callback-secret", env="ZEGO_CALLBACK_SECRET",
                           required=True)


def options(**changes: object) -> ServeOptions:
    """serve's defaults, as click would hand them over, with `changes`."""
    connection = Connection(app_id=1234567890, server_secret=SECRET, server_secret_file=None,
                            api_url="https://example.com", qps=10.0, timeout=5.0)
    base = ServeOptions(
        connection=connection, task_ids=(), task_file=None, discovery=True,
        discovery_interval=3.0, refresh_interval=30.0, fast_interval=5.0, workers=4,
        idle_after=600.0, callback_interval=300.0, retention=3600.0, callback_secret=None,
        callback_secret_file=None, callback_path="/zego/callback", listen_address=":9877",
        telemetry_path="/metrics", web_config_file=None, max_scrape_wait=2.0,
        storage_path=None)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_serve_options_become_the_exporters_configuration() -> None:
    built = exporter_config(options(idle_after=0.0, callback_secret="cb"))
    assert built.app_id == 1234567890 and built.server_secret.reveal() == SECRET
    assert built.idle_after is None  # 0: never pause
    assert built.callback_secret is not None and built.callback_secret.reveal() == "cb"
    assert (built.policy.interval, built.policy.fast_interval) == (30.0, 5.0)
    assert (built.policy.discovery_interval, built.policy.callback_reconcile) == (3.0, 300.0)
    assert built.policy.retention == 3600.0


@pytest.mark.parametrize(("changes", "says"), [
    ({"connection": Connection(None, SECRET, None, "https://x", 10.0, 5.0)}, "AppId is missing"),
    ({"connection": Connection(1, SECRET, None, "ftp://x", 10.0, 5.0)}, "http(s) URL"),
    ({"connection": Connection(1, SECRET, None, "https://x:0", 10.0, 5.0)}, "http(s) URL"),
    ({"connection": Connection(1, None, None, "https://x", 10.0, 5.0)}, "secret is missing"),
    ({"connection": Connection(1, SECRET, None, "https://x", 10.0, 0.0)}, "--zego.timeout"),
    ({"listen_address": "localhost"}, "needs a port"),
    ({"telemetry_path": "metrics"}, "must start with /"),
    ({"callback_path": "/-/ready"}, "--zego.callback-path"),
    ({"callback_secret": "cb", "callback_path": "/metrics"}, "must differ"),
    ({"task_file": "/nonexistent/tasks.txt"}, "does not exist"),
    ({"storage_path": "/nonexistent/zego.db"}, "--storage.path"),
    ({"refresh_interval": 0.0}, "--refresh.interval"),
    ({"fast_interval": 0.0}, "--refresh.fast-interval"),
    ({"discovery_interval": 0.0}, "--discovery.interval"),
])
def test_what_no_single_flag_can_check_is_checked_across_them(
    changes: dict[str, object], says: str,
) -> None:
    with pytest.raises(ConfigError, match=says.replace("(", r"\(").replace(")", r"\)")):
        exporter_config(options(**changes))


def test_a_callback_path_equal_to_the_telemetry_path_is_fine_without_callbacks() -> None:
    assert exporter_config(options(callback_path="/metrics")).callback_secret is None


def test_the_parsed_options_never_show_a_secret() -> None:
    """They hold the secrets as given: a repr in a log line or a traceback must not."""
    parsed = options(callback_secret="callback-secret-value")
    shown = repr(parsed) + repr(parsed.connection)
    assert SECRET not in shown and "callback-secret-value" not in shown
    assert "server_secret_file" in shown  # the rest is still there to read
