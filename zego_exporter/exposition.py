"""Renders the collector's families in the Prometheus text format and in OpenMetrics, fast.

prometheus_client builds a Sample object and escapes every label of every sample on each scrape;
with 10,000 tasks that is about 130,000 samples. Here each task's label text is escaped once
per scrape and every line of the task is formatted from it directly; the text of small integers
(status codes, counts) is looked up, and ages skip the Go-style float conversion when Python's
repr already agrees. Prometheus asks for OpenMetrics first, so both formats take this path; they
differ only in a few family headers and the closing `# EOF`. The output is byte-identical to
prometheus_client's `generate_latest` (either format) over `ZegoCollector` plus the other
collectors (tests/test_exposition.py holds it to that). This module renders only: it never
takes a snapshot or calls the API itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from zego_exporter.collector import PREFIX, ZegoCollector
from zego_exporter.states import STATES
from zego_exporter.tracker import Snapshot, TaskView

_ONE, _ZERO = "1.0", "0.0"
_EOF = "# EOF\n"
# prometheus_client's own float formatting (Go style), so both renderers agree to the byte.
_go_float: Callable[[float], str] = floatToGoString
# Status codes and failure counts are small integers: their text never changes.
_SMALL_INTS: dict[int, str] = {n: _go_float(n) for n in range(-1, 100)}


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _short_float(value: float) -> str:
    """floatToGoString, without its overhead for finite values below 1e6 (task ages)."""
    text = repr(value)
    return text if 0 < text.find(".") <= 6 else _go_float(value)


def _header(name: str, kind: str, help_text: str, *, openmetrics: bool) -> str:
    escaped = help_text.replace("\\", r"\\").replace("\n", r"\n")
    if openmetrics:
        escaped = escaped.replace('"', r"\"")
    return f"# HELP {name} {escaped}\n# TYPE {name} {kind}\n"


class _Families(Collector):
    """Adapts a list of families to what generate_latest expects of a registry."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


class TextRenderer:
    """Renders snapshots in either format; it keeps nothing between scrapes (see _label_texts)."""

    def __init__(self, collector: ZegoCollector) -> None:
        self._collector = collector

    def render(self, snap: Snapshot, rest: Collector | None = None) -> bytes:
        """The text exposition of `snap`, followed by that of `rest` (other collectors)."""
        out = self._task_families(snap, openmetrics=False)
        out.append(generate_latest(_Families(self._collector.health_families(snap))).decode())
        if rest is not None:
            out.append(generate_latest(rest).decode())
        return _encode(out)

    def render_openmetrics(self, snap: Snapshot, rest: Collector | None = None) -> bytes:
        """The OpenMetrics exposition of `snap` and `rest`, ending with a single `# EOF`."""
        out = self._task_families(snap, openmetrics=True)
        health = _Families(self._collector.health_families(snap))
        out.append(generate_openmetrics(health).decode())  # type: ignore[no-untyped-call]
        if rest is not None:
            out[-1] = out[-1].removesuffix(_EOF)
            out.append(generate_openmetrics(rest).decode())  # type: ignore[no-untyped-call]
        return _encode(out)

    def _task_families(self, snap: Snapshot, *, openmetrics: bool) -> list[str]:
        h = self._collector.help
        tasks = snap.tasks
        labels_of = _label_texts(tasks)
        now = snap.taken_at
        fmt, short, ints = _go_float, _short_float, _SMALL_INTS

        def header(name: str, key: str, kind: str = "gauge") -> str:
            return _header(name, kind, h[key], openmetrics=openmetrics)

        def rows() -> zip[tuple[TaskView, tuple[str, int, int]]]:
            return zip(tasks, labels_of, strict=True)

        name = PREFIX + "task_status"
        out = [header(name, "task_status")]
        out += [f"{name}{{{labels}}} {ints.get(t.status) or fmt(t.status)}\n"
                for t, (labels, _, _) in rows() if t.status is not None]

        name = PREFIX + "task_state"
        out.append(header(name, "task_state"))
        for t, (labels, room_end, _) in rows():
            head, rest, current = f"{name}{{{labels[:room_end]}", labels[room_end:], t.state
            out += [f'{head},state="{s}"{rest}}} {_ONE if s == current else _ZERO}\n'
                    for s in STATES]

        name = PREFIX + "task_age_seconds"
        out.append(header(name, "task_age_seconds"))
        out += [f"{name}{{{labels}}} {short(now - t.create_time)}\n"
                for t, (labels, _, _) in rows() if t.create_time is not None]

        name = PREFIX + "task_created_timestamp_seconds"
        out.append(header(name, "task_created_timestamp_seconds"))
        out += [f"{name}{{{labels}}} {fmt(t.create_time)}\n"
                for t, (labels, _, _) in rows() if t.create_time is not None]

        name = PREFIX + "task_info"
        out.append(header(PREFIX + "task", "task", "info") if openmetrics
                   else header(name, "task"))
        out += [f'{name}{{fail_reason="{_escape(t.fail_reason)}",{labels}}} {_ONE}\n'
                if t.fail_reason else f'{name}{{fail_reason="",{labels}}} {_ONE}\n'
                for t, (labels, _, _) in rows()]

        name = PREFIX + "task_last_success_timestamp_seconds"
        out.append(header(name, "task_last_success_timestamp_seconds"))
        out += [f"{name}{{{labels}}} {fmt(t.last_success)}\n"
                for t, (labels, _, _) in rows() if t.last_success is not None]

        name = PREFIX + "task_lookup_success"
        out.append(header(name, "task_lookup_success"))
        out += [f"{name}{{{labels[task_start:]}}} {_ONE if t.lookup_ok else _ZERO}\n"
                for t, (labels, _, task_start) in rows() if t.lookup_ok is not None]

        name = PREFIX + "task_failures"
        out.append(header(name, "task_failures", "counter") if openmetrics
                   else header(name + "_total", "task_failures", "counter"))
        name += "_total"
        out += [
            f'{name}{{room_id="{_escape(room)}",stream_id="{_escape(stream)}"}} '
            f"{ints.get(count) or fmt(count)}\n"
            for (room, stream), count in snap.failures.items()
        ]
        return out


def _label_texts(tasks: list[TaskView]) -> list[tuple[str, int, int]]:
    """Each task's label text 'room_id="…",stream_id="…",task_id="…"' (label names sorted, as
    prometheus_client sorts them), with where its room part ends and its task part begins.

    Made anew on every scrape: ~0.4 µs per task, about 3% of a scrape at 10,000 tasks. Kept
    between scrapes they cost ~265 bytes per task for as long as it is tracked (~15% of the
    exporter's memory), measured side by side with bench/memory.py.
    """
    texts = []
    for task in tasks:
        room, stream = _escape(task.room_id), _escape(task.stream_id)
        room_end = len(room) + len('room_id=""')
        texts.append((f'room_id="{room}",stream_id="{stream}",task_id="{_escape(task.task_id)}"',
                      room_end, room_end + len(stream) + len(',stream_id="",')))
    return texts


def _encode(pieces: list[str]) -> bytes:
    text = "".join(pieces)
    pieces.clear()  # the pieces go before the bytes come: a lower peak at large task counts
    return text.encode("utf-8")
