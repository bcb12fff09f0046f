"""Memory benchmark: resident memory per tracked task, at rest and while two scrapes run at once.

Each measurement runs in a fresh subprocess. It starts a real exporter (web layer on loopback, no
refreshing), scrapes it empty and takes that RSS as the baseline. Then it fills the tracker with
tasks in realistic states (bench.harness.fill_tracker: simulator-style 128-bit TaskIds, rooms and
streams, fetched data, a few failures, a fifth discovered) and has two clients scrape it at the
same moment, each on its own connection: one plain (text format, no gzip) and one with
Prometheus' headers (OpenMetrics first, gzip). Both read the body as it comes and keep none of
it. This happens three times; before the third, every task is refreshed once more (new answer
objects, as refreshing makes). The peak (VmHWM) is reset before each pair of scrapes.

Per task, over the empty exporter: "peak" is the highest peak of the pairs, the figure to size a
container's memory limit by (at rest plus two scrapes in progress; the target is at most
2.5 KB); "rest" is the RSS after the scrapes, garbage collected; "held" is the same after
glibc's malloc_trim(0), that is without the freed memory glibc keeps for reuse; "snapshot" is
what one scrape's snapshot of the tracker holds (its list of task views and its failure counts).
Medians of a few runs.

--compare DIR measures the zego_exporter package of another checkout too (e.g. one made with
`git worktree add /tmp/before <commit>`), alternating run by run, for before/after tables from
one run; --plot PATH draws the figures of both against the target.

    python -m bench.memory                     # 10,000 and 100,000 tasks, 3 runs each (~3 min)
    python -m bench.memory --tasks 50000 --runs 1
    python -m bench.memory --compare /tmp/before --plot bench/memory.png
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import http.client
import json
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from bench.harness import fill_tracker
from bench.plotting import require_matplotlib
from bench.scrape import PROMETHEUS_ACCEPT, TEXT_ACCEPT, Bench, Variant

TARGET = 2500  # bytes per task, at rest plus two scrapes in progress
PAIR = (Variant("plain", TEXT_ACCEPT), Variant("prometheus", PROMETHEUS_ACCEPT, gzip=True))
HERE = Path(__file__).resolve().parent


def _status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> bool:
    """Make VmHWM start again from the current RSS (Linux >= 4.0); False if not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _malloc_trim() -> bool:
    """Hand glibc's cached free memory back to the OS; False where there is no glibc."""
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        trim = None
    if trim is None:
        return False
    trim(0)
    return True


def scrape_pair(port: int) -> None:
    """PAIR's two scrapes at the same moment, each reading its body as it comes."""
    start = threading.Barrier(len(PAIR))
    failures: list[BaseException] = []

    def scrape(variant: Variant) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        try:
            start.wait()
            conn.request("GET", "/metrics", headers=variant.headers())
            answer = conn.getresponse()
            if answer.status != 200:
                raise RuntimeError(f"{variant.name} scrape answered HTTP {answer.status}")
            while answer.read(64 * 1024):
                pass
        except BaseException as error:
            failures.append(error)
        finally:
            conn.close()

    clients = [threading.Thread(target=scrape, args=(variant,)) for variant in PAIR]
    for client in clients:
        client.start()
    for client in clients:
        client.join()
    if failures:
        raise failures[0]


def measure(tasks: int) -> dict[str, float]:
    """Runs in the child process: RSS figures in bytes."""
    bench = Bench(0)
    try:
        port = bench.exporter.web.port
        scrape_pair(port)
        gc.collect()
        baseline = _status_bytes("VmRSS")
        fill_tracker(bench.exporter.tracker, tasks, now=1.75e9)
        gc.collect()
        filled = _status_bytes("VmRSS")
        snap = bench.exporter.tracker.snapshot()
        snapshot = sys.getsizeof(snap.tasks) + sys.getsizeof(snap.failures)
        del snap
        peaks = []
        for round_ in range(3):
            if round_ == 2:
                fill_tracker(bench.exporter.tracker, tasks, now=1.75e9)  # one refresh round
                gc.collect()
            peak_known = _reset_peak()
            scrape_pair(port)
            peaks.append(_status_bytes("VmHWM") if peak_known else float("nan"))
        gc.collect()
        rest = _status_bytes("VmRSS")
        held = _status_bytes("VmRSS") if _malloc_trim() else float("nan")
        return {"tasks": tasks, "baseline": baseline, "filled": filled, "rest": rest,
                "held": held, "peak": max(peaks), "snapshot": snapshot,
                "tracked": len(bench.exporter.tracker)}
    finally:
        bench.close()


def run_child(tasks: int, code: Path | None, workdir: Path) -> dict[str, float]:
    """One measurement in a fresh process, with the zego_exporter of `code` (a checkout) or of
    this one. The child runs in `workdir`, where `bench` and `zego_exporter` are found first."""
    answer = subprocess.run(
        [sys.executable, "-m", "bench.memory", "--child", str(tasks)],
        capture_output=True, text=True, check=False, cwd=workdir if code else HERE.parent)
    if answer.returncode != 0:
        raise RuntimeError(f"measuring {tasks} tasks failed:\n{answer.stderr}")
    run: dict[str, float] = json.loads(answer.stdout)
    if run["tracked"] != tasks:
        raise RuntimeError(f"tracked {run['tracked']} tasks instead of {tasks}")
    return run


Results = dict[str, dict[int, list[dict[str, float]]]]
"""Per code (its name) and task count, the runs."""
FIGURES = ("filled", "rest", "held", "peak", "snapshot")


def per_task(runs: list[dict[str, float]], key: str) -> float:
    """Median bytes per task: over the empty exporter's RSS, or the snapshot's own size."""
    if key == "snapshot":
        return statistics.median(r[key] / r["tasks"] for r in runs)
    return statistics.median((r[key] - r["baseline"]) / r["tasks"] for r in runs)


def report(results: Results) -> None:
    print(f"{'code':<16} {'tasks':>7} {'runs':>4} {'baseline MB':>11} "
          + " ".join(f"{name + ' B/task':>15}" for name in FIGURES) + f" {'peak MB':>8}")
    for code, sizes in results.items():
        for tasks, runs in sizes.items():
            peak_mb = statistics.median(r["peak"] - r["baseline"] for r in runs) / 1e6
            print(f"{code:<16} {tasks:>7} {len(runs):>4} "
                  f"{statistics.median(r['baseline'] for r in runs) / 1e6:>11.1f} "
                  + " ".join(f"{per_task(runs, name):>15.0f}" for name in FIGURES)
                  + f" {peak_mb:>8.1f}")
    print(f"\nper task, over the empty exporter (median of the runs): filled: before any scrape; "
          "peak: VmHWM while two scrapes run at once (one plain, one with Prometheus' headers), "
          f"the figure to size by, target at most {TARGET} B; rest: RSS after the scrapes; held: "
          "the same after malloc_trim(0); snapshot: the list and dict one scrape's snapshot holds")


def plot(results: Results, path: Path) -> None:
    import matplotlib  # only the plot needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    codes = list(results)
    sizes = sorted({tasks for by_size in results.values() for tasks in by_size})
    width = 0.8 / len(codes)
    colours = ["#c44e52", "#4c72b0", "#55a868", "#8172b2"]
    for n, code in enumerate(codes):
        xs = [i + (n - (len(codes) - 1) / 2) * width for i in range(len(sizes))]
        peaks = [per_task(results[code][tasks], "peak") / 1000 for tasks in sizes]
        rests = [per_task(results[code][tasks], "rest") / 1000 for tasks in sizes]
        colour = colours[n % len(colours)]
        ax.bar(xs, peaks, width * 0.9, color=colour, alpha=0.4,
               label=f"{code}: peak, two scrapes at once")
        ax.bar(xs, rests, width * 0.9, color=colour, label=f"{code}: at rest")
        for x, peak in zip(xs, peaks, strict=True):
            ax.annotate(f"{peak:.1f}", (x, peak), ha="center", va="bottom", fontsize=9)
    ax.axhline(TARGET / 1000, color="black", linestyle="--", linewidth=1)
    ax.text(0.99, TARGET / 1000, f"target {TARGET / 1000:g} KB ", ha="right", va="bottom",
            fontsize=9, transform=ax.get_yaxis_transform())
    ax.set_xticks(range(len(sizes)), [f"{tasks:,} tasks" for tasks in sizes])
    ax.set_ylabel("KB per tracked task (RSS over an empty exporter)")
    ax.set_title("Exporter memory per task: at rest, and at the peak of two scrapes at once")
    fig.legend(loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=[10000, 100000])
    parser.add_argument("--runs", type=int, default=3, help="fresh processes per size and code")
    parser.add_argument("--compare", type=Path, metavar="DIR",
                        help="a checkout whose zego_exporter to measure as well")
    parser.add_argument("--plot", type=Path, metavar="PATH", help="write a PNG of the figures")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(measure(args.child)))
        return
    if args.plot is not None:
        require_matplotlib(parser)
    codes: dict[str, Path | None] = {"this checkout": None}
    if args.compare is not None:
        if not (args.compare / "zego_exporter").is_dir():
            parser.error(f"{args.compare} has no zego_exporter/: give a checkout of this project")
        codes = {args.compare.name: args.compare.resolve(), **codes}  # named as given
    results: Results = {code: {tasks: [] for tasks in args.tasks} for code in codes}
    with tempfile.TemporaryDirectory() as workdir:
        # This benchmark with the other checkout's package: both found first from here.
        (Path(workdir) / "bench").symlink_to(HERE)
        if args.compare is not None:
            (Path(workdir) / "zego_exporter").symlink_to(args.compare.resolve() / "zego_exporter")
        for tasks in args.tasks:
            for _ in range(args.runs):
                for code, checkout in codes.items():  # alternating, run by run
                    results[code][tasks].append(run_child(tasks, checkout, Path(workdir)))
    report(results)
    if args.plot is not None:
        plot(results, args.plot)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
