"""Soak: `zego-exporter serve` against a lively simulated ZEGO API, faults switching at random.

This process runs the simulated API (tasks arriving, streaming, failing and ending), a
switchboard that the exporter's API URL points at (it forwards to the simulated API, to a copy
that checks signatures with another secret, resets connections or refuses them), and a few
scrapers that scrape continuously; the exporter is a separate `python -m zego_exporter serve`
process with its defaults except for shorter intervals, so its RSS and threads are its own.
The fault in force changes every few seconds, at random, among the kinds of the fault matrix
(tests/test_faults.py; all but an unresolvable host, which needs the exporter's own resolver)
and healthy periods. A warm-up (each fault kind once, then a stretch of random faults) comes
before the first measurement, so that it already includes what ordinary trouble costs: tasks
that ended while the API failed stay tracked until a lookup confirms it, and Python keeps the
memory of such peaks. It prints the exporter's RSS and thread count at the start and at the end
(each after a few seconds of health) and RSS at every minute, the scrapes served and failed, the
API outcomes the exporter counted and what it logged; exit status 0 when RSS and threads stayed
flat within 10 % and no scrape failed (non-200, a transport error, or slower than its deadline).

    python -m bench.soak                 # 2 minutes of warm-up, then 10 minutes of faults
    python -m bench.soak --minutes 0.25 --warmup 5 --tour 0.4 --settle 3   # as the tests do
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import selectors
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests

from tests.support.credentials import APP_ID, SECRET_TEXT
from zego_exporter.responses import ACTIONS
from zego_exporter.signing import Secret
from zego_exporter.simulator import (
    LIFECYCLES,
    ClockSkew,
    Drop,
    ErrorCode,
    Faults,
    HtmlPage,
    HttpStatus,
    Latency,
    MalformedJson,
    Oversized,
    Simulator,
    Slow,
    World,
    WrongTypes,
)
from zego_exporter.web import SCRAPE_TIMEOUT_HEADER

WRONG_SECRET = Secret("not-the-secret-0123456789abcdef0")
SCRAPE_DEADLINE = 5.0
FLAT = 0.10


# -- the switchboard: where the exporter's API calls go ---------------------------------------

class Switchboard:
    """A loopback TCP forwarder whose destination changes at run time.

    `route(address)` sends new connections to `address`; `route("reset")` accepts and resets
    them; `route("refuse")` closes the listening socket, so connecting is refused, until the
    next route opens it again on the same port. Every change hangs up on the connections in
    progress, so pooled keep-alive connections cannot carry on to the old destination.
    """

    def __init__(self) -> None:
        self._listener: socket.socket | None = self._listen(0)
        self.port = self._listener.getsockname()[1]
        self._destination: tuple[str, int] | str = "reset"
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, name="switchboard",
                                        daemon=True)
        self._thread.start()

    @staticmethod
    def _listen(port: int) -> socket.socket:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(128)
        listener.settimeout(0.05)
        return listener

    def route(self, destination: tuple[str, int] | str) -> None:
        with self._lock:
            self._destination = destination
            if destination == "refuse" and self._listener is not None:
                self._listener.close()
                self._listener = None
            elif destination != "refuse" and self._listener is None:
                self._listener = self._reopen()
            connections, self._connections = self._connections, set()
        for conn in connections:
            _reset(conn)

    def _reopen(self) -> socket.socket:
        for _ in range(50):  # the port was ours a moment ago; only a rare race can take it
            try:
                return self._listen(self.port)
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"cannot listen on 127.0.0.1:{self.port} again")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.route("refuse")

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                listener, destination = self._listener, self._destination
            if listener is None:
                time.sleep(0.05)
                continue
            try:
                conn, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            if not isinstance(destination, tuple):
                _reset(conn)
                continue
            try:
                upstream = socket.create_connection(destination, timeout=2)
            except OSError:
                _reset(conn)
                continue
            with self._lock:
                self._connections |= {conn, upstream}
            threading.Thread(target=self._pump, args=(conn, upstream), daemon=True).start()

    def _pump(self, conn: socket.socket, upstream: socket.socket) -> None:
        peers = {conn: upstream, upstream: conn}
        with selectors.DefaultSelector() as selector:
            for sock in peers:
                sock.setblocking(True)
                selector.register(sock, selectors.EVENT_READ, data=sock)
            try:
                while not self._stop.is_set():
                    for key, _ in selector.select(timeout=1.0):
                        source: socket.socket = key.data
                        data = source.recv(65536)
                        if not data:
                            return
                        peers[source].sendall(data)
            except OSError:
                return
            finally:
                with self._lock:
                    self._connections -= {conn, upstream}
                for sock in peers:
                    with contextlib.suppress(OSError):
                        sock.close()


def _reset(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        conn.close()


# -- the world, the faults, the exporter ------------------------------------------------------

class Soak:
    def __init__(self, seed: int, workdir: Path) -> None:
        lifecycle = LIFECYCLES["realistic"].scaled(0.05)  # streams for 6 s to 3 min
        # About as many tasks as run at any time once arrivals and endings balance.
        world = World(seed=seed, tasks=60, arrival_rate=1.0, lifecycle=lifecycle,
                      prune_after=60.0)
        showcase = world.add_showcase()
        self.sim = Simulator(APP_ID, Secret(SECRET_TEXT), world=world, seed=seed,
                             log_size=2000).start()
        # The same tasks behind an API that checks signatures with another secret.
        self.wrong_secret_api = Simulator(APP_ID, WRONG_SECRET, world=world,
                                          log_size=100).start()
        self.switchboard = Switchboard()
        self.rng = rng = random.Random(seed)
        self.routes: dict[str, tuple[str, int] | str] = {
            "connection_refused": "refuse",
            "connection_reset": "reset",
            "signature_rejected": ("127.0.0.1", self.wrong_secret_api.port),
        }
        self.api_faults: dict[str, Callable[[], Faults]] = {
            "connection_dropped": lambda: Faults(drop=Drop()),
            "timeout": lambda: Faults(slow=Slow(seconds=3.0)),
            "slow_within_timeout": lambda: Faults(latency=Latency(seconds=0.4)),
            "http_5xx": lambda: Faults(http_status=HttpStatus(
                status=rng.choice([500, 502, 503, 504]))),
            "html_page": lambda: Faults(html=HtmlPage(status=rng.choice([200, 502]))),
            "malformed_json": lambda: Faults(malformed_json=MalformedJson()),
            "wrong_types": lambda: Faults(wrong_types=WrongTypes()),
            "oversized_50mb": lambda: Faults(oversized=Oversized(
                size=50 * 1024 * 1024, chunk_size=64 * 1024, chunk_delay=0.05)),
            "rate_limit_storm": lambda: Faults(error=ErrorCode(code=400010009, rate=0.9)),
            "system_busy": lambda: Faults(error=ErrorCode(code=400010002, rate=0.5)),
            "signature_expired": lambda: Faults(clock_skew=ClockSkew(seconds=900)),
            "partial_mix": lambda: Faults(
                error=ErrorCode(code=400010000, rate=0.2), drop=Drop(rate=0.1),
                latency=Latency(seconds=0.2, rate=0.3), malformed_json=MalformedJson(rate=0.1)),
        }
        self.kinds = [*self.routes, *self.api_faults]
        self.current = "healthy"
        self.switch("healthy")

        port = closed_port()
        self.url = f"http://127.0.0.1:{port}"
        configured = [ids[0] for ids in showcase.values()] + ["gone-long-ago"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("ZEGO_")}
        env.update(
            ZEGO_APP_ID=str(APP_ID), ZEGO_SERVER_SECRET=SECRET_TEXT,
            ZEGO_API_URL=f"http://127.0.0.1:{self.switchboard.port}",
            ZEGO_TASK_IDS=",".join(configured), ZEGO_TIMEOUT="1s",
            ZEGO_REFRESH_INTERVAL="2s", ZEGO_REFRESH_FAST_INTERVAL="1s",
            ZEGO_DISCOVERY_INTERVAL="2s", ZEGO_TASKS_RETENTION="30s",
            ZEGO_REFRESH_IDLE_AFTER="0", ZEGO_EXPORTER_LISTEN_ADDRESS=f"127.0.0.1:{port}",
            ZEGO_EXPORTER_LOG_LEVEL="info",
        )
        self.log_path = workdir / "exporter.log"
        with open(self.log_path, "w") as log:
            self.exporter = subprocess.Popen(
                [sys.executable, "-m", "zego_exporter", "serve"], env=env,
                stdout=log, stderr=subprocess.STDOUT)
        self._wait_for_exporter()

    def _wait_for_exporter(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.exporter.poll() is not None:
                raise RuntimeError(f"the exporter ended with {self.exporter.returncode}: "
                                   + self.log_path.read_text()[-2000:])
            with contextlib.suppress(requests.RequestException):
                if requests.get(self.url + "/-/healthy", timeout=2).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError("the exporter did not start within 20 s")

    def switch(self, kind: str) -> None:
        """Clear every fault, then inject `kind` (nothing for "healthy")."""
        self.current = kind
        self.sim.faults = self.api_faults[kind]() if kind in self.api_faults else Faults()
        self.switchboard.route(self.routes.get(kind, ("127.0.0.1", self.sim.port)))

    def figures(self, samples: int = 5) -> tuple[float, float]:
        """The exporter's (RSS in MiB, threads): medians of a few samples half a second apart."""
        rss, threads = [], []
        for _ in range(samples):
            status = Path(f"/proc/{self.exporter.pid}/status").read_text()
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            rss.append(int(fields["VmRSS"].split()[0]) / 1024)
            threads.append(int(fields["Threads"]))
            time.sleep(0.5)
        return statistics.median(rss), statistics.median(threads)

    def stop(self) -> int | None:
        code = None
        if self.exporter.poll() is None:
            self.exporter.terminate()
            try:
                code = self.exporter.wait(10)
            except subprocess.TimeoutExpired:
                self.exporter.kill()
                self.exporter.wait()
        self.switchboard.close()
        self.wrong_secret_api.stop()
        self.sim.stop()
        return code


def closed_port() -> int:
    """A loopback port nothing listens on (it was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- scraping and reporting --------------------------------------------------------------------

@dataclass
class Scrapes:
    served: int = 0
    non_200: int = 0
    failed: int = 0
    """Transport errors and answers slower than the scrape deadline."""
    latencies: list[float] = field(default_factory=list)
    healthy_latencies: list[float] = field(default_factory=list)
    """Scrapes that started while no fault was in force."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def errors(self) -> int:
        return self.non_200 + self.failed


def scraper(url: str, scrapes: Scrapes, stop: threading.Event, soak: Soak) -> None:
    with requests.Session() as session:
        while not stop.is_set():
            healthy = soak.current == "healthy"
            started = time.monotonic()
            try:
                answer = session.get(url, headers={SCRAPE_TIMEOUT_HEADER: f"{SCRAPE_DEADLINE:g}"},
                                     timeout=SCRAPE_DEADLINE + 5)
                status = answer.status_code
            except requests.RequestException:
                status = 0
            took = time.monotonic() - started
            with scrapes.lock:
                scrapes.latencies.append(took)
                if healthy:
                    scrapes.healthy_latencies.append(took)
                if status == 200 and took <= SCRAPE_DEADLINE:
                    scrapes.served += 1
                elif status not in (0, 200):
                    scrapes.non_200 += 1
                else:
                    scrapes.failed += 1
            stop.wait(0.2)


def api_outcomes(metrics_text: str) -> dict[str, dict[str, float]]:
    found: dict[str, dict[str, float]] = {action: {} for action in ACTIONS}
    pattern = re.compile(r"^zego_digital_human_api_requests_total\{(.*)\} (\S+)$", re.MULTILINE)
    for labels, value in pattern.findall(metrics_text):
        parsed = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if float(value):
            found.setdefault(parsed["action"], {})[parsed["code"]] = float(value)
    return found


def percentiles(latencies: list[float]) -> str:
    if not latencies:
        return "no scrapes"
    ordered = sorted(latencies)
    p50 = ordered[len(ordered) // 2]
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return (f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {ordered[-1] * 1000:.0f} ms "
            f"({len(ordered)})")


def change(start: float, end: float) -> float:
    return (end - start) / start if start else 0.0


def random_faults(soak: Soak, seconds: float, periods: Counter[str], held: defaultdict[str, float],
                  every_minute: Callable[[], None] = lambda: None) -> None:
    """Switch among the fault kinds and health at random for `seconds`, then heal."""
    started = time.monotonic()
    ends_at, next_minute = started + seconds, started + 60
    while (now := time.monotonic()) < ends_at:
        kind = "healthy" if soak.rng.random() < 0.35 else soak.rng.choice(soak.kinds)
        hold = min(soak.rng.uniform(2.0, 6.0), ends_at - now)
        soak.switch(kind)
        periods[kind] += 1
        held[kind] += hold
        time.sleep(hold)
        if time.monotonic() >= next_minute:
            every_minute()
            next_minute += 60
    soak.switch("healthy")


def tracked_tasks(url: str) -> int:
    text = requests.get(url, timeout=SCRAPE_DEADLINE + 5).text
    return len(re.findall(r"^zego_digital_human_task_info\{", text, re.MULTILINE))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0,
                        help="how long faults switch at random after the warm-up (default 10)")
    parser.add_argument("--warmup", type=float, default=120.0,
                        help="seconds of random faults before the first measurement, so that "
                             "it sees the high-water mark of ordinary trouble (default 120)")
    parser.add_argument("--tour", type=float, default=1.0,
                        help="seconds of each fault kind at the start of the warm-up (default 1)")
    parser.add_argument("--settle", type=float, default=10.0,
                        help="seconds of health before each measurement (default 10)")
    parser.add_argument("--scrapers", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="zego-soak-") as workdir:
        soak = Soak(args.seed, Path(workdir))
        scrapes = Scrapes()
        stop = threading.Event()
        url = soak.url + "/metrics"
        threads = [threading.Thread(target=scraper, args=(url, scrapes, stop, soak),
                                    name=f"scraper-{n}") for n in range(args.scrapers)]
        periods: Counter[str] = Counter()
        held: defaultdict[str, float] = defaultdict(float)
        rss_by_minute: list[float] = []
        exit_code = None
        try:
            for thread in threads:
                thread.start()
            warmup_started = time.monotonic()
            for kind in soak.kinds:  # every fault once, so first-time allocations are made now
                soak.switch(kind)
                time.sleep(args.tour)
            random_faults(soak, args.warmup, Counter(), defaultdict(float))
            time.sleep(args.settle)
            warmup = time.monotonic() - warmup_started
            rss_start, threads_start = soak.figures()
            tasks_start = tracked_tasks(url)
            print(f"soak: {args.minutes:g} min of random faults against `zego-exporter serve` "
                  f"(pid {soak.exporter.pid}), {args.scrapers} scrapers, after a warm-up of "
                  f"{warmup:.0f} s (each fault once, then {args.warmup:g} s of random faults), "
                  f"settle {args.settle:g} s, seed {args.seed}")
            print(f"start (after warm-up): exporter RSS {rss_start:.1f} MiB, "
                  f"threads {threads_start:.0f}, tracked tasks {tasks_start}", flush=True)

            random_faults(soak, 60 * args.minutes, periods, held,
                          lambda: rss_by_minute.append(soak.figures(samples=1)[0]))
            time.sleep(args.settle)
            rss_end, threads_end = soak.figures()
            tasks_end = tracked_tasks(url)
            final = requests.get(url, timeout=SCRAPE_DEADLINE + 5).text
        finally:
            stop.set()
            for thread in threads:
                thread.join(SCRAPE_DEADLINE + 10)
            exit_code = soak.stop()
        log = soak.log_path.read_text()

    rss_change, threads_change = change(rss_start, rss_end), change(threads_start, threads_end)
    flat = abs(rss_change) <= FLAT and abs(threads_change) <= FLAT
    everything, healthy = percentiles(scrapes.latencies), percentiles(scrapes.healthy_latencies)
    levels = Counter(re.findall(r"\blevel=(\w+)", log))
    tracebacks = log.count("Traceback")
    print(f"end (after settle):    exporter RSS {rss_end:.1f} MiB, threads {threads_end:.0f}, "
          f"tracked tasks {tasks_end}")
    if rss_by_minute:
        print("exporter RSS at each minute (MiB): "
              + " ".join(f"{rss:.1f}" for rss in rss_by_minute))
    print(f"RSS change {100 * rss_change:+.1f} %, threads change {100 * threads_change:+.1f} % "
          f"(limit {100 * FLAT:.0f} %): {'flat' if flat else 'NOT FLAT'}")
    print(f"scrapes served {scrapes.served}, errors {scrapes.errors} (non-200 "
          f"{scrapes.non_200}, failed or slower than {SCRAPE_DEADLINE:g} s {scrapes.failed})")
    print(f"scrape latency: all {everything}; while healthy {healthy} (a scrape waits up to "
          "--web.max-scrape-wait, 2 s, for urgent lookups that can start before then)")
    print("fault periods: " + ", ".join(
        f"{kind} {periods[kind]}x/{held[kind]:.0f}s" for kind in sorted(periods)))
    print("API outcomes counted by the exporter (zego_digital_human_api_requests_total):")
    for action, codes in api_outcomes(final).items():
        print(f"  {action}: " + ", ".join(f"{code}={value:.0f}" for code, value in
                                          sorted(codes.items(), key=lambda kv: -kv[1])))
    rejected = sum(soak.sim.stats.action(action).rate_limited for action in ACTIONS)
    print(f"simulator: {rejected} requests rejected by its own per-Action limit")
    print("exporter log lines by level: " + ", ".join(
        f"{level} {count}" for level, count in sorted(levels.items()))
        + f"; tracebacks {tracebacks}; exit code on SIGTERM {exit_code}")
    ok = flat and scrapes.errors == 0 and tracebacks == 0 and exit_code == 0
    print("result: PASS" if ok else "result: FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
