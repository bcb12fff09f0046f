"""The load scenario: many scrapers at once against `zego-exporter serve` as its own process.

Shared by tests/test_load.py (which asserts what must hold under any load) and bench/load.py
(which prints latency and throughput). The exporter tracks about 300 tasks of the simulated
ZEGO API with discovery on, plus 50 configured TaskIds that ZEGO does not know; its threads
and RSS are read from /proc.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from tests.support.credentials import APP_ID, SECRET
from tests.support.processes import exporter_process, fetch, serve_env
from tests.support.scrapes import samples
from tests.support.waiting import wait_until
from zego_exporter.responses import ACTIONS
from zego_exporter.simulator import LIFECYCLES, Simulator, World
from zego_exporter.web import SCRAPE_TIMEOUT_HEADER

SCRAPE_DEADLINE = 10.0  # Prometheus' default scrape timeout


def proc_status(pid: int) -> tuple[int, float]:
    """(threads, RSS in MiB) of a process."""
    fields = dict(line.split(":", 1) for line in
                  Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["Threads"]), int(fields["VmRSS"].split()[0]) / 1024


@dataclass
class Results:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def scrape_until(url: str, stop_at: float, results: Results) -> None:
    """Scrape `url` on one kept-alive session until `stop_at` (monotonic)."""
    with requests.Session() as session:
        while time.monotonic() < stop_at:
            started = time.monotonic()
            try:
                answer = session.get(url, timeout=SCRAPE_DEADLINE + 5,
                                     headers={SCRAPE_TIMEOUT_HEADER: f"{SCRAPE_DEADLINE:g}"})
            except requests.RequestException as exc:
                with results.lock:
                    results.errors.append(repr(exc))
                continue
            took = time.monotonic() - started
            with results.lock:
                results.latencies.append(took)
                results.statuses[answer.status_code] = (
                    results.statuses.get(answer.status_code, 0) + 1)


@dataclass(frozen=True)
class LoadRun:
    """What one run saw."""

    results: Results
    tracked: float
    threads: tuple[int, int, int]
    """The exporter's threads before the load, at its peak, and after it."""
    rss: tuple[float, float]
    """The exporter's RSS (MiB) before and after the load."""
    requests: dict[str, int]
    peaks: dict[str, int]
    rejected: dict[str, int]
    stderr: str


def run_load(scrapers: int, seconds: float, workdir: Path) -> LoadRun:
    """`scrapers` scrapers for `seconds` against a fresh exporter and simulated API."""
    lifecycle = LIFECYCLES["realistic"].scaled(0.2)  # streams for 24 s to 12 min
    world = World(seed=3, tasks=300, arrival_rate=0.5, lifecycle=lifecycle)
    (workdir / "tasks").write_text("".join(f"ended-task-{n:03d}\n" for n in range(50)))
    with Simulator(APP_ID, SECRET, world=world) as sim:
        env = serve_env(sim, ZEGO_TASK_FILE=str(workdir / "tasks"),
                        ZEGO_DISCOVERY_INTERVAL="5s", ZEGO_EXPORTER_LOG_LEVEL="warn")
        with exporter_process(["serve"], env, workdir / "run") as exp:
            exp.wait_ready(20)
            pid = exp.proc.pid
            threads_before, rss_before = proc_status(pid)
            results = Results()
            stop_at = time.monotonic() + seconds
            threads = [threading.Thread(target=scrape_until,
                                        args=(exp.url + "/metrics", stop_at, results))
                       for _ in range(scrapers)]
            for thread in threads:
                thread.start()
            peak_threads = threads_before
            while any(thread.is_alive() for thread in threads):
                peak_threads = max(peak_threads, proc_status(pid)[0])
                time.sleep(0.5)
            for thread in threads:
                thread.join()
            calls = {action: sim.stats.action(action) for action in ACTIONS}
            peaks = {action: sim.stats.peak(action=action, accepted_only=True)
                     for action in ACTIONS}
            # The load is gone: the threads that served it go too.
            wait_until(lambda: proc_status(pid)[0] <= threads_before + 2, timeout=15,
                       what="the exporter's threads to return to their number before the load",
                       proc=exp.proc)
            threads_after, rss_after = proc_status(pid)
            final = samples(fetch(exp.url, "/metrics").text)
            stderr = exp.stderr()
    return LoadRun(
        results=results,
        tracked=sum(s.value for s in final if s.name == "zego_digital_human_tracked_tasks"),
        threads=(threads_before, peak_threads, threads_after), rss=(rss_before, rss_after),
        requests={action: calls[action].requests for action in ACTIONS}, peaks=peaks,
        rejected={action: calls[action].rate_limited for action in ACTIONS}, stderr=stderr,
    )
