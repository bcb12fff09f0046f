"""The command line as a user meets it: exit codes, one-line errors, env twins, `check`, help.

Everything runs the real entry point (`python -m zego_exporter`, or the `zego-exporter` console
script) in a subprocess, so stdout, stderr and exit codes are exactly what a user sees. The
usage-error cases run in one fixture, each in a process of its own forked from one that has
imported the command line already (tests/support/commands.py, ForkedCli), and are then asserted
one test per case.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

from tests.support.commands import (
    CLOSED_API,
    FAKE_CALLBACK_SECRET,
    FAKE_SECRET,
    ForkedCli,
    assert_no_secret,
    assert_one_line_error,
    run_cli,
    run_cli_unprivileged,
)
from tests.support.components import IN_CI
from tests.support.credentials import APP_ID, SECRET_TEXT
from tests.support.processes import (
    clean_env,
    exporter_process,
    fetch,
    free_port,
    showcase_simulator,
)
from tests.support.scrapes import samples
from zego_exporter import __version__
from zego_exporter.cli import cli
from zego_exporter.signing import Secret
from zego_exporter.simulator import (
    ENDED_TASKS,
    ErrorCode,
    ErrorStatus,
    Faults,
    Simulator,
    World,
)

# -- usage errors: exit 2, one line, no traceback, no secret ---------------------------------

@dataclass(frozen=True)
class Case:
    name: str
    args: tuple[str, ...]
    env: tuple[tuple[str, str | None], ...] = ()
    says: tuple[str, ...] = ()
    """Fragments the error line must contain: what is wrong and what to do."""


def case(name: str, *args: str, env: dict[str, str | None] | None = None,
         says: tuple[str, ...] | str = ()) -> Case:
    return Case(name, args, tuple((env or {}).items()),
                (says,) if isinstance(says, str) else says)


# Both `serve` and `check` take the --zego.* and --log.* flags.
CONNECTION_CASES = [
    case("app-id-missing", env={"ZEGO_APP_ID": None}, says=("AppId", "ZEGO_APP_ID")),
    case("app-id-not-a-number", "--zego.app-id", "abc", says=("'abc'", "AppId", "number")),
    case("app-id-zero", "--zego.app-id", "0", says="1 to 4294967295"),
    case("app-id-above-uint32", env={"ZEGO_APP_ID": "4294967296"}, says="ZEGO_APP_ID"),
    case("app-id-negative", env={"ZEGO_APP_ID": "-5"}, says="1 to 4294967295"),
    case("app-id-is-the-secret", env={"ZEGO_APP_ID": FAKE_SECRET}, says="AppId"),
    case("secret-missing", env={"ZEGO_SERVER_SECRET": None},
         says=("ZEGO_SERVER_SECRET_FILE", "--zego.server-secret")),
    case("secret-and-secret-file", "--zego.server-secret-file", "{tmp}/secret",
         says="only one"),
    case("secret-file-missing", env={"ZEGO_SERVER_SECRET": None,
                                     "ZEGO_SERVER_SECRET_FILE": "{tmp}/nope"},
         says=("{tmp}/nope", "No such file")),
    case("secret-file-unreadable", env={"ZEGO_SERVER_SECRET": None,
                                        "ZEGO_SERVER_SECRET_FILE": "{tmp}"},
         says=("cannot read", "directory")),
    case("secret-file-empty", "--zego.server-secret-file", "{tmp}/empty",
         env={"ZEGO_SERVER_SECRET": None}, says=("{tmp}/empty", "empty")),
    case("secret-file-blank-lines", "--zego.server-secret-file", "{tmp}/blank",
         env={"ZEGO_SERVER_SECRET": None}, says="empty"),
    case("secret-file-not-utf8", "--zego.server-secret-file", "{tmp}/latin1",
         env={"ZEGO_SERVER_SECRET": None}, says="UTF-8"),
    case("qps-text", "--zego.qps", "fast", says=("--zego.qps", "'fast'", "e.g. 10")),
    case("qps-zero", "--zego.qps", "0", says=("--zego.qps", "above 0")),
    case("qps-negative", env={"ZEGO_QPS": "-1"}, says=("ZEGO_QPS", "above 0")),
    case("api-url-not-http", "--zego.api-url", "ftp://example.com",
         says=("http(s) URL", "e.g. https://")),
    case("api-url-no-scheme", env={"ZEGO_API_URL": "example.com"}, says="--zego.api-url"),
    case("timeout-not-a-duration", "--zego.timeout", "5 parsecs", says=("--zego.timeout", "30s")),
    case("timeout-zero", "--zego.timeout", "0s", says=("--zego.timeout", "longer than 0s")),
    case("unknown-option", "--zego.app-ip", "1", says=("No such option", "--help")),
    case("log-level-nope", "--log.level", "nope", says=("--log.level", "'debug'")),
    case("log-format-env", env={"ZEGO_EXPORTER_LOG_FORMAT": "xml"},
         says="ZEGO_EXPORTER_LOG_FORMAT"),
]

SERVE_CASES = [
    case("refresh-interval-not-a-duration", "--refresh.interval", "soon",
         says=("--refresh.interval", "duration")),
    case("refresh-interval-zero", "--refresh.interval", "0", says="longer than 0s"),
    case("discovery-interval-negative", "--discovery.interval", "-5", says="negative"),
    case("retention-env", env={"ZEGO_TASKS_RETENTION": "1 hour"},
         says=("ZEGO_TASKS_RETENTION", "1h30m")),
    case("workers-zero", "--refresh.workers", "0", says="--refresh.workers"),
    case("listen-no-port", "--web.listen-address", "localhost", says=("port", ":port")),
    case("listen-port-only-digits", "--web.listen-address", "9877", says="host:port"),
    case("listen-host-port-x", "--web.listen-address", "localhost:9877:x", says="port"),
    case("listen-ipv6-unbracketed", "--web.listen-address", "::1:9877", says="[::1]:9877"),
    case("listen-port-out-of-range", env={"ZEGO_EXPORTER_LISTEN_ADDRESS": ":70000"},
         says=("70000", "0 to 65535")),
    case("listen-bad-ipv6", "--web.listen-address", "[::zz]:9877", says="IPv6"),
    case("telemetry-path-relative", "--web.telemetry-path", "metrics", says="start with /"),
    case("telemetry-path-health", env={"ZEGO_EXPORTER_TELEMETRY_PATH": "/-/healthy"},
         says="--web.telemetry-path"),
    case("task-id-whitespace", "--task-id", "task one", says=("'task one'", "--task-id")),
    case("task-id-too-long", "--task-id", "t" * 129, says="at most 128"),
    case("task-id-non-ascii", "--task-id", "tâche-1", says="ASCII"),
    case("task-ids-env-invalid", env={"ZEGO_TASK_IDS": "good-1, tâche-2"},
         says=("ZEGO_TASK_IDS", "tâche-2")),
    case("task-ids-env-too-long", env={"ZEGO_TASK_IDS": "good-1," + "x" * 200},
         says=("ZEGO_TASK_IDS", "128")),
    case("task-file-missing", "--task-file", "{tmp}/tasks.txt", says=("{tmp}/tasks.txt",
                                                                     "does not exist")),
    case("task-file-directory", env={"ZEGO_TASK_FILE": "{tmp}"},
         says=("not a file", "fix --task-file / ZEGO_TASK_FILE")),
    case("task-file-binary", "--task-file", "{tmp}/binary", says=("{tmp}/binary", "binary")),
    case("web-config-broken", "--web.config.file", "{tmp}/web.yml",
         says=("{tmp}/web.yml", "YAML")),
    case("web-config-missing", env={"ZEGO_EXPORTER_WEB_CONFIG_FILE": "{tmp}/none.yml"},
         says=("{tmp}/none.yml", "--web.config.file")),
    case("callback-secret-and-file", "--zego.callback-secret", FAKE_CALLBACK_SECRET,
         "--zego.callback-secret-file", "{tmp}/secret", says="only one"),
    case("callback-path-is-telemetry-path", "--zego.callback-secret", FAKE_CALLBACK_SECRET,
         "--zego.callback-path", "/metrics", says="must differ"),
    case("extra-argument", "surplus", says="unexpected extra argument"),
    case("storage-path-directory", "--storage.path", "{tmp}",
         says=("--storage.path {tmp} is a directory", "{tmp}/zego-exporter.db")),
    case("storage-path-missing-directory", env={"ZEGO_STORAGE_PATH": "{tmp}/none/x.db"},
         says=("{tmp}/none does not exist", "create it")),
    case("storage-path-special-file", "--storage.path", "/dev/null",
         says="not a regular file"),
    case("storage-path-unwritable", "--storage.path", "/sys/zego-exporter.db",
         says=("cannot create files in /sys", "make it writable")),
]

CHECK_CASES = [
    case("task-id-argument-whitespace", "bad\tid", says="TaskId"),
    case("task-id-argument-too-long", "x" * 129, says="at most 128"),
    case("task-id-argument-non-ascii", "tâche", says="ASCII"),
    case("output-xml", "--output", "xml", says=("--output", "'json'")),
]

ALL_CASES = (
    [("serve", c) for c in CONNECTION_CASES + SERVE_CASES]
    + [("check", c) for c in CONNECTION_CASES + CHECK_CASES]
)


def usage_files(tmp: Path) -> None:
    (tmp / "secret").write_text(FAKE_SECRET + "\n")
    (tmp / "empty").write_text("")
    (tmp / "blank").write_text("\n\r\n\n")
    (tmp / "latin1").write_bytes("clé-secrète".encode("latin-1"))
    (tmp / "binary").write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\x00task\n")
    (tmp / "web.yml").write_text("basic_auth_users: [\n")


def case_env(c: Case, tmp: Path) -> dict[str, str]:
    env = clean_env(ZEGO_APP_ID=str(APP_ID), ZEGO_SERVER_SECRET=FAKE_SECRET,
                    ZEGO_API_URL=CLOSED_API, ZEGO_EXPORTER_LISTEN_ADDRESS="127.0.0.1:0")
    for name, value in c.env:
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value.replace("{tmp}", str(tmp))
    return env


@pytest.fixture(scope="module")
def usage_results(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, dict[tuple[str, str], subprocess.CompletedProcess[str]]]:
    tmp = tmp_path_factory.mktemp("usage")
    usage_files(tmp)

    with ForkedCli() as cli_process:
        return tmp, {(command, c.name): cli_process.run(
            command, *(a.replace("{tmp}", str(tmp)) for a in c.args), env=case_env(c, tmp))
            for command, c in ALL_CASES}


@pytest.mark.parametrize(("command", "c"), ALL_CASES,
                         ids=[f"{command}-{c.name}" for command, c in ALL_CASES])
def test_usage_error_is_one_line_exit_2_without_secret(
    usage_results: tuple[Path, dict[tuple[str, str], subprocess.CompletedProcess[str]]],
    command: str, c: Case,
) -> None:
    tmp, results = usage_results
    result = results[(command, c.name)]
    line = assert_one_line_error(result, 2)
    assert result.stdout == ""
    assert line.startswith(f"zego-exporter {command}: error: "), line
    for fragment in c.says:
        assert fragment.replace("{tmp}", str(tmp)) in line, line


def test_a_secret_file_without_read_permission_is_a_usage_error() -> None:
    # A directory anyone may enter (pytest's are root's only), so that it is the file's own
    # mode the command runs into.
    with tempfile.TemporaryDirectory(prefix="zego-unreadable-") as directory:
        os.chmod(directory, 0o755)
        path = Path(directory) / "secret"
        path.write_text(FAKE_SECRET)
        path.chmod(0)
        result = run_cli_unprivileged("check", "--zego.app-id", str(APP_ID),
                                      "--zego.server-secret-file", str(path),
                                      env=clean_env(ZEGO_API_URL=CLOSED_API))
    line = assert_one_line_error(result, 2)
    assert str(path) in line and "Permission denied" in line


def test_a_port_in_use_is_one_line_exit_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        result = run_cli("serve", "--web.listen-address", address, env=clean_env(
            ZEGO_APP_ID=str(APP_ID), ZEGO_SERVER_SECRET=FAKE_SECRET, ZEGO_API_URL=CLOSED_API))
    line = assert_one_line_error(result, 1)
    assert address in line and "--web.listen-address" in line


# -- env twins and help ----------------------------------------------------------------------

SERVE_FLAGS = {  # the contract's table: flag -> environment twin (and default, if any)
    "--zego.app-id": ("ZEGO_APP_ID", None),
    "--zego.server-secret": ("ZEGO_SERVER_SECRET", None),
    "--zego.server-secret-file": ("ZEGO_SERVER_SECRET_FILE", None),
    "--zego.api-url": ("ZEGO_API_URL", "https://aigc-digitalhuman-api.zegotech.cn"),
    "--zego.qps": ("ZEGO_QPS", "10"),
    "--task-id": ("ZEGO_TASK_IDS", None),
    "--task-file": ("ZEGO_TASK_FILE", None),
    "--discovery": ("ZEGO_DISCOVERY", "discovery"),
    "--zego.callback-secret": ("ZEGO_CALLBACK_SECRET", None),
    "--zego.callback-secret-file": ("ZEGO_CALLBACK_SECRET_FILE", None),
    "--web.listen-address": ("ZEGO_EXPORTER_LISTEN_ADDRESS", ":9877"),
    "--web.telemetry-path": ("ZEGO_EXPORTER_TELEMETRY_PATH", "/metrics"),
    "--web.config.file": ("ZEGO_EXPORTER_WEB_CONFIG_FILE", None),
    "--log.level": ("ZEGO_EXPORTER_LOG_LEVEL", "info"),
    "--log.format": ("ZEGO_EXPORTER_LOG_FORMAT", "logfmt"),
    "--storage.path": ("ZEGO_STORAGE_PATH", None),
}
CHECK_FLAGS = [flag for flag in SERVE_FLAGS if flag.startswith(("--zego.", "--log."))]


def help_entries(help_text: str) -> dict[str, str]:
    """Each option of a --help page, keyed by its first flag, its text on one line."""
    options = help_text.split("Options:", 1)[1]
    return {entry.split()[0]: " ".join(entry.split())
            for entry in re.split(r"\n(?=  -)", options) if entry.strip()}


@pytest.fixture(scope="module")
def helps() -> dict[str, subprocess.CompletedProcess[str]]:
    env = clean_env(ZEGO_SERVER_SECRET=FAKE_SECRET, ZEGO_CALLBACK_SECRET=FAKE_CALLBACK_SECRET,
                    ZEGO_APP_ID=str(APP_ID))
    commands = ["", "serve", "check", "simulate", "demo"]
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {c: pool.submit(run_cli, *c.split(), "--help", env=env) for c in commands}
        return {c: future.result() for c, future in futures.items()}


def test_help_of_every_command_works_and_never_shows_a_secret(
    helps: dict[str, subprocess.CompletedProcess[str]],
) -> None:
    for command, result in helps.items():
        assert result.returncode == 0, (command, result.stderr)
        assert result.stdout.startswith(f"Usage: zego-exporter {command}".rstrip())
        assert result.stderr == ""
        assert_no_secret(result)
    for command in ("serve", "check", "simulate", "demo"):
        assert command in helps[""].stdout


def test_every_serve_flag_of_the_contract_has_its_env_twin_and_default(
    helps: dict[str, subprocess.CompletedProcess[str]],
) -> None:
    entries = help_entries(helps["serve"].stdout)
    for flag, (env, default) in SERVE_FLAGS.items():
        assert f"env var: {env}" in entries[flag], entries[flag]
        if default is not None:
            assert f"default: {default}" in entries[flag], entries[flag]
    assert "--no-discovery" in entries["--discovery"]
    check = help_entries(helps["check"].stdout)
    for flag in CHECK_FLAGS:
        assert f"env var: {SERVE_FLAGS[flag][0]}" in check[flag], check[flag]


def test_env_twins_take_effect(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "secret").write_text(SECRET_TEXT + "\n")
    (tmp_path / "callback-secret").write_text(FAKE_CALLBACK_SECRET)
    with showcase_simulator(3) as sim:
        show = sim.showcase
        (tmp_path / "tasks").write_text(f"# from ZEGO_TASK_FILE\n{show['stopped'][0]}\n")
        env = clean_env(
            ZEGO_APP_ID=str(APP_ID),
            ZEGO_SERVER_SECRET_FILE=str(tmp_path / "secret"),
            ZEGO_API_URL=sim.url,
            ZEGO_QPS="4",
            ZEGO_TASK_IDS=(f" {show['streaming'][0]}, {show['init_failed'][0]}  "
                           f"{show['not_found'][0]},,\t{show['streaming'][0]} "),
            ZEGO_TASK_FILE=str(tmp_path / "tasks"),
            ZEGO_DISCOVERY="false",
            ZEGO_CALLBACK_SECRET_FILE=str(tmp_path / "callback-secret"),
            ZEGO_EXPORTER_LISTEN_ADDRESS=f"127.0.0.1:{port}",
            ZEGO_EXPORTER_TELEMETRY_PATH="/zego-metrics",
            ZEGO_EXPORTER_LOG_LEVEL="debug",
            ZEGO_EXPORTER_LOG_FORMAT="json",
        )
        with exporter_process(["serve"], env, tmp_path / "run", port=port) as exp:
            exp.wait_ready()
            assert fetch(exp.url, "/metrics").status == 404
            callback = fetch(exp.url, "/zego/callback")  # on, and only for POST
            assert callback.status == 405 and callback.headers["allow"] == "POST"
            scrape = fetch(exp.url, "/zego-metrics")
            assert scrape.status == 200
            code, _ = exp.terminate()
            assert code == 0
        assert sim.stats.action("QueryDigitalHumanStreamTasks").requests == 0
    found = samples(scrape.text)

    def value(name: str, **labels: str) -> float:
        [match] = [s.value for s in found if s.name == name and labels.items() <= s.labels.items()]
        return match

    assert value("zego_digital_human_tracked_tasks", source="static") == 3
    assert value("zego_digital_human_tracked_tasks", source="file") == 1
    assert value("zego_digital_human_tracked_tasks", source="discovered") == 0
    assert value("zego_digital_human_rate_limit_qps", action="QueryDigitalHumanStreamTasks") == 4
    assert value("zego_digital_human_up") == 1
    assert any(s.name == "zego_digital_human_callbacks_total" for s in found)
    records = [json.loads(line) for line in exp.stderr().splitlines()]
    assert {"debug", "info"} <= {record["level"] for record in records}
    assert FAKE_CALLBACK_SECRET not in exp.stderr() and SECRET_TEXT not in exp.stderr()


# -- check -----------------------------------------------------------------------------------

@pytest.fixture
def check_env() -> Iterator[tuple[Simulator, dict[str, str]]]:
    with showcase_simulator(3) as sim:
        yield sim, clean_env(ZEGO_APP_ID=str(APP_ID), ZEGO_SERVER_SECRET=SECRET_TEXT,
                             ZEGO_API_URL=sim.url)


def table_rows(stdout: str) -> tuple[list[str], list[list[str]]]:
    lines = stdout.splitlines()
    header_at = next(i for i, line in enumerate(lines) if line.startswith("TASK "))
    header = lines[header_at].split()
    rows = [line.split(maxsplit=5) for line in lines[header_at + 1:]]
    return header, rows


def test_check_without_ids_lists_the_running_tasks(
    check_env: tuple[Simulator, dict[str, str]],
) -> None:
    sim, env = check_env
    result = run_cli("check", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    header, rows = table_rows(result.stdout)
    assert header == ["TASK", "ROOM", "STREAM", "STATE", "AGE", "FAIL", "REASON"]
    running = {task.task_id: task for task in sim.world.running()}
    assert {row[0] for row in rows} == set(running) and len(rows) == len(running)
    for task_id, room, stream, state, _age, *_ in rows:
        assert (room, stream) == (running[task_id].room_id, running[task_id].stream_id)
        assert state in ("streaming", "initializing")
    assert f"AppId {APP_ID}" in result.stdout
    assert not any(line != line.rstrip() for line in result.stdout.splitlines())


@pytest.mark.parametrize(("ended", "stopped_shows"), [
    ("status-5", "stopped"),  # ZEGO's docs before Nov 2025
    ("not-found", "not_found"),  # the current docs: a one-shot check cannot tell it ended
])
def test_check_given_ids_shows_each_state_including_not_found(
    ended: str, stopped_shows: str,
) -> None:
    world = World.static(3)
    world.add_showcase(stop_after=0)
    with Simulator(APP_ID, Secret(SECRET_TEXT), world=world, ended_tasks=ended) as sim:
        wanted = {state: ids[0] for state, ids in sim.showcase.items()}
        result = run_cli("check", *wanted.values(), env=clean_env(
            ZEGO_APP_ID=str(APP_ID), ZEGO_SERVER_SECRET=SECRET_TEXT, ZEGO_API_URL=sim.url))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # some TaskIds were found: no warning about the setup
    _, rows = table_rows(result.stdout.split("\nnot_found:")[0])
    by_id = {row[0]: row for row in rows}
    assert len(rows) == len(wanted)
    for state, task_id in wanted.items():
        assert by_id[task_id][3] == (stopped_shows if state == "stopped" else state)
    assert by_id[wanted["not_found"]][1:3] == ["-", "-"]
    assert len(by_id[wanted["init_failed"]]) == 6  # a fail reason is shown
    assert "not_found: ZEGO does not know the task now: it has ended, or the TaskId is " \
           "wrong" in result.stdout


@pytest.mark.parametrize("output", ["table", "json"])
def test_check_says_the_setup_looks_wrong_when_nothing_named_exists_and_nothing_runs(
    output: str,
) -> None:
    with Simulator(APP_ID, Secret(SECRET_TEXT), world=World(tasks=0, arrival_rate=0.0)) as sim:
        env = clean_env(ZEGO_APP_ID=str(APP_ID), ZEGO_SERVER_SECRET=SECRET_TEXT,
                        ZEGO_API_URL=sim.url)
        result = run_cli("check", "-o", output, "a" * 32, "b" * 32, env=env)
        sim.world.add_task(status=3)
        running = run_cli("check", "-o", output, "a" * 32, env=env)
    assert result.returncode == 0, result.stderr  # the API answered: not a failure
    [line] = result.stderr.splitlines()
    assert line.startswith("warning: none of the 2 TaskId(s) is known to ZEGO and no task is "
                           f"running for AppId {APP_ID} at {sim.url}: the setup looks wrong")
    assert "ZEGO_APP_ID" in line and "--zego.api-url" in line and "aigc@zego.im" in line
    if output == "json":
        assert json.loads(result.stdout)["warnings"] == [line.removeprefix("warning: ")]
    assert running.returncode == 0 and running.stderr == ""  # something runs: no warning


def test_check_with_query_denied_says_what_to_do_and_quotes_the_request_id() -> None:
    with Simulator(APP_ID, Secret(SECRET_TEXT), world=World.static(1), faults=Faults(
            error=ErrorCode(code=400010001, action="QueryDigitalHumanStreamTasks"),
            error_status=ErrorStatus())) as sim:
        result = run_cli("check", env=clean_env(ZEGO_APP_ID=str(APP_ID),
                                                 ZEGO_SERVER_SECRET=SECRET_TEXT,
                                                 ZEGO_API_URL=sim.url))
    line = assert_one_line_error(result, 1)
    assert "code 400010001" in line and "--no-discovery" in line
    assert re.search(r"\(RequestId [0-9a-f]{32}\)$", line), line


def test_check_json_output(check_env: tuple[Simulator, dict[str, str]]) -> None:
    sim, env = check_env
    missing = sim.showcase["not_found"][0]
    failed = sim.showcase["init_failed"][0]
    result = run_cli("check", "--output", "json", failed, missing, env=env)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["ok"] is True and doc["app_id"] == APP_ID and doc["api_url"] == sim.url
    tasks = {task["task_id"]: task for task in doc["tasks"]}
    assert set(tasks) == {failed, missing}
    for task in tasks.values():
        assert set(task) == {"task_id", "room_id", "stream_id", "status", "state",
                             "create_time", "age_seconds", "fail_reason"}
    assert tasks[failed]["state"] == "init_failed" and tasks[failed]["status"] == 2
    assert tasks[failed]["fail_reason"] and tasks[failed]["age_seconds"] >= 0
    assert tasks[missing]["state"] == "not_found" and tasks[missing]["status"] is None
    listed = json.loads(run_cli("check", "-o", "json", env=env).stdout)
    assert {t["task_id"] for t in listed["tasks"]} == {t.task_id for t in sim.world.running()}


def test_check_takes_serves_callback_flags_and_checks_the_secret_as_serve_would(
    check_env: tuple[Simulator, dict[str, str]], tmp_path: Path,
) -> None:
    """The contract: `check` takes the same --zego.* flags, so serve's command line works."""
    _, env = check_env
    (tmp_path / "callback-secret").write_text(FAKE_CALLBACK_SECRET + "\n")
    flags = ["--zego.callback-secret-file", str(tmp_path / "callback-secret"),
             "--zego.callback-path", "/hooks/zego"]
    result = run_cli("check", *flags, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ZEGO API OK")
    assert FAKE_CALLBACK_SECRET not in result.stdout + result.stderr
    unreadable = run_cli("check", "--zego.callback-secret-file", str(tmp_path / "missing"),
                         env=env)
    line = assert_one_line_error(unreadable, 2)
    assert "cannot read callback secret file" in line and "--zego.callback-secret-file" in line
    both = run_cli("check", *flags, env={**env, "ZEGO_CALLBACK_SECRET": FAKE_CALLBACK_SECRET})
    assert "only one" in assert_one_line_error(both, 2)
    assert FAKE_CALLBACK_SECRET not in both.stderr
    bad_path = run_cli("check", "--zego.callback-path", "/-/ready", env=env)
    assert "--zego.callback-path '/-/ready' must start with /" in assert_one_line_error(bad_path, 2)


def test_check_with_a_wrong_secret_says_what_to_check(
    check_env: tuple[Simulator, dict[str, str]],
) -> None:
    _, env = check_env
    env["ZEGO_SERVER_SECRET"] = FAKE_SECRET
    for output in ("table", "json"):
        result = run_cli("check", "--output", output, env=env)
        line = assert_one_line_error(result, 1)
        assert "check ZEGO_APP_ID and the server secret" in line
        if output == "table":
            assert result.stdout == ""
        else:  # a script reading .ok gets an answer on a failure too
            assert json.loads(result.stdout) == {
                "api_url": env["ZEGO_API_URL"], "app_id": APP_ID, "ok": False,
                "error": line.removeprefix("zego-exporter: "), "tasks": [], "warnings": []}


def test_check_against_an_unreachable_api_fails_in_one_line() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = run_cli("check", "--zego.app-id", str(APP_ID), "--zego.api-url", url,
                     env=clean_env(ZEGO_SERVER_SECRET=FAKE_SECRET))
    line = assert_one_line_error(result, 1)
    assert url in line and "--zego.api-url" in line


def test_check_wrong_app_id_with_the_right_secret_fails() -> None:
    with Simulator(APP_ID, Secret(SECRET_TEXT), world=World.static(1)) as sim:
        result = run_cli("check", "--zego.app-id", str(APP_ID + 1), "--zego.api-url", sim.url,
                         env=clean_env(ZEGO_SERVER_SECRET=SECRET_TEXT))
    assert_one_line_error(result, 1)


# -- versions and the console script ---------------------------------------------------------

def test_version_of_python_m() -> None:
    result = run_cli("--version", env=clean_env())
    assert result.returncode == 0
    assert result.stdout.strip() == f"zego-exporter, version {__version__}"


def console_script() -> str:
    beside = Path(sys.executable).with_name("zego-exporter")
    found = str(beside) if beside.exists() else shutil.which("zego-exporter")
    if found is None:
        message = "the zego-exporter console script is not installed (pip install -e .)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return found


def test_console_script_version_and_a_usage_error() -> None:
    script = console_script()
    version = subprocess.run([script, "--version"], capture_output=True, text=True,
                             timeout=20, check=False)
    assert version.returncode == 0 and __version__ in version.stdout
    error = subprocess.run([script, "check", "--zego.app-id", "x"], env=clean_env(
        ZEGO_SERVER_SECRET=FAKE_SECRET), capture_output=True, text=True, timeout=20, check=False)
    line = assert_one_line_error(error, 2)
    assert line.startswith("zego-exporter check: error: ")


@pytest.mark.parametrize(("faults", "says"), [
    ('{"bogus": 1}', "unknown fault 'bogus'"),
    ("{nope", "--faults"),
])
def test_simulate_rejects_bad_faults_in_one_line(faults: str, says: str) -> None:
    result = run_cli("simulate", "--listen-address", "127.0.0.1:0", "--faults", faults,
                     env=dict(os.environ))
    assert says in assert_one_line_error(result, 2)


def test_simulate_takes_the_older_reading_of_ended_tasks_as_an_option() -> None:
    result = run_cli("simulate", "--listen-address", "127.0.0.1:0", "--ended-tasks", "gone",
                     env=dict(os.environ))
    assert "--ended-tasks" in assert_one_line_error(result, 2)
    help_text = run_cli("simulate", "--help", env=dict(os.environ)).stdout
    assert "not-found" in help_text and "status-5" in help_text
    [option] = [p for p in cli.commands["simulate"].params if p.name == "ended_tasks"]
    assert isinstance(option.type, click.Choice)
    assert tuple(option.type.choices) == ENDED_TASKS
    sim = Simulator.from_options(app_id=APP_ID, server_secret=Secret(SECRET_TEXT),
                                 ended_tasks="status-5", showcase=True, showcase_stop_after=0)
    try:
        assert sim.ended_tasks == "status-5"
        stopped = sim.world.get(sim.showcase["stopped"][0])
        assert stopped is not None and stopped.status == 5
    finally:
        sim.stop()
