"""The storage file (`--storage.path`): what the tracker knows survives a restart.

Unit tests of zego_exporter/storage.py with a real SQLite file in a temp directory and a
hand-held clock: the writer is flushed by hand, never by waiting. A "crash" here is a store
that is abandoned without being closed (the file then holds what was committed, as after a
kill -9); tests/test_durability.py kills a real `serve` process.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.clock import FakeClock
from tests.support.tracking import T0, drain, status
from zego_exporter import storage
from zego_exporter.exporter import Exporter, ExporterConfig
from zego_exporter.signing import Secret
from zego_exporter.storage import (
    LOCK_WAIT,
    SCHEMA_VERSION,
    Saved,
    StorageError,
    StoreWriter,
    open_store,
    path_problem,
)
from zego_exporter.tracker import Changes, RefreshPolicy, Snapshot, TaskView, Tracker

STORAGE_LOGGER = "zego_exporter.storage"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "zego-exporter.db"


class Run:
    """One run of the exporter's tracker over a storage file (what Exporter wires up)."""

    def __init__(self, path: Path, clock: FakeClock, policy: RefreshPolicy | None = None) -> None:
        self.store, self.saved = open_store(str(path), clock=clock)
        self.tracker = Tracker(policy or RefreshPolicy(), clock=clock, keep_changes=True)
        self.unfinished = self.tracker.restore(self.saved.tasks, self.saved.failures)
        self.writes: list[bool] = []  # what the writer told its observer (the storage gauge)
        self.writer = StoreWriter(self.store, self.tracker.take_changes,
                                  written=self.tracker.changes_written,
                                  note_all_changed=self.tracker.note_all_changed,
                                  observe=self.writes.append)

    def flush(self) -> int:
        return self.writer.flush()

    def crash(self) -> None:
        """Gone without a last write or a close, as after kill -9 (what was flushed stays)."""


def saved_ids(path: Path) -> list[str]:
    """The TaskIds a new run reads back from the file."""
    return [task.view.task_id for task in Run(path, FakeClock(T0)).saved.tasks]


def views(snapshot: Snapshot) -> dict[str, TaskView]:
    return {view.task_id: view for view in snapshot.tasks}


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == STORAGE_LOGGER and r.levelno >= logging.WARNING]


# -- what is kept, and what a restart does with it ----------------------------------------------

def a_run_that_saw_everything(path: Path, clock: FakeClock) -> Run:
    """Tasks in every state, from every source, with a failure counted by each source."""
    run = Run(path, clock)
    tracker = run.tracker
    tracker.set_configured("static", ["init", "stream", "failed", "stopped", "gone", "typo"])
    tracker.set_configured("file", ["stream", "filed"])
    drain(tracker)
    tracker.record_lookup(status("init", 1, "r1", "s1"))
    tracker.record_lookup(status("stream", 3, "r1", "s2"))
    tracker.record_lookup(status("failed", 2, "r1", "s3", "model load timeout"))
    tracker.record_lookup(status("stopped", 5, "r2", "s4"))
    tracker.record_lookup(status("filed", 3, "r2", "s5"))
    tracker.record_lookup(status("gone", 3, "r2", "s6"))
    tracker.record_not_found("gone")  # seen streaming: stopped
    tracker.record_not_found("typo")  # never seen: not_found
    tracker.record_discovery([status("found", 1, "r3", "s7"), status("left", 1, "r3", "s8")])
    tracker.record_discovery([status("found", 1, "r3", "s7")])
    drain(tracker)
    tracker.record_lookup(status("left", 2, "r3", "s8", "quota exceeded"))
    # Learned from callbacks only: a failure not yet confirmed by a lookup, and a stream.
    tracker.record_callback(status("pushed", 2, "r4", "s9", "bad avatar"), event_time=T0 * 1000)
    tracker.record_callback(status("pushed-ok", 3, "r4", "s10"), event_time=T0 * 1000)
    return run


def test_every_state_reason_source_and_count_survives_a_crash(db: Path) -> None:
    clock = FakeClock(T0)
    first = a_run_that_saw_everything(db, clock)
    assert first.flush() > 0
    before = first.tracker.snapshot()
    first.crash()

    clock.now += 60
    second = Run(db, clock)
    after = second.tracker.snapshot()
    assert views(after) == views(before)
    assert after.failures == before.failures == {
        ("r1", "s1"): 0, ("r1", "s2"): 0, ("r1", "s3"): 1, ("r2", "s4"): 0, ("r2", "s5"): 0,
        ("r2", "s6"): 0, ("r3", "s7"): 0, ("r3", "s8"): 1, ("r4", "s9"): 1, ("r4", "s10"): 0}
    assert after.sources == before.sources
    assert {v.task_id: v.state for v in after.tasks} == {
        "init": "initializing", "stream": "streaming", "failed": "init_failed",
        "stopped": "stopped", "gone": "stopped", "typo": "not_found", "filed": "streaming",
        "found": "initializing", "left": "init_failed", "pushed": "init_failed",
        "pushed-ok": "streaming"}
    assert views(after)["left"].fail_reason == "quota exceeded"


def test_unfinished_tasks_are_looked_up_before_anything_else_and_endings_never(db: Path) -> None:
    clock = FakeClock(T0)
    a_run_that_saw_everything(db, clock).flush()
    clock.now += 60
    second = Run(db, clock)
    # Running, or ended by a callback no lookup has confirmed yet ("pushed").
    unfinished = {"init", "stream", "filed", "found", "pushed", "pushed-ok"}
    assert second.unfinished == len(unfinished)
    second.tracker.set_configured("static", ["init", "stream", "failed", "stopped", "gone",
                                             "typo", "new"])
    second.tracker.set_configured("file", ["stream", "filed"])
    claimed = drain(second.tracker)
    assert set(claimed[:len(unfinished)]) == unfinished
    assert claimed[len(unfinished):] == ["new"]  # a never-fetched task comes after them
    clock.now += 1e6
    assert drain(second.tracker) == []  # the rest is in flight; endings never asked again


def test_a_failure_counted_before_a_restart_is_not_counted_again(db: Path) -> None:
    clock = FakeClock(T0)
    first = Run(db, clock)
    first.tracker.set_configured("static", ["failed", "init", "init2"])
    drain(first.tracker)
    first.tracker.record_lookup(status("failed", 2, "r", "s1", "boom"))
    first.tracker.record_lookup(status("init", 1, "r", "s2"))
    first.tracker.record_lookup(status("init2", 1, "r", "s3"))
    first.flush()

    # While it was down: "init" failed, "init2" ended and ZEGO forgot it.
    second = Run(db, clock)
    second.tracker.set_configured("static", ["failed", "init", "init2"])
    drain(second.tracker)
    second.tracker.record_lookup(status("init", 2, "r", "s2", "timeout"))
    second.tracker.record_not_found("init2")
    second.tracker.record_callback(status("failed", 2, "r", "s1", "boom"))  # ZEGO's retry
    second.tracker.record_discovery([status("failed", 2, "r", "s1", "boom")])
    second.flush()
    assert second.tracker.snapshot().failures == {("r", "s1"): 1, ("r", "s2"): 1,
                                                   ("r", "s3"): 0}
    init2 = second.tracker.view("init2")
    assert init2 is not None and init2.state == "stopped"  # seen before: never not_found

    third = Run(db, clock)
    assert third.tracker.snapshot().failures == second.tracker.snapshot().failures


def test_scrapes_show_a_failure_only_once_it_is_written_so_a_crash_cannot_lower_the_count(
        db: Path) -> None:
    """A count a kill -9 could take back would go 1 -> 0 -> 1 across the restart, and
    increase() would read the drop as a counter reset and count that failure twice."""
    clock = FakeClock(T0)
    shown: list[int] = []

    def scrape(run: Run) -> None:
        shown.append(run.tracker.snapshot().failures.get(("r", "s"), 0))

    first = Run(db, clock)
    first.tracker.set_configured("static", ["a", "b"])
    drain(first.tracker)
    first.tracker.record_lookup(status("a", 2, "r", "s", "boom"))
    first.tracker.record_lookup(status("b", 1, "r", "s"))
    scrape(first)
    assert shown == [0]  # counted, not written yet
    first.flush()
    scrape(first)
    assert shown == [0, 1]
    first.tracker.record_lookup(status("b", 2, "r", "s", "boom"))  # counted...
    scrape(first)
    first.crash()  # ...and lost before it was written

    second = Run(db, clock)
    second.tracker.set_configured("static", ["a", "b"])
    drain(second.tracker)
    scrape(second)
    second.tracker.record_lookup(status("a", 2, "r", "s", "boom"))  # counted before the crash
    second.tracker.record_lookup(status("b", 2, "r", "s", "boom"))  # learned anew: counted
    second.flush()
    scrape(second)
    assert shown == [0, 1, 1, 1, 2]  # never down, and each failure once


def test_without_storage_a_failure_shows_at_once() -> None:
    tracker = Tracker(RefreshPolicy(), clock=FakeClock(T0))
    tracker.set_configured("static", ["a"])
    drain(tracker)
    tracker.record_lookup(status("a", 2, "r", "s", "boom"))
    assert tracker.snapshot().failures == {("r", "s"): 1}


def test_changes_are_coalesced_latest_wins_in_one_transaction(db: Path) -> None:
    clock = FakeClock(T0)
    run = Run(db, clock)
    commits: list[int] = []
    write = run.store.write

    def counted(changes: Changes) -> int:
        commits.append(len(changes.tasks))
        return write(changes)

    run.store.write = counted  # type: ignore[method-assign]
    ids = [f"t{n}" for n in range(10_000)]
    run.tracker.set_configured("static", ids)
    drain(run.tracker)
    for code in (1, 3, 2):  # every task changes three times before the writer's turn
        for task_id in ids:
            run.tracker.record_lookup(status(task_id, code, "r", task_id, "late failure"))
    assert run.flush() == 2 * 10_000  # the tasks and the failure count of each one's stream
    assert commits == [10_000]
    assert run.flush() == 0
    assert commits == [10_000]
    saved = Run(db, clock).saved
    assert {task.view.state for task in saved.tasks} == {"init_failed"}
    assert set(saved.failures.values()) == {1} and len(saved.failures) == 10_000


def test_fetch_times_alone_are_not_written(db: Path) -> None:
    clock = FakeClock(T0)
    run = Run(db, clock)
    run.tracker.record_discovery([status("a", 3)])
    assert run.flush() == 1
    for _ in range(5):
        clock.now += 30
        run.tracker.record_discovery([status("a", 3)])
    assert run.flush() == 0  # the same answer, newer: nothing to write for it
    run.tracker.record_discovery([status("a", 1)])
    assert run.flush() == 1
    (task,) = Run(db, clock).saved.tasks
    assert (task.view.state, task.view.last_success) == ("initializing", clock.now)


def test_forgotten_tasks_leave_the_file_with_their_counts(db: Path) -> None:
    clock = FakeClock(T0)
    run = Run(db, clock, RefreshPolicy(retention=3600))
    run.tracker.set_configured("static", ["mine", "dropped"])
    run.tracker.record_discovery([status("found", 1, "r", "s1")])
    run.tracker.record_discovery([])
    drain(run.tracker)
    run.tracker.record_lookup(status("found", 2, "r", "s1", "boom"))
    run.flush()
    assert len(Run(db, clock).saved.tasks) == 3

    run.tracker.set_configured("static", ["mine"])
    clock.now += 3601
    assert run.tracker.expire() == 1
    run.flush()
    saved = Run(db, clock).saved
    assert [task.view.task_id for task in saved.tasks] == ["mine"]
    assert saved.failures == {}


def test_tasks_that_ended_past_retention_while_it_was_down_are_dropped_at_start(
        db: Path) -> None:
    clock = FakeClock(T0)
    first = Run(db, clock, RefreshPolicy(retention=3600))
    first.tracker.record_discovery([status("found", 1, "r", "s1"), status("on", 3, "r", "s2")])
    first.tracker.record_discovery([status("on", 3, "r", "s2")])
    drain(first.tracker)
    first.tracker.record_lookup(status("found", 2, "r", "s1", "boom"))
    first.flush()

    clock.now += 2 * 3600
    second = Run(db, clock, RefreshPolicy(retention=3600))
    assert second.tracker.expire() == 1  # what Exporter.start does before anything else
    second.flush()
    assert saved_ids(db) == ["on"]


def test_sources_gone_since_the_last_run_let_go_of_their_tasks(db: Path) -> None:
    clock = FakeClock(T0)
    first = Run(db, clock)
    first.tracker.set_configured("static", ["a", "b"])
    first.tracker.set_configured("file", ["b", "c"])
    first.flush()
    second = Run(db, clock)
    second.tracker.set_configured("static", ["a"])
    second.tracker.set_configured("file", [])  # started without the task file
    second.flush()
    assert saved_ids(db) == ["a"]


@pytest.mark.parametrize(("before", "after"), [("static", "file"), ("file", "static")])
def test_a_task_moved_between_task_id_and_the_task_file_keeps_what_was_known(
        db: Path, tmp_path: Path, before: str, after: str) -> None:
    """Exporter.start: both configured sources name their tasks before either lets go of
    one, or the moved task would be dropped and come back knowing nothing (its failure
    counted again, and "task not found" making it not_found)."""
    first = Run(db, FakeClock(T0))
    first.tracker.set_configured(before, ["moved"])
    drain(first.tracker)
    first.tracker.record_lookup(status("moved", 2, "r", "s", "model load timeout"))
    first.writer.stop()
    task_file = tmp_path / "tasks.txt"
    task_file.write_text("moved\n" if after == "file" else "")
    exporter = Exporter(ExporterConfig(
        app_id=1234567890, server_secret=Secret("0" * 32), api_url="http://127.0.0.1:9",
        task_ids=("moved",) if after == "static" else (), task_file=str(task_file),
        discovery=False, listen_address="127.0.0.1:0", storage_path=str(db)))
    exporter.start()
    try:
        view = exporter.tracker.view("moved")
        snap = exporter.tracker.snapshot()
    finally:
        exporter.stop()
    assert view is not None and (view.state, view.fail_reason) == (
        "init_failed", "model load timeout")
    assert snap.failures == {("r", "s"): 1}
    assert snap.sources[after] == 1 and snap.sources[before] == 0


def test_restored_configured_tasks_must_be_asked_again_before_ready(db: Path) -> None:
    clock = FakeClock(T0)
    first = Run(db, clock)
    first.tracker.set_configured("static", ["running", "ended"])
    drain(first.tracker)
    first.tracker.record_lookup(status("running", 3))
    first.tracker.record_lookup(status("ended", 5))
    assert first.tracker.first_round_done()
    first.flush()

    second = Run(db, clock)
    second.tracker.set_configured("static", ["running", "ended"])
    assert not second.tracker.first_round_done()  # its data is from the last run
    assert drain(second.tracker) == ["running"]
    second.tracker.record_lookup_failure("running")
    assert second.tracker.first_round_done()  # asked: what a cold start would wait for


def test_a_failed_write_is_kept_and_written_with_later_changes(
        db: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(T0)
    run = Run(db, clock)
    write = run.store.write
    failing = [True]

    def flaky(changes: Changes) -> int:
        if failing[0]:
            raise sqlite3.OperationalError("database or disk is full")
        return write(changes)

    run.store.write = flaky  # type: ignore[method-assign]
    assert run.flush() == 0 and run.writes == []  # nothing to write: nothing to tell
    run.tracker.set_configured("static", ["a", "b"])
    drain(run.tracker)
    run.tracker.record_lookup(status("a", 1, "r", "s"))
    with caplog.at_level(logging.INFO, STORAGE_LOGGER):
        assert run.flush() == 0
        run.tracker.record_lookup(status("a", 2, "r", "s", "boom"))
        assert run.flush() == 0
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1 and "disk is full" in getattr(errors[0], "error", "")
        failing[0] = False
        assert run.flush() == 3  # both tasks and the count, as they are now
        assert any("work again" in r.getMessage() for r in caplog.records)
    # What zego_digital_human_storage_last_write_successful shows, a sign besides the log.
    assert run.flush() == 0 and run.writes == [False, False, True]
    saved = Run(db, clock).saved
    assert {t.view.task_id: t.view.state for t in saved.tasks} == {
        "a": "init_failed", "b": "unknown"}
    assert saved.failures == {("r", "s"): 1}


def test_a_real_full_disk_is_survived_and_everything_written_once_there_is_room(
        tmp_path: Path) -> None:
    """Not an exception raised by hand: SQLite's own I/O error in WAL mode, from a file size
    limit (RLIMIT_FSIZE) in a process of its own, then lifted."""
    program = """if True:
        import os, resource, sys
        from tests.support.clock import FakeClock
        from tests.support.tracking import T0, drain, status
        from zego_exporter.storage import StoreWriter, open_store
        from zego_exporter.tracker import Tracker
        path, clock = sys.argv[1], FakeClock(T0)
        store, _ = open_store(path, clock=clock)
        tracker = Tracker(clock=clock, keep_changes=True)
        writes = []
        writer = StoreWriter(store, tracker.take_changes, written=tracker.changes_written,
                             observe=writes.append)
        task_ids = [f"task-{n:04d}" for n in range(2000)]
        tracker.set_configured("static", task_ids)
        drain(tracker)
        writer.flush()
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        # No file may grow past the -wal's size now, plus a page: the next batch cannot fit.
        resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(path + "-wal") + 4096, hard))
        for n, task_id in enumerate(task_ids):
            tracker.record_lookup(status(task_id, 2, f"room-{n % 7}", "s", "x" * 200))
        assert writer.flush() == 0 and writer.flush() == 0, "the file was not full"
        assert sum(tracker.snapshot().failures.values()) == 0  # not written: not shown
        resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
        assert writer.flush() == 2007
        assert sum(tracker.snapshot().failures.values()) == 2000
        assert writes == [True, False, False, True], writes
        print("ok", flush=True)
        """
    db = tmp_path / "zego-exporter.db"
    run = subprocess.run([sys.executable, "-c", program, str(db)], capture_output=True,
                         text=True, timeout=120, check=False, cwd=Path(__file__).parent.parent)
    assert run.returncode == 0 and run.stdout == "ok\n", run.stderr[-2000:]
    assert "cannot write the storage file" in run.stderr
    saved = Run(db, FakeClock(T0)).saved
    assert [task.view.state for task in saved.tasks] == ["init_failed"] * 2000
    assert sum(saved.failures.values()) == 2000


def replace_with_another_file(path: Path) -> None:
    other = path.with_name("other.db")
    sqlite3.connect(other).close()
    os.replace(other, path)


def delete_with_its_log(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        (path.parent / (path.name + suffix)).unlink(missing_ok=True)


@pytest.mark.parametrize("spoil", [delete_with_its_log, replace_with_another_file,
                                   lambda path: path.unlink()])
def test_a_file_deleted_or_replaced_while_running_is_started_anew_with_everything_known(
        db: Path, caplog: pytest.LogCaptureFixture, spoil: Callable[[Path], None]) -> None:
    """SQLite would go on writing into the deleted file, and the next run would know nothing."""
    clock = FakeClock(T0)
    run = a_run_that_saw_everything(db, clock)
    run.flush()
    before = run.tracker.snapshot()
    spoil(db)
    with caplog.at_level(logging.INFO, STORAGE_LOGGER):
        assert run.flush() > 0  # nothing changed since, and yet everything is written
        run.tracker.record_lookup(status("init", 3, "r1", "s1"))
        run.flush()
        run.flush()
    (error,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "deleted or replaced while the exporter ran" in error.getMessage()
    assert "stop the exporter before removing or replacing its file" in error.getMessage()
    assert run.writes == [True, True, True]
    run.crash()
    after = Run(db, clock)
    assert {task.view.task_id: task.view.state for task in after.saved.tasks} == {
        **{view.task_id: view.state for view in before.tasks}, "init": "streaming"}
    assert after.saved.failures == {pair: count for pair, count in before.failures.items()
                                    if count}


def test_stopping_the_writer_writes_what_is_left_and_closes_the_file(db: Path) -> None:
    clock = FakeClock(T0)
    run = Run(db, clock)
    run.tracker.set_configured("static", ["a"])
    run.writer.stop()
    assert not (db.parent / (db.name + "-wal")).exists()  # checkpointed into the file
    assert saved_ids(db) == ["a"]


# -- files that cannot be used --------------------------------------------------------------------

def saved_file(path: Path, tasks: int) -> None:
    clock = FakeClock(T0)
    run = Run(path, clock)
    run.tracker.set_configured("static", [f"task-{n:05d}-{'x' * 40}" for n in range(tasks)])
    run.writer.stop()


def garbage(path: Path) -> None:
    path.write_bytes(b"this is not a database, just text that someone wrote here\n" * 100)


def truncated(path: Path) -> None:
    saved_file(path, 3000)
    with path.open("r+b") as handle:
        handle.truncate(path.stat().st_size // 2)


def newer(path: Path) -> None:
    saved_file(path, 10)
    with sqlite3.connect(path) as other:
        other.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")


def not_ours(path: Path) -> None:
    with sqlite3.connect(path) as other:
        other.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")


def scrambled_pages(path: Path) -> None:
    saved_file(path, 3000)
    data = bytearray(path.read_bytes())
    for offset in range(8192, len(data), 4096):  # every page after the first two
        data[offset:offset + 64] = os.urandom(64)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(("spoil", "kind", "says"), [
    (garbage, "corrupt", "not a database"),
    (truncated, "corrupt", "malformed"),
    (scrambled_pages, "corrupt", ""),
    (newer, "newer", "newer zego-exporter"),
    (not_ours, "corrupt", "not a zego-exporter storage file"),
])
def test_a_file_that_cannot_be_used_is_moved_aside_and_a_new_one_started(
        db: Path, caplog: pytest.LogCaptureFixture, spoil: object, kind: str, says: str) -> None:
    assert callable(spoil)
    spoil(db)
    original = db.read_bytes()
    clock = FakeClock(T0)
    with caplog.at_level(logging.INFO, STORAGE_LOGGER):
        run = Run(db, clock)
    (warning,) = warnings_of(caplog)
    aside = Path(warning.__dict__["moved_to"])
    assert aside.name.startswith(f"{db.name}.{kind}-2025"), aside  # T0 is in June 2025
    assert says in warning.__dict__["problem"]
    assert aside.read_bytes() == original  # kept for a look, or for a newer version
    assert run.saved == Saved()
    # The new file works.
    run.tracker.set_configured("static", ["a"])
    run.flush()
    assert saved_ids(db) == ["a"]


def test_an_empty_file_is_a_new_store_without_a_warning(
        db: Path, caplog: pytest.LogCaptureFixture) -> None:
    db.write_bytes(b"")
    run = Run(db, FakeClock(T0))
    assert run.saved == Saved() and warnings_of(caplog) == []


def test_a_write_ahead_log_without_its_file_is_moved_aside(
        db: Path, caplog: pytest.LogCaptureFixture) -> None:
    saved_file(db, 10)
    stale = os.urandom(8192)
    Path(f"{db}-wal").write_bytes(stale)
    db.unlink()
    run = Run(db, FakeClock(T0))
    assert run.saved == Saved()
    (warning,) = warnings_of(caplog)
    assert Path(warning.__dict__["moved_to"] + "-wal").read_bytes() == stale


def test_a_write_ahead_log_that_cannot_be_moved_aside_is_a_storage_error(
        db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not an OSError out of Exporter(), which the CLI would report as a listen failure."""
    Path(f"{db}-wal").write_bytes(os.urandom(8192))

    def refuse(_source: str, _target: str) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(StorageError, match=r"cannot be moved aside \(Permission denied\)"):
        open_store(str(db), clock=FakeClock(T0))


def test_rows_this_program_cannot_have_written_are_skipped_and_deleted(
        db: Path, caplog: pytest.LogCaptureFixture) -> None:
    saved_file(db, 3)
    with sqlite3.connect(db) as other:
        other.execute("UPDATE tasks SET state = 'exploded' WHERE task_id LIKE 'task-00000%'")
        other.execute("UPDATE tasks SET status = 'three' WHERE task_id LIKE 'task-00001%'")
        other.execute("INSERT INTO failures VALUES ('r', 's', -4)")
    run = Run(db, FakeClock(T0))
    assert len(run.saved.tasks) == 1 and run.saved.skipped == 3
    (warning,) = warnings_of(caplog)
    assert "could not be read" in warning.getMessage()
    run.crash()
    assert Run(db, FakeClock(T0)).saved.skipped == 0


def test_a_file_locked_by_another_process_is_left_alone(db: Path) -> None:
    saved_file(db, 3)
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("PRAGMA locking_mode = EXCLUSIVE")  # held until it closes, readers too
    other.execute("BEGIN EXCLUSIVE")
    other.execute("DELETE FROM failures")
    other.execute("COMMIT")
    try:
        with pytest.raises(StorageError, match="in use by another process"):
            open_store(str(db), clock=FakeClock(T0), busy_timeout=0)
    finally:
        other.close()
    assert len(Run(db, FakeClock(T0)).saved.tasks) == 3  # not moved aside


def hold(db: Path) -> subprocess.Popen[str]:
    """Another process holding the store open, as a second exporter would; kill it to let go
    (as kill -9 does: the kernel lets go of the lock)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys\n"
         "from zego_exporter.storage import open_store\n"
         "open_store(sys.argv[1])\n"
         "print('open', flush=True)\n"
         "sys.stdin.read()\n", str(db)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline() == "open\n"
    return holder


def test_a_second_exporter_on_the_same_file_waits_then_is_refused_until_the_first_is_gone(
        db: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two exporters writing one file would overwrite each other's tasks and failure counts."""
    saved_file(db, 3)
    holder = hold(db)
    try:
        waited = FakeClock(0.0)
        with pytest.raises(StorageError, match=rf"in use by another exporter \(pid {holder.pid}\)"
                           r": give each exporter a file of its own"):
            open_store(str(db), clock=FakeClock(T0), lock_wait=LOCK_WAIT, sleep=waited.sleep,
                       monotonic=waited)
        assert waited.now == pytest.approx(LOCK_WAIT)  # it waited the whole time, then gave up
        (waiting,) = warnings_of(caplog)
        assert waiting.getMessage() == ("storage file is in use by another exporter: waiting for "
                                        "it to let go")
        assert waiting.__dict__["holder_pid"] == str(holder.pid)
        caplog.clear()
        monkeypatch.setattr(storage, "LOCK_WAIT", 0.0)  # the exporter's own wait, not here
        second = Exporter(ExporterConfig(  # serves all the same, what it learns is not kept
            app_id=1234567890, server_secret=Secret("0" * 32), api_url="http://127.0.0.1:9",
            task_ids=("t",), discovery=False, listen_address="127.0.0.1:0",
            storage_path=str(db), max_scrape_wait=0.0))
        second.start()
        try:
            assert second.tracker.view("t") is not None
            assert storage_gauge(second) == 0.0  # a sign besides the log
        finally:
            second.stop()
        (error,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert "in use by another exporter" in error.getMessage()
        assert "running with memory only" in error.getMessage()
    finally:
        holder.kill()  # as kill -9: the kernel lets go of the lock
        holder.wait(timeout=10)
    assert len(Run(db, FakeClock(T0)).saved.tasks) == 3  # then it is ours, nothing moved aside


def test_an_exporter_that_lets_go_while_the_next_one_waits_hands_the_file_over(
        db: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A Kubernetes pod deleted by hand: its replacement starts while it is still stopping."""
    saved_file(db, 3)
    holder = hold(db)

    waited = FakeClock(0.0)

    def sleep(seconds: float) -> None:
        waited.sleep(seconds)
        if waited.now == 2.0:  # the old pod stops two seconds into the wait
            holder.kill()
            holder.wait(timeout=10)

    try:
        with caplog.at_level(logging.INFO, logger=STORAGE_LOGGER):
            store, saved = open_store(str(db), clock=FakeClock(T0), sleep=sleep,
                                      monotonic=waited)
    finally:
        holder.kill()
        holder.wait(timeout=10)
    store.close()
    assert len(saved.tasks) == 3 and waited.now == 2.0  # taken at the first try after
    assert [r.getMessage() for r in caplog.records if r.name == STORAGE_LOGGER] == [
        "storage file is in use by another exporter: waiting for it to let go",
        "storage file let go by the other exporter: using it"]


def storage_gauge(exporter: Exporter) -> float | None:
    """zego_digital_human_storage_last_write_successful as a scrape shows it."""
    body = b"".join(exporter.render_metrics("", None)[0]).decode()
    for line in body.splitlines():
        if line.startswith("zego_digital_human_storage_last_write_successful "):
            return float(line.split()[1])
    return None


def test_the_storage_gauge_is_there_only_with_a_storage_path(db: Path) -> None:
    def exporter(storage_path: str | None) -> Exporter:
        return Exporter(ExporterConfig(
            app_id=1234567890, server_secret=Secret("0" * 32), api_url="http://127.0.0.1:9",
            discovery=False, listen_address="127.0.0.1:0", storage_path=storage_path,
            max_scrape_wait=0.0))

    with_storage, without = exporter(str(db)), exporter(None)
    try:
        assert storage_gauge(with_storage) == 1.0
        assert storage_gauge(without) is None
    finally:
        for each in (with_storage, without):
            if each.writer is not None:
                each.writer.stop()
            each.client.close()


def test_a_file_system_without_locks_is_not_taken_for_another_exporter(
        db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_locks(fd: int, cmd: int, *args: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "lockf", no_locks)
    with pytest.raises(StorageError) as refused:
        open_store(str(db), clock=FakeClock(T0))
    assert str(refused.value) == (
        f"cannot lock {db}.lock (No locks available): the file system of --storage.path does "
        "not support file locks; put the file on a local disk or volume")


def test_closing_the_store_lets_go_of_the_file(db: Path) -> None:
    store, _ = open_store(str(db), clock=FakeClock(T0))
    store.close()
    other = subprocess.run(
        [sys.executable, "-c", "import sys\n"
         "from zego_exporter.storage import open_store\n"
         "open_store(sys.argv[1])[0].close()\n", str(db)],
        check=False, capture_output=True, text=True, timeout=30)
    assert other.returncode == 0, other.stderr


# -- paths that can never work: configuration errors ----------------------------------------------

def test_path_problems_name_the_cause_and_the_fix(tmp_path: Path) -> None:
    assert path_problem(str(tmp_path / "zego-exporter.db")) is None
    assert path_problem("relative.db") is None or os.access(".", os.W_OK) is False
    directory = path_problem(str(tmp_path))
    assert directory is not None and "is a directory" in directory
    assert str(tmp_path / "zego-exporter.db") in directory
    missing = path_problem(str(tmp_path / "no" / "such" / "x.db"))
    assert missing is not None and "does not exist" in missing and "create it" in missing
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    special = path_problem(str(fifo))
    assert special is not None and "not a regular file" in special
    assert list(tmp_path.iterdir()) == [fifo]  # the probe left nothing behind


def test_a_directory_the_user_cannot_write_to_is_a_problem(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    # Permission bits do not stop root; sysfs refuses new files to everyone.
    directory = locked if os.geteuid() != 0 else Path("/sys")
    problem = path_problem(str(directory / "zego-exporter.db"))
    assert problem is not None
    assert f"cannot create files in {directory} (Permission denied)" in problem
    assert "make it writable" in problem


@pytest.mark.parametrize("suffix", ["", "-wal", "-shm", ".lock"])
def test_a_file_the_user_cannot_write_is_a_problem(
        db: Path, monkeypatch: pytest.MonkeyPatch, suffix: str) -> None:
    """SQLite would open it read-only without a word, and every write would fail."""
    saved_file(db, 3)
    spoilt = db.parent / (db.name + suffix)
    spoilt.touch()
    spoilt.chmod(0o444)
    if os.geteuid() == 0:  # permission bits do not stop root: refuse as the kernel would
        real_open = os.open

        def refusing(name: str, flags: int, *args: int) -> int:
            if name == str(spoilt) and flags & os.O_RDWR:
                raise PermissionError(13, "Permission denied", name)
            return real_open(name, flags, *args)

        monkeypatch.setattr(os, "open", refusing)
    problem = path_problem(str(db))
    assert problem == (f"--storage.path {db}: cannot write {spoilt} (Permission denied): give "
                       f"it to this user (uid {os.getuid()}), e.g. chown, or choose another path")

