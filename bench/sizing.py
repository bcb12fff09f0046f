"""Sizing: peak memory of `zego-exporter serve` as deployed, per running task, to size a container.

bench/memory.py measures the tracker and scrapes alone (no API calls). This measures the whole
production path the Kubernetes base runs: a real `python -m zego_exporter serve` process with
discovery on (the running list of N tasks read every few seconds), `--storage.path` on (the
SQLite writer), and two scrapers hitting it at the same moment every few seconds (one plain, one
with Prometheus' headers: OpenMetrics and gzip), against the simulated ZEGO API in this process
with N tasks streaming. The same run with no task at all is the baseline. It prints the
exporter's peak (VmHWM) and current RSS after the run, the peak per task over the baseline,
the storage file's size (with its -wal), and the memory request and limit they suggest: the
peak rounded up to 16Mi, and twice that. It checks nothing; deploy/kubernetes/deployment.yaml
and docs/kubernetes.md quote its figures.

    python -m bench.sizing                       # 10,000 tasks, 60 s
    python -m bench.sizing --tasks 1000 10000 --seconds 90
"""

from __future__ import annotations

import argparse
import gzip
import tempfile
import threading
import time
from pathlib import Path

from bench.scrape import PROMETHEUS_ACCEPT, TEXT_ACCEPT
from tests.support.credentials import APP_ID, SECRET_TEXT
from tests.support.processes import exporter_process, fetch, serve_env
from zego_exporter.signing import Secret
from zego_exporter.simulator import Simulator, World

MIB = 1024 * 1024


def _scrape_pair(url: str) -> int:
    """Two scrapes started at the same moment; the bytes of decoded text they returned."""
    sizes: list[int] = []

    def one(headers: dict[str, str]) -> None:
        answer = fetch(url, "/metrics", headers=headers, timeout=60)
        body = answer.body
        if answer.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        sizes.append(len(body))

    threads = [threading.Thread(target=one, args=(headers,)) for headers in (
        {"Accept": TEXT_ACCEPT},
        {"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"},
    )]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(sizes)


def _discovered(url: str) -> float:
    text = fetch(url, "/metrics", timeout=60).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith('zego_digital_human_tracked_tasks{source="discovered"}'))


def measure(tasks: int, seconds: float, workdir: Path) -> dict[str, float]:
    sim = Simulator(APP_ID, Secret(SECRET_TEXT), world=World.static(tasks), qps=0).start()
    try:
        env = serve_env(sim, ZEGO_STORAGE_PATH=str(workdir / "state.db"))
        with exporter_process(["serve"], env, workdir / "serve") as run:
            run.wait_ready(timeout=60)
            deadline = time.monotonic() + 120
            while _discovered(run.url) < tasks:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the exporter did not discover {tasks} tasks in 120 s")
                time.sleep(1)
            stop_at = time.monotonic() + seconds
            pairs = 0
            while time.monotonic() < stop_at:
                _scrape_pair(run.url)
                pairs += 1
                time.sleep(2)
            peak = _status_bytes(run.proc.pid, "VmHWM")
            rest = _status_bytes(run.proc.pid, "VmRSS")
            db = sum(path.stat().st_size for path in workdir.glob("state.db*"))  # with -wal
    finally:
        sim.stop()
    return {"peak": peak, "rest": rest, "pairs": pairs, "db": db}


def _status_bytes(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=[10000])
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    print(f"{'tasks':>8} {'peak':>9} {'at rest':>9} {'peak/task':>10} {'scrape pairs':>12} "
          f"{'db file':>8}  suggested request / limit")
    baseline = 0.0
    for tasks in [0, *args.tasks]:
        with tempfile.TemporaryDirectory(prefix="bench-sizing-") as workdir:
            m = measure(tasks, args.seconds, Path(workdir))
        if tasks == 0:
            baseline = m["peak"]
        per_task = f"{(m['peak'] - baseline) / tasks / 1000:.2f}KB" if tasks else "baseline"
        request = -(-m["peak"] // (16 * MIB)) * 16
        print(f"{tasks:>8,} {m['peak'] / MIB:>7.1f}Mi {m['rest'] / MIB:>7.1f}Mi {per_task:>10} "
              f"{m['pairs']:>12.0f} {m['db'] / MIB:>6.2f}Mi  {request:.0f}Mi / "
              f"{2 * request:.0f}Mi")


if __name__ == "__main__":
    main()
