"""The Prometheus collector: metric families built fresh from a tracker snapshot on each collect.

It walks the family specs of `families.py` and fills prometheus_client families from a snapshot:
tasks that are gone simply stop appearing; nothing is ever `.remove()`d. The collector knows
nothing of HTTP and never calls the API: values come from the snapshot (cached by the tracker,
refreshed in the background), except the task age, which is computed at scrape time. The HELP
texts say how old the cached values may be. `exposition.py` renders the same specs as text much
faster; a test holds the two to byte-identical output.

Example output (text format, abridged)::

    # HELP zego_digital_human_task_state Current state of the task: 1 for the current state, ...
    # TYPE zego_digital_human_task_state gauge
    zego_digital_human_task_state{room_id="r1",state="initializing",stream_id="s1",task_id="t1"} 0.0
    zego_digital_human_task_state{room_id="r1",state="streaming",stream_id="s1",task_id="t1"} 1.0
    # HELP zego_digital_human_task_failures_total Tasks seen entering init_failed, ...
    # TYPE zego_digital_human_task_failures_total counter
    zego_digital_human_task_failures_total{room_id="room_1",stream_id="s_1"} 0.0
    # HELP zego_digital_human_up 1 if the exporter's latest ZEGO API call (of either Action) got ...
    # TYPE zego_digital_human_up gauge
    zego_digital_human_up 1.0
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from zego_exporter.families import FAMILIES, PREFIX, Family, Scrape, help_texts
from zego_exporter.tracker import RefreshPolicy, Snapshot


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

    def scrape(self, snap: Snapshot) -> Scrape:
        """What a scrape of `snap` exports."""
        return Scrape(snap, self.qps, self.last_scrape_duration)

    def describe(self) -> Iterator[Metric]:
        """The families without samples, so registering this collector calls nothing."""
        return (self._family(spec, None) for spec in FAMILIES)

    def collect(self) -> Iterator[Metric]:
        scrape = self.scrape(self._snapshot())
        return (self._family(spec, scrape) for spec in FAMILIES)

    def _family(self, spec: Family[Any], scrape: Scrape | None) -> Metric:
        name, documentation = PREFIX + spec.name, self.help[spec.name]
        one_hot, value = spec.one_hot, spec.value
        # prometheus_client prints label names sorted, whatever their order here.
        labels = (*spec.labels, one_hot.label) if one_hot is not None else spec.labels
        family: GaugeMetricFamily | CounterMetricFamily | InfoMetricFamily
        if spec.kind == "info":
            family = InfoMetricFamily(name, documentation, labels=labels)
        elif spec.kind == "counter":
            family = CounterMetricFamily(name, documentation, labels=labels)
        else:
            family = GaugeMetricFamily(name, documentation, labels=labels)
        if scrape is None:
            return family
        now = scrape.now
        for row in spec.rows(scrape):
            label_values = spec.label_values(row)
            if isinstance(family, InfoMetricFamily):
                family.add_metric(label_values, {})
            elif one_hot is not None:
                current = one_hot.current(row)
                for choice in one_hot.values:
                    family.add_metric((*label_values, choice), 1 if choice == current else 0)
            elif value is not None and (sample := value(row, now)) is not None:
                family.add_metric(label_values, sample)
        return family
