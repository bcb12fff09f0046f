"""Scrape benchmark: what one `/metrics` scrape costs at 100, 1,000 and 10,000 tasks.

A real exporter runs in this process with its web server on loopback; its tracker is filled
directly with tasks in realistic states (bench.harness.fill_tracker; no API, no refreshing).
Each scrape is a real HTTP request on a kept-alive connection, timed from sending it to the
last byte of the answer: once with the headers Prometheus sends (it asks for OpenMetrics first,
and for gzip), once without gzip, and the same two asking for the text format only. Beside
them, in the same run and interleaved, prometheus_client's own `generate_latest` (text, and
OpenMetrics) renders the same samples from plain metric families built from a snapshot of the
same tracker, as a straightforward collector would; only the rendering is timed. Prints the
median of each, and its ratio to the text `generate_latest` (the baseline), both in wall-clock
time and in CPU time of this process (client and server threads together). On a shared machine
the CPU time is the steadier figure: time spent waiting for a core does not count.

    python -m bench.scrape                     # N = 100, 1000, 10000
    python -m bench.scrape --tasks 10000 --repeat 15
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import random
import select
import socket
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.registry import Collector, CollectorRegistry

from bench.harness import APP_ID, SECRET, fill_tracker
from zego_exporter.collector import ZegoCollector
from zego_exporter.exporter import Exporter, ExporterConfig

# What Prometheus 2.42 (Debian 12) sends with every scrape, captured on loopback.
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
TEXT_ACCEPT = "text/plain;version=0.0.4"
BASELINE = "generate_latest text"
TARGET = 0.3


@dataclass(frozen=True)
class Variant:
    name: str
    accept: str = ""
    gzip: bool = False
    render: str = ""
    """For the prometheus_client baselines: "text" or "openmetrics"."""

    def headers(self) -> dict[str, str]:
        """The request headers of this scrape, as Prometheus would send them."""
        return {
            "Accept": self.accept,
            "Accept-Encoding": "gzip" if self.gzip else "identity",
            "User-Agent": "Prometheus/2.42.0",
            "X-Prometheus-Scrape-Timeout-Seconds": "10",
        }


VARIANTS = (
    Variant(BASELINE, render="text"),
    Variant("generate_latest OpenMetrics", render="openmetrics"),
    Variant("scrape, Prometheus headers", PROMETHEUS_ACCEPT, gzip=True),
    Variant("scrape, Prometheus Accept, no gzip", PROMETHEUS_ACCEPT),
    Variant("scrape, text format, gzip", TEXT_ACCEPT, gzip=True),
    Variant("scrape, text format, no gzip", TEXT_ACCEPT),
)


class _Prebuilt(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def plain_families(exporter: Exporter) -> list[Metric]:
    """What a straightforward collector yields: families built from one tracker snapshot, and
    the same process, platform, GC and self-instrumentation families the exporter serves."""
    snap = exporter.tracker.snapshot()
    registry = CollectorRegistry()
    registry.register(ZegoCollector(lambda: snap, exporter.collector.qps, exporter.config.policy))
    exporter.instruments.register(registry)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return list(registry.collect())


def _closed_by_peer(sock: socket.socket) -> bool:
    """True when the other end has closed the connection (it reads as ready and empty)."""
    readable, _, _ = select.select([sock], [], [], 0)
    try:
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:  # reset
        return True


@dataclass
class Sizes:
    samples: int
    text_bytes: int
    gzip_bytes: int
    openmetrics_bytes: int
    openmetrics_gzip_bytes: int


class Bench:
    """One exporter with `tasks` tasks, and a kept-alive connection to it."""

    def __init__(self, tasks: int) -> None:
        config = ExporterConfig(app_id=APP_ID, server_secret=SECRET,
                                api_url="http://127.0.0.1:9/", listen_address="127.0.0.1:0",
                                discovery=False, idle_after=None)
        self.exporter = Exporter(config)
        fill_tracker(self.exporter.tracker, tasks)
        self.exporter.web.start()  # the web layer only: no refreshing, the data stays put
        self.conn = http.client.HTTPConnection("127.0.0.1", self.exporter.web.port, timeout=60)

    def close(self) -> None:
        self.conn.close()
        self.exporter.web.stop()
        self.exporter.client.close()

    def fetch(self, variant: Variant) -> tuple[float, bytes, str]:
        if self.conn.sock is not None and _closed_by_peer(self.conn.sock):
            # The exporter closes connections idle for a minute: at 100,000 tasks the baseline
            # renders between two scrapes take that long. Open a new one, outside the timing.
            self.conn.close()
            self.conn.connect()
        started = time.perf_counter()
        self.conn.request("GET", "/metrics", headers=variant.headers())
        answer = self.conn.getresponse()
        body = answer.read()
        took = time.perf_counter() - started
        if answer.status != 200:
            raise RuntimeError(f"scrape answered HTTP {answer.status}")
        return took, body, answer.getheader("Content-Encoding", "")

    def measure(self, variant: Variant) -> tuple[float, float]:
        """(wall-clock seconds, CPU seconds of this process) of one scrape or baseline render."""
        if variant.render:
            registry = _Prebuilt(plain_families(self.exporter))
            render: Callable[[Collector], bytes] = (
                generate_latest if variant.render == "text" else generate_openmetrics)
            started, cpu = time.perf_counter(), time.process_time()
            render(registry)
            return time.perf_counter() - started, time.process_time() - cpu
        cpu = time.process_time()
        took = self.fetch(variant)[0]
        return took, time.process_time() - cpu

    def sizes(self) -> Sizes:
        _, text, _ = self.fetch(Variant("", TEXT_ACCEPT))
        _, text_gz, encoding = self.fetch(Variant("", TEXT_ACCEPT, gzip=True))
        _, om, _ = self.fetch(Variant("", PROMETHEUS_ACCEPT))
        _, om_gz, _ = self.fetch(Variant("", PROMETHEUS_ACCEPT, gzip=True))
        assert encoding == "gzip" and gzip.decompress(text_gz).count(b"\n") > 0
        samples = sum(1 for line in text.splitlines() if line and not line.startswith(b"#"))
        return Sizes(samples, len(text), len(text_gz), len(om), len(om_gz))


Times = dict[str, list[tuple[float, float]]]
"""Per variant, (wall-clock, CPU) seconds of each round."""


def run(tasks: int, repeat: int, seed: int = 0) -> tuple[Sizes, Times]:
    bench = Bench(tasks)
    try:
        for variant in VARIANTS:  # warm up: connection, imports
            bench.measure(variant)
        sizes = bench.sizes()
        times: Times = {v.name: [] for v in VARIANTS}
        order = list(VARIANTS)
        rng = random.Random(seed)
        for _ in range(repeat):
            rng.shuffle(order)  # interleaved, in a new order each round
            for variant in order:
                times[variant.name].append(bench.measure(variant))
        return sizes, times
    finally:
        bench.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--repeat", type=int, default=0,
                        help="rounds per size (default: 41, 21 and 9 for 100, 1000, 10000)")
    args = parser.parse_args()
    print(f"{'tasks':>6} {'samples':>8} {'text MB':>8} {'gzip MB':>8} {'OM MB':>7} "
          f"{'OM gzip MB':>10}")
    results = []
    for tasks in args.tasks:
        repeat = args.repeat or (41 if tasks <= 100 else 21 if tasks <= 1000 else 9)
        sizes, times = run(tasks, repeat)
        results.append((tasks, repeat, times))
        print(f"{tasks:>6} {sizes.samples:>8} {sizes.text_bytes / 1e6:>8.2f} "
              f"{sizes.gzip_bytes / 1e6:>8.3f} {sizes.openmetrics_bytes / 1e6:>7.2f} "
              f"{sizes.openmetrics_gzip_bytes / 1e6:>10.3f}", flush=True)
    print()
    print(f"{'tasks':>6} {'rounds':>6}  {'what':<36} {'median ms':>10} {'min ms':>8} "
          f"{'/ baseline':>10} {'CPU ms':>8} {'/ baseline':>10}")
    for tasks, repeat, times in results:
        baseline = [statistics.median(t[kind] for t in times[BASELINE]) for kind in (0, 1)]
        for variant in VARIANTS:
            wall = [t[0] for t in times[variant.name]]
            cpu = statistics.median(t[1] for t in times[variant.name])
            median = statistics.median(wall)
            print(f"{tasks:>6} {repeat:>6}  {variant.name:<36} {1e3 * median:>10.1f} "
                  f"{1e3 * min(wall):>8.1f} {median / baseline[0]:>10.2f} "
                  f"{1e3 * cpu:>8.1f} {cpu / baseline[1]:>10.2f}")
    print(f"\nbaseline: prometheus_client {BASELINE} of the same samples from prebuilt families "
          "(rendering only, no HTTP); scrapes: real HTTP on loopback, request to last byte; "
          f"CPU: this process, client included. Target at 10,000 tasks: a scrape, with gzip or "
          f"without, at most {TARGET:.2f} x the baseline.")


if __name__ == "__main__":
    main()
