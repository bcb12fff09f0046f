"""Task sources: TaskId validation, ZEGO_TASK_IDS, the task file and its watcher."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from tests.support.waiting import wait_until
from zego_exporter import sources
from zego_exporter.sources import (
    MAX_TASK_ID_LENGTH,
    TaskFileError,
    TaskFileWatcher,
    TaskIdError,
    check_task_id,
    parse_task_file,
    read_task_file,
    split_task_ids,
)

# -- TaskIds ---------------------------------------------------------------------------------


@pytest.mark.parametrize("task_id", [
    "a", "0a5d2f346baa9455e3e70682c2094cac", "task#1", "x" * MAX_TASK_ID_LENGTH,
    "!\"$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
])
def test_valid_task_ids_come_back_unchanged(task_id: str) -> None:
    assert check_task_id(task_id) == task_id


@pytest.mark.parametrize(("task_id", "says"), [
    ("", "empty"),
    ("x" * (MAX_TASK_ID_LENGTH + 1), "129 characters long; at most 128"),
    ("task one", "whitespace"),
    ("task\tone", "whitespace"),
    (" task", "whitespace"),
    ("tâche", "printable ASCII"),
    ("task\x00", "printable ASCII"),
    ("task\x7f", "printable ASCII"),
    ("task\n", "whitespace"),
])
def test_invalid_task_ids_say_why(task_id: str, says: str) -> None:
    with pytest.raises(TaskIdError, match=says):
        check_task_id(task_id)


def test_a_long_task_id_is_shortened_in_the_message() -> None:
    with pytest.raises(TaskIdError) as caught:
        check_task_id("y" * 10_000)
    assert len(str(caught.value)) < 200


@pytest.mark.parametrize(("text", "expected"), [
    ("", []),
    ("  , ,\n", []),
    ("a", ["a"]),
    ("a,b", ["a", "b"]),
    (" a, b  c,,\td\n e ", ["a", "b", "c", "d", "e"]),
    ("a,a", ["a", "a"]),  # duplicates are the CLI's to drop, after validation
])
def test_split_task_ids_on_commas_and_whitespace(text: str, expected: list[str]) -> None:
    assert split_task_ids(text) == expected


# -- the task file ---------------------------------------------------------------------------

def test_comments_blank_lines_and_duplicates() -> None:
    data = (
        b"# TaskIds of the demo rooms\n"
        b"\n"
        b"task-1\n"
        b"   \n"
        b"task-2   # trailing comment\n"
        b"task-3\t# after a tab\n"
        b"task#4\n"  # a '#' inside a TaskId is part of it
        b"  task-5  \n"
        b"task-1\n"
        b"   # indented comment\n"
        b"#task-6\n"
        b"task-2 # again\n"
        b"task-7"  # no final newline
    )
    parsed = parse_task_file(data, "tasks.txt")
    assert parsed.task_ids == ["task-1", "task-2", "task-3", "task#4", "task-5", "task-7"]
    assert parsed.skipped == []


def test_crlf_and_a_byte_order_mark() -> None:
    data = "\ufefftask-1\r\ntask-2 # c\r\n\r\ntask-3\r\n".encode()
    assert parse_task_file(data, "t").task_ids == ["task-1", "task-2", "task-3"]


def test_invalid_lines_are_skipped_with_path_and_line_number() -> None:
    data = ("good-1\n"
            "two words\n"
            f"{'x' * 129}\n"
            "tâche\n"
            "good-2 # ok\n").encode()
    parsed = parse_task_file(data, "/etc/zego/tasks.txt")
    assert parsed.task_ids == ["good-1", "good-2"]
    assert len(parsed.skipped) == 3
    for line_number, message in zip((2, 3, 4), parsed.skipped, strict=True):
        assert message.startswith(f"/etc/zego/tasks.txt:{line_number}: ")
        assert message.endswith("line skipped")
    assert "'two words'" in parsed.skipped[0]


def test_empty_file_is_an_empty_list() -> None:
    assert parse_task_file(b"", "t").task_ids == []
    assert parse_task_file(b"# only a comment\n\n", "t").task_ids == []


def write(path: Path, content: str | bytes) -> str:
    if isinstance(content, str):
        path.write_text(content)
    else:
        path.write_bytes(content)
    return str(path)


@pytest.mark.parametrize(("kind", "says"), [
    ("missing", "No such file"),
    ("directory", "Is a directory"),
    ("binary", "binary"),
    ("latin-1", "not UTF-8"),
])
def test_read_task_file_errors_name_the_file(tmp_path: Path, kind: str, says: str) -> None:
    path = {
        "missing": str(tmp_path / "missing.txt"),
        "directory": str(tmp_path),
        "binary": write(tmp_path / "bin", b"task-1\n\x00\x01\x02"),
        "latin-1": write(tmp_path / "latin1", "tâche\n".encode("latin-1")),
    }[kind]
    with pytest.raises(TaskFileError) as caught:
        read_task_file(path)
    assert says in str(caught.value)
    assert path in str(caught.value)


def test_a_too_big_task_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "MAX_TASK_FILE_BYTES", 100)
    path = write(tmp_path / "tasks", "task-0123456789\n" * 7)
    with pytest.raises(TaskFileError, match="larger than 100 bytes"):
        read_task_file(path)
    path = write(tmp_path / "tasks", "task-0123456789\n" * 6)
    assert len(read_task_file(path).task_ids) == 1


def test_a_100000_line_file_loads_whole_and_in_order(tmp_path: Path) -> None:
    """How long it takes is measured by `python -m bench.taskfile`, not asserted here."""
    ids = [f"{n:032x}" for n in range(100_000)]
    path = write(tmp_path / "tasks", "".join(f"{task_id}  # room {n}\n"
                                             for n, task_id in enumerate(ids)))
    loaded = read_task_file(path)
    assert loaded.task_ids == ids


# -- the watcher -----------------------------------------------------------------------------

class Received:
    def __init__(self) -> None:
        self.lists: list[list[str]] = []

    def __call__(self, task_ids: list[str]) -> None:
        self.lists.append(task_ids)


def rewrite(path: Path, content: str | bytes) -> None:
    """Change the file so that its size or modification time differs, as an edit does."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    write(path, content)
    os.utime(path, ns=(before + 10**9, before + 10**9))


def test_watcher_loads_then_reloads_only_on_change(tmp_path: Path) -> None:
    path = tmp_path / "tasks"
    write(path, "task-1\ntask-2\n")
    received = Received()
    watcher = TaskFileWatcher(str(path), received)
    assert watcher.load() == ["task-1", "task-2"]
    assert received.lists == [["task-1", "task-2"]]
    assert watcher.poll() is False
    rewrite(path, "task-2\ntask-3\n")
    assert watcher.poll() is True
    assert received.lists[-1] == ["task-2", "task-3"]
    assert watcher.poll() is False
    assert len(received.lists) == 2


def test_watcher_keeps_the_last_good_list_when_the_file_breaks_or_goes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    path = tmp_path / "tasks"
    write(path, "task-1\n")
    received = Received()
    watcher = TaskFileWatcher(str(path), received)
    watcher.load()
    caplog.set_level(logging.INFO, logger="zego_exporter")

    rewrite(path, b"task-1\n\x00garbage")
    assert watcher.poll() is False
    rewrite(path, "tâche\n".encode("latin-1"))
    assert watcher.poll() is False
    path.unlink()
    assert watcher.poll() is False
    assert received.lists == [["task-1"]]  # nothing handed on: the last good list stays
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 3
    assert all("keeping the last good list" in r.getMessage() for r in errors)
    assert str(path) in errors[-1].getMessage()
    assert watcher.poll() is False  # still gone: not logged again
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 3

    write(path, "task-9\n")
    assert watcher.poll() is True
    assert received.lists[-1] == ["task-9"]


def test_watcher_warns_about_skipped_lines(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    path = tmp_path / "tasks"
    write(path, "task-1\nbad one\n")
    caplog.set_level(logging.WARNING, logger="zego_exporter")
    received = Received()
    TaskFileWatcher(str(path), received).load()
    assert received.lists == [["task-1"]]
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        f"{path}:2: TaskId 'bad one' has whitespace or a character other than printable "
        "ASCII: copy the TaskId exactly as ZEGO returned it; line skipped"]


def test_watcher_refuses_an_unusable_file_at_start(tmp_path: Path) -> None:
    received = Received()
    with pytest.raises(TaskFileError):
        TaskFileWatcher(str(tmp_path / "missing"), received).load()
    assert received.lists == []


def test_watcher_thread_notices_a_change(tmp_path: Path) -> None:
    path = tmp_path / "tasks"
    write(path, "task-1\n")
    received = Received()
    watcher = TaskFileWatcher(str(path), received, interval=0.02)
    watcher.load()
    watcher.start()
    try:
        rewrite(path, "task-1\ntask-2\n")
        wait_until(lambda: len(received.lists) >= 2, timeout=5, what="the reloaded list")
        assert received.lists[-1] == ["task-1", "task-2"]
    finally:
        watcher.stop()
