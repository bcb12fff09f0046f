"""The metric surface against the contract's table, in process and in both text formats: every
contract metric with exactly its type and label names, the label values the contract lists, no
metric beyond the table that docs/metrics.md does not document, and HELP texts that say how
fresh each value is (the contract: "HELP texts say where a value is cached, and for how long at
most"). tests/test_serve.py checks the same names on a real `serve` process; this one runs in
the quick loop, with the exporter's web server on a free loopback port and no API call."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.support.clock import FakeClock
from tests.support.contract_metrics import (
    CONTRACT_CALLBACK_RESULTS,
    CONTRACT_METRICS,
    CONTRACT_SOURCES,
    CONTRACT_STATES,
    CONTRACT_STATUS_STATES,
)
from tests.support.credentials import APP_ID, SECRET, SECRET_TEXT
from tests.support.paths import ROOT
from tests.support.processes import fetch
from zego_exporter.exporter import Exporter, ExporterConfig
from zego_exporter.responses import TaskStatus
from zego_exporter.signing import Secret
from zego_exporter.states import STATES, STATUS_STATES

PREFIX = "zego_digital_human_"
CALLBACK_SECRET = "callback-secret-for-tests"
OPENMETRICS = "application/openmetrics-text; version=1.0.0"

# How a HELP text may say how fresh its value is: read from the cache (and how old it may
# get), counted or set as things happen, computed at scrape time, or fixed at start.
FRESHNESS = ("Cached by the exporter", "live", "Updated with every", "Updated as",
             "at scrape time", "previous complete scrape", "Fixed for the life of the process")


@pytest.fixture(scope="module")
def exporter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exporter]:
    """An exporter with every optional metric on (callbacks, web config) and a task from each
    source in a few states; only its web server runs, so no API call is ever made."""
    web_config = tmp_path_factory.mktemp("contract") / "web.yml"
    web_config.write_text("{}\n")
    clock = FakeClock(1_750_000_000.0)
    exporter = Exporter(ExporterConfig(
        app_id=APP_ID, server_secret=SECRET, api_url="http://127.0.0.1:9", discovery=False,
        callback_secret=Secret(CALLBACK_SECRET), listen_address="127.0.0.1:0",
        web_config_file=str(web_config), max_scrape_wait=0.0,
    ), clock=clock)
    tracker = exporter.tracker
    tracker.set_configured("static", ["t-streaming", "t-typo"])
    tracker.set_configured("file", ["t-file"])
    tracker.record_lookup(TaskStatus("t-streaming", 3, "room-1", "stream-1", 1_749_999_000))
    tracker.record_not_found("t-typo")
    tracker.record_lookup(TaskStatus("t-file", 4, "room-2", "stream-2", 1_749_999_500))
    tracker.record_callback(TaskStatus("t-callback", 2, "room-3", "stream-3", 0, "no node"))
    tracker.record_discovery([TaskStatus("t-listed", 1, "room-4", "stream-4", 1_749_999_900)])
    tracker.record_api(True)
    exporter.web.start()
    try:
        yield exporter
    finally:
        exporter.web.stop()
        exporter.client.close()


def scrape(exporter: Exporter, accept: str = "") -> str:
    answer = fetch(exporter.web.url, "/metrics", headers={"Accept": accept} if accept else {})
    assert answer.status == 200, answer.text
    return answer.text


def families(exporter: Exporter, *, openmetrics: bool) -> dict[str, tuple[str, list[Sample]]]:
    """The scrape's zego_digital_human_* families: name -> (type, samples). prometheus_client's
    parsers name a counter family without `_total` (and an OpenMetrics info family without
    `_info`); the contract's names are the sample names, so those are put back."""
    if openmetrics:
        text = scrape(exporter, OPENMETRICS)
        parsed = openmetrics_families(text)  # type: ignore[no-untyped-call]
    else:
        parsed = text_string_to_metric_families(scrape(exporter))
    found = {}
    for family in parsed:
        if not family.name.startswith(PREFIX):
            continue
        name = family.name + {"counter": "_total", "info": "_info"}.get(family.type, "")
        found[name] = (family.type, family.samples)
    return found


@pytest.mark.parametrize("openmetrics", [False, True], ids=["text", "openmetrics"])
def test_every_contract_metric_has_its_type_and_exactly_its_labels(
    exporter: Exporter, openmetrics: bool,
) -> None:
    found = families(exporter, openmetrics=openmetrics)
    for metric in CONTRACT_METRICS:
        assert metric.name in found, f"{metric.name} is not exported"
        kind, samples = found[metric.name]
        expected = metric.type
        if metric.type == "info" and not openmetrics:
            expected = "gauge"  # the text format has no info type
        assert kind == expected, (metric.name, kind)
        assert samples, f"{metric.name} has no series"
        for sample in samples:
            assert set(sample.labels) - {"le"} == set(metric.labels), sample


def test_metrics_beyond_the_contract_are_documented(exporter: Exporter) -> None:
    contract = {metric.name for metric in CONTRACT_METRICS}
    extra = set(families(exporter, openmetrics=False)) - contract
    page = (ROOT / "docs" / "metrics.md").read_text("utf-8")
    assert extra == {"zego_digital_human_skipped_task_entries_total"}  # a new one: document it
    for name in extra:
        assert f"`{name}`" in page, f"{name} is not in the contract nor in docs/metrics.md"


def label_values(found: dict[str, tuple[str, list[Sample]]], name: str, label: str) -> set[str]:
    return {sample.labels[label] for sample in found[PREFIX + name][1]}


def test_label_values_are_the_ones_the_contract_lists(exporter: Exporter) -> None:
    found = families(exporter, openmetrics=False)
    states = found[PREFIX + "task_state"][1]
    for task_id in {sample.labels["task_id"] for sample in states}:
        mine = [sample for sample in states if sample.labels["task_id"] == task_id]
        assert [sample.labels["state"] for sample in mine] == list(CONTRACT_STATES), task_id
        assert sorted(sample.value for sample in mine) == [0] * 6 + [1], task_id
    assert label_values(found, "tracked_tasks", "source") == set(CONTRACT_SOURCES)
    assert label_values(found, "callbacks_total", "result") == set(CONTRACT_CALLBACK_RESULTS)
    assert label_values(found, "rate_limit_qps", "action") == {
        "GetDigitalHumanStreamTaskStatus", "QueryDigitalHumanStreamTasks"}
    assert STATUS_STATES == CONTRACT_STATUS_STATES and STATES == CONTRACT_STATES


def test_each_task_shows_the_state_and_labels_the_contract_gives_it(exporter: Exporter) -> None:
    found = families(exporter, openmetrics=False)
    current = {sample.labels["task_id"]: sample.labels for sample in
               found[PREFIX + "task_state"][1] if sample.value == 1}
    assert {task_id: labels["state"] for task_id, labels in current.items()} == {
        "t-streaming": "streaming", "t-typo": "not_found", "t-file": "stopping",
        "t-callback": "init_failed", "t-listed": "initializing"}
    assert current["t-typo"]["room_id"] == current["t-typo"]["stream_id"] == ""
    assert (current["t-file"]["room_id"], current["t-file"]["stream_id"]) == ("room-2",
                                                                              "stream-2")
    status = {sample.labels["task_id"]: sample.value
              for sample in found[PREFIX + "task_status"][1]}
    assert status == {"t-streaming": 3, "t-file": 4, "t-callback": 2, "t-listed": 1}
    reasons = {sample.labels["task_id"]: sample.labels["fail_reason"]
               for sample in found[PREFIX + "task_info"][1]}
    assert reasons == {"t-streaming": "", "t-typo": "", "t-file": "", "t-callback": "no node",
                       "t-listed": ""}
    age = {sample.labels["task_id"]: sample.value
           for sample in found[PREFIX + "task_age_seconds"][1]}
    assert age == {"t-streaming": 1000, "t-file": 500, "t-listed": 100}  # clock - CreateTime
    failures = {(s.labels["room_id"], s.labels["stream_id"]): s.value
                for s in found[PREFIX + "task_failures_total"][1]}
    assert failures[("room-3", "stream-3")] == 1 and failures[("room-1", "stream-1")] == 0


def test_every_help_text_says_how_fresh_its_value_is(exporter: Exporter) -> None:
    text = scrape(exporter)
    helps = {line.split()[2]: line for line in text.splitlines()
             if line.startswith(f"# HELP {PREFIX}")}
    assert len(helps) >= len(CONTRACT_METRICS)
    silent = sorted(name for name, line in helps.items()
                    if not any(phrase in line for phrase in FRESHNESS))
    assert silent == [], f"HELP of {silent} does not say how fresh the value is"


def test_the_pages_link_the_metrics_and_never_show_a_secret(exporter: Exporter) -> None:
    landing = fetch(exporter.web.url, "/")
    assert landing.status == 200 and 'href="/metrics"' in landing.text
    assert fetch(exporter.web.url, "/-/healthy").status == 200
    # Every configured task has had its answer (and discovery is off): the first round is done.
    assert fetch(exporter.web.url, "/-/ready").status == 200
    assert fetch(exporter.web.url, "/zego/callback").status == 405  # POST only
    for page in (landing.text, scrape(exporter), scrape(exporter, OPENMETRICS)):
        assert SECRET_TEXT not in page and CALLBACK_SECRET not in page
