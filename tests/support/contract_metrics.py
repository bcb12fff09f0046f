"""The metric names fixed by the project's contract, for tests of the files that use them.

A copy of the metrics table of the contract (shared/contract.md), kept here because CI runs on
a clean clone that must not depend on anything outside the repository. Alert rules and the
Grafana dashboard may only query these names (and Prometheus' own `up`); renaming a metric
means changing the contract first, then this table. It holds data only and imports nothing
from the exporter, so it can never drift along with the code it checks.
"""

from __future__ import annotations

from typing import NamedTuple


class ContractMetric(NamedTuple):
    name: str
    type: str
    """counter, gauge, histogram, or info (a gauge that is always 1)."""
    labels: tuple[str, ...]


_TASK = ("task_id", "room_id", "stream_id")

CONTRACT_METRICS: tuple[ContractMetric, ...] = (
    ContractMetric("zego_digital_human_task_status", "gauge", _TASK),
    ContractMetric("zego_digital_human_task_state", "gauge", (*_TASK, "state")),
    ContractMetric("zego_digital_human_task_age_seconds", "gauge", _TASK),
    ContractMetric("zego_digital_human_task_created_timestamp_seconds", "gauge", _TASK),
    ContractMetric("zego_digital_human_task_info", "info", (*_TASK, "fail_reason")),
    ContractMetric("zego_digital_human_task_last_success_timestamp_seconds", "gauge", _TASK),
    ContractMetric("zego_digital_human_task_lookup_success", "gauge", ("task_id",)),
    ContractMetric("zego_digital_human_task_failures_total", "counter", ("room_id", "stream_id")),
    ContractMetric("zego_digital_human_up", "gauge", ()),
    ContractMetric("zego_digital_human_api_requests_total", "counter", ("action", "code")),
    ContractMetric("zego_digital_human_api_request_duration_seconds", "histogram", ("action",)),
    ContractMetric("zego_digital_human_rate_limit_qps", "gauge", ("action",)),
    ContractMetric("zego_digital_human_tracked_tasks", "gauge", ("source",)),
    ContractMetric("zego_digital_human_refresh_backlog", "gauge", ()),
    ContractMetric("zego_digital_human_scrape_duration_seconds", "gauge", ()),
    ContractMetric("zego_digital_human_callbacks_total", "counter", ("event_type", "result")),
    ContractMetric("zego_digital_human_exporter_build_info", "info", ("version",)),
    ContractMetric("zego_digital_human_web_config_last_reload_successful", "gauge", ()),
)

CONTRACT_METRIC_NAMES: frozenset[str] = frozenset(metric.name for metric in CONTRACT_METRICS)

# The label values the contract fixes.
CONTRACT_STATUS_STATES: dict[int, str] = {
    1: "initializing", 2: "init_failed", 3: "streaming", 4: "stopping", 5: "stopped",
}
CONTRACT_STATES: tuple[str, ...] = (*CONTRACT_STATUS_STATES.values(), "not_found", "unknown")
"""Every value of task_state's `state` label."""
CONTRACT_SOURCES: tuple[str, ...] = ("static", "file", "discovered", "callback")
"""Every value of tracked_tasks' `source` label."""
CONTRACT_CALLBACK_RESULTS: tuple[str, ...] = (
    "accepted", "bad_signature", "wrong_app", "invalid", "ignored")
"""Every value of callbacks_total's `result` label."""


def queryable_names() -> dict[str, ContractMetric]:
    """Every series name PromQL can select, mapped to its metric (histograms have three)."""
    names: dict[str, ContractMetric] = {}
    for metric in CONTRACT_METRICS:
        if metric.type == "histogram":
            for suffix in ("_bucket", "_sum", "_count"):
                names[metric.name + suffix] = metric
        else:
            names[metric.name] = metric
    return names
