"""The alerting rules, their unit tests and the example Prometheus and Alertmanager configs.

The real promtool and amtool judge syntax and behaviour (`promtool test rules` runs
prometheus/alerts_test.yml); the structural checks here cover what those tools cannot know:
naming, severities, annotations, that every alert is tested both firing and quiet, and
that the expressions only use metric names the contract fixes.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import promql_parser as promql
import pytest
import yaml

from tests.support.components import require_binary
from tests.support.contract_metrics import CONTRACT_METRIC_NAMES, queryable_names
from tests.support.lint_rules import COMPARISONS, op, prometheus_duration, unparen, walk

ROOT = Path(__file__).resolve().parent.parent
ALERTS = ROOT / "prometheus" / "alerts.yml"
ALERTS_TEST = ROOT / "prometheus" / "alerts_test.yml"
PROMETHEUS_CONFIG = ROOT / "prometheus" / "prometheus.yml"
ALERTMANAGER_CONFIG = ROOT / "prometheus" / "alertmanager.yml"

SEVERITIES = frozenset({"critical", "warning", "info"})
ALERT_NAME = re.compile(r"ZegoDigitalHuman(?:[A-Z][a-z0-9]+)+")
# Labels Prometheus attaches to every scraped series, on top of the exporter's own.
TARGET_LABELS = frozenset({"job", "instance"})
# Series Prometheus itself produces, which the rules may use besides the contract's metrics.
PROMETHEUS_SERIES = frozenset({"up"})
# Receivers of prometheus/alertmanager.yml, by severity.
RECEIVERS = {"critical": "webhook-critical", "warning": "webhook-warning", "info": "webhook-info"}


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def rules() -> list[dict[str, Any]]:
    return [rule for group in load(ALERTS)["groups"] for rule in group["rules"]]


def alert_rules() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


def alert_names() -> list[str]:
    return [rule["alert"] for rule in alert_rules()]


def run_tool(*command: str) -> str:
    """Run a real tool from the repository root; fail with everything it said unless it exits 0."""
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, (
        f"`{' '.join(command)}` exited {result.returncode}:\n{output}"
    )
    return output


# -- the real tools -----------------------------------------------------------------------------


@pytest.mark.e2e
def test_promtool_accepts_the_rules() -> None:
    promtool = require_binary("promtool")
    output = run_tool(promtool, "check", "rules", str(ALERTS.relative_to(ROOT)))
    assert f"SUCCESS: {len(rules())} rules found" in output


@pytest.mark.e2e
def test_promtool_unit_tests_pass() -> None:
    promtool = require_binary("promtool")
    output = run_tool(promtool, "test", "rules", str(ALERTS_TEST.relative_to(ROOT)))
    assert "SUCCESS" in output


@pytest.mark.e2e
def test_promtool_accepts_the_example_prometheus_config() -> None:
    promtool = require_binary("promtool")
    output = run_tool(promtool, "check", "config", str(PROMETHEUS_CONFIG.relative_to(ROOT)))
    # The rule file is found relative to the config and checked with it.
    assert "SUCCESS: 1 rule files found" in output
    assert f"SUCCESS: {len(rules())} rules found" in output


@pytest.mark.e2e
def test_amtool_accepts_the_example_alertmanager_config() -> None:
    amtool = require_binary("amtool")
    run_tool(amtool, "check-config", str(ALERTMANAGER_CONFIG.relative_to(ROOT)))


@pytest.mark.e2e
@pytest.mark.parametrize(("severity", "receiver"), sorted(RECEIVERS.items()))
def test_alertmanager_routes_each_severity(severity: str, receiver: str) -> None:
    amtool = require_binary("amtool")
    output = run_tool(
        amtool, "config", "routes", "test",
        f"--config.file={ALERTMANAGER_CONFIG.relative_to(ROOT)}",
        "alertname=ZegoDigitalHumanApiDown", f"severity={severity}",
    )
    assert output.split() and output.split()[0] == receiver, output


# -- the rules' shape ---------------------------------------------------------------------------


def test_alert_names_are_unique_prefixed_camel_case() -> None:
    names = alert_names()
    assert names, "alerts.yml has no alerting rules"
    assert len(names) == len(set(names)), f"duplicate alert names: {names}"
    for name in names:
        assert ALERT_NAME.fullmatch(name), f"{name}: want ZegoDigitalHuman + CamelCase"


def test_every_alert_has_severity_summary_description_and_runbook() -> None:
    for rule in alert_rules():
        name = rule["alert"]
        assert rule.get("labels", {}).get("severity") in SEVERITIES, name
        annotations = rule.get("annotations", {})
        assert set(annotations) == {"summary", "description", "runbook_url", "dashboard_url"}, name
        assert annotations["summary"].strip(), name
        assert re.search(r"\$labels\.|\$value", annotations["description"]), (
            f"{name}: the description should say which task or instance, and how bad"
        )
        # Where runbook_url points (a heading of docs/alerts.md) is tests/test_docs.py's job.


def test_per_task_alerts_name_the_room_and_stream() -> None:
    per_task = {
        metric.name for metric in queryable_names().values() if "task_id" in metric.labels
    }
    checked = 0
    for rule in alert_rules():
        first = selected_metrics(rule["expr"])[0]
        if first in per_task:
            checked += 1
            description = rule["annotations"]["description"]
            # A not_found task is one the exporter never saw in any state (the contract's state
            # rules), so ZEGO never told its room or stream: naming them would print nothing.
            never_seen = 'state="not_found"' in rule["expr"]
            for label in ("task_id",) if never_seen else ("task_id", "room_id", "stream_id"):
                assert f"$labels.{label}" in description, f"{rule['alert']}: no {label}"
            if never_seen:
                assert "$labels.room_id" not in description, (
                    f"{rule['alert']}: a not_found task has no room to name")
    assert checked >= 4  # init failed, stuck, not found, stale


# -- ratios without traffic --------------------------------------------------------------------


def ratios() -> dict[str, promql.Expr]:
    """The ratio of each alert that divides: its expression without the threshold."""
    found = {}
    for rule in alert_rules():
        expr = unparen(promql.parse(rule["expr"]))
        divides = any(op(node) == "/" for node, _ in walk(expr))
        if divides:
            assert isinstance(expr, promql.BinaryExpr) and op(expr) in COMPARISONS, rule["alert"]
            found[rule["alert"]] = expr.lhs
    return found


def unguarded(ratio: promql.Expr) -> str:
    """The ratio with `(x > 0)` divisors put back to `x`: the 0/0 = NaN this project avoids."""

    def drop_guard(node: promql.Expr) -> promql.Expr | None:
        inner = unparen(node)
        if (isinstance(node, promql.ParenExpr)
                and isinstance(inner, promql.BinaryExpr) and op(inner) == ">"
                and isinstance(inner.rhs, promql.NumberLiteral) and inner.rhs.val == 0):
            return inner.lhs
        return None

    return promql.transform(ratio, post_visit=drop_guard).prettify()


def promtool_on_idle_api(exprs: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """promtool evaluating `exprs` 10 minutes into an exporter whose API counters never move,
    expecting no sample from any of them."""
    series = [
        {"series": f'zego_digital_human_api_requests_total{{job="zego-exporter",'
                   f'instance="exporter-a:9877",action="{action}",code="{code}"}}',
         "values": "0x40"}
        for action in ("GetDigitalHumanStreamTaskStatus", "QueryDigitalHumanStreamTasks")
        for code in ("0", "100000004", "100000005", "400000005", "400010009", "timeout")
    ]
    tests = {"rule_files": [], "evaluation_interval": "15s", "tests": [{
        "interval": "30s", "input_series": series,
        "promql_expr_test": [{"expr": expr, "eval_time": "10m", "exp_samples": []}
                             for expr in exprs],
    }]}
    path = tmp_path / "idle_test.yml"
    path.write_text(yaml.safe_dump(tests), encoding="utf-8")
    return subprocess.run([require_binary("promtool"), "test", "rules", str(path)],
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.e2e
def test_ratios_have_no_value_without_api_calls(tmp_path: Path) -> None:
    found = ratios()
    assert set(found) == {"ZegoDigitalHumanApiSignatureRejected",
                          "ZegoDigitalHumanApiRateLimited", "ZegoDigitalHumanApiErrors"}
    result = promtool_on_idle_api([ratio.prettify() for ratio in found.values()], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.e2e
def test_unguarded_ratios_would_be_nan_without_api_calls(tmp_path: Path) -> None:
    # The check above can fail: without the `> 0` guard every ratio is 0/0.
    for name, ratio in ratios().items():
        result = promtool_on_idle_api([unguarded(ratio)], tmp_path)
        output = result.stdout + result.stderr
        assert result.returncode != 0 and "NaN" in output, (name, output)


# -- the unit tests cover every alert -----------------------------------------------------------


def test_every_alert_is_tested_firing_and_quiet() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for group in load(ALERTS_TEST)["tests"]:
        for case in group.get("alert_rule_test", []):
            (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    names = set(alert_names())
    # A test of a misspelt alert name passes vacuously when it expects silence.
    assert (firing | quiet) <= names, f"tests name unknown alerts: {(firing | quiet) - names}"
    assert names - firing == set(), f"never tested firing: {sorted(names - firing)}"
    assert names - quiet == set(), f"never tested quiet: {sorted(names - quiet)}"


def test_threshold_edges_are_tested_at_the_example_scrape_interval() -> None:
    # increase() extrapolates by how far its window's edges are from the first and last
    # samples, so the edge cases of ZegoDigitalHumanRoomInitFailuresRepeated only mean something
    # at the interval Prometheus really scrapes, with evaluations that also fall between scrapes.
    (job,) = load(PROMETHEUS_CONFIG)["scrape_configs"]
    unit_tests = load(ALERTS_TEST)
    assert (prometheus_duration(unit_tests["evaluation_interval"])
            < prometheus_duration(job["scrape_interval"]))
    eval_times: dict[str, set[str]] = {"quiet": set(), "firing": set()}
    for group in unit_tests["tests"]:
        cases = [case for case in group.get("alert_rule_test", [])
                 if case["alertname"] == "ZegoDigitalHumanRoomInitFailuresRepeated"]
        if cases:
            assert group["interval"] == job["scrape_interval"], group["name"]
        for case in cases:
            eval_times["firing" if case["exp_alerts"] else "quiet"].add(case["eval_time"])
    # The case of the issue: two failures read 2.008 there, three read 3.013.
    assert "61m15s" in eval_times["quiet"] and "61m15s" in eval_times["firing"]


def test_unit_tests_load_the_shipped_rule_file() -> None:
    assert load(ALERTS_TEST)["rule_files"] == [ALERTS.name]
    assert load(PROMETHEUS_CONFIG)["rule_files"] == [ALERTS.name]


# -- the rules only use the contract's metrics --------------------------------------------------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)")
_MATCHERS = re.compile(r"([a-zA-Z_:][\w:]*)?\s*\{([^{}]*)\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_OFFSET = re.compile(r"\boffset\s+-?\w+")
_IDENTIFIER = re.compile(r"(?<![\w.:])[a-zA-Z_:][\w:]*")
_KEYWORDS = frozenset({
    "and", "or", "unless", "bool", "by", "without", "on", "ignoring", "group_left",
    "group_right", "offset", "inf", "nan",
})


def selected_metrics(expr: str) -> list[str]:
    """The series names an expression selects, in order (a small PromQL reader, not a parser)."""
    text = _STRING.sub('""', expr)
    text = _GROUPING.sub(" ", text)
    text = _MATCHERS.sub(lambda m: f" {m.group(1) or ''} ", text)
    text = _OFFSET.sub(" ", _RANGE.sub(" ", text))
    names = []
    for match in _IDENTIFIER.finditer(text):
        word = match.group()
        is_call = text[match.end():].lstrip().startswith("(")
        if word.lower() not in _KEYWORDS and not is_call:
            names.append(word)
    return names


def label_names(expr: str) -> dict[str, set[str]]:
    """Label names per selected metric (from `{...}`), and under "" those of grouping clauses."""
    text = _STRING.sub('""', expr)
    found: dict[str, set[str]] = {"": set()}
    for match in _GROUPING.finditer(text):
        found[""].update(filter(None, (label.strip() for label in match.group(2).split(","))))
    for match in _MATCHERS.finditer(_GROUPING.sub(" ", text)):
        labels = re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", match.group(2))
        found.setdefault(match.group(1) or "", set()).update(labels)
    return found


def test_the_promql_reader_finds_selectors_and_labels() -> None:
    expr = (
        'sum without (code) (rate(zego_digital_human_api_requests_total{code=~"4.*|x{y}"}[5m]'
        ' offset 1h)) / on (job, instance) group_left max(up{job="a"}) > 1e3'
        " and absent(zego_digital_human_up) unless zego_digital_human_tracked_tasks"
    )
    assert selected_metrics(expr) == [
        "zego_digital_human_api_requests_total", "up",
        "zego_digital_human_up", "zego_digital_human_tracked_tasks",
    ]
    assert label_names(expr) == {
        "": {"code", "job", "instance"},
        "zego_digital_human_api_requests_total": {"code"},
        "up": {"job"},
    }


def test_rules_only_use_contract_metrics_and_their_labels() -> None:
    metrics = queryable_names()
    used: set[str] = set()
    for rule in alert_rules():
        name, expr = rule["alert"], rule["expr"]
        selected = selected_metrics(expr)
        assert selected, f"{name}: no metric found in {expr!r}"
        unknown = set(selected) - metrics.keys() - PROMETHEUS_SERIES
        assert not unknown, f"{name}: {sorted(unknown)} are not contract metrics"
        used.update(selected)
        known_labels = set(TARGET_LABELS)
        for metric_name in selected:
            if metric_name in metrics:
                known_labels.update(metrics[metric_name].labels)
        for metric_name, labels in label_names(expr).items():
            allowed = (
                known_labels if metric_name in ("", *PROMETHEUS_SERIES)
                else set(metrics[metric_name].labels) | TARGET_LABELS
            )
            assert labels <= allowed, (
                f"{name}: {metric_name or 'grouping'} has no label {sorted(labels - allowed)}"
            )
    assert used & CONTRACT_METRIC_NAMES


def test_contract_table_has_the_eighteen_metrics() -> None:
    assert len(CONTRACT_METRIC_NAMES) == 18
    assert all(name.startswith("zego_digital_human_") for name in CONTRACT_METRIC_NAMES)


# -- the example configs agree with the rules ---------------------------------------------------


def test_exporter_down_matches_the_example_scrape_job() -> None:
    jobs = {job["job_name"]: job for job in load(PROMETHEUS_CONFIG)["scrape_configs"]}
    matched = {
        job for rule in alert_rules() for job in re.findall(r'\bjob="([^"]+)"', rule["expr"])
    }
    assert matched, "ZegoDigitalHumanExporterDown should select its target by job"
    assert matched <= jobs.keys(), f"alerts.yml selects job {matched}, prometheus.yml has {jobs}"
    for job in matched:
        targets = [t for cfg in jobs[job]["static_configs"] for t in cfg["targets"]]
        assert any(target.endswith(":9877") for target in targets), targets


def test_example_scrape_settings_suit_the_exporter() -> None:
    config = load(PROMETHEUS_CONFIG)
    (job,) = config["scrape_configs"]
    assert job["scrape_interval"] == "30s"  # data is refreshed at most every 30 s anyway
    assert job["scrape_timeout"] == "10s"
    (alertmanagers,) = config["alerting"]["alertmanagers"]
    assert alertmanagers["static_configs"][0]["targets"] == ["localhost:9093"]


def test_alertmanager_config_names_only_existing_alerts() -> None:
    text = ALERTMANAGER_CONFIG.read_text(encoding="utf-8")
    named = set(re.findall(r"ZegoDigitalHuman\w+", text))
    assert named, "the example inhibit rules should name alerts"
    assert named <= set(alert_names()), f"unknown alerts: {sorted(named - set(alert_names()))}"
