"""Storage: what the tracker knows, kept in a SQLite file across restarts (`--storage.path`).

`open_store` opens or creates the file and reads back what a previous run saved. A file that
cannot be used (damaged, truncated, unreadable, not this program's, or written by a newer
version) is moved aside next to it with one warning, and a new one is started: the exporter
always serves. `StoreWriter` takes the tracker's changes (`Tracker.take_changes`, latest state
wins) from a thread of its own at most every WRITE_INTERVAL seconds and writes each batch in
one transaction, so no scrape and no lookup ever waits for the disk. One exporter at a time
owns a file (a lock beside it); a second one runs in memory only. `path_problem` tells a
path that can never work (a configuration error). The module knows nothing of HTTP,
Prometheus or the ZEGO API, and must never reach into the tracker: it takes `Changes` and
gives back `SavedTask`s.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import math
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from zego_exporter.states import STATES
from zego_exporter.tracker import SOURCES, Changes, SavedTask, TaskView

log = logging.getLogger(__name__)

SCHEMA_VERSION: Final = 1
"""PRAGMA user_version of the files this version writes; it reads no other."""
WRITE_INTERVAL: Final = 0.5
"""Seconds between two writes at most (plus the write itself): what a kill -9 can lose."""
BUSY_TIMEOUT: Final = 5.0
"""How long to wait for a lock held by another process (a second exporter on the same file)."""
LOCK_WAIT: Final = 15.0
"""How long a starting exporter waits for another to let go of the file: a Kubernetes pod
deleted by hand gets its replacement while the old one is still stopping (it lets go within a
second or two of SIGTERM). Within the liveness probe's 30 s of patience."""
_LOCK_RETRY: Final = 0.25
REPORT_EVERY: Final = 300.0
"""Repeat the error about failing writes at most this often."""
_WAL_KEPT_BYTES: Final = 4 * 1024 * 1024

_SCHEMA: Final = (
    """CREATE TABLE tasks (
        task_id TEXT PRIMARY KEY NOT NULL,
        room_id TEXT NOT NULL,
        stream_id TEXT NOT NULL,
        status INTEGER,
        state TEXT NOT NULL,
        create_time INTEGER,
        fail_reason TEXT NOT NULL,
        last_success REAL,
        lookup_ok INTEGER,
        sources TEXT NOT NULL,
        failure_counted INTEGER NOT NULL,
        terminal_since REAL,
        callback_time REAL
    ) WITHOUT ROWID""",
    """CREATE TABLE failures (
        room_id TEXT NOT NULL,
        stream_id TEXT NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (room_id, stream_id)
    ) WITHOUT ROWID""",
)
_SAVE_TASK: Final = """INSERT OR REPLACE INTO tasks (task_id, room_id, stream_id, status, state,
    create_time, fail_reason, last_success, lookup_ok, sources, failure_counted, terminal_since,
    callback_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""
_LOAD_TASKS: Final = """SELECT task_id, room_id, stream_id, status, state, create_time,
    fail_reason, last_success, lookup_ok, sources, failure_counted, terminal_since, callback_time
    FROM tasks"""
_SAVE_FAILURES: Final = """INSERT OR REPLACE INTO failures (room_id, stream_id, count)
    VALUES (?, ?, ?)"""


class StorageError(Exception):
    """No storage file can be used at all (in use by another process, no file can be created,
    or what is in the way cannot be moved aside); the exporter then keeps everything in memory
    only."""


class _Unusable(Exception):
    """This file cannot be used; `kind` names what it is moved aside as."""

    def __init__(self, problem: str, kind: str = "corrupt") -> None:
        super().__init__(problem)
        self.kind = kind


@dataclass(frozen=True)
class Saved:
    """What a previous run left in the file."""

    tasks: list[SavedTask] = field(default_factory=list)
    failures: dict[tuple[str, str], int] = field(default_factory=dict)
    skipped: int = 0
    """Rows that could not be read (and were deleted)."""


def path_problem(path: str) -> str | None:
    """Why `path` can never hold the storage file, in one line with the fix; None if it can.

    The file itself may be missing or unusable (it is then created, or moved aside); its
    directory must exist and take new files, for the file and SQLite's -wal and -shm beside it,
    and those that exist (with the lock) must be writable for this user. Call it before any
    store of `path` is open in this process: closing a descriptor of the lock file would let go
    of the lock.
    """
    flag = f"--storage.path {path}"
    if os.path.isdir(path):
        return (f"{flag} is a directory: name a file inside it, e.g. "
                f"{os.path.join(path, 'zego-exporter.db')}")
    if os.path.lexists(path) and not os.path.isfile(path):
        return f"{flag} exists and is not a regular file: name a file path for SQLite"
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        return (f"{flag}: directory {directory} does not exist: create it (or mount a volume "
                "there), or point --storage.path into an existing directory")
    try:  # the real test: os.access misses read-only mounts for some users, and ACLs
        handle, probe = tempfile.mkstemp(prefix=".zego-exporter-probe-", dir=directory)
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        return (f"{flag}: cannot create files in {directory} ({exc.strerror or exc}): make it "
                f"writable for this user (uid {os.getuid()}), or choose another directory")
    for name in (path, f"{path}-wal", f"{path}-shm", f"{path}.lock"):
        # SQLite opens a file it cannot write read-only, without a word: every write would
        # fail. A volume whose files another user (an older image's uid) created does this.
        try:
            os.close(os.open(name, os.O_RDWR | os.O_CLOEXEC))
        except FileNotFoundError:
            continue
        except OSError as exc:
            return (f"{flag}: cannot write {name} ({exc.strerror or exc}): give it to this "
                    f"user (uid {os.getuid()}), e.g. chown, or choose another path")
    return None


class Store:
    """One open storage file. `write` is safe from any thread, one write at a time."""

    def __init__(self, path: str, connection: sqlite3.Connection, owner: int) -> None:
        self.path = path
        self._db = connection
        self._owner = owner  # the lock file's descriptor: see _take_ownership
        self._lock = threading.Lock()
        self._identity = _identity(path)

    def replaced(self) -> bool:
        """Whether `path` no longer names the file this store writes (deleted, or another put
        in its place): SQLite would go on writing to the old one, which no restart reads."""
        try:
            return _identity(self.path) != self._identity
        except FileNotFoundError:
            return True
        except OSError:  # the directory cannot be read: a write will tell what is wrong
            return False

    def reopen(self, clock: Callable[[], float] = time.time,
               busy_timeout: float = BUSY_TIMEOUT) -> None:
        """Start over at `path` (see `replaced`), keeping this process's lock: a new file, or
        the one now there (unusable ones moved aside, as at start). What the new file holds is
        not read back. Raises StorageError; the store can then not be written until this is
        called again and works."""
        with self._lock:
            self._db.close()
            store, _ = _open_owned(self.path, busy_timeout, clock, self._owner)
            self._db, self._identity = store._db, store._identity

    def write(self, changes: Changes) -> int:
        """Apply `changes` in one transaction; returns the rows written or deleted. Raises
        sqlite3.Error (nothing of the batch is then written)."""
        saved = [_task_row(task) for task in changes.tasks.values() if task is not None]
        forgotten = [(task_id,) for task_id, task in changes.tasks.items() if task is None]
        counts = [(*pair, count) for pair, count in changes.failures.items() if count is not None]
        gone = [pair for pair, count in changes.failures.items() if count is None]
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(_SAVE_TASK, saved)
                db.executemany("DELETE FROM tasks WHERE task_id = ?", forgotten)
                db.executemany(_SAVE_FAILURES, counts)
                db.executemany("DELETE FROM failures WHERE room_id = ? AND stream_id = ?", gone)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        return len(saved) + len(forgotten) + len(counts) + len(gone)

    def close(self) -> None:
        with self._lock:
            self._db.close()  # the last connection checkpoints the WAL into the file
            os.close(self._owner)


def open_store(path: str, *, clock: Callable[[], float] = time.time,
               busy_timeout: float = BUSY_TIMEOUT, lock_wait: float | None = None,
               sleep: Callable[[float], None] = time.sleep,
               monotonic: Callable[[], float] = time.monotonic) -> tuple[Store, Saved]:
    """Open `path` (creating it if missing) and read what it holds.

    A file that cannot be used is moved aside as `<path>.corrupt-<UTC time>` (or
    `.newer-<UTC time>` when a newer version wrote it, so that version can still use it),
    with one warning, and a new file is started. Raises StorageError when no file can be
    used at all, or when another exporter still has it open (`<path>.lock`, held until
    `close`) after `lock_wait` seconds (LOCK_WAIT by default; `sleep` and `monotonic` pace
    the wait). Call path_problem first: a path it refuses is not handled here.
    """
    wait = LOCK_WAIT if lock_wait is None else lock_wait
    owner = _take_ownership(path, wait, sleep, monotonic)
    try:
        return _open_owned(path, busy_timeout, clock, owner)
    except BaseException:
        os.close(owner)
        raise


def _open_owned(path: str, busy_timeout: float, clock: Callable[[], float],
                owner: int) -> tuple[Store, Saved]:
    """open_store, once `owner` holds the lock."""
    try:
        return _open(path, busy_timeout, clock, owner)
    except _Unusable as exc:
        try:
            moved_to = _move_aside(path, exc.kind, clock())
        except OSError as error:
            raise StorageError(f"storage file {path} cannot be used ({exc}) nor moved "
                               f"aside ({error.strerror or error})") from None
        log.warning("storage file cannot be used: moved aside, starting with nothing known",
                    extra={"path": path, "problem": str(exc), "moved_to": moved_to})
    try:
        return _open(path, busy_timeout, clock, owner)
    except _Unusable as exc:  # a file just created: the disk or the file system is at fault
        raise StorageError(f"cannot create the storage file {path}: {exc}") from None


def _take_ownership(path: str, wait: float, sleep: Callable[[float], None],
                    monotonic: Callable[[], float]) -> int:
    """Lock `<path>.lock` for this process until the store is closed (or the process dies:
    the kernel lets go of it, so kill -9 leaves no stale lock), waiting up to `wait` seconds
    for another exporter to let go. Two exporters writing one file would overwrite each
    other's tasks and counts, and SQLite's own locks only keep single transactions apart. A
    POSIX record lock is per process: opening the store again in the same process (as the
    tests do after a simulated crash) is allowed."""
    name = f"{path}.lock"
    try:
        owner = os.open(name, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as error:
        raise StorageError(f"cannot create the lock file {name} ({error.strerror or error}): "
                           "make its directory writable for this user") from None
    give_up_at = monotonic() + wait
    waiting = False
    while not _locked(owner, name):
        holder = os.pread(owner, 32, 0).decode("ascii", "replace").strip()
        by = f" (pid {holder})" if holder.isdigit() else ""
        if monotonic() >= give_up_at:
            os.close(owner)
            raise StorageError(f"storage file {path} is in use by another exporter{by}: give "
                               "each exporter a file of its own")
        if not waiting:
            waiting = True
            log.warning("storage file is in use by another exporter: waiting for it to let go",
                        extra={"path": path, "holder_pid": holder or None,
                               "wait_seconds": wait})
        sleep(_LOCK_RETRY)
    if waiting:
        log.info("storage file let go by the other exporter: using it", extra={"path": path})
    os.ftruncate(owner, 0)
    os.pwrite(owner, f"{os.getpid()}\n".encode(), 0)  # for the message above, seen by the next
    return owner


def _locked(owner: int, name: str) -> bool:
    """Try once to lock the open lock file `owner`: False while another process holds it."""
    try:
        fcntl.lockf(owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        if error.errno in (errno.EAGAIN, errno.EACCES):
            return False
        os.close(owner)  # no locks here (ENOLCK...): waiting would not help
        raise StorageError(f"cannot lock {name} ({error.strerror or error}): the file "
                           "system of --storage.path does not support file locks; put the "
                           "file on a local disk or volume") from None
    return True


def _open(path: str, busy_timeout: float, clock: Callable[[], float],
          owner: int) -> tuple[Store, Saved]:
    if not os.path.lexists(path):
        _move_orphans(path, clock())
    try:
        db = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None,
                             check_same_thread=False)  # opened here, written by the writer
    except sqlite3.Error as exc:
        raise _Unusable(_reason(exc)) from None
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise _Unusable(f"written by a newer zego-exporter (storage schema {version}; this "
                            f"version reads {SCHEMA_VERSION}): upgrade, or move it back after "
                            "upgrading", kind="newer")
        if version == 0 and db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            raise _Unusable("not a zego-exporter storage file (it holds other tables)")
        # WAL with synchronous=NORMAL: a commit appends to the -wal file and returns without
        # fsync. A process that dies (kill -9, OOM) loses nothing committed: the data is in the
        # kernel's page cache, and the next open replays the WAL. Only a crash of the machine
        # itself can lose the last commits, never the file: frames are checksummed, and an
        # incomplete one is ignored. fsync on every commit (FULL) would buy no more than that.
        if db.execute("PRAGMA journal_mode = WAL").fetchone()[0] != "wal":
            log.warning("the storage file's file system does not support SQLite's "
                        "write-ahead log: using a rollback journal, whose writes are slower",
                        extra={"path": path})
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute(f"PRAGMA journal_size_limit = {_WAL_KEPT_BYTES}")
        if version == 0:
            _create(db)
        problems = [row[0] for row in db.execute("PRAGMA quick_check").fetchall()]
        if problems != ["ok"]:
            raise _Unusable(f"damaged: {problems[0]}")
        saved = _load(db)
    except _Unusable:
        db.close()
        raise
    except sqlite3.Error as exc:
        db.close()
        if _in_use(exc):
            raise StorageError(f"storage file {path} is in use by another process "
                               f"({exc}): give each exporter a file of its own") from None
        raise _Unusable(_reason(exc)) from None
    return Store(path, db, owner), saved


def _identity(path: str) -> tuple[int, int]:
    stat = os.stat(path)
    return stat.st_dev, stat.st_ino


def _create(db: sqlite3.Connection) -> None:
    """The tables of an empty file."""
    db.execute("BEGIN IMMEDIATE")
    for statement in _SCHEMA:
        db.execute(statement)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    db.execute("COMMIT")


def _load(db: sqlite3.Connection) -> Saved:
    tasks, bad_tasks = [], []
    for row in db.execute(_LOAD_TASKS):
        task = _task_from_row(row)
        if task is None:
            bad_tasks.append(row[:1])
        else:
            tasks.append(task)
    failures, bad_pairs = {}, []
    for room_id, stream_id, count in db.execute("SELECT room_id, stream_id, count FROM failures"):
        if isinstance(room_id, str) and isinstance(stream_id, str) and _count(count):
            failures[(room_id, stream_id)] = count
        else:
            bad_pairs.append((room_id, stream_id))
    if bad_tasks or bad_pairs:
        # Values SQLite accepted but this program cannot have written: drop them, keep the rest.
        db.execute("BEGIN IMMEDIATE")
        db.executemany("DELETE FROM tasks WHERE task_id = ?", bad_tasks)
        db.executemany("DELETE FROM failures WHERE room_id = ? AND stream_id = ?", bad_pairs)
        db.execute("COMMIT")
        log.warning("storage file had rows that could not be read: skipped and deleted",
                    extra={"tasks": len(bad_tasks), "failure_counts": len(bad_pairs)})
    return Saved(tasks, failures, len(bad_tasks) + len(bad_pairs))


def _task_row(task: SavedTask) -> tuple[Any, ...]:
    view = task.view
    return (view.task_id, view.room_id, view.stream_id, view.status, view.state,
            view.create_time, view.fail_reason, view.last_success,
            None if view.lookup_ok is None else int(view.lookup_ok), ",".join(task.sources),
            int(task.failure_counted), task.terminal_since, task.callback_time)


def _task_from_row(row: tuple[Any, ...]) -> SavedTask | None:
    """The task of one row, or None when a value is not what _task_row writes."""
    (task_id, room_id, stream_id, status, state, create_time, fail_reason, last_success,
     lookup_ok, sources, failure_counted, terminal_since, callback_time) = row
    texts = (task_id, room_id, stream_id, state, fail_reason, sources)
    if not (all(isinstance(text, str) for text in texts) and task_id and state in STATES):
        return None
    names = tuple(sources.split(",")) if sources else ()
    if not names or not set(names) <= set(SOURCES):
        return None
    if not (_optional_int(status) and _optional_int(create_time)
            and all(_optional_time(value) for value in (last_success, terminal_since,
                                                          callback_time))
            and lookup_ok in (None, 0, 1) and failure_counted in (0, 1)):
        return None
    view = TaskView(task_id, room_id, stream_id, status, state, create_time, fail_reason,
                    None if last_success is None else float(last_success),
                    None if lookup_ok is None else bool(lookup_ok))
    return SavedTask(view, names, bool(failure_counted),
                     None if terminal_since is None else float(terminal_since),
                     None if callback_time is None else float(callback_time))


def _optional_int(value: object) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool))


def _optional_time(value: object) -> bool:
    return value is None or (isinstance(value, (int, float)) and math.isfinite(value))


def _count(value: object) -> bool:
    return isinstance(value, int) and value >= 0


def _reason(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


def _in_use(exc: sqlite3.Error) -> bool:
    name = getattr(exc, "sqlite_errorname", "")  # Python 3.11+; the message before that
    return name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in str(exc)


def _move_aside(path: str, kind: str, now: float) -> str:
    """Rename the file, with its -wal and -shm (which belong to it: left here, SQLite would
    apply them to the new file), to `<path>.<kind>-<UTC time>`; returns that name."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    target = f"{path}.{kind}-{stamp}"
    number = 1
    while any(os.path.lexists(target + suffix) for suffix in ("", "-wal", "-shm")):
        number += 1
        target = f"{path}.{kind}-{stamp}-{number}"
    for suffix in ("", "-wal", "-shm"):
        if os.path.lexists(path + suffix):
            os.replace(path + suffix, target + suffix)
    return target


def _move_orphans(path: str, now: float) -> None:
    """A -wal without its file cannot belong to the file about to be created."""
    if os.path.lexists(path + "-wal") or os.path.lexists(path + "-shm"):
        try:
            moved_to = _move_aside(path, "orphan", now)
        except OSError as error:
            raise StorageError(
                f"storage file {path} is missing but its write-ahead log is there and cannot "
                f"be moved aside ({error.strerror or error}): move {path}-wal and {path}-shm "
                "away") from None
        log.warning("storage file missing but its write-ahead log was there: moved aside",
                    extra={"path": path, "moved_to": moved_to})


class StoreWriter:
    """Writes what changes in the tracker to the store, batched, from a thread of its own.

    `take_changes` is Tracker.take_changes, and `written` (Tracker.changes_written) is told
    of each batch once it is committed. Tests call `flush` by hand instead of starting the
    thread. A batch that fails to write is kept (merged with later changes, the newer state
    winning) and tried again at the next turn; the problem is logged when it starts, then at
    most every REPORT_EVERY seconds. `observe` is told whether each write worked. A file
    deleted or replaced while the exporter runs is started anew at each turn's start, with
    everything the tracker knows (`note_all_changed`, Tracker.note_all_changed).
    """

    def __init__(self, store: Store, take_changes: Callable[[], Changes], *,
                 written: Callable[[Changes], None] = lambda _: None,
                 note_all_changed: Callable[[], None] = lambda: None,
                 observe: Callable[[bool], None] = lambda _: None,
                 interval: float = WRITE_INTERVAL,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self._take_changes = take_changes
        self._written = written
        self._note_all_changed = note_all_changed
        self._observe = observe
        self._interval = interval
        self._mono = monotonic
        self._pending = Changes()
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing_since: float | None = None
        self._reported_at = -math.inf

    def flush(self) -> int:
        """Write what changed since the last flush in one transaction; returns the rows
        written (0 when nothing changed or the write failed)."""
        with self._flush_lock:
            changes = _merged(self._pending, self._take_changes())
            try:
                if self.store.replaced():
                    self._start_over()
                    changes = _merged(changes, self._take_changes())
                if not changes:
                    return 0
                rows = self.store.write(changes)
            except Exception as exc:  # disk full, I/O error...: keep it for the next turn
                self._pending = changes
                self._failed(exc)
                return 0
            self._pending = Changes()
            self._written(changes)
            self._observe(True)
            if self._failing_since is not None:
                log.info("storage writes work again", extra={
                    "path": self.store.path,
                    "after_seconds": round(self._mono() - self._failing_since, 1)})
                self._failing_since = None
            return rows

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="zego-storage", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Write what is left and close the file."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.flush()
        self.store.close()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.flush()
            except Exception:  # the writer must outlive any surprise
                log.exception("storage writer failed; will try again")

    def _start_over(self) -> None:
        """The file was deleted or replaced: without this, every later write would go to a
        file no restart reads, and the next run would start with nothing known."""
        if self._failing_since is None:  # not again at every turn while reopening fails
            log.error("storage file was deleted or replaced while the exporter ran: starting "
                      "it anew with everything this run knows; stop the exporter before "
                      "removing or replacing its file", extra={"path": self.store.path})
        self.store.reopen()
        self._note_all_changed()

    def _failed(self, exc: Exception) -> None:
        self._observe(False)
        now = self._mono()
        if self._failing_since is None:
            self._failing_since = now
        elif now - self._reported_at < REPORT_EVERY:
            return
        self._reported_at = now
        log.error("cannot write the storage file; what changed is kept in memory and written "
                  "when it works again (failures_total shows only the failures written until "
                  "then): check free space and permissions of its directory",
                  extra={"path": self.store.path, "error": _reason(exc),
                         "pending": len(self._pending.tasks) + len(self._pending.failures)})


def _merged(older: Changes, newer: Changes) -> Changes:
    if not older:
        return newer
    if not newer:
        return older
    return Changes({**older.tasks, **newer.tasks}, {**older.failures, **newer.failures})

