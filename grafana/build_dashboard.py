"""Build the Grafana dashboard for zego-exporter from a table of panel specs.

`python grafana/build_dashboard.py` rewrites grafana/zego-digital-human.json (sorted keys,
2-space indent, trailing newline, so the output is byte-for-byte reproducible);
`--check` exits 1 when the committed file differs from what this script builds. The JSON is
the product and this file is how it stays reviewable: plain dicts and a few helpers, no
dependency but the exporter's own state vocabulary (zego_exporter.states). It must never
hard-code a datasource uid: every panel, query and variable goes through the `${datasource}`
variable so the same file imports anywhere.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zego_exporter import states

Json = dict[str, Any]

OUTPUT = Path(__file__).resolve().with_name("zego-digital-human.json")
UID = "zego-digital-human"
DATASOURCE: Json = {"type": "prometheus", "uid": "${datasource}"}
GRID_COLUMNS = 24

# Label matchers every query carries. Exporter-level metrics have no room_id label, so the
# room filter only applies to per-task series.
EXPORTER = 'job=~"$job", instance=~"$instance"'
BUILD_INFO = "zego_digital_human_exporter_build_info"
"""Every exporter has it from its first scrape on: the job and instance variables list it."""
TASK = EXPORTER + ', room_id=~"$room_id"'

STATE_COLOURS = {
    "initializing": "blue", "init_failed": "red", "streaming": "green", "stopping": "orange",
    "stopped": "#8e8e8e", "not_found": "purple", "unknown": "yellow",
}
# (state label, number drawn on the timeline, colour), in the exporter's order. Numbers 1-5 are
# ZEGO's Status codes; not_found and unknown have none, so they get the next free numbers.
_NUMBERS = {state: status for status, state in states.STATUS_STATES.items()}
for _state in states.STATES:
    _NUMBERS.setdefault(_state, max(_NUMBERS.values()) + 1)
STATES: tuple[tuple[str, int, str], ...] = tuple(
    (state, _NUMBERS[state], STATE_COLOURS[state]) for state in states.STATES)
TERMINAL_STATES = "|".join(state for state in states.STATES if state in states.TERMINAL_STATES)

RATE_LIMITED_CODE = "400010009"
RATE_LIMITED = f'code="{RATE_LIMITED_CODE}"'


def sel(metric: str, matchers: str = TASK, extra: str = "") -> str:
    """A series selector with the dashboard's variable filters (and any extra matchers)."""
    return f"{metric}{{{matchers}{', ' + extra if extra else ''}}}"


def state_matcher(states: str) -> str:
    """`state="x"` for one state, `state=~"x|y"` for several: a regexp on a fixed string costs
    a regexp match for nothing (pint's promql/regexp)."""
    return f'state=~"{states}"' if "|" in states else f'state="{states}"'


def state_count(states: str) -> str:
    """Number of tasks whose current state matches `states`, 0 rather than no data."""
    series = sel("zego_digital_human_task_state", extra=state_matcher(states))
    # max by task_id: a task watched by two exporters (an HA pair) counts once.
    return f"sum(max by (task_id) ({series})) or vector(0)"


def task_data_age(by: str) -> str:
    """Seconds since a task's status was last fetched, for tasks that are still polled.

    Terminal tasks are confirmed once and never polled again, so their last-success time
    stops on purpose; leaving them in would make every finished task look stale.
    """
    last = sel("zego_digital_human_task_last_success_timestamp_seconds")
    terminal = sel("zego_digital_human_task_state", extra=state_matcher(TERMINAL_STATES))
    grouping = f" by ({by})" if by else ""
    return (
        f"max{grouping} (\n  (time() - {last})\n"
        f"  unless on (job, instance, task_id)\n  ({terminal} == 1)\n)"
    )


def failures_in(window: str, by: str) -> str:
    """Tasks that entered init_failed in `window`, by the given labels, as whole numbers.

    The same count as the alert ZegoDigitalHumanRoomInitFailuresRepeated (prometheus/alerts.yml
    explains both terms). increase() misses a task first seen already failed: its series starts
    at 1 with no earlier sample, so series that had no sample in the window before count at
    their value (the one raw read of the counter, allowed by name in
    tests/support/lint_rules.py); a scrape gap such as an exporter restart leaves samples there,
    so it adds nothing. increase() scales what it saw up to the window's edges (two failures
    read 2.008); floor() takes that back to the failures it saw, capped by the series' rise
    over the window's samples (max - min, never scaled), since the scaling grows with how much
    of the window has no samples.
    """
    failures = sel("zego_digital_human_task_failures_total")
    grouping = f" by ({by})" if by else ""
    rise = f"(max_over_time({failures}[{window}]) - min_over_time({failures}[{window}]))"
    return (
        f"sum{grouping} (\n  ({failures}\n  unless present_over_time({failures}[{window}] "
        f"offset {window}))\n"
        f"  or\n  (floor(increase({failures}[{window}])) <= {rise})\n  or\n  {rise}\n)"
    )


def state_number() -> str:
    """The current state of each task as one number, for the state timeline's colour map."""
    branches = []
    for name, number, _ in STATES:
        current = sel("zego_digital_human_task_state", extra=f'state="{name}"')
        branches.append(f"({current} == 1) * {number}")
    joined = "\n  or ".join(branches)
    return f"max by (task_id, room_id, stream_id) (\n  {joined}\n)"


def quantile(q: float) -> str:
    buckets = sel("zego_digital_human_api_request_duration_seconds_bucket", EXPORTER)
    return (
        f"histogram_quantile({q}, sum by (le, action) "
        f"(rate({buckets}[$__rate_interval])))"
    )


# --- panel building blocks ---------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""
    instant: bool = False
    table: bool = False


def steps(*pairs: tuple[str, float | None]) -> Json:
    return {
        "mode": "absolute",
        "steps": [{"color": color, "value": value} for color, value in pairs],
    }


def value_map(entries: Sequence[tuple[str, str, str]]) -> list[Json]:
    """Grafana value mappings from (value, text, colour) triples."""
    return [
        {
            "type": "value",
            "options": {
                value: {"color": color, "index": index, "text": text}
                for index, (value, text, color) in enumerate(entries)
            },
        }
    ]


UP_DOWN = value_map([("1", "UP", "green"), ("0", "DOWN", "red")])
STATE_NUMBERS = value_map([(str(number), name, color) for name, number, color in STATES])
STATE_NAMES = value_map([(name, name, color) for name, _, color in STATES])
NO_THRESHOLDS = steps(("green", None))


def targets(queries: Sequence[Query]) -> list[Json]:
    return [
        {
            "datasource": DATASOURCE,
            "editorMode": "code",
            "expr": query.expr,
            "format": "table" if query.table else "time_series",
            "instant": query.instant,
            "legendFormat": query.legend,
            "range": not query.instant,
            "refId": chr(ord("A") + index),
        }
        for index, query in enumerate(queries)
    ]


def panel(
    kind: str,
    title: str,
    description: str,
    queries: Sequence[Query],
    *,
    panel_id: int,
    w: int,
    h: int,
) -> Json:
    return {
        "id": panel_id,
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": targets(queries),
        "gridPos": {"w": w, "h": h},
    }


def stat(
    title: str,
    description: str,
    query: Query,
    *,
    unit: str = "none",
    thresholds: Json = NO_THRESHOLDS,
    mappings: Sequence[Json] = (),
    color: str | None = None,
    graph: bool = True,
    panel_id: int,
    w: int = 4,
    h: int = 4,
) -> Json:
    result = panel("stat", title, description, [query], panel_id=panel_id, w=w, h=h)
    result["fieldConfig"] = {
        "defaults": {
            "color": {"mode": "fixed", "fixedColor": color} if color else {"mode": "thresholds"},
            "mappings": list(mappings),
            "min": 0,
            "thresholds": thresholds,
            "unit": unit,
        },
        "overrides": [],
    }
    if unit == "none":
        result["fieldConfig"]["defaults"]["decimals"] = 0  # counts of tasks or calls
    result["options"] = {
        "colorMode": "background" if mappings else "value",
        "graphMode": "area" if graph else "none",
        "justifyMode": "auto",
        "orientation": "auto",
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "showPercentChange": False,
        "textMode": "auto",
        "wideLayout": True,
    }
    return result


def timeseries(
    title: str,
    description: str,
    queries: Sequence[Query],
    *,
    unit: str,
    bars: bool = False,
    decimals: int | None = None,
    thresholds: Json | None = None,
    overrides: Sequence[Json] = (),
    panel_id: int,
    w: int = 12,
    h: int = 8,
) -> Json:
    result = panel("timeseries", title, description, queries, panel_id=panel_id, w=w, h=h)
    result["fieldConfig"] = {
        "defaults": {
            "color": {"mode": "palette-classic"},
            "custom": {
                "axisSoftMin": 0,
                "drawStyle": "bars" if bars else "line",
                "fillOpacity": 60 if bars else 10,
                "lineWidth": 1,
                "showPoints": "never",
                "spanNulls": False,
                "stacking": {"group": "A", "mode": "none"},
                "thresholdsStyle": {"mode": "dashed" if thresholds else "off"},
            },
            "min": 0,
            "thresholds": thresholds or NO_THRESHOLDS,
            "unit": unit,
        },
        "overrides": list(overrides),
    }
    if decimals is not None:
        result["fieldConfig"]["defaults"]["decimals"] = decimals
    result["options"] = {
        "legend": {
            "calcs": ["lastNotNull", "max"],
            "displayMode": "table",
            "placement": "bottom",
            "showLegend": True,
        },
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    return result


def state_timeline(
    title: str,
    description: str,
    queries: Sequence[Query],
    mappings: Sequence[Json],
    *,
    panel_id: int,
    w: int,
    h: int,
) -> Json:
    result = panel(
        "state-timeline", title, description, queries, panel_id=panel_id, w=w, h=h
    )
    result["fieldConfig"] = {
        "defaults": {
            "color": {"mode": "thresholds"},
            "custom": {"fillOpacity": 80, "lineWidth": 0},
            "mappings": list(mappings),
            "thresholds": NO_THRESHOLDS,
        },
        "overrides": [],
    }
    result["options"] = {
        "alignValue": "left",
        "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
        "mergeValues": True,
        "rowHeight": 0.9,
        "showValue": "auto",
        "tooltip": {"mode": "single", "sort": "none"},
    }
    return result


def override(matcher: str, pattern: str, properties: Json) -> Json:
    """A field override: `matcher` is byName or byRegexp, properties map id -> value."""
    return {
        "matcher": {"id": matcher, "options": pattern},
        "properties": [{"id": key, "value": value} for key, value in properties.items()],
    }


def fixed_color(color: str) -> Json:
    return {"fixedColor": color, "mode": "fixed"}


# Columns of the task table: (field from the queries, header, header tooltip).
TASK_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("room_id", "Room", "RoomId of the stream task; empty until ZEGO reported it"),
    ("stream_id", "Stream", "StreamId the digital human publishes to"),
    ("state", "State", "Current state of the task"),
    ("Value #B", "Age", "Time since ZEGO created the task (CreateTime)"),
    ("Value #D", "Data age", "Time since the exporter last fetched this task; empty for "
     "terminal tasks, which are not polled again"),
    ("fail_reason", "Fail reason", "ZEGO's FailReason, set only for init_failed tasks"),
    ("task_id", "Task ID", "ZEGO TaskId"),
)


def task_table(title: str, description: str, *, panel_id: int, w: int, h: int) -> Json:
    labels = "task_id, room_id, stream_id"
    queries = [
        Query(
            f"max by ({labels}, state) ({sel('zego_digital_human_task_state')} == 1)",
            instant=True, table=True,
        ),
        Query(
            f"max by ({labels}) ({sel('zego_digital_human_task_age_seconds')})",
            instant=True, table=True,
        ),
        Query(
            f"max by ({labels}, fail_reason) ({sel('zego_digital_human_task_info')})",
            instant=True, table=True,
        ),
        Query(task_data_age(labels), instant=True, table=True),
    ]
    result = panel("table", title, description, queries, panel_id=panel_id, w=w, h=h)
    result["fieldConfig"] = {
        "defaults": {
            "custom": {"align": "auto", "cellOptions": {"type": "auto"}, "filterable": True},
            "mappings": [],
            "thresholds": NO_THRESHOLDS,
        },
        "overrides": [
            *[
                override("byName", header, {"description": tooltip})
                for _, header, tooltip in TASK_COLUMNS
            ],
            override("byName", "State", {
                "custom.cellOptions": {"type": "color-background"},
                "mappings": STATE_NAMES,
            }),
            override("byName", "Age", {"decimals": 0, "unit": "s"}),
            override("byName", "Data age", {
                "custom.cellOptions": {"type": "color-text"},
                "decimals": 0,
                "thresholds": steps(("green", None), ("orange", 60), ("red", 300)),
                "unit": "s",
            }),
        ],
    }
    result["options"] = {
        "cellHeight": "sm",
        "footer": {"countRows": False, "fields": "", "reducer": ["sum"], "show": False},
        "showHeader": True,
        "sortBy": [{"desc": False, "displayName": "State"}],
    }
    # Instant queries in table format give one frame per query keyed by their labels; merge
    # joins rows on the columns all frames share (Time, task_id, room_id, stream_id).
    result["transformations"] = [
        {"id": "merge", "options": {}},
        {
            "id": "organize",
            "options": {
                # "Value" is what a lone frame's value column is called when the other
                # queries return nothing.
                "excludeByName": {"Time": True, "Value": True, "Value #A": True, "Value #C": True},
                "indexByName": {field: index for index, (field, _, _) in enumerate(TASK_COLUMNS)},
                "renameByName": {field: header for field, header, _ in TASK_COLUMNS},
            },
        },
    ]
    return result


# --- the dashboard, row by row -----------------------------------------------------------

# (row title, row panel id, panels). Panel ids are written out, never counted: alerts.yml links
# to panels by id (dashboard_url ...?viewPanel=<id>), so adding or moving a panel must not
# renumber the others. A new panel takes the next unused number.
ROWS: tuple[tuple[str, int, tuple[Json, ...]], ...] = (
    ("Overview", 1, (
        stat(
            "Streaming",
            "Tasks whose last known state is streaming (Status 3): the digital human is live. "
            "A task watched by several exporters counts once.",
            Query(state_count("streaming")), color="green",
            panel_id=2,
        ),
        stat(
            "Initializing",
            "Tasks still starting up (Status 1). The exporter re-checks them every 3 s through "
            "discovery (5 s when polled one by one); a task that stays here for long shows as a "
            "long blue bar in the timeline below.",
            Query(state_count("initializing")), color="blue",
            panel_id=3,
        ),
        stat(
            "Init failed",
            "Tasks that failed to start (Status 2, init_failed); the task table shows ZEGO's "
            "fail reason. Terminal: not polled again; discovered ones are dropped after "
            "--tasks.retention (default 1 h), configured ones stay while configured.",
            Query(state_count("init_failed")),
            thresholds=steps(("green", None), ("red", 1)),
            panel_id=4,
        ),
        stat(
            "Stopping / stopped",
            "Tasks being stopped (Status 4) or stopped: Status 5, or a task the exporter saw "
            "running that ZEGO now answers 'task not found' for (it ended). Stopped is terminal "
            "and is not polled again.",
            Query(state_count("stopping|stopped")), color="#8e8e8e",
            panel_id=5,
        ),
        stat(
            "Not found",
            "Configured tasks for which the ZEGO API answers 'task not found' (code 400000005) "
            "and that the exporter never saw in any state: a wrong TaskId, another AppID or "
            "region, or a task that ended before the exporter first asked. A task seen before "
            "shows as stopped instead. Terminal.",
            Query(state_count("not_found")),
            thresholds=steps(("green", None), ("purple", 1)),
            panel_id=6,
        ),
        stat(
            "Unknown",
            "Tasks not answered yet (just added, or every lookup fails) or reporting a Status "
            "code the exporter does not know. If this stays above 0, see 'Task lookups "
            "failing' and 'ZEGO API up'.",
            Query(state_count("unknown")),
            thresholds=steps(("green", None), ("yellow", 1)),
            panel_id=7,
        ),
        stat(
            "Exporter up",
            "Whether Prometheus can scrape the exporter (the scrape job's `up` series), one "
            "value per instance. DOWN means every other panel shows stale or no data.",
            Query(f"up{{{EXPORTER}}}", "{{instance}}"),
            mappings=UP_DOWN, thresholds=steps(("red", None), ("green", 1)), graph=False,
            panel_id=8,
        ),
        stat(
            "ZEGO API up",
            "UP when the exporter's latest call to the ZEGO API got a usable answer. DOWN on "
            "timeouts, connection or HTTP errors, invalid bodies, rejected signatures or "
            "credentials (codes 1000000xx) and ZEGO system errors (400010000): the exporter "
            "log names the cause. No data until the exporter's first API call (discovery off "
            "and nothing to look up yet, e.g. fed by callbacks only).",
            Query(sel("zego_digital_human_up", EXPORTER), "{{instance}}"),
            mappings=UP_DOWN, thresholds=steps(("red", None), ("green", 1)), graph=False,
            panel_id=9,
        ),
        stat(
            "Init failures in range",
            "Tasks that entered init_failed during the selected time range, each task counted "
            "once, including tasks that were already failed when the exporter first saw them.",
            Query(failures_in("$__range", "") + " or vector(0)", instant=True),
            thresholds=steps(("green", None), ("red", 1)), graph=False,
            panel_id=10,
        ),
        stat(
            "Rate-limited calls in range",
            f"ZEGO API calls answered 'rate limited' (code {RATE_LIMITED_CODE}) during the "
            "selected time range. The exporter paces itself under --zego.qps per Action, so "
            "anything here means the budget is set above ZEGO's quota or another client uses "
            "the same AppID.",
            Query(
                "sum(increase("
                + sel("zego_digital_human_api_requests_total", EXPORTER, RATE_LIMITED)
                + "[$__range])) or vector(0)",
                instant=True,
            ),
            thresholds=steps(("green", None), ("orange", 1)), graph=False,
            panel_id=11,
        ),
        stat(
            "Oldest task data",
            "How old the stalest status is among tasks still being polled (init_failed, stopped "
            "and not_found tasks are not polled again and are left out). By design it stays "
            "under max(30 s, tasks / QPS) plus the scrape interval; more means the exporter "
            "is falling behind or the API is failing.",
            Query(task_data_age("")),
            unit="s", thresholds=steps(("green", None), ("orange", 60), ("red", 300)),
            panel_id=12,
        ),
        stat(
            "Refresh backlog",
            "Tasks still being polled whose data is older than their refresh target (30 s for "
            "streaming, 5 s for initializing and stopping). 0 in a healthy steady state; it "
            "grows when tasks / QPS exceeds the refresh interval or the API fails.",
            Query(f"sum({sel('zego_digital_human_refresh_backlog', EXPORTER)})"),
            thresholds=steps(("green", None), ("orange", 1)),
            panel_id=13,
        ),
    )),
    ("Tasks", 14, (
        state_timeline(
            "Task states over time",
            "One row per task (room · task ID), coloured by state: streaming green, "
            "initializing blue, init_failed red, stopping orange, stopped grey, not_found "
            "purple, unknown yellow. Gaps mean no data: the exporter was down or did not track "
            "the task then. Pick rooms in the room variable when there are many tasks.",
            [Query(state_number(), "{{room_id}} · {{task_id}}")],
            STATE_NUMBERS, w=24, h=10,
            panel_id=15,
        ),
        task_table(
            "Tasks now",
            "Every task the exporter knows, with room, stream, current state, age since ZEGO "
            "created it, how old the exporter's data about it is (empty for terminal tasks, "
            "which are not polled again) and ZEGO's fail reason for init_failed tasks. Sorted "
            "with failures first; click a header to sort, use its funnel to filter.",
            w=24, h=10,
            panel_id=16,
        ),
        timeseries(
            "Init failures by room and stream",
            "Tasks entering init_failed per room and stream, counted over a sliding window of "
            "a few scrape intervals, so one failure shows as a short bar of height 1. Tasks "
            "already failed when the exporter first saw them are included. The task table "
            "above gives the fail reasons.",
            [Query(
                failures_in("$__rate_interval", "room_id, stream_id"),
                "{{room_id}} / {{stream_id}}",
            )],
            unit="short", bars=True, decimals=0, w=24,
            panel_id=17,
        ),
    )),
    ("ZEGO API", 18, (
        timeseries(
            "API requests by action and code",
            "Calls per second to the ZEGO API by Action and result code: 0 success, "
            f"{RATE_LIMITED_CODE} rate limited, 400000005 task not found (a normal answer for "
            "an unknown TaskId), 100000005 signature rejected (check the app ID and server "
            "secret); http_<status>, timeout, connection_error and invalid_response are "
            "transport failures.",
            [Query(
                "sum by (action, code) (rate("
                + sel("zego_digital_human_api_requests_total", EXPORTER)
                + "[$__rate_interval]))",
                "{{action}} code={{code}}",
            )],
            unit="reqps",
            overrides=[
                override("byRegexp", "/code=0$/", {"color": fixed_color("green")}),
                override("byRegexp", f"/code={RATE_LIMITED_CODE}$/", {
                    "color": fixed_color("orange"),
                }),
            ],
            panel_id=19,
        ),
        timeseries(
            "Request rate vs configured limit",
            "Calls per second per Action and exporter against the exporter's budget "
            "(--zego.qps, default 10 per Action; dashed red line). The exporter paces itself to "
            "stay at or under the line. If ZEGO still answers 'rate limited' while the rate is "
            "under it, another client is using the same AppID's quota.",
            [
                Query(
                    "sum by (instance, action) (rate("
                    + sel("zego_digital_human_api_requests_total", EXPORTER)
                    + "[$__rate_interval]))",
                    "{{action}} sent ({{instance}})",
                ),
                Query(
                    "max by (instance, action) ("
                    + sel("zego_digital_human_rate_limit_qps", EXPORTER)
                    + ")",
                    "{{action}} limit ({{instance}})",
                ),
            ],
            unit="reqps",
            overrides=[
                override("byRegexp", "/ limit /", {
                    "color": fixed_color("red"),
                    "custom.fillOpacity": 0,
                    "custom.lineStyle": {"dash": [10, 10], "fill": "dash"},
                }),
            ],
            panel_id=20,
        ),
        timeseries(
            "API latency (p50 / p90 / p99)",
            "How long ZEGO API calls take, by Action: median, 90th and 99th percentile over "
            "each window, from the exporter's latency histogram. Gaps mean no calls in the "
            "window.",
            [
                Query(quantile(0.5), "p50 {{action}}"),
                Query(quantile(0.9), "p90 {{action}}"),
                Query(quantile(0.99), "p99 {{action}}"),
            ],
            unit="s",
            panel_id=21,
        ),
        state_timeline(
            "Reachability over time",
            "Green while Prometheus could scrape the exporter (exporter) and while the "
            "exporter's latest ZEGO API call got a usable answer (ZEGO API); red otherwise. "
            "A red ZEGO API bar with a green exporter bar points at the network, the "
            "credentials or ZEGO itself.",
            [
                Query(f"up{{{EXPORTER}}}", "exporter {{instance}}"),
                Query(sel("zego_digital_human_up", EXPORTER), "ZEGO API via {{instance}}"),
            ],
            UP_DOWN, w=12, h=8,
            panel_id=22,
        ),
    )),
    ("Exporter", 23, (
        timeseries(
            "Data freshness",
            "Age of the stalest task status per exporter, among tasks still being polled "
            "(terminal tasks are left out because they are not polled again). Expected to "
            "stay under max(30 s, tasks / QPS) plus the scrape interval; dashed lines at 1 "
            "and 5 minutes.",
            [Query(task_data_age("instance"), "oldest task data ({{instance}})")],
            unit="s",
            thresholds=steps(("green", None), ("orange", 60), ("red", 300)),
            panel_id=24,
        ),
        timeseries(
            "Refresh backlog",
            "Tasks still being polled whose data is older than their refresh target (30 s for "
            "streaming, 5 s for initializing and stopping). 0 in a healthy steady state; a "
            "steady rise means more tasks than --zego.qps can refresh in time (enable "
            "discovery, which refreshes all running tasks in one call) or a failing API. "
            "Refreshing pauses while nobody scrapes (--refresh.idle-after).",
            [Query(f"sum by (instance) ({sel('zego_digital_human_refresh_backlog', EXPORTER)})",
                   "{{instance}}")],
            unit="short", decimals=0,
            panel_id=25,
        ),
        timeseries(
            "Tracked tasks by source",
            "Tasks the exporter tracks, by where it learned of them: static (--task-id), file "
            "(--task-file), discovered (QueryDigitalHumanStreamTasks) and callback (ZEGO "
            "callbacks). A task named by several sources counts under each, so the lines can "
            "add up to more than the number of tasks.",
            [Query(f"sum by (source) ({sel('zego_digital_human_tracked_tasks', EXPORTER)})",
                   "{{source}}")],
            unit="short", decimals=0,
            panel_id=26,
        ),
        timeseries(
            "Collection and scrape duration",
            "How long the exporter took to write the body of its previous complete scrape "
            "(collect: from its snapshot of the cache to the last byte handed to the "
            "connection, so rendering, gzip and sending), and the whole scrape as Prometheus "
            "measured it (scrape, which also includes a wait of up to --web.max-scrape-wait for "
            "lookups in flight). Neither waits for ZEGO beyond that, so both should stay far "
            "below the scrape timeout.",
            [
                Query(sel("zego_digital_human_scrape_duration_seconds", EXPORTER),
                      "collect ({{instance}})"),
                Query(f"scrape_duration_seconds{{{EXPORTER}}}", "scrape ({{instance}})"),
            ],
            unit="s",
            panel_id=27,
        ),
        timeseries(
            "Task lookups failing",
            "Tasks whose last individual status lookup got no answer (timeout, transport or API "
            "error); 'task not found' counts as an answer. This metric has no room label, so "
            "the room variable does not filter it.",
            [Query(
                "sum by (instance) (1 - "
                + sel("zego_digital_human_task_lookup_success", EXPORTER)
                + ")",
                "{{instance}}",
            )],
            unit="short", decimals=0,
            panel_id=28,
        ),
        timeseries(
            "Callbacks received",
            "ZEGO callbacks posted to /zego/callback per second, by event type and result: "
            "accepted, bad_signature (check the callback secret), wrong_app (signed, but for "
            "another AppId), invalid (malformed body) and "
            "ignored (an event the exporter does not act on). Empty when no callback secret is "
            "configured, since the endpoint is then disabled.",
            [Query(
                "sum by (event_type, result) (rate("
                + sel("zego_digital_human_callbacks_total", EXPORTER)
                + "[$__rate_interval]))",
                "{{event_type}} {{result}}",
            )],
            unit="reqps",
            panel_id=29,
        ),
    )),
)


def layout(rows: Sequence[tuple[str, int, Sequence[Json]]]) -> list[Json]:
    """Place the panels left to right, wrapping at the 24-column grid, under their rows."""
    panels: list[Json] = []
    y = 0
    for title, row_id, row_panels in rows:
        panels.append({
            "id": row_id,
            "type": "row",
            "title": title,
            "collapsed": False,
            "panels": [],
            "gridPos": {"h": 1, "w": GRID_COLUMNS, "x": 0, "y": y},
        })
        y += 1
        x, line_height = 0, 0
        for spec in row_panels:
            placed = json.loads(json.dumps(spec))  # a copy: ROWS stays untouched
            w, h = placed["gridPos"]["w"], placed["gridPos"]["h"]
            if x + w > GRID_COLUMNS:
                x, y, line_height = 0, y + line_height, 0
            placed["gridPos"] = {"h": h, "w": w, "x": x, "y": y}
            panels.append(placed)
            x += w
            line_height = max(line_height, h)
        y += line_height
    ids = [placed["id"] for placed in panels]
    duplicates = sorted({panel_id for panel_id in ids if ids.count(panel_id) > 1})
    if duplicates:
        raise ValueError(f"panel ids used twice: {duplicates}; give each panel its own")
    return panels


def query_variable(
    name: str, label: str, query: str, *, multi: bool, all_value: str | None = None
) -> Json:
    variable: Json = {
        "type": "query",
        "name": name,
        "label": label,
        "datasource": DATASOURCE,
        "definition": query,
        "query": query,
        "refresh": 2,  # on time range change: rooms come and go
        "regex": "",
        "sort": 1,
        "hide": 0,
        "includeAll": multi,
        "multi": multi,
        "options": [],
        "current": {},
    }
    if multi:
        variable["current"] = {"selected": True, "text": ["All"], "value": ["$__all"]}
    if all_value is not None:
        variable["allValue"] = all_value
    return variable


def templating() -> list[Json]:
    return [
        {
            "type": "datasource",
            "name": "datasource",
            "label": "Data source",
            "query": "prometheus",
            "refresh": 1,
            "regex": "",
            "hide": 0,
            "includeAll": False,
            "multi": False,
            "options": [],
            "current": {},
        },
        # "All" jobs is the regex of the jobs listed (no allValue), not dashboard-linter's
        # `.+`: `up` and `scrape_duration_seconds` are Prometheus' own series, which every
        # target of every job has, so `job=~".+"` would put all of them on this dashboard.
        # Listed from build_info, which every exporter has from its first scrape on
        # (zego_digital_human_up waits for the first API call).
        query_variable("job", "Job", f"label_values({BUILD_INFO}, job)", multi=True),
        # Within the selected jobs every instance is an exporter: `.+` is a short query.
        query_variable(
            "instance", "Instance",
            f'label_values({BUILD_INFO}{{job=~"$job"}}, instance)',
            multi=True, all_value=".+",
        ),
        # label_values cannot list the empty room of a task whose RoomId is not known yet; a
        # regex that also matches the empty string keeps those tasks under "All".
        query_variable(
            "room_id", "Room",
            'label_values(zego_digital_human_task_state{job=~"$job", instance=~"$instance"}, '
            "room_id)",
            multi=True, all_value=".*",
        ),
    ]


def build() -> Json:
    return {
        "annotations": {"list": []},
        "description": "ZEGOCLOUD Digital Human stream tasks as seen by zego-exporter: task "
        "states, failures, ZEGO API health and the exporter's own freshness.",
        # The file is the source of truth (provisioned, or imported from the repository): edits
        # made in Grafana's UI would be lost on the next provisioning or import.
        "editable": False,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": [],
        "panels": layout(ROWS),
        "refresh": "30s",
        "schemaVersion": 39,
        "tags": ["zego", "digital-human", "zego-exporter"],
        "templating": {"list": templating()},
        "time": {"from": "now-3h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "title": "ZEGO Digital Human",
        "uid": UID,
        "version": 1,
        "weekStart": "",
    }


def render(dashboard: Json | None = None) -> str:
    return json.dumps(dashboard or build(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def iter_panels(panels: Sequence[Json]) -> Iterator[Json]:
    """Every panel, including those inside collapsed rows."""
    for item in panels:
        yield item
        yield from iter_panels(item.get("panels", []))


_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


def substitute(expr: str, variables: Mapping[str, str]) -> str:
    """Replace `$name` / `${name}` with values from `variables` (keys without the `$`)."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in variables:
            raise KeyError(f"no value given for ${name} in: {expr}")
        return variables[name]

    return _VARIABLE.sub(replace, expr)


def panel_queries(variables: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """(panel title, expression) for every query on the dashboard.

    With `variables`, e.g. {"job": "zego", "instance": ".+", "room_id": ".*",
    "__rate_interval": "1m", "__range": "1h"}, the template variables are filled in so the
    expressions run against a real Prometheus; a variable missing from the mapping raises
    KeyError. Without it the expressions are returned as on the dashboard.
    """
    result: list[tuple[str, str]] = []
    for item in iter_panels(build()["panels"]):
        for target in item.get("targets", []):
            expr = target["expr"]
            if variables is not None:
                expr = substitute(expr, variables)
            result.append((item["title"], expr))
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--check", action="store_true",
        help="do not write; exit 1 if the committed JSON differs from the generated one",
    )
    args = parser.parse_args(argv)
    wanted = render()
    if args.check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != wanted:
            print(
                f"{OUTPUT.name} is out of date: run `python grafana/build_dashboard.py`",
                file=sys.stderr,
            )
            return 1
        return 0
    OUTPUT.write_text(wanted, encoding="utf-8")
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
