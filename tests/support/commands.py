"""The command line as a user meets it: a real process, its exit code, stdout and stderr.

Distinctive fake secrets: finding one of them in any output means a secret leaked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from types import TracebackType

from tests.support.credentials import SECRET_TEXT

FAKE_SECRET = "fake-Secret-9f8e7d6c5b4a"
FAKE_CALLBACK_SECRET = "fake-Callback-3c2b1a0f"
CLOSED_API = "http://127.0.0.1:9"  # nothing listens: a case that wrongly passes goes nowhere


def run_cli(*args: str, env: dict[str, str],
            timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "zego_exporter", *args], env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


NOBODY = 65534
# The interpreter may live where only root can read (CI's Python is under /root): everything
# the command line needs is imported first, then the process gives up root for good.
_AS_NOBODY = f"""\
import os, sys
from zego_exporter.cli import main
os.setgroups([])
os.setgid({NOBODY})
os.setuid({NOBODY})
assert os.geteuid() == {NOBODY} and os.getegid() == {NOBODY}
main(sys.argv[1:])
"""


def run_cli_unprivileged(*args: str, env: dict[str, str],
                         timeout: float = 20) -> subprocess.CompletedProcess[str]:
    """`run_cli` as a user without root's right to read any file: as root (CI), the command
    runs as uid and gid 65534 (nobody)."""
    if os.geteuid() != 0:
        return run_cli(*args, env=env, timeout=timeout)
    return subprocess.run([sys.executable, "-c", _AS_NOBODY, *args], env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def assert_no_secret(result: subprocess.CompletedProcess[str]) -> None:
    for secret in (FAKE_SECRET, FAKE_CALLBACK_SECRET, SECRET_TEXT):
        assert secret not in result.stdout + result.stderr


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and result.stderr.endswith("\n"), result.stderr
    assert_no_secret(result)
    return lines[0]


# The fork server: imports the command line once, then runs each case in a child of its own.
_FORK_SERVER = """\
import json, os, sys, time, traceback
from zego_exporter.cli import main


def run(case):
    os.environ.clear()
    os.environ.update(case["env"])
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    for fd, path in ((1, case["stdout"]), (2, case["stderr"])):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
    code = 0
    try:
        main(case["args"])
    except SystemExit as exc:  # what the interpreter does with it
        if isinstance(exc.code, int) or exc.code is None:
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


for line in sys.stdin:
    case = json.loads(line)
    pid = os.fork()
    if pid == 0:
        run(case)
    deadline = time.monotonic() + case["timeout"]
    while not (done := os.waitpid(pid, os.WNOHANG))[0]:
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            done = os.waitpid(pid, 0)
            break
        time.sleep(0.002)
    print(json.dumps(os.waitstatus_to_exitcode(done[1])), flush=True)
"""


class ForkedCli:
    """`zego-exporter` commands as real processes, each forked from one process that imported
    the command line once: every case still has its own process, environment, exit code,
    stdout and stderr, as a user sees them, without paying Python's start and the imports
    (about 0.25 s of CPU) again. Starting the interpreter itself is what `run_cli` tests.
    A case that does not end within its timeout is killed (exit code -9)."""

    def __init__(self) -> None:
        self._directory = tempfile.TemporaryDirectory(prefix="zego-cli-")
        self._server = subprocess.Popen([sys.executable, "-c", _FORK_SERVER],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True)
        self._lock = threading.Lock()
        self._cases = 0

    def run(self, *args: str, env: dict[str, str],
            timeout: float = 20) -> subprocess.CompletedProcess[str]:
        assert self._server.stdin is not None and self._server.stdout is not None
        with self._lock:
            self._cases += 1
            out = Path(self._directory.name) / f"{self._cases}.out"
            err = Path(self._directory.name) / f"{self._cases}.err"
            self._server.stdin.write(json.dumps({
                "args": list(args), "env": env, "timeout": timeout,
                "stdout": str(out), "stderr": str(err)}) + "\n")
            self._server.stdin.flush()
            answer = self._server.stdout.readline()
        assert answer, "the fork server ended"
        return subprocess.CompletedProcess(["zego-exporter", *args], json.loads(answer),
                                           out.read_text(), err.read_text())

    def close(self) -> None:
        if self._server.stdin is not None:
            self._server.stdin.close()
        self._server.wait(10)
        if self._server.stdout is not None:
            self._server.stdout.close()
        self._directory.cleanup()

    def __enter__(self) -> ForkedCli:
        return self

    def __exit__(self, _kind: type[BaseException] | None, _error: BaseException | None,
                 _traceback: TracebackType | None) -> None:
        self.close()
