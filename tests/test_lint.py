"""The lint step: the committed dashboard and alerting rules pass every ported rule, and every
rule catches a deliberately broken copy of them.

The rules live in tests/support/lint_rules.py (ported from grafana/dashboard-linter, cloudflare/pint
and the monitoring-mixins guidelines). Each case below breaks a deep copy of the real files in
one way and expects the rule it names to report the panel, variable or alert it broke; a rule
without such a case fails test_every_rule_has_a_broken_copy.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Callable
from typing import Any

import promql_parser as promql
import pytest

from grafana.build_dashboard import iter_panels
from tests.support.lint_rules import (
    ALERT_RULES,
    DASHBOARD_RULES,
    GRAFANA_BASE,
    AlertFiles,
    NodePath,
    expand_variables,
    first_sight_term,
    lint_alerts,
    lint_dashboard,
    load_alert_files,
    load_dashboard,
    output_labels,
    parse,
    regexp_problem,
    rule_comments,
    walk,
    window_span_term,
)

Json = dict[str, Any]

DASHBOARD = load_dashboard()
ALERT_FILES = load_alert_files()

FAILURES = 'zego_digital_human_task_failures_total{job=~"$job", instance=~"$instance", ' \
    'room_id=~"$room_id"}'


def test_committed_dashboard_passes_every_rule() -> None:
    findings = lint_dashboard(DASHBOARD)
    assert not findings, "grafana/zego-digital-human.json breaks lint rules:\n" + "\n".join(
        map(str, findings))


def test_committed_alerts_pass_every_rule() -> None:
    findings = lint_alerts(ALERT_FILES)
    assert not findings, "prometheus/alerts.yml breaks lint rules:\n" + "\n".join(
        map(str, findings))


# --- breaking a copy of the dashboard -----------------------------------------------------


def panel(dashboard: Json, title: str, kind: str | None = None) -> Json:
    found: Json = next(p for p in iter_panels(dashboard["panels"])
                       if p["title"] == title and kind in (None, p["type"]))
    return found


def variable(dashboard: Json, name: str) -> Json:
    found: Json = next(v for v in dashboard["templating"]["list"] if v["name"] == name)
    return found


def edit_query(title: str, old: str, new: str, kind: str | None = None) -> Callable[[Json], str]:
    def edit(dashboard: Json) -> str:
        target = panel(dashboard, title, kind)["targets"][0]
        assert old in target["expr"], f"{title}: {old!r} not in {target['expr']!r}"
        target["expr"] = target["expr"].replace(old, new)
        return title
    return edit


def set_variable(name: str, key: str, value: Any) -> Callable[[Json], str]:
    def edit(dashboard: Json) -> str:
        changed = variable(dashboard, name)
        changed[key] = value
        return str(changed["name"])
    return edit


def set_panel(title: str, change: Callable[[Json], None]) -> Callable[[Json], str]:
    def edit(dashboard: Json) -> str:
        change(panel(dashboard, title))
        return title
    return edit


def drop_variable(name: str) -> Callable[[Json], str]:
    def edit(dashboard: Json) -> str:
        dashboard["templating"]["list"].remove(variable(dashboard, name))
        return "dashboard"
    return edit


def set_unit(unit: str) -> Callable[[Json], None]:
    return lambda p: p["fieldConfig"]["defaults"].update(unit=unit)


def set_editable(dashboard: Json) -> str:
    dashboard["editable"] = True
    return "dashboard"


DashboardEdit = Callable[[Json], str]
"""Breaks a dashboard in place; returns where the finding must point (title, variable, ...)."""

DASHBOARD_CASES: list[tuple[str, str, DashboardEdit]] = [
    ("template-datasource-rule", "no datasource variable", drop_variable("datasource")),
    ("template-datasource-rule", "datasource variable renamed",
     set_variable("datasource", "name", "ds")),
    ("template-datasource-rule", "datasource variable labelled otherwise",
     set_variable("datasource", "label", "Prometheus")),
    ("template-job-rule", "job single-select", set_variable("job", "multi", False)),
    ("template-job-rule", "job All = .+ (pulls in every target's up)",
     set_variable("job", "allValue", ".+")),
    ("template-job-rule", "no job variable", drop_variable("job")),
    ("template-job-rule", "job labelled otherwise", set_variable("job", "label", "Scrape job")),
    ("template-job-rule", "job a custom list", set_variable("job", "type", "custom")),
    ("template-instance-rule", "instance All = .*", set_variable("instance", "allValue", ".*")),
    ("template-instance-rule", "instance on a fixed datasource",
     set_variable("instance", "datasource", {"type": "prometheus", "uid": "P1809F7CD0C75ACF3"})),
    ("template-label-promql-rule", "broken selector",
     set_variable("job", "query", "label_values(zego_digital_human_up{, job)")),
    ("template-label-promql-rule", "unknown function",
     set_variable("job", "query", "label_list(zego_digital_human_up, job)")),
    ("template-on-time-change-reload-rule", "room list refreshed on load only",
     set_variable("room_id", "refresh", 1)),
    ("panel-datasource-rule", "panel on a fixed datasource",
     set_panel("Streaming", lambda p: p.update(datasource={"type": "prometheus", "uid": "abc"}))),
    ("panel-datasource-rule", "query on a fixed datasource",
     set_panel("Data freshness", lambda p: p["targets"][0].update(datasource={"uid": "abc"}))),
    ("panel-title-description-rule", "no description",
     set_panel("Data freshness", lambda p: p.update(description=""))),
    ("panel-units-rule", "unknown unit", set_panel("API latency (p50 / p90 / p99)",
                                                   set_unit("seconds"))),
    ("panel-units-rule", "no unit", set_panel("Tracked tasks by source", set_unit(""))),
    ("panel-no-targets-rule", "no query",
     set_panel("Callbacks received", lambda p: p.update(targets=[]))),
    ("target-promql-rule", "unparsable query",
     edit_query("Tracked tasks by source", "sum by (source) (", "sum by (source) ((")),
    ("target-rate-interval-rule", "rate over a fixed 5m",
     edit_query("Callbacks received", "[$__rate_interval]", "[5m]")),
    ("target-job-rule", "selector without job",
     edit_query("Tracked tasks by source", 'job=~"$job", ', "")),
    ("target-job-rule", "job as an equality", edit_query("Exporter up", 'job=~"$job"', 'job="x"')),
    ("target-instance-rule", "selector without instance",
     edit_query("Refresh backlog", ', instance=~"$instance"', "", kind="timeseries")),
    ("target-counter-agg-rule", "failures read raw instead of increase()",
     edit_query("Init failures by room and stream",
                f"floor(increase({FAILURES}[$__rate_interval]))", FAILURES)),
    ("target-counter-agg-rule", "first-sight term without its offset",
     edit_query("Init failures by room and stream", " offset $__rate_interval", "")),
    ("target-counter-agg-rule", "first-sight term with a plain offset",
     edit_query("Init failures by room and stream",
                "present_over_time(zego_digital_human_task_failures_total{job=~\"$job\", "
                'instance=~"$instance", room_id=~"$room_id"}[$__rate_interval] offset '
                "$__rate_interval)",
                'zego_digital_human_task_failures_total{job=~"$job", instance=~"$instance", '
                'room_id=~"$room_id"} offset $__rate_interval')),
    ("target-counter-agg-rule", "the rise over the whole range, not the step's window",
     edit_query("Init failures by room and stream",
                "min_over_time(zego_digital_human_task_failures_total{job=~\"$job\", "
                'instance=~"$instance", room_id=~"$room_id"}[$__rate_interval])',
                "min_over_time(zego_digital_human_task_failures_total{job=~\"$job\", "
                'instance=~"$instance", room_id=~"$room_id"}[$__range])')),
    ("target-counter-agg-rule", "api calls summed raw",
     edit_query("API requests by action and code", "rate(", "sum_over_time(")),
    ("uneditable-dashboard", "editable", set_editable),
    ("promql/regexp", "regexp on one state",
     edit_query("Streaming", 'state="streaming"', 'state=~"streaming"')),
    ("promql/regexp", "redundant anchors",
     edit_query("Rate-limited calls in range", 'code="400010009"', 'code=~"^400010009$"')),
    ("promql/regexp", "wildcard that selects every value",
     edit_query("Tracked tasks by source", 'instance=~"$instance"',
                'instance=~"$instance", source=~".*"')),
]


@pytest.mark.parametrize(
    ("rule", "edit"),
    [pytest.param(rule, edit, id=f"{rule}: {what}") for rule, what, edit in DASHBOARD_CASES],
)
def test_dashboard_rule_catches_a_broken_copy(rule: str, edit: DashboardEdit) -> None:
    broken = copy.deepcopy(DASHBOARD)
    where = edit(broken)
    findings = [f for f in lint_dashboard(broken) if f.rule == rule]
    assert findings, f"{rule} did not notice"
    assert any(f.where == where for f in findings), [str(f) for f in findings]
    assert not [f for f in lint_dashboard(DASHBOARD) if f.rule == rule]


# --- breaking a copy of the alerting rules ------------------------------------------------


def alert(files: AlertFiles, name: str) -> Json:
    found: Json = next(rule for rule in files.rules if rule["alert"] == name)
    return found


AlertEdit = Callable[[AlertFiles], str]
"""Breaks the rules in place; returns the alert the finding must name."""


def edit_expr(name: str, old: str, new: str) -> AlertEdit:
    def edit(files: AlertFiles) -> str:
        rule = alert(files, f"ZegoDigitalHuman{name}")
        assert old in rule["expr"], f"{name}: {old!r} not in {rule['expr']!r}"
        rule["expr"] = rule["expr"].replace(old, new)
        return str(rule["alert"])
    return edit


def edit_rule(name: str, change: Callable[[Json], None]) -> AlertEdit:
    def edit(files: AlertFiles) -> str:
        rule = alert(files, f"ZegoDigitalHuman{name}")
        change(rule)
        return str(rule["alert"])
    return edit


def set_annotation(key: str, value: str | None) -> Callable[[Json], None]:
    def change(rule: Json) -> None:
        if value is None:
            del rule["annotations"][key]
        else:
            rule["annotations"][key] = value
    return change


def edit_annotation(key: str, old: str, new: str) -> Callable[[Json], None]:
    def change(rule: Json) -> None:
        assert old in rule["annotations"][key], rule["annotations"][key]
        rule["annotations"][key] = rule["annotations"][key].replace(old, new)
    return change


def forget_comment(name: str) -> AlertEdit:
    def edit(files: AlertFiles) -> str:
        files.comments[f"ZegoDigitalHuman{name}"] = ""
        return f"ZegoDigitalHuman{name}"
    return edit


def dashboard_url(panel_id: int, uid: str = "zego-digital-human") -> str:
    return f"{GRAFANA_BASE}/d/{uid}/zego-digital-human?viewPanel={panel_id}"


RATE_ALL = "rate(zego_digital_human_api_requests_total[5m])"
ROOM_FAILURES = "zego_digital_human_task_failures_total"

ALERT_CASES: list[tuple[str, str, AlertEdit]] = [
    ("promql/syntax", "unparsable", edit_expr("ApiDown", "== 0", "==")),
    ("promql/regexp", "regexp on one state",
     edit_expr("TaskInitFailed", 'state="init_failed"', 'state=~"init_failed"')),
    ("promql/regexp", "redundant anchors",
     edit_expr("ApiSignatureRejected", '"100000004|100000005"', '"^(100000004|100000005)$"')),
    ("promql/regexp", "wildcard that selects every value",
     edit_expr("ApiDown", "zego_digital_human_up ==", 'zego_digital_human_up{instance=~".*"} ==')),
    ("promql/regexp", "negative wildcard",
     edit_expr("ApiDown", "zego_digital_human_up ==", 'zego_digital_human_up{instance!~".+"} ==')),
    ("promql/counter", "failures read raw instead of increase()",
     edit_expr("RoomInitFailuresRepeated", f"floor(increase({ROOM_FAILURES}[1h]))",
               ROOM_FAILURES)),
    ("promql/counter", "first-sight term with the offset on the wrong side",
     edit_expr("RoomInitFailuresRepeated", f"{ROOM_FAILURES}\n",
               f"{ROOM_FAILURES} offset 1h\n")),
    ("promql/counter", "first-sight term with a plain offset (old failures after a restart)",
     edit_expr("RoomInitFailuresRepeated", f"present_over_time({ROOM_FAILURES}[1h] offset 1h)",
               f"{ROOM_FAILURES} offset 1h")),
    ("promql/counter", "the rise over two different windows",
     edit_expr("RoomInitFailuresRepeated", f"min_over_time({ROOM_FAILURES}[1h])",
               f"min_over_time({ROOM_FAILURES}[2h])")),
    ("promql/counter", "the highest value in the hour instead of the rise",
     edit_expr("RoomInitFailuresRepeated", f"- min_over_time({ROOM_FAILURES}[1h])", "- 0")),
    ("promql/counter", "api calls summed raw",
     edit_expr("ApiErrors", f"(sum without (action, code) ({RATE_ALL}) > 0)",
               "(sum without (action, code) (zego_digital_human_api_requests_total) > 0)")),
    ("promql/rate", "window under two scrape intervals",
     edit_expr("ApiErrors", "[5m]", "[45s]")),
    ("promql/rate", "rate() of a gauge",
     edit_expr("RefreshBacklogGrowing", "min_over_time(", "rate(")),
    ("promql/nan", "ratio without its guard",
     edit_expr("ApiErrors", f"(sum without (action, code) ({RATE_ALL}) > 0)",
               f"sum without (action, code) ({RATE_ALL})")),
    ("promql/nan", "guard that lets 0 through",
     edit_expr("ApiRateLimited", f"({RATE_ALL}) > 0)", f"({RATE_ALL}) >= 0)")),
    ("promql/fragile", "ratio of aggregations without for:",
     edit_rule("ApiRateLimited", lambda rule: rule.pop("for"))),
    ("promql/fragile", "topk()",
     edit_expr("TaskStuckInitializing", "(zego_digital_human_task_age_seconds > 300)",
               "topk(1, zego_digital_human_task_age_seconds > 300)")),
    ("promql/aggregate", "by drops instance",
     edit_expr("RoomInitFailuresRepeated", "sum without (stream_id)", "sum by (job, room_id)")),
    ("promql/aggregate", "without drops job",
     edit_expr("ApiRateLimited", "sum without (code) (\n", "sum without (code, job) (\n")),
    ("alerts/comparison", "no threshold", edit_expr("RoomInitFailuresRepeated", ") > 2", ")")),
    ("alerts/comparison", "bool comparison",
     edit_expr("ConfiguredTaskNotFound", "== 1", "== bool 1")),
    ("alerts/for", "for: 0s",
     edit_rule("TaskStuckInitializing", lambda r: r.update({"for": "0s"}))),
    ("alerts/for", "invalid for:",
     edit_rule("TaskStuckInitializing", lambda r: r.update({"for": "5 minutes"}))),
    ("zego/for-or-reason", "reason removed", forget_comment("TaskInitFailed")),
    ("zego/for-or-reason", "for: removed without a reason",
     edit_rule("TaskStuckInitializing", lambda rule: rule.pop("for"))),
    ("alerts/template", "value in a label",
     edit_rule("ApiDown", lambda rule: rule["labels"].update(value="{{ $value }}"))),
    ("alerts/template", "label the aggregation dropped",
     edit_rule("RoomInitFailuresRepeated", edit_annotation(
         "description", "in room {{", "in stream {{ $labels.stream_id }} of room {{"))),
    ("alerts/template", "rate shown without humanize",
     edit_rule("ApiErrors", edit_annotation(
         "description", "{{ $value | humanizePercentage }}", "{{ $value }}"))),
    ("alerts/annotation", "no dashboard_url",
     edit_rule("ApiDown", set_annotation("dashboard_url", None))),
    ("alerts/annotation", "dashboard_url to another dashboard",
     edit_rule("ApiDown", set_annotation("dashboard_url", dashboard_url(22, uid="other")))),
    ("alerts/annotation", "no summary", edit_rule("ApiDown", set_annotation("summary", None))),
    ("alerts/annotation", "runbook over http",
     edit_rule("ApiDown", set_annotation("runbook_url", "http://example.com/runbook"))),
    ("zego/dashboard-url-panel", "no such panel",
     edit_rule("ApiDown", set_annotation("dashboard_url", dashboard_url(999)))),
    ("zego/dashboard-url-panel", "a row", edit_rule("ApiDown", set_annotation(
        "dashboard_url", dashboard_url(1)))),
    ("zego/dashboard-url-panel", "a panel showing something else",
     edit_rule("ApiDown", set_annotation("dashboard_url", dashboard_url(26)))),
    ("mixin/alert-summary-templating", "a label that differs within a notification",
     edit_rule("ApiSignatureRejected", set_annotation(
         "summary", "ZEGO rejects the exporter's API signature (code {{ $labels.code }})."))),
    ("mixin/alert-summary-templating", "the value",
     edit_rule("ApiErrors", set_annotation("summary", "{{ $value }} of the API calls fail."))),
    ("mixin/alert-summary-style", "not a sentence",
     edit_rule("ApiDown", set_annotation("summary", "api down"))),
]


@pytest.mark.parametrize(
    ("rule", "edit"),
    [pytest.param(rule, edit, id=f"{rule}: {what}") for rule, what, edit in ALERT_CASES],
)
def test_alert_rule_catches_a_broken_copy(rule: str, edit: AlertEdit) -> None:
    broken = dataclasses.replace(
        ALERT_FILES, rules=copy.deepcopy(ALERT_FILES.rules), comments=dict(ALERT_FILES.comments)
    )
    where = edit(broken)
    findings = [f for f in lint_alerts(broken) if f.rule == rule]
    assert findings, f"{rule} did not notice"
    assert any(f.where == where for f in findings), [str(f) for f in findings]
    assert not [f for f in lint_alerts(ALERT_FILES) if f.rule == rule]


def test_every_rule_has_a_broken_copy() -> None:
    assert {rule for rule, _, _ in DASHBOARD_CASES} == set(DASHBOARD_RULES)
    assert {rule for rule, _, _ in ALERT_CASES} == set(ALERT_RULES)
    for rule in [*DASHBOARD_RULES.values(), *ALERT_RULES.values()]:
        assert rule.__doc__ and re.search(r"dashboard-linter|pint|monitoring-mixins|project",
                                          rule.__doc__), f"{rule.__name__}: say what it ports"


def test_summary_may_template_the_labels_a_notification_shares() -> None:
    files = dataclasses.replace(ALERT_FILES, rules=copy.deepcopy(ALERT_FILES.rules))
    alert(files, "ZegoDigitalHumanExporterDown")["annotations"]["summary"] = (
        "Prometheus cannot scrape job {{ $labels.job }}.")
    assert "job" in files.group_by
    assert not [f for f in lint_alerts(files) if f.rule == "mixin/alert-summary-templating"]


# --- dashboard_url -------------------------------------------------------------------------


def test_every_dashboard_url_names_a_panel_of_the_committed_dashboard() -> None:
    panels = {p["id"]: p for p in iter_panels(DASHBOARD["panels"])}
    prefix = f"{GRAFANA_BASE}/d/{DASHBOARD['uid']}/zego-digital-human?viewPanel="
    for rule in ALERT_FILES.rules:
        url = rule["annotations"]["dashboard_url"]
        assert url.startswith(prefix), (rule["alert"], url)
        panel_id = int(url.removeprefix(prefix))
        assert panel_id in panels, f"{rule['alert']}: no panel {panel_id}"
        assert panels[panel_id]["type"] != "row", f"{rule['alert']}: panel {panel_id} is a row"


# --- the pieces the rules stand on ---------------------------------------------------------


def test_variables_expand_outside_strings_only() -> None:
    expr = 'rate(x{job=~"$job"}[$__rate_interval]) - x{a="${__range}"} offset ${__range}'
    assert expand_variables(expr) == (
        'rate(x{job=~"$job"}[8869990ms]) - x{a="${__range}"} offset 6069770ms')
    parse(expand_variables(expr))


@pytest.mark.parametrize(("expr", "labels"), [
    ('sum without (stream_id) (zego_digital_human_task_failures_total) > 2',
     {"job", "instance", "room_id"}),
    ("sum by (job) (up)", {"job"}),
    ("sum(up)", set()),
    ('(zego_digital_human_task_state == 1) * on (job, instance, task_id) group_left (fail_reason)'
     " zego_digital_human_task_info",
     {"job", "instance", "task_id", "room_id", "stream_id", "state", "fail_reason"}),
    ("zego_digital_human_up / on (instance) zego_digital_human_refresh_backlog", {"instance"}),
    ("zego_digital_human_up / ignoring (instance) zego_digital_human_refresh_backlog", {"job"}),
    ('up{job="a"} == 0 or absent(up{job="a"})', {"job", "instance"}),
    ('absent(up{job="a", instance=~"b.*"})', {"job"}),
    ("time() - zego_digital_human_task_last_success_timestamp_seconds > 600",
     {"job", "instance", "task_id", "room_id", "stream_id"}),
    ("histogram_quantile(0.9, sum by (le, action) "
     "(rate(zego_digital_human_api_request_duration_seconds_bucket[5m])))", {"action"}),
    ("some_metric_nobody_defined", None),
])
def test_output_labels_follow_the_engine(expr: str, labels: set[str] | None) -> None:
    result = output_labels(parse(expr))
    assert (None if result is None else set(result)) == labels


FIRST_SIGHT = first_sight_term
WINDOW_SPAN = window_span_term


@pytest.mark.parametrize(("term", "expr", "allowed"), [
    (FIRST_SIGHT, "c_total unless present_over_time(c_total[1h] offset 1h)", True),
    (FIRST_SIGHT, 'c_total{a="b"} unless present_over_time(c_total{a="b"}[30m] offset 30m)', True),
    # A plain offset also drops every series that merely had a scrape gap (stale markers)
    # one window ago: after an exporter restart, old failures would count again.
    (FIRST_SIGHT, "c_total unless c_total offset 1h", False),
    (FIRST_SIGHT, "c_total unless present_over_time(c_total[1h])", False),
    (FIRST_SIGHT, "c_total unless present_over_time(c_total[5m] offset 1h)", False),
    (FIRST_SIGHT, "c_total offset 1h unless present_over_time(c_total[1h] offset 1h)", False),
    (FIRST_SIGHT, 'c_total unless present_over_time(c_total{a="b"}[1h] offset 1h)', False),
    (FIRST_SIGHT, "c_total unless count_over_time(c_total[1h] offset 1h)", False),
    (FIRST_SIGHT, "c_total and present_over_time(c_total[1h] offset 1h)", False),
    (WINDOW_SPAN, "max_over_time(c_total[1h]) - min_over_time(c_total[1h])", True),
    (WINDOW_SPAN, '(max_over_time(c_total{a="b"}[5m])) - (min_over_time(c_total{a="b"}[5m]))',
     True),
    (WINDOW_SPAN, "min_over_time(c_total[1h]) - max_over_time(c_total[1h])", False),
    (WINDOW_SPAN, "max_over_time(c_total[1h]) + min_over_time(c_total[1h])", False),
    (WINDOW_SPAN, "max_over_time(c_total[1h]) - min_over_time(c_total[2h])", False),
    (WINDOW_SPAN, "max_over_time(c_total[1h]) - min_over_time(c_total[1h] offset 1h)", False),
    (WINDOW_SPAN, 'max_over_time(c_total[1h]) - min_over_time(c_total{a="b"}[1h])', False),
    (WINDOW_SPAN, "max_over_time(c_total[1h]) - max_over_time(c_total[1h])", False),
    (WINDOW_SPAN, "sum_over_time(c_total[1h]) - min_over_time(c_total[1h])", False),
])
def test_raw_counter_terms_are_only_their_shapes(
    term: Callable[[NodePath, promql.Expr], bool], expr: str, allowed: bool
) -> None:
    node = parse(expr)
    selectors = [(found, path) for found, path in walk(node)
                 if isinstance(found, promql.VectorSelector)]
    assert len(selectors) == 2
    for found, path in selectors:
        assert term(path, found) is allowed, found


@pytest.mark.parametrize(("selector", "problem"), [
    ('x{a=~"b"}', "static string"),
    ('x{a!~"b\\\\.c"}', "static string"),
    ('x{a=~"^b|c"}', "anchors"),
    ('x{a=~".*"}', "wildcard"),
    ('x{a=~".*.*"}', "wildcard"),
    ('x{a!~".*"}', "negative wildcard"),
    ('x{a!~".+"}', "negative wildcard"),
    ('x{a=~".+"}', None),  # the label is set: narrows
    ('x{a=~"b.*"}', None),
    ('x{a=~"b|c"}', None),
    ('x{a=~"$a"}', None),  # Grafana fills a regexp in
])
def test_regexp_problems_follow_pint(selector: str, problem: str | None) -> None:
    node = parse(selector)
    assert isinstance(node, promql.VectorSelector)
    (matcher,) = [m for m in node.matchers.matchers if m.name == "a"]
    found = regexp_problem(matcher)
    assert (found is None) if problem is None else (found is not None and problem in found), found


def test_rule_comments_are_the_lines_right_above_each_alert() -> None:
    text = (
        "rules:\n  # about a\n  # more about a\n  - alert: A\n    expr: x\n\n"
        "  # detached\n\n  - alert: B\n    expr: y\n"
    )
    assert rule_comments(text) == {"A": "about a more about a", "B": ""}
