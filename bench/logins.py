"""Login benchmark: how long a valid user waits while unknown users are being refused.

A real web server of the exporter runs on loopback with a web config file whose users include
one with a slow bcrypt hash (cost 16 by default, seconds per check) and several at cost 10, as
htpasswd makes them. Several "attacker" threads then send requests naming unknown users with
random passwords, back to back, and while they do, a valid cost-10 user logs in: each time a
user not seen before, so that no remembered result helps. Printed: that login's time alone and
under attack (median and worst), a remembered login under attack, and how long the unknown
users took to be refused. With --slow-user-attack, the attackers instead send wrong passwords
for the slow user, which is the case bounded parallel checks cannot fully protect.

    python -m bench.logins                      # cost 16, 4 attackers, 3 logins
    python -m bench.logins --slow-cost 14 --attackers 8
    python -m bench.logins --slow-user-attack

It uses only WebServer, Endpoints and WebConfigWatcher, so the same script measures an older
checkout: PYTHONPATH=<checkout> python bench/logins.py.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import os
import secrets
import statistics
import tempfile
import threading
import time
from pathlib import Path

import bcrypt

import zego_exporter
from zego_exporter.web import Endpoints, WebServer
from zego_exporter.webconfig import WebConfigWatcher

PASSWORD = "correct horse"
TIMEOUT = 300.0  # seconds: the old single-lock design made a login wait tens of seconds


def header(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def login(port: int, user: str, password: str) -> tuple[int, float]:
    """(HTTP status, seconds) of one GET / with these credentials, on a new connection."""
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        connection.request("GET", "/", headers=header(user, password))
        response = connection.getresponse()
        response.read()
        return response.status, time.perf_counter() - started
    finally:
        connection.close()


class Attackers:
    """Threads sending refused logins back to back until stopped; they keep each refusal's time."""

    def __init__(self, port: int, count: int, user: str | None) -> None:
        self.port = port
        self.user = user  # None: a new unknown user per request
        self.refusals: list[float] = []
        self.other: list[int] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(n,), daemon=True)
                         for n in range(count)]

    def __enter__(self) -> Attackers:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(TIMEOUT)

    def _run(self, number: int) -> None:
        while not self._stop.is_set():
            user = self.user or f"intruder{number}-{secrets.token_hex(4)}"
            status, seconds = login(self.port, user, secrets.token_urlsafe(12))
            if status == 401:
                self.refusals.append(seconds)
            else:
                self.other.append(status)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slow-cost", type=int, default=16, help="bcrypt cost of the slow user")
    parser.add_argument("--attackers", type=int, default=4)
    parser.add_argument("--logins", type=int, default=3, help="valid logins measured per phase")
    parser.add_argument("--slow-user-attack", action="store_true",
                        help="attackers send wrong passwords for the slow user instead")
    args = parser.parse_args()

    print(f"code: {Path(zego_exporter.__file__).parent}")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    started = time.perf_counter()
    slow_hash = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(args.slow_cost)).decode()
    print(f"slow user: cost {args.slow_cost}, hashing took {time.perf_counter() - started:.1f} s")
    valid = [f"user{n}" for n in range(2 * args.logins + 1)]
    cheap = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode()
    lines = [f"  slow: '{slow_hash}'", *(f"  {user}: '{cheap}'" for user in valid)]

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "web.yml"
        path.write_text("basic_auth_users:\n" + "\n".join(lines) + "\n")
        endpoints = Endpoints(telemetry_path="/metrics",
                              render_metrics=lambda accept, timeout: (iter([b""]), "text/plain"),
                              is_ready=lambda: True, landing_html=lambda: "ok\n")
        server = WebServer("127.0.0.1:0", endpoints, WebConfigWatcher(str(path)).current)
        server.start()
        try:
            run(server.port, valid, args)
        finally:
            server.stop()


def run(port: int, valid: list[str], args: argparse.Namespace) -> None:
    fresh = iter(valid)
    alone = [login(port, next(fresh), PASSWORD) for _ in range(args.logins)]
    assert all(status == 200 for status, _ in alone), alone
    report("valid login, alone, not remembered", [seconds for _, seconds in alone])

    target = "slow" if args.slow_user_attack else None
    what = ("wrong passwords for the slow user" if target else "unknown users")
    with Attackers(port, args.attackers, target) as attackers:
        time.sleep(1.0)  # every attacker is mid-request
        under = [login(port, next(fresh), PASSWORD) for _ in range(args.logins)]
        remembered = login(port, valid[0], PASSWORD)
        time.sleep(0.5)
    assert all(status == 200 for status, _ in under) and remembered[0] == 200
    assert not attackers.other, f"attackers got {sorted(set(attackers.other))}, not only 401"
    print(f"while {args.attackers} threads send {what}, back to back:")
    report("valid login, not remembered", [seconds for _, seconds in under])
    report("valid login, remembered", [remembered[1]])
    report(f"refusals ({len(attackers.refusals)})", attackers.refusals)


def report(what: str, seconds: list[float]) -> None:
    if not seconds:
        print(f"  {what:<40} none finished")
        return
    print(f"  {what:<40} median {statistics.median(seconds) * 1000:8.0f} ms   "
          f"max {max(seconds) * 1000:8.0f} ms")


if __name__ == "__main__":
    main()
