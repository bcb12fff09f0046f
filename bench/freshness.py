"""Freshness benchmark: how old the exporter's data gets against the N/Q bound, by task count.

Each run is bench.harness.run_pacing: the real refresh engine against the simulated ZEGO API
(strict sliding window of Q requests per second per Action, judged at the server), N tasks
streaming, data age sampled from the tracker after warm-up. Without discovery every task needs
its own lookup, so a round takes at least N/Q seconds and the worst age should be
max(refresh interval, N/Q); with discovery, one list call refreshes every running task, so
their age should stay near the discovery interval whatever N is.

At Q = 10 a round of 5,000 lookups takes 500 s, so by default a size whose N/Q would exceed
--max-round seconds runs with a proportionally higher Q on both the simulator and the exporter
(said in the output; the invariant figure is worst age / (N/Q)); the plot shows those ages
scaled back to Q = 10, as hollow markers. --full runs every size at Q = 10 (about 27 minutes).
Prints a table and writes a PNG of median and worst age against task count.

    python -m bench.freshness                  # about 12 minutes
    python -m bench.freshness --full           # every size at Q = 10
    python -m bench.freshness --off 100 --on 100 --plot /tmp/quick.png
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

from bench.harness import PacingResult, run_pacing
from bench.plotting import require_matplotlib
from zego_exporter.tracker import RefreshPolicy

QPS = 10
INTERVAL = RefreshPolicy().interval  # the default refresh target of streaming tasks
DISCOVERY_INTERVAL = RefreshPolicy().discovery_interval  # and the default discovery interval


@dataclass(frozen=True)
class Run:
    tasks: int
    qps: int
    discovery: bool

    @property
    def seconds(self) -> float:
        """Long enough for warm-up and then the longest refresh cycle, with a margin."""
        if self.discovery:
            return 3 * DISCOVERY_INTERVAL + 10
        round_time = self.tasks / self.qps
        return math.ceil(round_time + 1.25 * max(INTERVAL, round_time) + 7)

    @property
    def scale(self) -> float:
        """Factor from this run's ages to what they would be at Q = QPS."""
        return 1.0 if self.discovery else self.qps / QPS


def plan(off: list[int], on: list[int], max_round: float) -> list[Run]:
    runs = [Run(n, max(QPS, math.ceil(n / max_round)), False) for n in off]
    return runs + [Run(n, QPS, True) for n in on]


def table(results: list[tuple[Run, PacingResult]]) -> list[str]:
    lines = [f"{'mode':<14} {'tasks':>5} {'Q':>3} {'N/Q s':>6} {'run s':>5} {'warm-up s':>9} "
             f"{'median s':>8} {'worst s':>7} {'worst/(N/Q)':>11} {'expected s':>10} "
             f"{'worst/exp':>9} {'lookups':>7} {'lists':>5} {'rejected':>8}"]
    for _, r in results:
        lines.append(
            f"{'discovery on' if r.discovery else 'discovery off':<14} {r.tasks:>5} "
            f"{r.qps:>3g} {r.bound:>6.1f} {r.seconds:>5g} {r.warmup:>9.1f} "
            f"{r.median_age:>8.1f} {r.worst_age:>7.1f} {r.worst_age / r.bound:>11.2f} "
            f"{r.expected_worst:>10.1f} {r.worst_age / r.expected_worst:>9.2f} "
            f"{r.lookups:>7} {r.queries:>5} {r.rejected:>8}")
    scaled = [run for run, _ in results if run.scale != 1.0]
    lines.append("")
    lines.append(f"expected: without discovery max(refresh interval {INTERVAL:g} s, N/Q); with "
                 "discovery "
                 f"the discovery interval ({DISCOVERY_INTERVAL:g} s). Ages are seconds since the "
                 "last good answer.")
    if scaled:
        lines.append(
            "scaled: " + ", ".join(f"N={run.tasks} ran at Q={run.qps}" for run in scaled)
            + f" on both the simulator and the exporter, to keep N/Q at the size of the others;"
            f" the plot multiplies those ages by Q/{QPS}. --full runs them at Q={QPS}.")
    return lines


def plot(results: list[tuple[Run, PacingResult]], path: Path) -> None:
    import matplotlib  # only the plot needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    sizes = sorted({run.tasks for run, _ in results})
    low, high = min(sizes) / 1.3, max(sizes) * 1.3
    ax.plot([low, high], [low / QPS, high / QPS], "--", color="0.45",
            label=f"N/Q bound (Q = {QPS}/s)")
    ax.axhline(INTERVAL, color="0.45", linestyle=":", linewidth=1)
    ax.text(low * 1.05, INTERVAL * 1.08, f"refresh interval {INTERVAL:g} s", color="0.35",
            fontsize=8)
    ax.axhline(DISCOVERY_INTERVAL, color="tab:blue", linestyle=":", linewidth=1)
    ax.text(low * 1.05, DISCOVERY_INTERVAL * 0.8, f"discovery interval {DISCOVERY_INTERVAL:g} s",
            color="tab:blue", fontsize=8)
    for discovery, color, mode in ((False, "tab:red", "discovery off"),
                                   (True, "tab:blue", "discovery on")):
        chosen = sorted(((run, r) for run, r in results if run.discovery == discovery),
                        key=lambda pair: pair[0].tasks)
        for attr, style, marker, what in (("worst_age", "-", "o", "worst"),
                                          ("median_age", "--", "s", "median")):
            points = [(run.tasks, getattr(r, attr) * run.scale, run.scale != 1.0)
                      for run, r in chosen]
            if not points:
                continue
            ax.plot([x for x, _, _ in points], [y for _, y, _ in points], style, color=color,
                    marker=marker, markersize=7, label=f"{mode}: {what} age")
            for x, y, scaled in points:
                if scaled:
                    ax.plot([x], [y], marker, color=color, markersize=7, markerfacecolor="white")
    if any(run.scale != 1.0 for run, _ in results):
        ax.plot([], [], "o", color="0.3", markerfacecolor="white",
                label=f"hollow: ran at a higher Q, ages scaled to Q = {QPS}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(low, high)
    ax.set_xticks(sizes, [f"{n:,}" for n in sizes])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_yticks([t for t in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)
                   if ax.get_ylim()[0] <= t <= ax.get_ylim()[1]])
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("tasks tracked (N)")
    ax.set_ylabel("data age (s)")
    ax.set_title("Data age against task count (streaming tasks, Q = 10 requests/s per Action)",
                 fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--off", type=int, nargs="*", default=[100, 1000, 5000],
                        help="task counts to run with discovery off")
    parser.add_argument("--on", type=int, nargs="*", default=[100, 1000, 5000],
                        help="task counts to run with discovery on")
    parser.add_argument("--max-round", type=float, default=100.0,
                        help="raise Q for sizes whose N/Q at Q=10 would exceed this (s)")
    parser.add_argument("--full", action="store_true", help="every size at Q = 10")
    parser.add_argument("--plot", type=Path, default=Path(__file__).with_name("freshness.png"))
    parser.add_argument("--no-plot", action="store_true", help="print the table only")
    args = parser.parse_args()
    if args.max_round < INTERVAL:
        # Below the refresh interval, age no longer scales with N/Q: scaling would mislead.
        parser.error(f"--max-round must be at least the refresh interval ({INTERVAL:g} s)")
    if not args.no_plot:
        require_matplotlib(parser)
    runs = plan(args.off, args.on, math.inf if args.full else args.max_round)
    total = sum(run.seconds for run in runs)
    print(f"{len(runs)} runs, about {total / 60:.0f} minutes", flush=True)
    results = []
    for run in runs:
        result = run_pacing(run.tasks, run.seconds, qps=run.qps, discovery=run.discovery,
                            interval=INTERVAL, discovery_interval=DISCOVERY_INTERVAL,
                            sample_every=0.25 if run.tasks <= 1000 else 0.5)
        print("\n".join(result.lines()), flush=True)
        results.append((run, result))
    print()
    print("\n".join(table(results)))
    if not args.no_plot:
        plot(results, args.plot)
        print(f"\nplot: {args.plot}")


if __name__ == "__main__":
    main()
