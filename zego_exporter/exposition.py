"""Renders the collector's families in the Prometheus text format, fast, for large task counts.

prometheus_client builds a Sample object and escapes every label of every sample on each scrape;
with 10,000 tasks that is about 130,000 samples. Here each task's escaped label text is kept
between scrapes (it only changes when room or stream become known), and the constant lines of a
task (state, status, timestamps) are formatted from it directly; only the age is new each time.
The output is byte-identical to `generate_latest` over `ZegoCollector` (tests/test_exposition.py
holds it to that). OpenMetrics, asked for rarely, goes through prometheus_client unchanged.
This module renders only: it never takes a snapshot or calls the API itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from zego_exporter.collector import PREFIX, ZegoCollector
from zego_exporter.tracker import STATES, Snapshot, TaskView

_ONE, _ZERO = "1.0", "0.0"
# prometheus_client's own float formatting (Go style), so both renderers agree to the byte.
_go_float: Callable[[float], str] = floatToGoString


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _header(name: str, kind: str, help_text: str) -> str:
    escaped = help_text.replace("\\", r"\\").replace("\n", r"\n")
    return f"# HELP {name} {escaped}\n# TYPE {name} {kind}\n"


class _Families(Collector):
    """Adapts a list of families to what generate_latest expects of a registry."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


class TextRenderer:
    """Keeps per-task label text between scrapes and renders snapshots as text format."""

    def __init__(self, collector: ZegoCollector) -> None:
        self._collector = collector
        # task_id -> (room_id, stream_id, 'room_id="…"', 'stream_id="…",task_id="…"',
        #             'task_id="…"'); label names sorted, as prometheus_client sorts them.
        self._labels: dict[str, tuple[str, str, str, str, str]] = {}

    def render(self, snap: Snapshot, rest: Collector | None = None) -> bytes:
        """The text exposition of `snap`, followed by that of `rest` (other collectors)."""
        out = [self._task_families(snap), self._failures(snap)]
        body = "".join(out).encode("utf-8")
        tail = generate_latest(_Families(self._collector.health_families(snap)))
        if rest is not None:
            tail += generate_latest(rest)
        return body + tail

    def _label_parts(self, tasks: list[TaskView]) -> list[tuple[str, str, str]]:
        """(room part, stream and task part, task part) of each task's label text, reusing the
        previous scrape's text where room and stream are unchanged."""
        old = self._labels
        new: dict[str, tuple[str, str, str, str, str]] = {}
        parts = []
        for task in tasks:
            cached = old.get(task.task_id)
            if cached is None or cached[0] != task.room_id or cached[1] != task.stream_id:
                task_part = f'task_id="{_escape(task.task_id)}"'
                cached = (
                    task.room_id,
                    task.stream_id,
                    f'room_id="{_escape(task.room_id)}"',
                    f'stream_id="{_escape(task.stream_id)}",{task_part}',
                    task_part,
                )
            new[task.task_id] = cached
            parts.append(cached[2:])
        self._labels = new  # tasks that are gone leave the cache with this scrape
        return parts

    def _task_families(self, snap: Snapshot) -> str:
        h = self._collector.help
        tasks = snap.tasks
        rows = list(zip(tasks, self._label_parts(tasks), strict=True))
        now = snap.taken_at
        fmt = _go_float

        name = PREFIX + "task_status"
        out = [_header(name, "gauge", h["task_status"])]
        out += [f"{name}{{{room},{rest}}} {fmt(t.status)}\n"
                for t, (room, rest, _) in rows if t.status is not None]

        name = PREFIX + "task_state"
        out.append(_header(name, "gauge", h["task_state"]))
        for t, (room, rest, _) in rows:
            head = f"{name}{{{room},state="
            out += [f'{head}"{s}",{rest}}} {_ONE if s == t.state else _ZERO}\n' for s in STATES]

        name = PREFIX + "task_age_seconds"
        out.append(_header(name, "gauge", h["task_age_seconds"]))
        out += [f"{name}{{{room},{rest}}} {fmt(now - t.create_time)}\n"
                for t, (room, rest, _) in rows if t.create_time is not None]

        name = PREFIX + "task_created_timestamp_seconds"
        out.append(_header(name, "gauge", h["task_created_timestamp_seconds"]))
        out += [f"{name}{{{room},{rest}}} {fmt(t.create_time)}\n"
                for t, (room, rest, _) in rows if t.create_time is not None]

        name = PREFIX + "task_info"
        out.append(_header(name, "gauge", h["task"]))
        out += [f'{name}{{fail_reason="{_escape(t.fail_reason)}",{room},{rest}}} {_ONE}\n'
                for t, (room, rest, _) in rows]

        name = PREFIX + "task_last_success_timestamp_seconds"
        out.append(_header(name, "gauge", h["task_last_success_timestamp_seconds"]))
        out += [f"{name}{{{room},{rest}}} {fmt(t.last_success)}\n"
                for t, (room, rest, _) in rows if t.last_success is not None]

        name = PREFIX + "task_lookup_success"
        out.append(_header(name, "gauge", h["task_lookup_success"]))
        out += [f"{name}{{{task_part}}} {_ONE if t.lookup_ok else _ZERO}\n"
                for t, (_, _, task_part) in rows if t.lookup_ok is not None]
        return "".join(out)

    def _failures(self, snap: Snapshot) -> str:
        name = PREFIX + "task_failures_total"
        out = [_header(name, "counter", self._collector.help["task_failures"])]
        out += [
            f'{name}{{room_id="{_escape(room)}",stream_id="{_escape(stream)}"}} '
            f"{_go_float(count)}\n"
            for (room, stream), count in snap.failures.items()
        ]
        return "".join(out)
