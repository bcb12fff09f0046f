"""Load and soak: `zego-exporter serve` under many scrapers at once, and under faults a while.

The load test runs the scenario of bench/load.py (tests/support/load.py) at a small size, 20
scrapers for 8 s against about 300 tasks with discovery on, and asserts what must hold under
any load: every scrape answered with 200, the API budget held where the server counts, the
threads that served the load gone afterwards. Latency and throughput figures are printed by
`python -m bench.load`. The soak test runs bench/soak.py for about 45 s and takes its verdict
(memory and threads flat, every scrape answered within Prometheus' deadline).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.load import run_load
from tests.support.paths import ROOT
from zego_exporter.responses import ACTIONS

SCRAPERS = 20


@pytest.mark.slow
def test_many_scrapers_at_once_are_all_answered_within_the_budget(tmp_path: Path) -> None:
    run = run_load(SCRAPERS, 8.0, tmp_path)
    assert run.results.errors == []
    assert set(run.results.statuses) == {200}
    assert len(run.results.latencies) >= SCRAPERS  # every scraper got answers
    assert run.tracked >= 300
    for action in ACTIONS:
        assert run.peaks[action] <= 10, action
        assert run.rejected[action] == 0, action
    before, peak, after = run.threads
    assert peak <= before + SCRAPERS + 5  # one per keep-alive connection
    assert after <= before + 2
    assert "Traceback" not in run.stderr


@pytest.mark.slow
def test_a_short_soak_keeps_memory_and_threads_flat_and_every_scrape_answered() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--minutes", "0.25", "--warmup", "5", "--tour", "0.4",
         "--settle", "3"], cwd=ROOT, capture_output=True, text=True, timeout=240, check=False)
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "result: PASS" in result.stdout
    assert "errors 0 " in result.stdout
