"""The command line as a user meets it: a real process, its exit code, stdout and stderr.

Distinctive fake secrets: finding one of them in any output means a secret leaked.
"""

from __future__ import annotations

import os
import subprocess
import sys

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
