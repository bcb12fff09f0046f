"""`zego-exporter serve --storage.path`, killed with SIGKILL while tasks change, restarted.

A real `serve` process (python -m zego_exporter) against the simulated ZEGO API on loopback:
configured and discovered tasks are seen, then change state (fail with a reason, end and be
forgotten by ZEGO) while the process is killed with SIGKILL mid-way, change further while it is
down, and the exporter is started again on the same file. Every task's state and reason and
every room's and stream's failure count must then be what ZEGO's world says, each failure
counted once, over /metrics. The measured figures are printed with the test summary.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from tests.support.credentials import APP_ID, SECRET_TEXT
from tests.support.processes import ExporterRun, clean_env, exporter_process, fetch
from tests.support.scrapes import Sample, samples
from tests.support.waiting import wait_until
from zego_exporter.signing import Secret
from zego_exporter.simulator import Simulator, World
from zego_exporter.states import STATUS_INIT_FAILED, STATUS_INITIALIZING, STATUS_STREAMING

FAST = ["--discovery.interval=1s", "--refresh.interval=2s", "--refresh.fast-interval=1s",
        "--refresh.idle-after=0", "--web.max-scrape-wait=200ms"]
TASKS_PER_SOURCE = 12


@dataclass(frozen=True)
class Task:
    task_id: str
    room_id: str
    stream_id: str
    configured: bool


def expected(world: World, tasks: list[Task]) -> dict[str, tuple[str, str]]:
    """(state, fail_reason) of each task under the state rules, from what ZEGO holds now:
    every task was seen running, so one ZEGO no longer knows has ended (stopped)."""
    states = {STATUS_INITIALIZING: "initializing", STATUS_STREAMING: "streaming",
              STATUS_INIT_FAILED: "init_failed"}
    result = {}
    for task in tasks:
        now = world.get(task.task_id)
        result[task.task_id] = ("stopped", "") if now is None else (
            states[now.status], now.fail_reason)
    return result


def observed(found: list[Sample], tasks: list[Task]) -> dict[str, tuple[str, str]]:
    states = {s.labels["task_id"]: s.labels["state"] for s in found
              if s.name == "zego_digital_human_task_state" and s.value == 1}
    reasons = {s.labels["task_id"]: s.labels["fail_reason"] for s in found
               if s.name == "zego_digital_human_task_info"}
    return {t.task_id: (states.get(t.task_id, "absent"), reasons.get(t.task_id, "absent"))
            for t in tasks}


def failure_counts(found: list[Sample]) -> dict[tuple[str, str], float]:
    return {(s.labels["room_id"], s.labels["stream_id"]): s.value for s in found
            if s.name == "zego_digital_human_task_failures_total"}


def saved_tasks(path: Path) -> int:
    """Tasks in the storage file, read as another process would (the exporter writes on)."""
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        return int(db.execute("SELECT count(*) FROM tasks").fetchone()[0])


def scrape(exporter: ExporterRun) -> list[Sample]:
    answer = fetch(exporter.url, "/metrics")
    assert answer.status == 200
    return samples(answer.text)


def test_sigkill_while_tasks_change_then_restart_keeps_every_state_reason_and_count(
        tmp_path: Path, figures: list[str]) -> None:
    world = World(tasks=0, arrival_rate=0.0)
    tasks = []
    for n in range(2 * TASKS_PER_SOURCE):
        configured = n < TASKS_PER_SOURCE
        room = f"room-{n % 3}"
        task_id = world.add_task(status=STATUS_INITIALIZING if n % 2 else STATUS_STREAMING,
                                 room_id=room, stream_id=f"stream-{n}",
                                 task_id=f"{'cfg' if configured else 'found'}-{n:02d}")
        tasks.append(Task(task_id, room, f"stream-{n}", configured))
    configured_ids = ",".join(t.task_id for t in tasks if t.configured)
    storage = tmp_path / "zego-exporter.db"
    rng = random.Random(16)

    with Simulator(APP_ID, Secret(SECRET_TEXT), world=world) as sim:
        env = clean_env(ZEGO_APP_ID=str(APP_ID), ZEGO_SERVER_SECRET=SECRET_TEXT,
                        ZEGO_API_URL=sim.url, ZEGO_TASK_IDS=configured_ids,
                        ZEGO_STORAGE_PATH=str(storage))

        with exporter_process(["serve", *FAST], env, tmp_path / "first") as first:
            first.wait_ready(30)
            wait_until(lambda: observed(scrape(first), tasks) == expected(world, tasks), timeout=20,
                       what="every task seen by the first run", proc=first.proc)
            wait_until(lambda: saved_tasks(storage) == len(tasks), timeout=10,
                       what="the first run to write what it saw", proc=first.proc)

            # Changes every 50 ms, in random order; the process is killed in the middle.
            changes = [(task, "fail" if n % 3 else "end")
                       for n, task in enumerate(rng.sample(tasks, 12))]
            applied: list[float] = []

            def change() -> None:
                for task, how in changes:
                    if how == "fail":
                        world.fail(task.task_id, f"reason of {task.task_id}: model load timeout")
                    else:
                        world.remove(task.task_id)  # ended, and ZEGO forgot it
                    applied.append(time.monotonic())
                    time.sleep(0.05)

            changer = threading.Thread(target=change)
            changer.start()
            wait_until(lambda: len(applied) >= len(changes) // 2, timeout=10,
                       what="half of the changes")
            first.proc.kill()  # SIGKILL: no last write, no close
            killed_at = time.monotonic()
            assert first.proc.wait(10) == -9
            changer.join(10)
            before_kill = sum(1 for at in applied if at <= killed_at)

        # While it is down: more tasks fail, more end.
        untouched = [t for t in tasks if t not in {task for task, _ in changes}]
        for task in untouched[:4]:
            world.fail(task.task_id, f"reason of {task.task_id}: while the exporter was down")
        for task in untouched[4:6]:
            world.remove(task.task_id)
        want = expected(world, tasks)
        assert {state for state, _ in want.values()} == {
            "initializing", "streaming", "init_failed", "stopped"}

        failed = {(t.room_id, t.stream_id) for t in tasks if want[t.task_id][0] == "init_failed"}
        # Each failure counted once, whether it was counted before the kill (and read back from
        # the file), between the last write and the kill, or while it was down.
        want_counts = {(t.room_id, t.stream_id): 1.0 if (t.room_id, t.stream_id) in failed
                       else 0.0 for t in tasks}
        started = time.monotonic()
        with exporter_process(["serve", *FAST], env, tmp_path / "second") as second:
            second.wait_ready(30)
            found: list[Sample] = []

            # A scrape shows a failure count only once the storage writer has written it (at
            # most half a second after the state), so that a kill can never lower a count:
            # wait for the counts as for the states.
            def caught_up() -> bool:
                nonlocal found
                found = scrape(second)
                return observed(found, tasks) == want and failure_counts(found) == want_counts

            try:
                wait_until(caught_up, timeout=20, what="the restarted exporter to catch up",
                           proc=second.proc)
            except AssertionError:
                assert observed(found, tasks) == want  # shows which tasks differ
                assert failure_counts(found) == want_counts
                raise
            caught_up_in = time.monotonic() - started
            tracked = {s.labels["source"]: s.value for s in found
                       if s.name == "zego_digital_human_tracked_tasks"}
            # Every task was listed while it ran, the configured ones too.
            assert tracked == {"static": TASKS_PER_SOURCE, "file": 0,
                               "discovered": 2 * TASKS_PER_SOURCE, "callback": 0}
            for task in tasks:  # room and stream remembered, ended tasks too
                labels = [s.labels for s in found if s.labels.get("task_id") == task.task_id
                          and "room_id" in s.labels]
                assert labels and all(
                    (x["room_id"], x["stream_id"]) == (task.room_id, task.stream_id)
                    for x in labels), task
            log = second.stderr()
            assert "moved aside" not in log, log
            assert f"tasks={2 * TASKS_PER_SOURCE}" in log, log
            assert "Traceback" not in first.stderr() + log

    figures.append(
        f"durability: {2 * TASKS_PER_SOURCE} tasks, SIGKILL after {before_kill} of "
        f"{len(changes)} changes ({len(changes) - before_kill} more and 6 others while down); "
        f"restart to every state, reason and count right: {caught_up_in:.1f} s; "
        f"{len(failed)} failures counted once each")
