"""Load and soak: `zego-exporter serve` under many scrapers, and under faults for a while.

The exporter runs as its own process (so its threads and memory are its own, read from /proc),
against the simulated ZEGO API in this process. The load test points 50 scrapers with their own
keep-alive sessions at it for 30 s while it tracks about 320 tasks with discovery on, and judges
pacing where the server counts. The soak test runs bench/soak.py for about 45 s.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from test_serve import exporter_process, fetch, samples, serve_env, wait_until

from zego_exporter.responses import ACTIONS
from zego_exporter.signing import Secret
from zego_exporter.simulator import LIFECYCLES, Simulator, World
from zego_exporter.web import SCRAPE_TIMEOUT_HEADER

SCRAPERS = 50
SECONDS = 30.0
SCRAPE_DEADLINE = 10.0  # Prometheus' default scrape timeout
REPO = Path(__file__).resolve().parent.parent


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


def percentile(ordered: list[float], share: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


@pytest.mark.slow
def test_fifty_scrapers_for_thirty_seconds(tmp_path: Path) -> None:
    lifecycle = LIFECYCLES["realistic"].scaled(0.2)  # streams for 24 s to 12 min
    world = World(seed=3, tasks=300, arrival_rate=0.5, lifecycle=lifecycle)
    (tmp_path / "tasks").write_text("".join(f"ended-task-{n:03d}\n" for n in range(50)))
    with Simulator(1234567890, Secret("0123456789abcdef0123456789abcdef"),
                   world=world) as sim:
        env = serve_env(sim, ZEGO_TASK_FILE=str(tmp_path / "tasks"),
                        ZEGO_DISCOVERY_INTERVAL="5s", ZEGO_EXPORTER_LOG_LEVEL="warn")
        with exporter_process(["serve"], env, tmp_path / "run") as exp:
            exp.wait_ready(20)
            pid = exp.proc.pid
            threads_before, rss_before = proc_status(pid)
            results = Results()
            stop_at = time.monotonic() + SECONDS
            scrapers = [threading.Thread(target=scrape_until,
                                         args=(exp.url + "/metrics", stop_at, results))
                        for _ in range(SCRAPERS)]
            for scraper in scrapers:
                scraper.start()
            peak_threads = threads_before
            while any(s.is_alive() for s in scrapers):
                peak_threads = max(peak_threads, proc_status(pid)[0])
                time.sleep(0.5)
            for scraper in scrapers:
                scraper.join()
            calls = {a: sim.stats.action(a) for a in ACTIONS}
            peaks = {a: sim.stats.peak(action=a, accepted_only=True) for a in ACTIONS}

            # The load is gone: the threads that served it must go too.
            wait_until(lambda: proc_status(pid)[0] <= threads_before + 2, 15,
                       "the exporter's threads to return to their number before the load",
                       exp.proc)
            threads_after, rss_after = proc_status(pid)
            final = samples(fetch(exp.url, "/metrics").text)
            assert "Traceback" not in exp.stderr()

    ordered = sorted(results.latencies)
    tracked = sum(s.value for s in final if s.name == "zego_digital_human_tracked_tasks")
    print(f"\nLOAD {SCRAPERS} scrapers x {SECONDS:g} s against serve tracking {tracked:.0f} "
          f"tasks: {len(ordered)} scrapes ({len(ordered) / SECONDS:.0f}/s), statuses "
          f"{results.statuses}, errors {len(results.errors)}")
    print(f"LOAD latency p50 {statistics.median(ordered) * 1000:.0f} ms, p90 "
          f"{percentile(ordered, 0.9) * 1000:.0f} ms, p99 {percentile(ordered, 0.99) * 1000:.0f}"
          f" ms, max {ordered[-1] * 1000:.0f} ms")
    print(f"LOAD exporter threads {threads_before} before, {peak_threads} at peak, "
          f"{threads_after} after; RSS {rss_before:.1f} MiB before, {rss_after:.1f} MiB after")
    for action in ACTIONS:
        print(f"LOAD {action}: {calls[action].requests} requests, busiest second "
              f"{peaks[action]} accepted, {calls[action].rate_limited} rate limited")

    assert results.errors == []
    assert set(results.statuses) == {200}
    assert len(ordered) >= SCRAPERS  # every scraper got answers
    assert percentile(ordered, 0.99) < SCRAPE_DEADLINE
    assert tracked >= 300
    for action in ACTIONS:
        assert peaks[action] <= 10, action
        assert calls[action].rate_limited == 0, action
    assert peak_threads <= threads_before + SCRAPERS + 5  # one per keep-alive connection


@pytest.mark.slow
def test_a_short_soak_keeps_memory_and_threads_flat_and_every_scrape_answered() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--minutes", "0.25", "--warmup", "5", "--tour", "0.4",
         "--settle", "3"], cwd=REPO, capture_output=True, text=True, timeout=240, check=False)
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "result: PASS" in result.stdout
    assert "errors 0 " in result.stdout
