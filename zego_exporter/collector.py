"""The Prometheus collector: metric families built fresh from a tracker snapshot on each collect.

Tasks that are gone simply stop appearing; nothing is ever `.remove()`d. The collector knows
nothing of HTTP and never calls the API: values come from the snapshot (cached by the tracker,
refreshed in the background), except the task age, which is computed at scrape time. The HELP
texts say how old the cached values may be. `exposition.py` renders the same families as text
much faster; a test holds the two to byte-identical output.

Example output (text format, abridged)::

    # HELP zego_digital_human_task_state Current state of the task: 1 for the current state, ...
    # TYPE zego_digital_human_task_state gauge
    zego_digital_human_task_state{room_id="r1",state="initializing",stream_id="s1",task_id="t1"} 0
    zego_digital_human_task_state{room_id="r1",state="streaming",stream_id="s1",task_id="t1"} 1
    # HELP zego_digital_human_task_failures_total Tasks seen entering init_failed, ...
    # TYPE zego_digital_human_task_failures_total counter
    zego_digital_human_task_failures_total{room_id="room_1",stream_id="s_1"} 0.0
    # HELP zego_digital_human_up 1 if the exporter's latest ZEGO API call (of either Action) got ...
    # TYPE zego_digital_human_up gauge
    zego_digital_human_up 1.0
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from zego_exporter import __version__
from zego_exporter.states import STATES
from zego_exporter.tracker import SOURCES, RefreshPolicy, Snapshot

PREFIX = "zego_digital_human_"
TASK_LABELS = ("task_id", "room_id", "stream_id")


def _seconds(value: float) -> str:
    return f"{value:g}s" if value < 120 else f"{value / 60:g}m"


def help_texts(policy: RefreshPolicy) -> dict[str, str]:
    """HELP of every family this collector yields, keyed by the name without the prefix."""
    cached = (
        f"Cached by the exporter: refreshed every {_seconds(policy.interval)} while streaming, "
        f"every {_seconds(policy.fast_interval)} while initializing or stopping, by each "
        f"discovery round ({_seconds(policy.discovery_interval)}) while running, and not again "
        "once init_failed, stopped or not_found; older only while "
        "zego_digital_human_refresh_backlog > 0."
    )
    return {
        "task_status": "Status code from ZEGO (1 initializing, 2 init_failed, 3 streaming, "
        "4 stopping, 5 stopped; 5 also when the exporter concluded the task stopped, see "
        f"task_state); absent while not_found. {cached}",
        "task_state": "Current state of the task: 1 for the current state, 0 for each other. "
        "initializing, init_failed, streaming, stopping: ZEGO's Status 1-4. stopped: Status 5 "
        "(from a callback), or a task seen running that ZEGO no longer knows (ZEGO describes "
        "task status for running tasks only, so an ended task answers 'task not found'). "
        "A known init_failed or stopped stays so, fail_reason and all. not_found: ZEGO "
        "answers 'task not found' and the exporter never saw the task (a wrong TaskId, another "
        f"AppId or region). unknown: any other Status, or no answer yet. {cached}",
        "task_age_seconds": "Seconds since the task was created (scrape time minus ZEGO's "
        f"CreateTime, computed at scrape time from a cached CreateTime). {cached}",
        "task_created_timestamp_seconds": f"ZEGO's CreateTime of the task (unix seconds). {cached}",
        "task": "Task information, always 1; fail_reason is set while init_failed (control "
        f"characters removed, at most 256 characters). {cached}",
        "task_last_success_timestamp_seconds": "When this task's status was last fetched "
        "successfully (lookup, running-task list or callback; unix seconds).",
        "task_lookup_success": "1 if the last lookup of this task got an answer (not_found "
        "counts as an answer), 0 if it failed. Updated with every lookup.",
        "task_failures": "Tasks seen entering init_failed, each task counted once whether a "
        "callback, a lookup or the running list told first (also when first seen already "
        "failed); 0 for every known room and stream without failures. "
        f"Series are kept while a tracked task has the pair (retention {_seconds(policy.retention)}"
        " after it ended).",
        "up": "1 if the exporter's latest ZEGO API call (of either Action) got an answer in "
        "ZEGO's envelope that was not a gateway, credential or system failure: Code 0, or a "
        "task's or Action's own code such as 400000005 (task not found), 400010001 (Action not "
        "enabled for the AppId) or 400010009 (rate limited). 0 if it got no usable answer "
        "(connection error, timeout, HTTP error or body without ZEGO's envelope) or ZEGO "
        "refused the AppId or signature (1000000xx) or failed (400010000). Updated with every "
        "API call.",
        "rate_limit_qps": "Configured budget of ZEGO API requests per second for each Action.",
        "tracked_tasks": "Tasks tracked, by the source that named them (a task named by several "
        "sources counts under each). Updated as sources change.",
        "refresh_backlog": "Tracked tasks that are not terminal and whose data is older than "
        "their refresh target. 0 when the exporter keeps up.",
        "scrape_duration_seconds": "Time the previous collection of these metrics took.",
        "exporter_build": "Build information of zego-exporter, always 1.",
    }


class ZegoCollector(Collector):
    """Yields the exporter's metric families from the latest tracker snapshot."""

    def __init__(
        self,
        snapshot: Callable[[], Snapshot],
        qps: Mapping[str, float],
        policy: RefreshPolicy,
    ) -> None:
        self._snapshot = snapshot
        self.qps = dict(qps)
        self.help = help_texts(policy)
        self.last_scrape_duration = 0.0

    def describe(self) -> Iterator[Metric]:
        """The families without samples, so registering this collector calls nothing."""
        return self._families(None)

    def collect(self) -> Iterator[Metric]:
        return self._families(self._snapshot())

    def _families(self, snap: Snapshot | None) -> Iterator[Metric]:
        h = self.help
        tasks = snap.tasks if snap is not None else []
        now = snap.taken_at if snap is not None else 0.0

        status = GaugeMetricFamily(PREFIX + "task_status", h["task_status"], labels=TASK_LABELS)
        state = GaugeMetricFamily(
            PREFIX + "task_state", h["task_state"], labels=(*TASK_LABELS, "state")
        )
        age = GaugeMetricFamily(
            PREFIX + "task_age_seconds", h["task_age_seconds"], labels=TASK_LABELS
        )
        created = GaugeMetricFamily(
            PREFIX + "task_created_timestamp_seconds", h["task_created_timestamp_seconds"],
            labels=TASK_LABELS,
        )
        info = InfoMetricFamily(PREFIX + "task", h["task"], labels=TASK_LABELS)
        last_success = GaugeMetricFamily(
            PREFIX + "task_last_success_timestamp_seconds",
            h["task_last_success_timestamp_seconds"], labels=TASK_LABELS,
        )
        lookup = GaugeMetricFamily(
            PREFIX + "task_lookup_success", h["task_lookup_success"], labels=("task_id",)
        )
        for task in tasks:
            labels = (task.task_id, task.room_id, task.stream_id)
            if task.status is not None:
                status.add_metric(labels, task.status)
            for name in STATES:
                state.add_metric((*labels, name), 1 if name == task.state else 0)
            if task.create_time is not None:
                age.add_metric(labels, now - task.create_time)
                created.add_metric(labels, task.create_time)
            info.add_metric(labels, {"fail_reason": task.fail_reason})
            if task.last_success is not None:
                last_success.add_metric(labels, task.last_success)
            if task.lookup_ok is not None:
                lookup.add_metric((task.task_id,), 1 if task.lookup_ok else 0)
        yield from (status, state, age, created, info, last_success, lookup)

        failures = CounterMetricFamily(
            PREFIX + "task_failures", h["task_failures"], labels=("room_id", "stream_id")
        )
        for (room_id, stream_id), count in (snap.failures.items() if snap else ()):
            failures.add_metric((room_id, stream_id), count)
        yield failures

        yield from self.health_families(snap)

    def health_families(self, snap: Snapshot | None) -> Iterator[Metric]:
        h = self.help
        up = GaugeMetricFamily(PREFIX + "up", h["up"])
        qps = GaugeMetricFamily(PREFIX + "rate_limit_qps", h["rate_limit_qps"], labels=("action",))
        tracked = GaugeMetricFamily(
            PREFIX + "tracked_tasks", h["tracked_tasks"], labels=("source",)
        )
        backlog = GaugeMetricFamily(PREFIX + "refresh_backlog", h["refresh_backlog"])
        duration = GaugeMetricFamily(
            PREFIX + "scrape_duration_seconds", h["scrape_duration_seconds"]
        )
        build = InfoMetricFamily(PREFIX + "exporter_build", h["exporter_build"])
        if snap is not None:
            up.add_metric((), 1 if snap.api_up else 0)
            for action, budget in self.qps.items():
                qps.add_metric((action,), budget)
            for source in SOURCES:
                tracked.add_metric((source,), snap.sources.get(source, 0))
            backlog.add_metric((), snap.backlog)
            duration.add_metric((), self.last_scrape_duration)
            build.add_metric((), {"version": __version__})
        yield from (up, qps, tracked, backlog, duration, build)
