"""The exposition: a golden file for a fixed tracker state and clock, and the fast renderer held
byte-identical to prometheus_client's own rendering of the collector."""

from __future__ import annotations

import os
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import Counter
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.registry import Collector, CollectorRegistry

from tests.support.clock import FakeClock
from tests.support.components import require_binary
from zego_exporter.collector import ZegoCollector
from zego_exporter.exposition import TextRenderer, _header, _Plan
from zego_exporter.families import Family, OneHot
from zego_exporter.responses import ACTIONS, TaskStatus
from zego_exporter.tracker import RefreshPolicy, Snapshot, Tracker

GOLDEN = Path(__file__).parent / "golden" / "exposition.prom"
NOW = 1_750_000_000.0


def fixed_tracker() -> Tracker:
    """One task in every state, with labels that need escaping."""
    clock = FakeClock(NOW - 100)
    tracker = Tracker(RefreshPolicy(), clock=clock)
    tracker.set_configured("static", ["t-init", "t-failed", "t-gone", "t-new", "t-odd", "t-flaky"])
    tracker.set_configured("file", ["t-stopping", "t-stopped"])
    for task_id in tracker.task_ids():
        if task_id != "t-new":
            assert tracker.claim_due() is not None
    tracker.record_lookup(TaskStatus("t-init", 1, "room_1", "s_1", int(NOW - 130)))
    tracker.record_lookup(TaskStatus("t-failed", 2, "room_1", "s_2", int(NOW - 400),
                                     'avatar "Ada" \\ not found\n\x07'))
    tracker.record_not_found("t-gone")
    tracker.record_lookup(TaskStatus("t-odd", 7, 'room "q"', "s_7", int(NOW - 50)))
    tracker.record_lookup(TaskStatus("t-stopping", 4, "room_2", "s_4", int(NOW - 900)))
    tracker.record_lookup(TaskStatus("t-stopped", 5, "room_2", "s_5", int(NOW - 3000)))
    tracker.record_lookup(TaskStatus("t-flaky", 3, "room_3", "s_6", int(NOW - 77)))
    clock.now = NOW - 10
    assert tracker.claim_due() is not None  # t-flaky's next lookup fails; its data stays
    tracker.record_lookup_failure("t-flaky")
    tracker.record_discovery([TaskStatus("t-live", 3, "room_9", "s_9", int(NOW - 20))])
    tracker.record_api(True)
    clock.now = NOW
    return tracker


def collector_for(tracker: Tracker) -> ZegoCollector:
    return ZegoCollector(tracker.snapshot, dict.fromkeys(ACTIONS, 10.0), tracker.policy)


def reference(collector: ZegoCollector) -> bytes:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(collector)
    return generate_latest(registry)


def reference_openmetrics(collector: ZegoCollector) -> bytes:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(collector)
    # prometheus_client's OpenMetrics generate_latest has no annotations.
    return generate_openmetrics(registry)  # type: ignore[no-untyped-call,no-any-return]


def test_exposition_matches_the_golden_file() -> None:
    collector = collector_for(fixed_tracker())
    text = TextRenderer(collector).render(collector._snapshot())
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.write_bytes(text)
    assert text.decode() == GOLDEN.read_text()


def test_golden_file_passes_promtool_check_metrics() -> None:
    promtool = require_binary("promtool")
    result = subprocess.run([promtool, "check", "metrics"], input=GOLDEN.read_bytes(),
                            capture_output=True, timeout=30, check=False)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert result.stdout.strip() == b"" and result.stderr.strip() == b""


def test_fast_renderer_equals_prometheus_client_for_the_fixed_state() -> None:
    collector = collector_for(fixed_tracker())
    snap = collector._snapshot()
    assert TextRenderer(collector).render(snap) == reference(collector)


def test_fast_openmetrics_equals_prometheus_client_for_the_fixed_state() -> None:
    collector = collector_for(fixed_tracker())
    snap = collector._snapshot()
    assert TextRenderer(collector).render_openmetrics(snap) == reference_openmetrics(collector)


def test_other_collectors_follow_in_either_format_with_one_eof() -> None:
    """What the exporter serves: the tracker's families, then its own instruments."""
    collector = collector_for(fixed_tracker())
    collector.help["task_state"] = 'State, with a "quoted" \\ help\non two lines.'
    rest = CollectorRegistry(auto_describe=True)
    Counter("demo_calls", 'Calls, "quoted".', ("code",), registry=rest).labels("0").inc()
    both = CollectorRegistry(auto_describe=True)
    both.register(collector)
    for metric in rest.collect():
        both.register(_Fixed(metric))
    renderer = TextRenderer(collector)
    snap = collector._snapshot()
    assert renderer.render(snap, rest) == generate_latest(both)
    openmetrics = renderer.render_openmetrics(snap, rest)
    # prometheus_client's OpenMetrics generate_latest has no annotations.
    assert openmetrics == generate_openmetrics(both)  # type: ignore[no-untyped-call]
    assert openmetrics.count(b"# EOF") == 1


class _Fixed(Collector):
    def __init__(self, metric: Metric) -> None:
        self._metric = metric

    def collect(self) -> Iterator[Metric]:
        yield self._metric


def test_openmetrics_output_is_valid_and_has_every_family() -> None:
    registry = CollectorRegistry()
    registry.register(collector_for(fixed_tracker()))
    # prometheus_client's OpenMetrics generate_latest has no annotations.
    text = generate_openmetrics(registry).decode()  # type: ignore[no-untyped-call]
    assert text.endswith("# EOF\n")
    assert "# TYPE zego_digital_human_task info" in text
    assert "# TYPE zego_digital_human_task_failures counter" in text


def test_registering_the_collector_takes_no_snapshot() -> None:
    def explode() -> Snapshot:
        raise AssertionError("describe() must not need data")

    registry = CollectorRegistry(auto_describe=True)
    registry.register(ZegoCollector(explode, {}, RefreshPolicy()))


ids = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=12)
labels = st.text(max_size=12)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(ids, st.integers(0, 9), labels, labels, st.text(max_size=20)),
                max_size=25, unique_by=lambda t: t[0]),
       st.integers(0, 2**32 - 1))
def test_fast_renderer_equals_prometheus_client_for_any_state(
    tasks: list[tuple[str, int, str, str, str]], seed: int
) -> None:
    rng = random.Random(seed)
    clock = FakeClock(NOW)
    tracker = Tracker(clock=clock)
    tracker.set_configured("static", [t[0] for t in tasks])
    while tracker.claim_due() is not None:
        pass
    for task_id, status, room, stream, reason in tasks:
        roll = rng.random()
        if roll < 0.15:
            tracker.record_not_found(task_id)
        elif roll < 0.3:
            tracker.record_lookup_failure(task_id)
        elif roll < 0.9:
            tracker.record_lookup(TaskStatus(task_id, status, room, stream,
                                             rng.randrange(1, 2_000_000_000), reason))
    collector = collector_for(tracker)
    renderer = TextRenderer(collector)
    for _ in range(2):  # the same renderer again, later: ages change, nothing else
        clock.now += rng.random() * 100
        assert renderer.render(collector._snapshot()) == reference(collector)
        assert renderer.render_openmetrics(collector._snapshot()) == reference_openmetrics(
            collector)


@pytest.mark.parametrize("count", [0, 1, 3])
def test_gone_tasks_simply_disappear(count: int) -> None:
    clock = FakeClock(NOW)
    tracker = Tracker(clock=clock)
    tracker.set_configured("static", [f"t{i}" for i in range(count)] + ["keep"])
    collector = collector_for(tracker)
    renderer = TextRenderer(collector)
    renderer.render(collector._snapshot())
    tracker.set_configured("static", ["keep"])
    text = renderer.render(collector._snapshot()).decode()
    assert 'task_id="keep"' in text
    assert 'task_id="t0"' not in text


def test_up_is_absent_until_the_first_api_call_then_follows_the_latest() -> None:
    """Nothing is known of the API before a call (callbacks only, say): no 0 that would page
    ZegoDigitalHumanApiDown for an API that is fine."""
    tracker = Tracker(clock=FakeClock(NOW))
    collector = collector_for(tracker)
    renderer = TextRenderer(collector)

    def up_lines() -> list[str]:
        text = renderer.render(collector._snapshot()).decode()
        assert text.encode() == reference(collector)
        return [line for line in text.splitlines()
                if line.startswith("zego_digital_human_up")]

    assert up_lines() == []
    tracker.record_api(False)
    assert up_lines() == ["zego_digital_human_up 0.0"]
    tracker.record_api(True)
    assert up_lines() == ["zego_digital_human_up 1.0"]


def _synthetic(count: int, one_hot_at: int | None) -> Family[tuple[str, ...]]:
    """A family with `count` labels (values with characters to escape in some rows) and, if
    `one_hot_at` is given, a one-hot label sorting at that position among them."""
    names = tuple(f"l{n}" for n in range(count))
    one_hot = None
    if one_hot_at is not None:
        label = f"l{one_hot_at - 1}x" if one_hot_at else "a"
        one_hot = OneHot[tuple[str, ...]](label, ("on", "off", "gone"), lambda row: row[-1])
    return Family[tuple[str, ...]](
        f"synthetic_{count}_{one_hot_at}", "counter" if one_hot is None else "gauge",
        'Synthetic "family".', lambda _: ROWS, names, lambda row: row[:count],
        value=None if one_hot else lambda row, now: len(row[0]) if row[0] != "skip" else None,
        one_hot=one_hot)


ROWS = [(f"v{n}", 'q"uote', "back\\slash", "new\nline", "", "plain", "on" if n % 2 else "?")
        for n in range(3)] + [("skip", "a", "b", "c", "d", "e", "off")]
ROWS += [(f"w{n}", "a", "b", "c", "d", "e", "gone") for n in range(600)]  # a chunk with none


@pytest.mark.parametrize("count", range(7))
@pytest.mark.parametrize("one_hot", [False, True])
@pytest.mark.parametrize("openmetrics", [False, True])
def test_any_family_spec_renders_as_prometheus_client_does(
    count: int, one_hot: bool, openmetrics: bool,
) -> None:
    """Every number of labels the table might grow to, and a one-hot label in every place."""
    collector = collector_for(fixed_tracker())
    scrape = collector.scrape(collector._snapshot())
    for spec in [_synthetic(count, at) for at in range(count + 1)] if one_hot else [
            _synthetic(count, None)]:
        collector.help[spec.name] = spec.help
        family = collector._family(spec, scrape)
        expected = (generate_openmetrics if openmetrics else generate_latest)(_Fixed(family))
        plan = _Plan(spec)
        name, kind = plan.headers[openmetrics]
        rendered = _header(name, kind, spec.help, openmetrics=openmetrics) + "".join(
            plan.chunks(scrape, {}))
        assert (rendered + ("# EOF\n" if openmetrics else "")).encode() == expected, spec.name
