"""Render grafana/preview.png, the README's picture of the dashboard, from real data.

Grafana cannot run here, so this script starts the stack of the end-to-end tests
(tests/support/e2e_stack.py: the simulated ZEGO API, `zego-exporter serve`, Debian's prometheus
scraping every 5 s) for a few minutes while a short story plays in the simulated world (tasks
arrive, start, fail and stop; a task is failed by hand, another stopped; ZEGO answers slowly
for a while, then with errors), then runs the dashboard's own queries (grafana/build_dashboard.py,
template variables filled in as Grafana would) through Prometheus' HTTP API and draws the
main panels with matplotlib, under the dashboard's titles. A script that draws a picture, not
a test: it checks nothing, and writes only the PNG it is told to.

    python -m grafana.preview                       # about 4 minutes, writes grafana/preview.png
    python -m grafana.preview --minutes 1 --output /tmp/preview.png

Run from the repository's root (it imports tests.support and grafana as packages), in its venv
with the `bench` extra (matplotlib, Pillow) and Debian's prometheus.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import requests
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image

from grafana.build_dashboard import STATES, build, iter_panels, substitute
from tests.support.credentials import APP_ID
from tests.support.e2e_stack import (
    JOB,
    PrometheusApi,
    Stack,
    StackError,
    prometheus_config,
    scrape_job,
    wait_until,
)
from zego_exporter.signing import Secret
from zego_exporter.simulator import Lifecycle, Simulator, World
from zego_exporter.states import STATUS_STREAMING

GRAFANA = Path(__file__).resolve().parent

OUTPUT = GRAFANA / "preview.png"
SCRAPE_SECONDS = 5
CALLBACK_PATH = "/zego/callback"

# Grafana's dark theme and its named colours.
BACKGROUND, PANEL, TEXT, GRID, MUTED = "#111217", "#181b1f", "#ccccdc", "#2c3235", "#8e8e8e"
ANNOTATION = "#d8d9da"
COLORS = {
    "green": "#73bf69", "blue": "#5794f2", "red": "#f2495c", "orange": "#ff9830",
    "purple": "#b877d9", "yellow": "#fade2a", "#8e8e8e": "#8e8e8e",
}
PALETTE = ["#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9",
           "#705da0", "#37872d", "#fade2a", "#447ebc", "#c15c17"]

# Panels drawn as time series, two per row, in the dashboard's order.
TIMESERIES = (
    ("Init failures by room and stream", "API requests by action and code"),
    ("Request rate vs configured limit", "API latency (p50 / p90 / p99)"),
    ("Data freshness", "Refresh backlog"),
    ("Tracked tasks by source", "Callbacks received"),
)
TIMELINES = ("Task states over time", "Reachability over time")


# -- the run --------------------------------------------------------------------------------


def lively_world() -> World:
    """Tasks that live for minutes, with a few init failures among the arrivals."""
    lifecycle = Lifecycle(
        initializing=(4.0, 20.0), init_failure_rate=0.25, init_failed=(30.0, 60.0),
        streaming=(40.0, 400.0), stopping_rate=0.7, stopping=(5.0, 12.0),
        stopped=(20.0, 40.0),
    )
    return World(seed=11, tasks=10, arrival_rate=0.06, lifecycle=lifecycle)


@dataclass(frozen=True)
class Event:
    """Something the story did, drawn as a Grafana annotation (a dashed vertical line)."""

    at: float
    """Unix time."""
    what: str


def story(simulator: Simulator, pinned: Sequence[str],
          ) -> list[tuple[float, str, Callable[[], None]]]:
    """(fraction of the run, what, how) of the things that happen to the simulated API."""
    admin = simulator.url + "/admin"

    def post(path: str, doc: Mapping[str, Any]) -> None:
        requests.post(admin + path, json=doc, timeout=5).raise_for_status()

    def clear_faults() -> None:
        requests.delete(admin + "/faults", timeout=5).raise_for_status()

    return [
        (0.25, "a configured task fails to start",
         lambda: post(f"/tasks/{pinned[0]}/fail",
                      {"FailReason": "RTC room login failed: token expired"})),
        (0.35, "ZEGO answers slowly (+250 ms)",
         lambda: post("/faults", {"latency": {"seconds": 0.25}})),
        (0.5, "latency back to normal", clear_faults),
        (0.58, "ZEGO outage: every call answers HTTP 503",
         lambda: post("/faults", {"http_status": {"status": 503}})),
        (0.68, "ZEGO is back", clear_faults),
        (0.75, "a configured task is stopped",
         lambda: post(f"/tasks/{pinned[1]}/stop", {})),
    ]


@dataclass(frozen=True)
class Run:
    api: PrometheusApi
    instance: str
    start: float
    end: float
    events: list[Event]


def run(stack: Stack, prometheus_binary: str, seconds: float) -> Run:
    """Start the simulator, the exporter and Prometheus, then play the story for `seconds`."""
    # Throwaway secrets: the simulator and the exporter only need to agree.
    secret, callback_secret = Secret(os.urandom(16).hex()), Secret(os.urandom(16).hex())
    simulator = stack.simulator(Simulator(APP_ID, secret, world=lively_world()))
    world = simulator.world
    pinned = [world.add_task(status=STATUS_STREAMING, room_id=f"room_vip_{n}") for n in (1, 2)]
    world.add_showcase()
    # Configured: the two pinned tasks, a TaskId ZEGO does not know, one in a Status the
    # exporter does not know; everything else is found by discovery (and callbacks).
    configured = [*pinned, *simulator.showcase["not_found"], *simulator.showcase["unknown"]]
    exporter = stack.exporter(
        simulator.url, app_id=APP_ID, server_secret=secret.reveal(), task_ids=configured,
        callback_secret=callback_secret.reveal(),
        args=("--discovery.interval=5s", "--refresh.interval=10s",
              "--refresh.fast-interval=2s", "--refresh.idle-after=0"),
    )
    if hasattr(simulator, "enable_callbacks"):
        simulator.enable_callbacks(exporter.url + CALLBACK_PATH, callback_secret)
    api = stack.prometheus(prometheus_binary, prometheus_config(
        [scrape_job(exporter.address)], scrape_interval=f"{SCRAPE_SECONDS}s",
        evaluation_interval=f"{SCRAPE_SECONDS}s",
    ))
    # The clock starts with the first sample, so the time axis starts with the data.
    wait_until(lambda: api.query(f'up{{job="{JOB}"}} == 1').has_data, timeout=30,
               what="the first scrape", logs=stack.logs)
    start = time.time()
    print(f"running for {seconds:.0f}s: simulator {simulator.url}, exporter "
          f"{exporter.url}, prometheus {api.url}")
    events = []
    for fraction, what, action in story(simulator, pinned):
        _sleep_until(start + fraction * seconds)
        print(f"  {time.time() - start:5.0f}s  {what}")
        action()
        events.append(Event(time.time(), what))
    _sleep_until(start + seconds)
    return Run(api, exporter.address, start, time.time(), events)


def _sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.time()))


# -- the dashboard's queries ----------------------------------------------------------------

Points = list[tuple[float, float]]


@dataclass(frozen=True)
class Series:
    name: str
    """The target's legendFormat filled in."""
    points: Points
    """(unix time, value); one point for an instant query."""


@dataclass(frozen=True)
class PanelData:
    spec: dict[str, Any]
    """The panel as build_dashboard.py builds it."""
    targets: list[list[Series]]
    """The series of each of its queries."""

    @property
    def title(self) -> str:
        return str(self.spec["title"])

    @property
    def defaults(self) -> dict[str, Any]:
        return dict(self.spec["fieldConfig"]["defaults"])

    def all_series(self) -> list[Series]:
        return [series for target in self.targets for series in target]


def panel_data(api: PrometheusApi, variables: Mapping[str, str], start: float, end: float,
               ) -> list[PanelData]:
    """Every content panel of the dashboard with its queries' results, in dashboard order.

    Range queries step at the scrape interval, as Grafana does for a panel this wide.
    """
    panels: list[PanelData] = []
    for spec in iter_panels(build()["panels"]):
        if spec["type"] == "row":
            continue
        targets = []
        for target in spec["targets"]:
            expr = substitute(target["expr"], variables)
            if target["instant"]:
                result = api.query(expr, at=end)
            else:
                result = api.query_range(expr, start, end, SCRAPE_SECONDS)
            if not result.ok:
                print(f"{spec['title']}: query failed ({result.error}): {expr}",
                      file=sys.stderr)
            targets.append([
                Series(legend(target["legendFormat"], item["metric"]),
                       [(float(t), float(v)) for t, v in item.get("values") or [item["value"]]])
                for item in result.series
            ])
        panels.append(PanelData(spec, targets))
    return panels


def find(panels: Sequence[PanelData], title: str, kind: str = "timeseries") -> PanelData:
    """The panel of that title and type ("Refresh backlog" is both a stat and a graph)."""
    return next(p for p in panels if p.title == title and p.spec["type"] == kind)


def legend(template: str, labels: Mapping[str, str]) -> str:
    """A Grafana legendFormat (`{{room_id}} · {{task_id}}`) filled from a series' labels.

    Labels a series lacks (Prometheus drops empty ones) become "", as in Grafana.
    """
    text = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template)
    return text or ", ".join(f"{k}={v}" for k, v in labels.items() if k != "__name__")


def grafana_duration(seconds: float) -> str:
    return f"{max(1, round(seconds))}s"


# -- drawing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    """The time axis every panel shares: minutes since the start, and the annotations."""

    start: float
    end: float
    events: list[Event]

    def minutes(self, moment: float) -> float:
        return (moment - self.start) / 60

    def setup(self, ax: Axes, *, annotations: bool = True) -> None:
        ax.set_xlim(0, self.minutes(self.end))
        ax.set_xlabel("minutes since start", color=MUTED, fontsize=7, labelpad=1)
        if annotations:
            for event in self.events:
                ax.axvline(self.minutes(event.at), color=ANNOTATION, linewidth=0.8,
                           linestyle=(0, (2, 2)), zorder=0)


def _style(ax: Axes, title: str) -> None:
    ax.set_facecolor(PANEL)
    ax.set_title(title, loc="left", color=TEXT, fontsize=10, fontweight="bold", pad=5)
    for spine in ax.spines.values():
        spine.set_color(GRID)
    ax.tick_params(colors=MUTED, labelsize=7)
    ax.grid(color=GRID, linewidth=0.6)


def _no_data(ax: Axes) -> None:
    ax.text(0.5, 0.5, "No data", ha="center", va="center", color=MUTED, fontsize=14,
            transform=ax.transAxes)


def _format(value: float, unit: str) -> str:
    if math.isnan(value):
        return "NaN"
    if unit == "s":
        if value >= 90:
            return f"{value / 60:.1f} min"
        return f"{value:.1f} s" if value < 10 else f"{value:.0f} s"
    return f"{value:.0f}"


def _stat_color(defaults: Mapping[str, Any], value: float) -> str:
    if defaults["color"].get("mode") == "fixed":
        return COLORS.get(defaults["color"]["fixedColor"], TEXT)
    color = "green"
    for step in defaults["thresholds"]["steps"]:
        if step["value"] is None or value >= step["value"]:
            color = step["color"]
    return COLORS.get(color, TEXT)


def draw_stat(ax: Axes, panel: PanelData) -> None:
    """The last value as a big number (sum over series), over its sparkline."""
    _style(ax, panel.title)
    ax.grid(visible=False)
    ax.set_xticks([])
    ax.set_yticks([])
    series = panel.all_series()
    if not series:
        _no_data(ax)
        return
    unit = panel.defaults["unit"]
    values = [s.points[-1][1] for s in series]
    if panel.defaults["mappings"]:  # UP / DOWN on a coloured background; the worst shows
        options = panel.defaults["mappings"][0]["options"]
        worst = min(values)
        option = options.get(str(int(worst)), {"text": _format(worst, unit), "color": "red"})
        ax.set_facecolor(COLORS.get(option["color"], PANEL))
        ax.text(0.5, 0.45, option["text"], ha="center", va="center", color="white",
                fontsize=26, fontweight="bold", transform=ax.transAxes)
        return
    value = sum(values)
    color = _stat_color(panel.defaults, value)
    points = series[0].points
    if len(points) > 1:  # graphMode "area"
        times = [t for t, _ in points]
        ax.fill_between(times, [v for _, v in points], color=color, alpha=0.2, linewidth=0)
        ax.set_xlim(times[0], times[-1])
        ax.set_ylim(0, max(1.0, *(v for _, v in points)) * 1.5)
    ax.text(0.5, 0.45, _format(value, unit), ha="center", va="center", color=color,
            fontsize=26, fontweight="bold", transform=ax.transAxes)


def draw_timeseries(ax: Axes, legend_ax: Axes, panel: PanelData, frame: Frame,
                    max_legend: int = 8) -> None:
    """Lines (or bars), the limit line dashed red, busiest series first; legend in legend_ax."""
    legend_ax.axis("off")
    _style(ax, panel.title)
    frame.setup(ax)
    defaults = panel.defaults
    bars = defaults["custom"]["drawStyle"] == "bars"
    lines = panel.all_series()
    if not lines:
        _no_data(ax)
        return
    lines.sort(key=lambda s: -max((v for _, v in s.points if not math.isnan(v)), default=0))
    top = 0.0
    for index, series in enumerate(lines[:max_legend]):
        times = [frame.minutes(t) for t, _ in series.points]
        values = [v for _, v in series.points]
        top = max(top, *(v for v in values if not math.isnan(v)), 0.0)
        color, dashed = overridden(panel.spec, series.name, PALETTE[index % len(PALETTE)])
        if dashed:  # the limit line
            ax.plot(times, values, color=color, linestyle=(0, (6, 4)), linewidth=1.4,
                    label=series.name)
        elif bars:
            ax.bar(times, values, width=SCRAPE_SECONDS / 60, color=color, alpha=0.85,
                   label=series.name)
        else:
            ax.plot(times, values, color=color, linewidth=1.3, label=series.name)
            ax.fill_between(times, values, color=color, alpha=0.08, linewidth=0)
    top = top * 1.2 or 1.0
    if defaults["custom"]["thresholdsStyle"]["mode"] == "dashed":
        # Like Grafana, threshold lines do not stretch the axis: only those in range show.
        for step in defaults["thresholds"]["steps"][1:]:
            if step["value"] < top:
                ax.axhline(step["value"], color=COLORS.get(step["color"], MUTED),
                           linestyle=(0, (4, 4)), linewidth=0.9)
    ax.set_ylim(0, top)
    unit = {"s": "seconds", "reqps": "requests/s"}.get(defaults["unit"], "")
    ax.set_ylabel(unit, color=MUTED, fontsize=7)
    handles, labels = ax.get_legend_handles_labels()
    if len(lines) > max_legend:
        labels[-1] += f"   (+{len(lines) - max_legend} more)"
    legend_ax.legend(handles, labels, loc="upper left", ncol=2, fontsize=6.5, frameon=False,
                     labelcolor=TEXT, handlelength=1.5, columnspacing=1.2, borderaxespad=0)


def overridden(spec: Mapping[str, Any], name: str, color: str) -> tuple[str, bool]:
    """The colour of a series and whether it is dashed, after the panel's byRegexp overrides."""
    dashed = False
    for override in spec["fieldConfig"]["overrides"]:
        matcher = override["matcher"]
        if matcher["id"] != "byRegexp" or not re.search(matcher["options"].strip("/"), name):
            continue
        for setting in override["properties"]:
            if setting["id"] == "color":
                color = COLORS.get(setting["value"]["fixedColor"], color)
            elif setting["id"] == "custom.lineStyle":
                dashed = setting["value"].get("fill") == "dash"
    return color, dashed


def draw_state_timeline(ax: Axes, panel: PanelData, frame: Frame,
                        colors: Mapping[float, tuple[str, str]], max_rows: int = 45) -> None:
    """One row per series, each sample coloured by its value through `colors`."""
    _style(ax, panel.title)
    ax.grid(visible=False)
    frame.setup(ax, annotations=False)
    rows = sorted(panel.all_series(), key=lambda s: (s.points[0][0], s.name))[:max_rows]
    if not rows:
        _no_data(ax)
        return
    width = SCRAPE_SECONDS / 60
    for index, series in enumerate(rows):
        y = len(rows) - 1 - index  # the first seen on top
        for moment, value in series.points:
            name_color = colors.get(value)
            if name_color is not None:
                ax.broken_barh([(frame.minutes(moment), width)], (y - 0.42, 0.84),
                               color=name_color[1], linewidth=0)
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([_short(series.name) for series in reversed(rows)],
                       fontsize=6 if len(rows) > 15 else 7)
    handles = [Rectangle((0, 0), 1, 1, color=color) for _, color in colors.values()]
    ax.legend(handles, [name for name, _ in colors.values()], loc="lower right",
              bbox_to_anchor=(1.0, 1.0), ncol=len(colors), fontsize=7, frameon=False,
              labelcolor=TEXT, borderaxespad=0.2, handlelength=1.2)


def _short(name: str) -> str:
    """Task rows read "room · 32-hex TaskId": its first 8 characters tell them apart."""
    room, sep, task = name.partition(" · ")
    return f"{room} · {task[:8]}" if sep and len(task) > 12 else name


def draw(panels: Sequence[PanelData], frame: Frame, output: Path) -> None:
    stats = [p for p in panels if p.spec["type"] == "stat"]
    fig = plt.figure(figsize=(16, 30), facecolor=BACKGROUND)
    outer = fig.add_gridspec(
        8, 1, height_ratios=[1.15, 1.15, 6.4, 3.0, 3.0, 3.0, 3.0, 3.0],
        hspace=0.32, left=0.115, right=0.985, top=0.945, bottom=0.005,
    )
    minutes = frame.minutes(frame.end)
    fig.text(0.01, 0.993, "ZEGO Digital Human", color=TEXT, fontsize=17, fontweight="bold",
             va="top")
    fig.text(0.01, 0.983,
             f"The zego-exporter Grafana dashboard's queries, run against {minutes:.0f} "
             "minutes of real data: simulated ZEGO API → zego-exporter → Prometheus "
             f"(scrape every {SCRAPE_SECONDS} s). Rendered by grafana/preview.py.",
             color=MUTED, fontsize=9.5, va="top")
    notes = [f"{n}. {frame.minutes(e.at):.1f} min: {e.what}"
             for n, e in enumerate(frame.events, 1)]
    half = (len(notes) + 1) // 2
    fig.text(0.01, 0.974, "Annotations (dashed lines):", color=ANNOTATION, fontsize=8.5,
             va="top")
    fig.text(0.13, 0.974, "     ".join(notes[:half]) + "\n" + "     ".join(notes[half:]),
             color=ANNOTATION, fontsize=8.5, va="top", linespacing=1.5)
    for row in range(2):
        cells = outer[row].subgridspec(1, 6, wspace=0.08)
        for column, panel in enumerate(stats[row * 6:(row + 1) * 6]):
            draw_stat(fig.add_subplot(cells[column]), panel)
    states = {float(number): (name, COLORS[color]) for name, number, color in STATES}
    draw_state_timeline(fig.add_subplot(outer[2]), find(panels, TIMELINES[0], "state-timeline"),
                        frame, states)

    def pair(row: int) -> list[tuple[Axes, Axes]]:
        """Two panels side by side, each over the space for its legend."""
        cells = outer[row].subgridspec(2, 2, height_ratios=[4, 1.3], wspace=0.12, hspace=0.3)
        return [(fig.add_subplot(cells[0, c]), fig.add_subplot(cells[1, c])) for c in (0, 1)]

    for row, titles in enumerate(TIMESERIES, start=3):
        for (ax, legend_ax), title in zip(pair(row), titles, strict=True):
            draw_timeseries(ax, legend_ax, find(panels, title), frame)
    (reachability, spare), (lookups, lookups_legend) = pair(7)
    spare.axis("off")
    up_down = {1.0: ("UP", COLORS["green"]), 0.0: ("DOWN", COLORS["red"])}
    draw_state_timeline(reachability, find(panels, TIMELINES[1], "state-timeline"), frame,
                        up_down)
    draw_timeseries(lookups, lookups_legend, find(panels, "Task lookups failing"), frame)
    save_small_png(fig, output)


def save_small_png(fig: Figure, output: Path, colors: int = 96) -> None:
    """A palette PNG: the picture is flat colours, so 96 of them keep it sharp and small."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=72, facecolor=BACKGROUND)
    plt.close(fig)
    buffer.seek(0)
    with Image.open(buffer) as image:
        small = image.convert("RGB").quantize(colors=colors, dither=Image.Dither.NONE)
        small.save(output, optimize=True)


# -- main -------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=4.0,
                        help="how long to let the stack run before drawing (default 4)")
    parser.add_argument("--output", type=Path, default=OUTPUT, help=f"default {OUTPUT}")
    parser.add_argument("--prometheus", default=shutil.which("prometheus"),
                        help="the prometheus binary (default: from PATH)")
    args = parser.parse_args(argv)
    if not args.prometheus:
        print("prometheus not found: apt-get install prometheus, or pass --prometheus",
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="zego-preview-") as workdir, \
            Stack(Path(workdir)) as stack:
        try:
            result = run(stack, args.prometheus, args.minutes * 60)
            variables = {
                "job": JOB, "instance": result.instance, "room_id": ".*",
                # What Grafana picks for a range this short: 4 scrape intervals.
                "__rate_interval": grafana_duration(4 * SCRAPE_SECONDS),
                "__range": grafana_duration(result.end - result.start),
            }
            panels = panel_data(result.api, variables, result.start, result.end)
        except (StackError, OSError, requests.RequestException):
            print(stack.logs(), file=sys.stderr)
            raise
    draw(panels, Frame(result.start, result.end, result.events), args.output)
    print(f"wrote {args.output} ({args.output.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
