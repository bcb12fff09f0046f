"""The assembled Exporter: what it tells the user about its setup when it starts."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from zego_exporter.exporter import Exporter, ExporterConfig
from zego_exporter.signing import Secret

NOTHING = "nothing to watch"


def started_warnings(caplog: pytest.LogCaptureFixture, **changes: object) -> list[str]:
    """The warnings an exporter with `changes` logs when it starts (API on a closed port)."""
    config = ExporterConfig(app_id=1234567890, server_secret=Secret("0" * 32),
                            api_url="http://127.0.0.1:9", listen_address="127.0.0.1:0",
                            **changes)  # type: ignore[arg-type]
    exporter = Exporter(config)
    with caplog.at_level(logging.WARNING, logger="zego_exporter.exporter"):
        exporter.start()
    try:
        return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    finally:
        exporter.stop()


def test_an_exporter_that_can_never_track_a_task_says_how_to_give_it_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    warnings = [w for w in started_warnings(caplog, discovery=False) if NOTHING in w]
    assert len(warnings) == 1
    assert "--task-id" in warnings[0] and "--no-discovery" in warnings[0]


@pytest.mark.parametrize("source", ["discovery", "task_ids", "task_file", "callback_secret"])
def test_any_task_source_is_something_to_watch(
    caplog: pytest.LogCaptureFixture, tmp_path: Path, source: str,
) -> None:
    task_file = tmp_path / "tasks.txt"
    task_file.write_text("# filled in later\n")
    sources: dict[str, dict[str, object]] = {
        "discovery": {"discovery": True},
        "task_ids": {"discovery": False, "task_ids": ("task-1",)},
        "task_file": {"discovery": False, "task_file": str(task_file)},
        "callback_secret": {"discovery": False, "callback_secret": Secret("cb")},
    }
    given = sources[source]
    assert not [w for w in started_warnings(caplog, **given) if NOTHING in w]


def test_the_start_log_tells_a_new_storage_file_from_a_restored_one(
    caplog: pytest.LogCaptureFixture, tmp_path: Path,
) -> None:
    def started_info() -> list[str]:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="zego_exporter.exporter"):
            exporter = Exporter(ExporterConfig(  # the file is opened here
                app_id=1234567890, server_secret=Secret("0" * 32),
                api_url="http://127.0.0.1:9", listen_address="127.0.0.1:0", discovery=False,
                task_ids=("task-1",), storage_path=str(tmp_path / "zego-exporter.db")))
            exporter.start()
        exporter.stop()  # writes task-1, as tracked, to the file
        return [r.getMessage() for r in caplog.records if r.getMessage().startswith("storage:")]

    assert started_info() == ["storage: nothing saved yet; keeping what this run learns"]
    assert started_info() == ["storage: restored what the last run knew"]
