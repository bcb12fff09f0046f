"""Demand: does scraping more often cost more API calls? It should not: demand is on or off.

Two exporters run side by side in this process (so the machine's load hits both alike), each
against its own simulated ZEGO API with 8 streaming tasks (8 lookups a second: below the
budget, so demand could matter): one scraped once a second, the other twice as often. After a
warm-up, prints the API calls each caused and their difference. tests/test_refresh.py holds
the property exactly on a fake clock (test_scraping_more_often_causes_no_more_api_calls).

    python -m bench.demand                 # 20 s after a 2 s warm-up
    python -m bench.demand --seconds 60
"""

from __future__ import annotations

import argparse
import threading
import time

import requests

from tests.support.credentials import APP_ID, SECRET
from zego_exporter.exporter import Exporter, ExporterConfig
from zego_exporter.responses import ACTION_GET_STATUS, ACTION_QUERY_TASKS
from zego_exporter.simulator import Simulator, World
from zego_exporter.tracker import RefreshPolicy


def api_calls(seconds: float, warmup: float = 2.0) -> tuple[int, int]:
    """(calls with one scraper, calls with two) in `seconds` after `warmup`."""
    stop = threading.Event()
    stacks = []
    for _ in range(2):
        world = World.static(8)
        sim = Simulator(APP_ID, SECRET, world=world, qps=10).start()
        config = ExporterConfig(
            app_id=APP_ID, server_secret=SECRET, api_url=sim.url,
            task_ids=tuple(t.task_id for t in world.tasks()), discovery=False,
            # Long enough that neither exporter idles between its scrapes: demand is on for
            # both, and the only difference left is how often they are scraped.
            listen_address="127.0.0.1:0", idle_after=30.0,
            policy=RefreshPolicy(interval=1, fast_interval=1, discovery_interval=1),
        )
        exporter = Exporter(config)
        exporter.start()
        stacks.append((sim, exporter))

    def scrape(url: str) -> None:
        with requests.Session() as session:
            while not stop.is_set():
                session.get(url, timeout=10).raise_for_status()
                stop.wait(1.0)

    threads = [threading.Thread(target=scrape, args=(exporter.web.url + "/metrics",))
               for scrapers, (_, exporter) in zip((1, 2), stacks, strict=True)
               for _ in range(scrapers)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(warmup)  # the first round is done
        for sim, _ in stacks:
            sim.reset_stats()
        time.sleep(seconds)
        one, two = (sim.stats.action(ACTION_GET_STATUS).requests
                    + sim.stats.action(ACTION_QUERY_TASKS).requests for sim, _ in stacks)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        for sim, exporter in stacks:
            exporter.stop()
            sim.stop()
    return one, two


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    one, two = api_calls(args.seconds)
    print(f"API calls in {args.seconds:g} s: one scraper {one}, two scrapers {two} "
          f"(difference {two - one:+d}, {100 * (two - one) / max(one, 1):+.1f} %)")


if __name__ == "__main__":
    main()
