"""Reading a scrape (the Prometheus text format) in tests: types, samples, a task's state."""

from __future__ import annotations

import re
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families


def metric_types(text: str) -> dict[str, str]:
    """The TYPE of every family in a scrape, by name."""
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


def samples(text: str) -> list[Sample]:
    return [Sample(s.name, dict(s.labels), s.value)
            for family in text_string_to_metric_families(text) for s in family.samples]


def task_states(text: str, task_id: str) -> set[str]:
    """The states with value 1 of one task in a scrape."""
    return {s.labels["state"] for s in samples(text)
            if s.name == "zego_digital_human_task_state" and s.labels["task_id"] == task_id
            and s.value == 1}
