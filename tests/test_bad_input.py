"""Bad input to a real `zego-exporter serve`: huge and broken task files, hostile environments.

What test_cli.py and test_sources.py already cover (usage errors of each flag, task file
parsing and the watcher on its own) is not repeated here. These run the real entry point as a
process and check what a user sees: a large task file loads fast and every task shows; a task
file that turns binary, unreadable or into a FIFO while serving is logged once and the last good
list, with its data, is kept; invalid lines are skipped with a warning while every valid task
is tracked; environment values that cannot work end in one line and exit code 2, never a
traceback, a hang or a memory blow-up.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.commands import CLOSED_API, FAKE_SECRET, assert_one_line_error
from tests.support.credentials import APP_ID, SECRET_TEXT
from tests.support.processes import clean_env, exporter_process, fetch, serve_env
from tests.support.scrapes import samples
from tests.support.waiting import wait_until
from zego_exporter.signing import Secret
from zego_exporter.simulator import Simulator, World

INFO_LINE = re.compile(r'^zego_digital_human_task_info\{[^}]*task_id="([^"]+)"', re.MULTILINE)


def value(text: str, name: str, **labels: str) -> float:
    [found] = [s.value for s in samples(text)
               if s.name == name and labels.items() <= s.labels.items()]
    return found


# -- a task file of 100,000 lines, with invalid lines mixed in -------------------------------

INVALID_LINES = ["two words", "tâche-{n}", "x" * 129, "ctrl\x01char-{n}", "tab\tinside"]


@pytest.mark.slow
def test_a_task_file_of_100000_tasks_with_invalid_lines_mixed_in(tmp_path: Path) -> None:
    valid = [f"{n:032x}" for n in range(100_000)]
    lines = []
    for n, task_id in enumerate(valid):
        lines.append(f"{task_id}  # room {n}\n" if n % 7 == 0 else f"{task_id}\n")
        if n % 1000 == 999:  # 100 invalid lines among them
            lines.append(INVALID_LINES[(n // 1000) % len(INVALID_LINES)].format(n=n) + "\n")
    path = tmp_path / "tasks.txt"
    path.write_text("".join(lines))

    with Simulator(APP_ID, Secret(SECRET_TEXT), world=World.static(0)) as sim:
        env = serve_env(sim, ZEGO_TASK_FILE=str(path), ZEGO_DISCOVERY="false")
        started = time.monotonic()
        with exporter_process(["serve"], env, tmp_path / "run") as exp:
            def healthy() -> bool:
                try:
                    return fetch(exp.url, "/-/healthy", timeout=2).status == 200
                except OSError:
                    return False

            wait_until(healthy, timeout=20, what="/-/healthy", proc=exp.proc)
            took = time.monotonic() - started
            scrape_started = time.monotonic()
            scrape = fetch(exp.url, "/metrics", timeout=60)
            scrape_took = time.monotonic() - scrape_started
            stderr = exp.stderr()
    print(f"\nBIG FILE: serving after {took:.2f}s; a scrape of {len(scrape.body) / 2**20:.0f} MiB "
          f"took {scrape_took:.2f}s")
    assert took < 10, f"serve took {took:.1f}s to start with 100,000 tasks"
    assert scrape.status == 200
    tracked = re.search(r'^zego_digital_human_tracked_tasks\{source="file"\} (\S+)$', scrape.text,
                        re.MULTILINE)
    assert tracked is not None and float(tracked.group(1)) == 100_000
    assert set(INFO_LINE.findall(scrape.text)) == set(valid)  # every valid task, no other
    skipped = [line for line in stderr.splitlines() if "line skipped" in line]
    assert len(skipped) == 100
    assert all(f"{path}:" in line and "level=warn" in line for line in skipped)
    assert "Traceback" not in stderr


# -- a task file that goes bad while serving -------------------------------------------------

def rewrite(path: Path, content: bytes | None) -> None:
    """Replace the file (None: by a FIFO that nobody writes to), with a new modification time."""
    if path.exists():
        path.unlink()
    if content is None:
        os.mkfifo(path)
    else:
        path.write_bytes(content)


def tasks_shown(text: str) -> dict[str, tuple[str, str, str, float | None]]:
    """task_id -> (state, room, stream, last success) as a scrape shows them."""
    found = samples(text)
    last = {s.labels["task_id"]: s.value for s in found
            if s.name == "zego_digital_human_task_last_success_timestamp_seconds"}
    return {s.labels["task_id"]: (s.labels["state"], s.labels["room_id"], s.labels["stream_id"],
                                  last.get(s.labels["task_id"]))
            for s in found if s.name == "zego_digital_human_task_state" and s.value == 1}


@pytest.mark.slow
def test_a_task_file_that_turns_binary_or_into_a_fifo_keeps_the_last_good_list(
    tmp_path: Path,
) -> None:
    world = World.static(5)
    ids = [task.task_id for task in world.tasks()]
    path = tmp_path / "tasks.txt"
    good = (f"# watched\n{ids[0]}\ntwo words\n{ids[1]}  # second\ntâche\n{ids[2]}\n"
            f"{'y' * 129}\n{ids[3]}\n")
    rewrite(path, good.encode())
    with Simulator(APP_ID, Secret(SECRET_TEXT), world=world) as sim:
        env = serve_env(sim, ZEGO_TASK_FILE=str(path), ZEGO_DISCOVERY="false",
                        ZEGO_REFRESH_INTERVAL="1s")
        with exporter_process(["serve"], env, tmp_path / "run") as exp:
            exp.wait_ready()
            first = tasks_shown(fetch(exp.url, "/metrics").text)
            assert set(first) == set(ids[:4])
            assert all(state == "streaming" and room and stream and last
                       for state, room, stream, last in first.values())
            warnings = [line for line in exp.stderr().splitlines() if "line skipped" in line]
            assert [re.search(r":(\d+): ", line).group(1) for line in warnings] == [  # type: ignore[union-attr]
                "3", "5", "7"]

            def errors(fragment: str) -> int:
                return sum(fragment in line and "level=error" in line
                           for line in exp.stderr().splitlines())

            def unchanged_and_fresh(before: dict[str, tuple[str, str, str, float | None]],
                                    ) -> dict[str, tuple[str, str, str, float | None]]:
                scrape = fetch(exp.url, "/metrics")
                assert scrape.status == 200
                assert value(scrape.text, "zego_digital_human_tracked_tasks", source="file") == 4
                now = tasks_shown(scrape.text)
                assert set(now) == set(before)
                for task_id, (state, room, stream, last) in now.items():
                    assert (state, room, stream) == before[task_id][:3]  # nothing lost
                    assert (last or 0) >= (before[task_id][3] or 0)
                return now

            def logged(fragment: str) -> Callable[[], bool]:
                return lambda: errors(fragment) >= 1

            rewrite(path, b"\x7fELF\x02\x01\x01\x00\x00\x00" + ids[4].encode() + b"\n")
            wait_until(logged("looks binary"), timeout=15,
                       what="the binary task file to be reported", proc=exp.proc)
            shown = unchanged_and_fresh(first)

            rewrite(path, None)  # a FIFO: opening it for reading would block forever
            wait_until(logged("not a regular file"), timeout=15, what="the FIFO to be reported",
                       proc=exp.proc)
            shown = unchanged_and_fresh(shown)
            assert errors("looks binary") == 1  # reported once, not at every look

            rewrite(path, (good + f"{ids[4]}\n").encode())
            wait_until(lambda: "task file changed: reloaded" in exp.stderr(), timeout=15,
                       what="the repaired task file to be loaded", proc=exp.proc)
            wait_until(lambda: set(tasks_shown(fetch(exp.url, "/metrics").text)) == set(ids),
                       timeout=10, what="the added task to show", proc=exp.proc)
            final = tasks_shown(fetch(exp.url, "/metrics").text)
            for task_id in ids[:4]:
                assert final[task_id][:3] == first[task_id][:3]
                assert (final[task_id][3] or 0) > (first[task_id][3] or 0)
            assert errors("looks binary") == 1 and errors("not a regular file") == 1
            code, _ = exp.terminate()
            assert code == 0
            stderr = exp.stderr()
    assert "Traceback" not in stderr
    assert all(str(path) in line for line in stderr.splitlines() if "level=error" in line)


# -- environment values that cannot work ----------------------------------------------------

ENV_CASES: dict[str, tuple[dict[str, str], tuple[str, ...]]] = {
    # name: (environment, fragments of the one error line)
    "duration-nan": ({"ZEGO_REFRESH_INTERVAL": "nan"}, ("ZEGO_REFRESH_INTERVAL", "'nan'")),
    "duration-inf": ({"ZEGO_DISCOVERY_INTERVAL": "inf"}, ("ZEGO_DISCOVERY_INTERVAL",)),
    "duration-overflow": ({"ZEGO_TIMEOUT": "1e999"}, ("ZEGO_TIMEOUT",)),
    "duration-overflow-units": ({"ZEGO_TASKS_RETENTION": "9" * 400 + "h"},
                                ("ZEGO_TASKS_RETENTION",)),
    "scrape-wait-infinite": ({"ZEGO_EXPORTER_MAX_SCRAPE_WAIT": "Infinity"},
                             ("ZEGO_EXPORTER_MAX_SCRAPE_WAIT",)),
    "discovery-not-a-boolean": ({"ZEGO_DISCOVERY": "maybe"}, ("ZEGO_DISCOVERY", "'maybe'")),
    "workers-not-a-number": ({"ZEGO_REFRESH_WORKERS": "lots"}, ("ZEGO_REFRESH_WORKERS",)),
    "api-url-port-out-of-range": ({"ZEGO_API_URL": "https://example.com:99999"},
                                  ("--zego.api-url", "99999")),
    "api-url-space-in-host": ({"ZEGO_API_URL": "https://exa mple.com"}, ("--zego.api-url",)),
    "api-url-port-not-a-number": ({"ZEGO_API_URL": "http://example.com:http"},
                                  ("--zego.api-url",)),
    "secret-file-endless": ({"ZEGO_SERVER_SECRET": "", "ZEGO_SERVER_SECRET_FILE": "/dev/zero"},
                            ("/dev/zero", "secret only")),
    "callback-secret-file-endless": ({"ZEGO_CALLBACK_SECRET_FILE": "/dev/zero"},
                                     ("/dev/zero", "callback secret")),
    "web-config-endless": ({"ZEGO_EXPORTER_WEB_CONFIG_FILE": "/dev/zero"},
                           ("/dev/zero", "--web.config.file")),
    "task-file-device": ({"ZEGO_TASK_FILE": "/dev/zero"}, ("/dev/zero", "not a file")),
    "app-id-not-utf8": ({"ZEGO_APP_ID": "\udcff\udcfe"}, ("ZEGO_APP_ID", "AppId")),
    "task-ids-not-utf8": ({"ZEGO_TASK_IDS": "good-1,\udcff"}, ("ZEGO_TASK_IDS",)),
    "listen-address-not-utf8": ({"ZEGO_EXPORTER_LISTEN_ADDRESS": "127.0.0.1:\udcff"},
                                ("port",)),
    "task-file-not-utf8-path": ({"ZEGO_TASK_FILE": "/tmp/\udcff-none"}, ("task file",)),
}


def limited_memory() -> None:
    """In the child: at most 1 GiB of address space, so a read without bound fails fast."""
    resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30))


def serve_with(values: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = clean_env(ZEGO_APP_ID=str(APP_ID), ZEGO_SERVER_SECRET=FAKE_SECRET,
                    ZEGO_API_URL=CLOSED_API, ZEGO_EXPORTER_LISTEN_ADDRESS="127.0.0.1:0")
    env.update(values)
    if not env.get("ZEGO_SERVER_SECRET"):
        env.pop("ZEGO_SERVER_SECRET", None)
    return subprocess.run([sys.executable, "-m", "zego_exporter", "serve"], env=env,
                          capture_output=True, text=True, errors="backslashreplace",
                          timeout=30, check=False, preexec_fn=limited_memory)


@pytest.fixture(scope="module")
def env_results() -> dict[str, subprocess.CompletedProcess[str]]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(serve_with, values)
                   for name, (values, _) in ENV_CASES.items()}
        return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("name", list(ENV_CASES))
def test_an_environment_value_that_cannot_work_is_one_line_and_exit_2(
    env_results: dict[str, subprocess.CompletedProcess[str]], name: str,
) -> None:
    result = env_results[name]
    line = assert_one_line_error(result, 2)
    assert line.startswith("zego-exporter serve: error: "), line
    for fragment in ENV_CASES[name][1]:
        assert fragment in line, line
