"""Where configured TaskIds come from: flags, the environment, and a task file that may change.

It validates TaskIds and parses the task file, keeping the last good list when a new version
cannot be read. It hands lists to a callback and knows nothing of how tasks are refreshed.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from zego_exporter.filewatch import FileWatch

log = logging.getLogger(__name__)

MAX_TASK_ID_LENGTH = 128
_TASK_ID = re.compile(r"[\x21-\x7e]{1,%d}" % MAX_TASK_ID_LENGTH)  # noqa: UP031
_SEPARATORS = re.compile(r"[\s,]+")
_COMMENT = re.compile(r"(?:^|\s)#")
# A task file larger than this is a mistake (100,000 TaskIds take about 3.4 MB).
MAX_TASK_FILE_BYTES = 64 * 1024 * 1024


class TaskIdError(ValueError):
    """A TaskId that ZEGO cannot have issued."""


def check_task_id(task_id: str) -> str:
    """The TaskId itself if valid: 1..128 printable ASCII characters, no whitespace."""
    if not task_id:
        raise TaskIdError("TaskId is empty")
    if len(task_id) > MAX_TASK_ID_LENGTH:
        raise TaskIdError(
            f"TaskId {task_id[:20]!r}... is {len(task_id)} characters long; "
            f"at most {MAX_TASK_ID_LENGTH} are allowed"
        )
    if not _TASK_ID.fullmatch(task_id):
        raise TaskIdError(
            f"TaskId {task_id!r} has whitespace or a character other than printable ASCII: "
            "copy the TaskId exactly as ZEGO returned it"
        )
    return task_id


def split_task_ids(text: str) -> list[str]:
    """TaskIds from ZEGO_TASK_IDS: separated by commas and/or whitespace."""
    return [part for part in _SEPARATORS.split(text) if part]


class TaskFileError(Exception):
    """The task file cannot be used at all (missing, unreadable, not text)."""


@dataclass(frozen=True)
class TaskFile:
    """A parsed task file: the valid TaskIds and one message per skipped line."""

    task_ids: list[str]
    skipped: list[str]


def parse_task_file(data: bytes, path: str) -> TaskFile:
    """One TaskId per line. Blank lines and `#` comments are ignored: a comment starts a line
    or follows whitespace, so a `#` inside a TaskId stays part of it."""
    if b"\x00" in data:
        raise TaskFileError(f"task file {path}: looks binary (has NUL bytes), expected text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TaskFileError(
            f"task file {path}: not UTF-8 text (byte {exc.start}); save it as UTF-8"
        ) from None
    task_ids: dict[str, None] = {}
    skipped = []
    for number, line in enumerate(text.splitlines(), start=1):
        content = _COMMENT.split(line, maxsplit=1)[0].strip()
        if not content:
            continue
        try:
            task_ids[check_task_id(content)] = None
        except TaskIdError as exc:
            skipped.append(f"{path}:{number}: {exc}; line skipped")
    return TaskFile(list(task_ids), skipped)


def read_task_file(path: str) -> TaskFile:
    """Read and parse the task file; TaskFileError when it cannot be used at all."""
    try:
        # Non-blocking: opening a FIFO that nobody writes to would hang the watcher for good.
        with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):  # reading a directory fails
                raise TaskFileError(f"task file {path}: not a regular file")
            data = handle.read(MAX_TASK_FILE_BYTES + 1)
    except OSError as exc:
        raise TaskFileError(f"task file {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_TASK_FILE_BYTES:
        raise TaskFileError(f"task file {path}: larger than {MAX_TASK_FILE_BYTES} bytes")
    return parse_task_file(data, path)


class TaskFileWatcher:
    """Re-reads the task file when it changes; a broken version keeps the last good list."""

    def __init__(
        self,
        path: str,
        on_change: Callable[[list[str]], None],
        *,
        interval: float = 5.0,
    ) -> None:
        self.path = path
        self._on_change = on_change
        self._interval = interval
        self._watch = FileWatch()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def load(self) -> list[str]:
        """The first read, at start: TaskFileError if the file cannot be used."""
        self._watch = FileWatch([self.path])  # before reading: an edit meanwhile shows next poll
        loaded = read_task_file(self.path)
        _warn_skipped(loaded.skipped)
        self._on_change(loaded.task_ids)
        return loaded.task_ids

    def poll(self) -> bool:
        """Re-read if the file changed; True if a new list was handed on."""
        if not self._watch.changed():
            return False
        try:
            loaded = read_task_file(self.path)
        except TaskFileError as exc:
            log.error("%s; keeping the last good list of TaskIds", exc)
            return False
        _warn_skipped(loaded.skipped)
        log.info("task file changed: reloaded", extra={"path": self.path,
                                                        "tasks": len(loaded.task_ids)})
        self._on_change(loaded.task_ids)
        return True

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="zego-task-file", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.poll()
            except Exception:  # a watcher must outlive any surprise in the file system
                log.exception("task file watcher failed; will try again")


def _warn_skipped(skipped: Iterable[str]) -> None:
    for message in skipped:
        log.warning(message)
