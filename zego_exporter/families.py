"""What the exporter exports: one spec per metric family, walked by every output path.

Each `Family` names a family once: its name, type, HELP text, labels, which rows of a scrape
have samples and how a row's label values and sample value are read. The collector
(`collector.py`) turns the specs into prometheus_client families; the fast renderer
(`exposition.py`) writes the same families as text from the same specs, and a test holds the two
to byte-identical output. Adding a metric is adding one `Family` to `FAMILIES`. This module only
describes: it never renders, takes a snapshot, calls the API or knows HTTP.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from operator import attrgetter, itemgetter
from typing import Any, Generic, Literal, TypeVar

from zego_exporter import __version__
from zego_exporter.states import STATES
from zego_exporter.tracker import SOURCES, RefreshPolicy, Snapshot, TaskView

PREFIX = "zego_digital_human_"
TASK_LABELS = ("room_id", "stream_id", "task_id")

Row = TypeVar("Row")
Kind = Literal["gauge", "counter", "info"]


@dataclass(frozen=True)
class Scrape:
    """What one scrape exports: the tracker's snapshot and the exporter's own figures."""

    snapshot: Snapshot
    qps: Mapping[str, float]
    """The configured budget of each Action."""
    last_duration: float
    """How long the previous scrape took (seconds)."""

    @property
    def now(self) -> float:
        return self.snapshot.taken_at


@dataclass(frozen=True)
class OneHot(Generic[Row]):
    """One sample per value of `label`: 1 for the row's current value, 0 for each other."""

    label: str
    values: tuple[str, ...]
    current: Callable[[Row], str]


@dataclass(frozen=True)
class Family(Generic[Row]):
    """One metric family, as both output paths need it."""

    name: str
    """Without PREFIX, and as prometheus_client names families: a counter without `_total`,
    an info family without `_info`. Also the key of its HELP text in help_texts()."""
    kind: Kind
    help: str
    """HELP text; `{cached}` and `{retention}` are filled in from the refresh policy."""
    rows: Callable[[Scrape], Iterable[Row]]
    """The rows with samples, in output order."""
    labels: tuple[str, ...] = ()
    """Label names in alphabetical order (the order both text formats print them in)."""
    label_values: Callable[[Row], tuple[str, ...]] = lambda _: ()
    """A row's label values, in the order of `labels`."""
    value: Callable[[Row, float], float | None] | None = None
    """A row's sample value at scrape time `now`; None: no sample for this row. Unset for
    info families (always 1) and one-hot families."""
    one_hot: OneHot[Row] | None = None

    def __post_init__(self) -> None:
        if list(self.labels) != sorted(self.labels):
            raise ValueError(f"{self.name}: labels must be in alphabetical order")
        if (self.value is None) != (self.kind == "info" or self.one_hot is not None):
            raise ValueError(f"{self.name}: a value getter, unless info or one-hot")


def _tasks(scrape: Scrape) -> list[TaskView]:
    return scrape.snapshot.tasks


_task_labels: Callable[[TaskView], tuple[str, str, str]] = attrgetter(*TASK_LABELS)

_CACHED = (
    "Cached by the exporter: refreshed every {interval} while streaming, every {fast} while "
    "initializing or stopping, by each discovery round ({discovery}) while running, and not "
    "again once init_failed, stopped or not_found; older only while "
    "zego_digital_human_refresh_backlog > 0."
)

FAMILIES: tuple[Family[Any], ...] = (
    Family[TaskView](
        "task_status", "gauge",
        "Status code from ZEGO (1 initializing, 2 init_failed, 3 streaming, 4 stopping, "
        "5 stopped; 5 also when the exporter concluded the task stopped, see task_state); absent "
        "while not_found. {cached}",
        _tasks, TASK_LABELS, _task_labels, value=lambda task, now: task.status,
    ),
    Family[TaskView](
        "task_state", "gauge",
        "Current state of the task: 1 for the current state, 0 for each other. initializing, "
        "init_failed, streaming, stopping: ZEGO's Status 1-4. stopped: Status 5 (from a "
        "callback), or a task seen running that ZEGO no longer knows (ZEGO describes task status "
        "for running tasks only, so an ended task answers 'task not found'). A known init_failed "
        "or stopped stays so, fail_reason and all. not_found: ZEGO answers 'task not found' and "
        "the exporter never saw the task (a wrong TaskId, another AppId or region). unknown: any "
        "other Status, or no answer yet. {cached}",
        _tasks, TASK_LABELS, _task_labels, one_hot=OneHot("state", STATES, attrgetter("state")),
    ),
    Family[TaskView](
        "task_age_seconds", "gauge",
        "Seconds since the task was created (scrape time minus ZEGO's CreateTime, computed at "
        "scrape time from a cached CreateTime). {cached}",
        _tasks, TASK_LABELS, _task_labels,
        value=lambda task, now: None if task.create_time is None else now - task.create_time,
    ),
    Family[TaskView](
        "task_created_timestamp_seconds", "gauge",
        "ZEGO's CreateTime of the task (unix seconds). {cached}",
        _tasks, TASK_LABELS, _task_labels, value=lambda task, now: task.create_time,
    ),
    Family[TaskView](
        "task", "info",
        "Task information, always 1; fail_reason is set while init_failed (control characters "
        "removed, at most 256 characters). {cached}",
        _tasks, ("fail_reason", *TASK_LABELS), attrgetter("fail_reason", *TASK_LABELS),
    ),
    Family[TaskView](
        "task_last_success_timestamp_seconds", "gauge",
        "When this task's status was last fetched successfully (lookup, running-task list or "
        "callback; unix seconds). Updated with every answer; it stops moving once the task is "
        "init_failed, stopped or not_found, since those are not polled again.",
        _tasks, TASK_LABELS, _task_labels, value=lambda task, now: task.last_success,
    ),
    Family[TaskView](
        "task_lookup_success", "gauge",
        "1 if the last lookup of this task got an answer (not_found counts as an answer, and "
        "so does the task's entry in the running-task list; a callback is no lookup), 0 if "
        "it failed. Updated with every lookup.",
        _tasks, ("task_id",), lambda task: (task.task_id,),
        value=lambda task, now: None if task.lookup_ok is None else int(task.lookup_ok),
    ),
    Family[tuple[tuple[str, str], int]](
        "task_failures", "counter",
        "Tasks seen entering init_failed, each task counted once whether a callback, a lookup or "
        "the running list told first (also when first seen already failed); 0 for every known "
        "room and stream without failures. Series are kept while a tracked task has the pair "
        "(retention {retention} after it ended). Counted live as the exporter learns of each "
        "failure; with --storage.path, once the count is written to the file.",
        lambda scrape: scrape.snapshot.failures.items(), ("room_id", "stream_id"), itemgetter(0),
        value=lambda pair_count, now: pair_count[1],
    ),
    Family[bool | None](
        "up", "gauge",
        "1 if the exporter's latest ZEGO API call (of either Action) got an answer in ZEGO's "
        "envelope that was not a gateway, credential or system failure: Code 0, or a task's or "
        "Action's own code such as 400000005 (task not found), 400010001 (Action not enabled for "
        "the AppId) or 400010009 (rate limited). 0 if it got no usable answer (connection error, "
        "timeout, an HTTP error other than 429, or a body without ZEGO's envelope) or ZEGO "
        "refused the AppId or signature (1000000xx) or failed (400010000). Updated with every "
        "API call; absent until the first one (discovery off and nothing to look up yet, e.g. "
        "callbacks only), since nothing is known of the API then.",
        lambda scrape: (scrape.snapshot.api_up,),
        value=lambda up, now: None if up is None else int(up),
    ),
    Family[tuple[str, float]](
        "rate_limit_qps", "gauge",
        "Configured budget of ZEGO API requests per second for each Action (--zego.qps). "
        "Fixed for the life of the process.",
        lambda scrape: scrape.qps.items(), ("action",), lambda budget: (budget[0],),
        value=lambda budget, now: budget[1],
    ),
    Family[tuple[str, int]](
        "tracked_tasks", "gauge",
        "Tasks tracked, by the source that named them (a task named by several sources counts "
        "under each). Updated as sources change.",
        lambda scrape: ((source, scrape.snapshot.sources.get(source, 0)) for source in SOURCES),
        ("source",), lambda count: (count[0],), value=lambda count, now: count[1],
    ),
    Family[int](
        "refresh_backlog", "gauge",
        "Tracked tasks that are not terminal and whose data is older than their refresh target. "
        "0 when the exporter keeps up. Computed at scrape time from the cache.",
        lambda scrape: (scrape.snapshot.backlog,), value=lambda backlog, now: backlog,
    ),
    Family[float](
        "scrape_duration_seconds", "gauge",
        "Seconds the previous complete scrape took to write its body: from the snapshot of the "
        "cached data to the last piece handed to the connection, so rendering, gzip and sending "
        "(a slow reader makes it longer), but not the wait for lookups in flight before it. "
        "Scrapes that the client abandoned do not count.",
        lambda scrape: (scrape.last_duration,), value=lambda seconds, now: seconds,
    ),
    Family[str](
        "exporter_build", "info",
        "Build information of zego-exporter, always 1. Fixed for the life of the process.",
        lambda scrape: (__version__,), ("version",), lambda version: (version,),
    ),
)


def _seconds(value: float) -> str:
    return f"{value:g}s" if value < 120 else f"{value / 60:g}m"


def help_texts(policy: RefreshPolicy) -> dict[str, str]:
    """HELP of every family, keyed by its name (without the prefix)."""
    cached = _CACHED.format(interval=_seconds(policy.interval),
                            fast=_seconds(policy.fast_interval),
                            discovery=_seconds(policy.discovery_interval))
    return {family.name: family.help.format(cached=cached,
                                            retention=_seconds(policy.retention))
            for family in FAMILIES}
