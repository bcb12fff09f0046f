"""The ecosystem's lint rules for the Grafana dashboard and the alerting rules, ported to Python.

grafana/dashboard-linter, cloudflare/pint and mixtool are Go programs that cannot be built here,
so the rules this project relies on are re-written from their sources: each rule's docstring
names the upstream rule and file (both projects are Apache-2.0) and says where this port
differs. A rule reads the committed files, parses PromQL with promql-parser (the Python binding
of a Rust PromQL parser) and yields (where, what) pairs; `lint_dashboard` and `lint_alerts` turn
them into Findings. pint's online checks get metric types from the contract table instead of a
Prometheus server's metadata. This module never writes a file and never talks to a server;
tests/test_lint.py runs it on the committed files (`pytest tests/test_lint.py` lists every
finding) and shows that each rule catches a broken copy.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeGuard

import promql_parser as promql
import yaml

from grafana.build_dashboard import iter_panels
from tests.support.contract_metrics import queryable_names
from tests.support.paths import ROOT

DASHBOARD_FILE = ROOT / "grafana" / "zego-digital-human.json"
ALERTS_FILE = ROOT / "prometheus" / "alerts.yml"
PROMETHEUS_CONFIG = ROOT / "prometheus" / "prometheus.yml"
ALERTMANAGER_CONFIG = ROOT / "prometheus" / "alertmanager.yml"

Json = dict[str, Any]
Problems = Iterator[tuple[str, str]]
"""What a rule yields: (where: a panel title, variable or alert name; what is wrong)."""

# The Grafana address dashboard_url links assume (Grafana's default), as alerts.yml says.
GRAFANA_BASE = "http://localhost:3000"

COMPARISONS = frozenset({"==", "!=", ">", "<", ">=", "<="})
SET_OPERATORS = frozenset({"and", "or", "unless"})
SAMPLING_AGGREGATIONS = frozenset({"topk", "bottomk", "limitk", "limit_ratio"})
# Series Prometheus makes itself, with the labels it gives them.
PROMETHEUS_SERIES: dict[str, frozenset[str]] = {
    "up": frozenset({"job", "instance"}),
    "scrape_duration_seconds": frozenset({"job", "instance"}),
}
TARGET_LABELS = frozenset({"job", "instance"})


@dataclass(frozen=True)
class Finding:
    rule: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.where}: {self.message}"


# --- PromQL --------------------------------------------------------------------------------

Node = promql.Expr
NodePath = tuple[tuple[Node, int], ...]
"""The way down to a node: (ancestor, index of the child taken) from the root."""


def children(node: Node) -> list[Node]:
    """The sub-expressions of a node, in source order."""
    if isinstance(node, promql.AggregateExpr):
        return [child for child in (node.param, node.expr) if isinstance(child, promql.Expr)]
    if isinstance(node, promql.BinaryExpr):
        return [node.lhs, node.rhs]
    if isinstance(node, (promql.ParenExpr, promql.UnaryExpr, promql.SubqueryExpr)):
        return [node.expr]
    if isinstance(node, promql.Call):
        return [arg for arg in node.args if isinstance(arg, promql.Expr)]
    if isinstance(node, promql.MatrixSelector):
        return [node.vector_selector]
    return []


def walk(node: Node, path: NodePath = ()) -> Iterator[tuple[Node, NodePath]]:
    """Every node, depth first, with the path from the root to it."""
    yield node, path
    for index, child in enumerate(children(node)):
        yield from walk(child, (*path, (node, index)))


def unparen(node: Node) -> Node:
    while isinstance(node, promql.ParenExpr):
        node = node.expr
    return node


def op(node: Node) -> str:
    return str(getattr(node, "op", ""))


def selectors(node: Node) -> list[promql.VectorSelector]:
    return [n for n, _ in walk(node) if isinstance(n, promql.VectorSelector)]


def metric_names(node: Node) -> set[str]:
    return {selector.name for selector in selectors(node) if selector.name}


def matchers(selector: promql.VectorSelector) -> list[promql.Matcher]:
    return list(selector.matchers.matchers)


def is_call(node: Node, *names: str) -> TypeGuard[promql.Call]:
    return isinstance(node, promql.Call) and node.func.name in names


def is_scalar(node: Node) -> bool:
    node = unparen(node)
    if isinstance(node, promql.NumberLiteral):
        return True
    if isinstance(node, promql.Call):
        # The stub types ValueType's members as Any, so `==` on them is Any to mypy.
        return bool(node.func.return_type == promql.ValueType.Scalar)
    if isinstance(node, promql.UnaryExpr):
        return is_scalar(node.expr)
    if isinstance(node, promql.BinaryExpr):
        return is_scalar(node.lhs) and is_scalar(node.rhs)
    return False


# Series whose values only go up: the contract's counters and its histogram's buckets and count.
COUNTERS = frozenset(
    name for name, metric in queryable_names().items()
    if metric.type in {"counter", "histogram"} and not name.endswith("_sum")
)


def is_counter(name: str | None) -> bool:
    # dashboard-linter's test is the `_total` suffix; pint asks Prometheus' metadata, for which
    # the contract stands in.
    return bool(name) and (str(name).endswith("_total") or name in COUNTERS)


def first_sight_term(path: NodePath, node: Node) -> bool:
    """Whether `node` is a selector of `c unless present_over_time(c[w] offset w)`, the one raw
    read of a counter here.

    A task the exporter first sees already failed starts its failures series at 1, with no
    earlier sample for increase() to compare with; the term keeps exactly the series that had
    no sample in the window before the last one, and their value is the failures since they
    appeared (prometheus/alerts.yml, ZegoDigitalHumanRoomInitFailuresRepeated). A plain
    `c offset w` on the right would also keep every series that merely had a scrape gap (a
    restart) w ago. Any other shape (an offset on the left, another selector, function or
    window on the right) is not this term.
    """
    if not path or not isinstance(node, promql.VectorSelector):
        return False
    term = next((parent for parent, _ in reversed(path)
                 if isinstance(parent, promql.BinaryExpr)), None)
    if term is None or op(term) != "unless":
        return False
    lhs, rhs = unparen(term.lhs), unparen(term.rhs)
    if not (isinstance(lhs, promql.VectorSelector) and is_call(rhs, "present_over_time")):
        return False
    (window,) = rhs.args
    if not isinstance(window, promql.MatrixSelector):
        return False
    earlier = window.vector_selector
    same = lhs.name == earlier.name and str(lhs.matchers) == str(earlier.matchers)
    shape = same and lhs.offset is None and earlier.offset == window.range
    return shape and node in (lhs, earlier) and path[-1][0] in (term, window)


def window_span_term(path: NodePath, node: Node) -> bool:
    """Whether `node` is a selector of `max_over_time(c[w]) - min_over_time(c[w])`, the other
    raw read of a counter here: the counter's rise over the window's samples, never
    extrapolated.

    increase() scales the rise it saw up to the window's edges, by as much as the window is
    longer than the span of its samples: over a series with samples at the end of the window
    only (it came back after a gap), two failures read 3 or more. Between two resets the
    samples only rise, so this span is exactly the failures seen, and the minimum of the two
    is (prometheus/alerts.yml, ZegoDigitalHumanRoomInitFailuresRepeated). Both sides must
    read the same selector over the same window; any other shape is not this term.
    """
    if len(path) < 3 or not isinstance(node, promql.VectorSelector):
        return False
    above = len(path) - 3
    while above > 0 and isinstance(path[above][0], promql.ParenExpr):
        above -= 1
    term = path[above][0]
    if not (isinstance(term, promql.BinaryExpr) and op(term) == "-"):
        return False
    lhs, rhs = unparen(term.lhs), unparen(term.rhs)
    if not (is_call(lhs, "max_over_time") and is_call(rhs, "min_over_time")):
        return False
    (high,), (low,) = lhs.args, rhs.args
    if not (isinstance(high, promql.MatrixSelector) and isinstance(low, promql.MatrixSelector)):
        return False
    same = str(high) == str(low)
    return same and path[-1][0] in (high, low) and path[-2][0] in (lhs, rhs)


def raw_counter_term(path: NodePath, node: Node) -> bool:
    """Whether `node` is a selector of one of the two terms that read the failure counter's
    value on purpose (first_sight_term, window_span_term)."""
    return first_sight_term(path, node) or window_span_term(path, node)


# Grafana's global variables as dashboard-linter expands them (lint/variables.go): durations
# nobody writes by hand, so a range equal to RATE_INTERVAL came from `$__rate_interval`.
# (Upstream's values are 1000 times longer, more than promql-parser accepts.)
GRAFANA_GLOBALS = {
    "__rate_interval": "8869990ms",
    "__interval": "4867856ms",
    "__range": "6069770ms",
}
RATE_INTERVAL = promql.parse_duration(GRAFANA_GLOBALS["__rate_interval"])
_GRAFANA_VARIABLE = re.compile(r"\$(\w+)|\$\{([^}]+)\}|\[\[([^\[\]]+)\]\]")


def expand_variables(expr: str) -> str:
    """dashboard-linter's expandVariables: Grafana variables outside double-quoted strings
    become sample values (globals their magic durations, others their name); inside strings
    they stay, so `job=~"$job"` keeps its `$job` for the matcher rules."""

    def sample(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group).split(":")[0]
        return GRAFANA_GLOBALS.get(name, name)

    parts = expr.split('"')
    for index in range(0, len(parts), 2):
        parts[index] = _GRAFANA_VARIABLE.sub(sample, parts[index])
    return '"'.join(parts)


def parse(expr: str) -> Node:
    return promql.parse(expr)


def output_labels(node: Node) -> frozenset[str] | None:
    """The labels the result of `node` can carry; None when this reader cannot tell.

    Follows Prometheus' engine: aggregations keep their `by` labels or drop their `without`
    ones, one-to-one binary operations keep the left side's labels (only the `on` ones, or
    without the `ignoring` ones), group_left/group_right add the included labels of the other
    side, `or` may return either side's.
    """
    node = unparen(node)
    if isinstance(node, promql.VectorSelector):
        if node.name in PROMETHEUS_SERIES:
            return PROMETHEUS_SERIES[node.name]
        metric = queryable_names().get(node.name or "")
        if metric is None:
            return None
        extra = {"le"} if str(node.name).endswith("_bucket") else set()
        return frozenset(metric.labels) | TARGET_LABELS | extra
    if isinstance(node, promql.MatrixSelector):
        return output_labels(node.vector_selector)
    if isinstance(node, (promql.UnaryExpr, promql.SubqueryExpr)):
        return output_labels(node.expr)
    if isinstance(node, (promql.NumberLiteral, promql.StringLiteral)) or is_scalar(node):
        return frozenset()
    if isinstance(node, promql.Call):
        return _call_labels(node)
    if isinstance(node, promql.AggregateExpr):
        return _aggregation_labels(node)
    if isinstance(node, promql.BinaryExpr):
        return _binary_labels(node)
    return None


def _call_labels(call: promql.Call) -> frozenset[str] | None:
    name, args = call.func.name, list(call.args)
    if name in {"absent", "absent_over_time"}:
        selector = next(iter(selectors(args[0])), None)
        if selector is None:
            return frozenset()
        return frozenset(
            m.name for m in matchers(selector)
            if m.name != "__name__" and m.op == promql.MatchOp.Equal
        )
    vectors = [arg for arg in args if isinstance(arg, promql.Expr) and not is_scalar(arg)
               and not isinstance(arg, promql.StringLiteral)]
    if not vectors:
        return frozenset()
    inner = output_labels(vectors[-1] if name == "histogram_quantile" else vectors[0])
    if inner is None:
        return None
    if name == "histogram_quantile":
        return inner - {"le"}
    if name in {"label_replace", "label_join"}:
        return inner | {args[1].val}
    return inner


def _aggregation_labels(node: promql.AggregateExpr) -> frozenset[str] | None:
    inner = output_labels(node.expr)
    name = op(node)
    if name in SAMPLING_AGGREGATIONS:
        return inner
    added: set[str] = set()
    if name == "count_values":
        # The parser only accepts a string literal as count_values' label name.
        assert isinstance(node.param, promql.StringLiteral)
        added = {node.param.val}
    modifier = node.modifier
    if modifier is None:
        return frozenset(added)
    listed = frozenset(modifier.labels)
    if modifier.type == promql.AggModifierType.By:
        return (listed if inner is None else listed & inner) | added
    return None if inner is None else (inner - listed) | added


def _binary_labels(node: promql.BinaryExpr) -> frozenset[str] | None:
    lhs, rhs = output_labels(node.lhs), output_labels(node.rhs)
    if is_scalar(node.lhs):
        return rhs
    if is_scalar(node.rhs):
        return lhs
    name = op(node)
    if name in {"and", "unless"}:
        return lhs
    if name == "or":
        return None if lhs is None or rhs is None else lhs | rhs
    modifier = node.modifier
    card = modifier.card if modifier else promql.VectorMatchCardinality.OneToOne
    include = frozenset(modifier.group_labels or ()) if modifier else frozenset()
    if card == promql.VectorMatchCardinality.ManyToOne:
        return None if lhs is None else lhs | include
    if card == promql.VectorMatchCardinality.OneToMany:
        return None if rhs is None else rhs | include
    if lhs is None:
        return None
    matching = modifier.matching if modifier else None
    if matching is None:
        return lhs
    if matching.type == promql.LabelModifierType.Include:
        return lhs & frozenset(matching.labels)
    return lhs - frozenset(matching.labels)


_DURATION = re.compile(r"(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?"
                       r"(?:(\d+)ms)?")
_DURATION_UNITS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)


def prometheus_duration(text: str) -> timedelta:
    """A duration as Prometheus' configuration reads it (`1h15m`, `30s`, `0s`)."""
    match = _DURATION.fullmatch(text)
    if not text or match is None:
        raise ValueError(f"not a Prometheus duration: {text!r} (like 30s, 5m, 1h15m)")
    return timedelta(seconds=sum(
        int(count) * unit for count, unit in zip(match.groups(), _DURATION_UNITS, strict=True)
        if count
    ))


# --- the files -----------------------------------------------------------------------------


def load_dashboard() -> Json:
    loaded: Json = json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))
    return loaded


def rule_comments(text: str) -> dict[str, str]:
    """The comment lines right above each `- alert: Name` of a rule file, by alert name."""
    comments: dict[str, str] = {}
    block: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            block.append(stripped.lstrip("#").strip())
            continue
        alert = re.match(r"-\s+alert:\s*(\S+)", stripped)
        if alert:
            comments[alert.group(1)] = " ".join(block)
        block = []
    return comments


@dataclass(frozen=True)
class AlertFiles:
    """What the alert rules are linted against: the rules and what they must agree with."""

    rules: list[Json]
    """The alerting rules of prometheus/alerts.yml, in order."""
    comments: dict[str, str]
    """The comment above each rule, by alert name: where a kept finding says why."""
    group_by: tuple[str, ...]
    """The example Alertmanager route's group_by: the labels shared by one notification."""
    scrape_interval: timedelta
    """The example scrape job's interval."""
    dashboard: Json
    """The committed dashboard, for dashboard_url."""


def load_alert_files() -> AlertFiles:
    text = ALERTS_FILE.read_text(encoding="utf-8")
    document = yaml.safe_load(text)
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    (job,) = config["scrape_configs"]
    interval = job.get("scrape_interval") or config.get("global", {}).get("scrape_interval", "1m")
    route = yaml.safe_load(ALERTMANAGER_CONFIG.read_text(encoding="utf-8"))["route"]
    return AlertFiles(
        rules=[rule for group in document["groups"] for rule in group["rules"] if "alert" in rule],
        comments=rule_comments(text),
        group_by=tuple(route.get("group_by", ())),
        scrape_interval=prometheus_duration(str(interval)),
        dashboard=load_dashboard(),
    )


def content_panels(dashboard: Json) -> list[Json]:
    return [panel for panel in iter_panels(dashboard["panels"]) if panel["type"] != "row"]


def variables(dashboard: Json) -> list[Json]:
    listed: list[Json] = dashboard.get("templating", {}).get("list", [])
    return listed


def targets(dashboard: Json) -> Iterator[tuple[Json, Json, Node | None]]:
    """(panel, target, parsed expression or None when it does not parse)."""
    for panel in content_panels(dashboard):
        for target in panel.get("targets", []):
            try:
                node: Node | None = parse(expand_variables(target.get("expr", "")))
            except ValueError:
                node = None
            yield panel, target, node


def alert_expressions(files: AlertFiles) -> Iterator[tuple[Json, Node]]:
    for rule in files.rules:
        try:
            yield rule, parse(rule["expr"])
        except ValueError:
            continue  # promql/syntax reports it


# --- rule registries -----------------------------------------------------------------------

DashboardRule = Callable[[Json], Problems]
AlertRule = Callable[[AlertFiles], Problems]
DASHBOARD_RULES: dict[str, DashboardRule] = {}
ALERT_RULES: dict[str, AlertRule] = {}


def dashboard_rule(name: str) -> Callable[[DashboardRule], DashboardRule]:
    def register(rule: DashboardRule) -> DashboardRule:
        DASHBOARD_RULES[name] = rule
        return rule
    return register


def alert_rule(name: str) -> Callable[[AlertRule], AlertRule]:
    def register(rule: AlertRule) -> AlertRule:
        ALERT_RULES[name] = rule
        return rule
    return register


def lint_dashboard(dashboard: Json) -> list[Finding]:
    return [Finding(name, where, message)
            for name, rule in DASHBOARD_RULES.items() for where, message in rule(dashboard)]


def lint_alerts(files: AlertFiles) -> list[Finding]:
    return [Finding(name, where, message)
            for name, rule in ALERT_RULES.items() for where, message in rule(files)]


# --- dashboard-linter ----------------------------------------------------------------------

PROMETHEUS_PANELS = frozenset({"singlestat", "gauge", "table", "stat", "state-timeline",
                               "timeseries"})


def datasource_variable(dashboard: Json) -> Json | None:
    return next((v for v in variables(dashboard) if v.get("type") == "datasource"), None)


def datasource_references(dashboard: Json) -> set[str]:
    names = [v["name"] for v in variables(dashboard) if v.get("type") == "datasource"]
    return {f"${name}" for name in names} | {f"${{{name}}}" for name in names}


@dashboard_rule("template-datasource-rule")
def template_datasource(dashboard: Json) -> Problems:
    """dashboard-linter template-datasource-rule (lint/rule_template_datasource.go): the
    dashboard has a datasource variable, named `datasource` (when it is the only one) or
    `<type>_datasource`, labelled `Data source` or `<Type> data source` (upstream only warns
    about the label; here every warning is an error, as with upstream's --strict)."""
    templated = [v for v in variables(dashboard) if v.get("type") == "datasource"]
    if not templated:
        yield "dashboard", "does not have a templated data source"
    for variable in templated:
        kind = str(variable.get("query", ""))
        names = {f"{kind.lower()}_datasource"}
        labels = {f"{kind.title()} data source"}
        if len(templated) == 1:
            names.add("datasource")
            labels.add("Data source")
        where = str(variable.get("name", "?"))
        if variable.get("name") not in names:
            yield where, f"datasource variable should be named {sorted(names)}"
        if variable.get("label") not in labels:
            yield where, f"datasource variable should be labelled {sorted(labels)}"


# dashboard-linter wants `.+` as the "All" value of job and instance, for short queries. The job
# variable keeps Grafana's default instead (the regex of the jobs it lists): `up` and
# `scrape_duration_seconds` are Prometheus' own series, present for every target of every job,
# so `job=~".+"` would show every target Prometheus scrapes on this dashboard. Documented in
# grafana/build_dashboard.py and docs/dashboard.md.
ALL_VALUES: dict[str, str | None] = {"job": None, "instance": ".+"}


def template_problems(dashboard: Json, name: str) -> Problems:
    """checkTemplate of lint/rule_template_job.go, shared by the job and instance rules."""
    source = datasource_variable(dashboard)
    if source is None or source.get("query") != "prometheus":
        return
    variable = next((v for v in variables(dashboard) if v.get("name") == name), None)
    if variable is None:
        yield "dashboard", f"is missing the {name} template"
        return
    allowed = {"$datasource", "${datasource}", "$prometheus_datasource",
               "${prometheus_datasource}"}
    uid = (variable.get("datasource") or {}).get("uid")
    if uid not in allowed:
        yield name, f"{name} template should use datasource '$datasource', is currently {uid!r}"
    if variable.get("type") != "query":
        yield name, f"{name} template should be a Prometheus query, is {variable.get('type')!r}"
    if variable.get("label") != name.title():
        yield name, f"{name} template should be labelled {name.title()!r}"
    if not variable.get("multi"):
        yield name, f"{name} template should be a multi select"
    wanted = ALL_VALUES[name]
    if variable.get("allValue") != wanted:
        yield name, (f"{name} template allValue should be {wanted!r}, "
                     f"is currently {variable.get('allValue')!r}")


@dashboard_rule("template-job-rule")
def template_job(dashboard: Json) -> Problems:
    """dashboard-linter template-job-rule (lint/rule_template_job.go): a `job` query variable
    on `$datasource`, labelled Job, multi-select. Its "All" value is the one deliberate
    difference: unset instead of `.+` (see ALL_VALUES)."""
    yield from template_problems(dashboard, "job")


@dashboard_rule("template-instance-rule")
def template_instance(dashboard: Json) -> Problems:
    """dashboard-linter template-instance-rule (lint/rule_template_instance.go): an `instance`
    query variable on `$datasource`, labelled Instance, multi-select, "All" = `.+`."""
    yield from template_problems(dashboard, "instance")


_LABEL_QUERY = re.compile(r"([a-z_]+)\((.+)\)", re.DOTALL)


@dashboard_rule("template-label-promql-rule")
def template_label_promql(dashboard: Json) -> Problems:
    """dashboard-linter template-label-promql-rule (lint/rule_template_label_promql.go): query
    variables call label_names, label_values, metrics or query_result on valid PromQL. Upstream
    accepts whatever its parser half-reads; here label_values' series selector must parse and
    its label be a label name."""
    for variable in variables(dashboard):
        if variable.get("type") != "query":
            continue
        query = str(variable.get("query", ""))
        call = _LABEL_QUERY.fullmatch(query.strip())
        if call is None:
            yield variable["name"], f"invalid query {query!r}"
            continue
        function, argument = call.groups()
        if function not in {"label_names", "label_values", "metrics", "query_result"}:
            yield variable["name"], f"invalid function {function!r}"
            continue
        expr = argument
        if function == "label_values":
            series, _, label = argument.rpartition(",")
            if not re.fullmatch(r"\s*[a-zA-Z_]\w*\s*", label):
                yield variable["name"], f"invalid label in {query!r}"
            expr = series or label
        if function in {"label_values", "query_result"} and expr.strip():
            try:
                parse(expand_variables(expr))
            except ValueError as error:
                yield variable["name"], f"invalid PromQL in {query!r}: {error}"


@dashboard_rule("template-on-time-change-reload-rule")
def template_reload(dashboard: Json) -> Problems:
    """dashboard-linter template-on-time-change-reload-rule
    (lint/rule_template_on_time_change_reload.go): query variables refresh on time range
    change (refresh 2), so rooms and instances that come and go are listed."""
    for variable in variables(dashboard):
        if variable.get("type") == "query" and variable.get("refresh") != 2:
            yield variable["name"], "should refresh on time range change (refresh: 2)"


@dashboard_rule("panel-datasource-rule")
def panel_datasource(dashboard: Json) -> Problems:
    """dashboard-linter panel-datasource-rule (lint/rule_panel_datasource.go): panels use the
    templated datasource. Upstream checks singlestat, graph, table and timeseries panels; here
    every panel and every query of it."""
    allowed = datasource_references(dashboard)
    for panel in content_panels(dashboard):
        uses = [panel.get("datasource")] + [t.get("datasource") for t in panel.get("targets", [])]
        for source in uses:
            uid = (source or {}).get("uid")
            if uid not in allowed:
                yield panel["title"], f"does not use a templated datasource, uses {uid!r}"


TITLED_PANELS = frozenset({"stat", "singlestat", "graph", "table", "timeseries", "gauge",
                           "state-timeline"})


@dashboard_rule("panel-title-description-rule")
def panel_title_description(dashboard: Json) -> Problems:
    """dashboard-linter panel-title-description-rule (lint/rule_panel_title_description.go):
    panels have a title and a description (state timelines too, which upstream skips)."""
    for panel in content_panels(dashboard):
        if panel["type"] in TITLED_PANELS and not (
            str(panel.get("title", "")).strip() and str(panel.get("description", "")).strip()
        ):
            yield panel.get("title") or f"panel {panel.get('id')}", "has no title or description"


# Grafana's unit ids, as enumerated in lint/rule_panel_units.go (from Grafana's
# packages/grafana-data/src/valueFormats/categories.ts).
_UNIT_IDS = """
none string short percent percentunit humidity dB hex0x hex sci locale pixel accMS2 accFS2
accG degree radian grad arcmin arcsec areaM2 areaF2 areaMI2 flops mflops gflops tflops pflops
eflops zflops yflops ppm conppb conngm3 conngNm3 conμgm3 conμgNm3 conmgm3 conmgNm3 congm3
congNm3 conmgdL conmmolL currencyUSD currencyGBP currencyEUR currencyJPY currencyRUB currencyUAH
currencyBRL currencyDKK currencyISK currencyNOK currencySEK currencyCZK currencyCHF currencyPLN
currencyBTC currencymBTC currencyμBTC currencyZAR currencyINR currencyKRW currencyIDR currencyPHP
currencyVND bytes decbytes bits decbits kbytes deckbytes mbytes decmbytes gbytes decgbytes
tbytes dectbytes pbytes decpbytes pps binBps Bps binbps bps KiBs Kibits KBs Kbits MiBs Mibits
MBs Mbits GiBs Gibits GBs Gbits TiBs Tibits TBs Tbits PiBs Pibits PBs Pbits dateTimeAsIso
dateTimeAsIsoNoDateIfToday dateTimeAsUS dateTimeAsUSNoDateIfToday dateTimeAsLocal
dateTimeAsLocalNoDateIfToday dateTimeAsSystem dateTimeFromNow watt kwatt megwatt gwatt mwatt
Wm2 voltamp kvoltamp voltampreact kvoltampreact watth watthperkg kwatth kwattm amph kamph mamph
joule ev amp kamp mamp volt kvolt mvolt dBm ohm kohm Mohm farad µfarad nfarad pfarad ffarad
henry mhenry µhenry lumens flowgpm flowcms flowcfs flowcfm litreh flowlpm flowmlpm lux forceNm
forcekNm forceN forcekN Hs KHs MHs GHs THs PHs EHs massmg massg masslb masskg masst lengthmm
lengthin lengthft lengthm lengthkm lengthmi pressurembar pressurebar pressurekbar pressurepa
pressurehpa pressurekpa pressurehg pressurepsi radbq radci radgy radrad radsv radmsv radusv
radrem radexpckg radr radsvh radmsvh radusvh rotrpm rothz rotrads rotdegs celsius fahrenheit
kelvin hertz ns µs ms s m h d dtdurationms dtdurations dthms dtdhms timeticks clockms clocks
cps ops reqps rps wps iops cpm opm rpm wpm mps mpm velocityms velocitykmh velocitymph
velocityknot mlitre litre m3 Nm3 dm3 gallons bool bool_yes_no bool_on_off
"""
VALID_UNITS = frozenset(_UNIT_IDS.split())


@dashboard_rule("panel-units-rule")
def panel_units(dashboard: Json) -> Problems:
    """dashboard-linter panel-units-rule (lint/rule_panel_units.go): panels that show numbers
    have a valid unit (an override's unit counts), unless value mappings turn the numbers
    into words or a stat panel shows a non-numeric field. Upstream skips a panel as soon as it
    has a `mappings` key, even an empty one; here only non-empty mappings exempt it."""
    for panel in content_panels(dashboard):
        if panel["type"] not in {"stat", "singlestat", "graph", "table", "timeseries", "gauge"}:
            continue
        reduce_fields = panel.get("options", {}).get("reduceOptions", {}).get("fields", "")
        if panel["type"] == "stat" and reduce_fields:
            continue
        field_config = panel.get("fieldConfig", {})
        override_properties = [
            prop for override in field_config.get("overrides", [])
            for prop in override.get("properties", [])
        ]
        mappings = field_config.get("defaults", {}).get("mappings") or [
            prop["value"] for prop in override_properties
            if prop.get("id") == "mappings" and prop.get("value")
        ]
        if mappings:
            continue
        units = [prop.get("value") for prop in override_properties if prop.get("id") == "unit"]
        unit = units[-1] if units else field_config.get("defaults", {}).get("unit", "")
        if unit not in VALID_UNITS:
            yield panel["title"], f"has no or an invalid unit: {unit!r}"


@dashboard_rule("panel-no-targets-rule")
def panel_no_targets(dashboard: Json) -> Problems:
    """dashboard-linter panel-no-targets-rule (lint/rule_panel_no_targets.go): panels that
    show data have at least one query (state timelines too, which upstream skips)."""
    for panel in content_panels(dashboard):
        if panel["type"] in TITLED_PANELS and not panel.get("targets"):
            yield panel["title"], "has no targets"


@dashboard_rule("target-promql-rule")
def target_promql(dashboard: Json) -> Problems:
    """dashboard-linter target-promql-rule (lint/rule_target_promql.go): every query of a
    panel that shows Prometheus data is valid PromQL once Grafana's variables are expanded."""
    for panel, target, node in targets(dashboard):
        if panel["type"] in PROMETHEUS_PANELS and node is None:
            yield panel["title"], f"invalid PromQL query {target.get('expr', '')!r}"


@dashboard_rule("target-rate-interval-rule")
def target_rate_interval(dashboard: Json) -> Problems:
    """dashboard-linter target-rate-interval-rule (lint/rule_target_rate_interval.go): rate()
    and irate() take `[$__rate_interval]`, the window Grafana keeps at least four scrape
    intervals long whatever the zoom (other functions may use other windows, e.g. `$__range`)."""
    for panel, target, node in targets(dashboard):
        if node is None or panel["type"] not in PROMETHEUS_PANELS:
            continue
        for found, path in walk(node):
            if not isinstance(found, promql.MatrixSelector) or found.range == RATE_INTERVAL:
                continue
            if path and is_call(path[-1][0], "rate", "irate"):
                yield panel["title"], f"should use $__rate_interval: {target['expr']!r}"


def required_matcher(dashboard: Json, label: str) -> Problems:
    """newTargetRequiredMatcherRule and checkForMatcher of lint/rule_target_job_instance.go."""
    source = datasource_variable(dashboard)
    if source is None or source.get("query") != "prometheus":
        return
    for panel, target, node in targets(dashboard):
        if node is None:
            continue
        for selector in selectors(node):
            found = [m for m in matchers(selector) if m.name == label]
            good = any(m.op == promql.MatchOp.Re and m.value == f"${label}"
                       for m in found)
            if not good:
                yield panel["title"], (f"{selector.name}: {label} selector should be "
                                       f'{label}=~"${label}" in {target["expr"]!r}')


@dashboard_rule("target-job-rule")
def target_job(dashboard: Json) -> Problems:
    """dashboard-linter target-job-rule (lint/rule_target_job_instance.go): every series
    selector of every query has `job=~"$job"`."""
    yield from required_matcher(dashboard, "job")


@dashboard_rule("target-instance-rule")
def target_instance(dashboard: Json) -> Problems:
    """dashboard-linter target-instance-rule (lint/rule_target_job_instance.go): every series
    selector of every query has `instance=~"$instance"`."""
    yield from required_matcher(dashboard, "instance")


@dashboard_rule("target-counter-agg-rule")
def target_counter_agg(dashboard: Json) -> Problems:
    """dashboard-linter target-counter-agg-rule (lint/rule_target_counter_agg.go): a counter is
    only read through rate(), irate() or increase() of a range. The exceptions are the
    first-sight term `c unless present_over_time(c[w] offset w)` and the window's span
    `max_over_time(c[w]) - min_over_time(c[w])` (see raw_counter_term), which the failure
    panels share with ZegoDigitalHumanRoomInitFailuresRepeated. Upstream matches `_total` on the
    selector's text (so only bare selectors); here on the metric name, and histogram series."""
    for panel, _, node in targets(dashboard):
        if node is None:
            continue
        for found, path in walk(node):
            if not isinstance(found, promql.VectorSelector) or not is_counter(found.name):
                continue
            if raw_counter_term(path, found):
                continue
            ranged = len(path) >= 2 and isinstance(path[-1][0], promql.MatrixSelector)
            if not (ranged and is_call(path[-2][0], "rate", "irate", "increase")):
                yield panel["title"], (f"counter {found.name} is not aggregated with rate, "
                                       "irate or increase")


@dashboard_rule("uneditable-dashboard")
def uneditable(dashboard: Json) -> Problems:
    """dashboard-linter uneditable-dashboard (lint/rule_uneditable.go): `editable: false`; the
    file is the source of truth, and UI edits would be lost on the next provisioning."""
    if dashboard.get("editable", True):
        yield "dashboard", "is editable, it should be set to 'editable: false'"


# --- pint, for both ------------------------------------------------------------------------

_REGEXP_SYNTAX = re.compile(r"[.^$*+?()\[\]{}|\\]")
# Regexps made of nothing but `.*` and `.+`: pint's "unnecessary wildcard regexp".
_WILDCARD = re.compile(r"(?:\.[*+])+")


def regexp_problem(matcher: promql.Matcher) -> str | None:
    """What pint's promql/regexp says about one matcher, or None."""
    if matcher.op not in (promql.MatchOp.Re, promql.MatchOp.NotRe):
        return None
    value = matcher.value
    if _GRAFANA_VARIABLE.search(value):
        return None  # Grafana puts a regexp there ("a|b", .+)
    positive = matcher.op == promql.MatchOp.Re
    if value.startswith("^") or (value.endswith("$") and not value.endswith("\\$")):
        return (f"redundant regexp anchors in {matcher}: Prometheus anchors regexp matchers "
                "itself")
    if _WILDCARD.fullmatch(value) and (not positive or ".+" not in value):
        # `=~".*"` matches every value (and series without the label), `!~".*"` none, and
        # `!~".+"` is `=""`; only `=~".+"` (the label is set) narrows anything.
        if positive:
            return f"unnecessary wildcard regexp {matcher}: drop the matcher"
        return (f'unnecessary negative wildcard regexp {matcher}, use {matcher.name}="" to '
                "select series without the label")
    unescaped = re.sub(r"\\(.)", "", value)
    if not _REGEXP_SYNTAX.search(unescaped):
        literal = re.sub(r"\\(.)", r"\1", value)
        return (f"unnecessary regexp match on static string {matcher}, use "
                f'{matcher.name}{"=" if positive else "!="}"{literal}"')
    return None


@dashboard_rule("promql/regexp")
def dashboard_regexp(dashboard: Json) -> Problems:
    """pint promql/regexp (internal/checks/promql_regexp.go), on the dashboard's queries: a
    regexp matcher on a fixed string should be an equality (regexps cost more), a wildcard
    (`=~".*"`, `!~".+"`) selects nothing it would not without it, and anchors are redundant
    (Prometheus anchors regexps). Values with Grafana variables are regexps
    by design and left alone."""
    for panel, _, node in targets(dashboard):
        for selector in selectors(node) if node is not None else []:
            for matcher in matchers(selector):
                problem = regexp_problem(matcher)
                if problem:
                    yield panel["title"], problem


# --- pint and the monitoring-mixins guidelines, for the alerts -----------------------------


@alert_rule("promql/syntax")
def alert_syntax(files: AlertFiles) -> Problems:
    """pint promql/syntax (internal/checks/promql_syntax.go): the expression parses."""
    for rule in files.rules:
        try:
            parse(rule["expr"])
        except ValueError as error:
            yield rule["alert"], f"syntax error: {error}"


@alert_rule("promql/regexp")
def alert_regexp(files: AlertFiles) -> Problems:
    """pint promql/regexp (internal/checks/promql_regexp.go): no regexp matcher on a fixed
    string, no wildcard that selects nothing less (`=~".*"`, `!~".+"`), no redundant
    anchors."""
    for rule, node in alert_expressions(files):
        for selector in selectors(node):
            for matcher in matchers(selector):
                problem = regexp_problem(matcher)
                if problem:
                    yield rule["alert"], problem


# Functions pint's promql/counter accepts around a counter (isSafeFunc).
COUNTER_SAFE_FUNCTIONS = frozenset({
    "absent", "absent_over_time", "present_over_time", "changes", "resets", "count_over_time",
    "increase", "irate", "rate", "timestamp",
})


@alert_rule("promql/counter")
def alert_counter(files: AlertFiles) -> Problems:
    """pint promql/counter (internal/checks/promql_counter.go): no direct read of a counter's
    value. Safe: inside one of pint's counter-safe functions, under count() or group(), or on
    the right of `unless`. The exceptions are the first-sight term
    `c unless present_over_time(c[w] offset w)` and the window's span
    `max_over_time(c[w]) - min_over_time(c[w])` of ZegoDigitalHumanRoomInitFailuresRepeated
    (see raw_counter_term), explained in its comment.
    Counter types come from the contract instead of Prometheus' metadata API."""
    for rule, node in alert_expressions(files):
        for found, path in walk(node):
            if not isinstance(found, promql.VectorSelector) or not is_counter(found.name):
                continue
            if raw_counter_term(path, found):
                continue
            safe = any(
                is_call(ancestor, *COUNTER_SAFE_FUNCTIONS)
                or (isinstance(ancestor, promql.AggregateExpr) and op(ancestor) in {"count",
                                                                                   "group"})
                or (isinstance(ancestor, promql.BinaryExpr) and op(ancestor) == "unless"
                    and index == 1)
                for ancestor, index in path
            )
            if not safe:
                yield rule["alert"], f"direct read of the counter {found.name}"


@alert_rule("promql/rate")
def alert_rate(files: AlertFiles) -> Problems:
    """pint promql/rate (internal/checks/promql_rate.go): rate(), irate() and increase() get
    a counter and a range of at least two scrape intervals (fewer samples give no or a noisy
    answer). pint reads the interval and the metric types from a Prometheus server; here from
    prometheus/prometheus.yml and the contract."""
    minimum = 2 * files.scrape_interval
    for rule, node in alert_expressions(files):
        for found, _ in walk(node):
            if not is_call(found, "rate", "irate", "increase"):
                continue
            (argument,) = [arg for arg in found.args if isinstance(arg, promql.Expr)]
            if not isinstance(argument, promql.MatrixSelector):
                continue
            name = argument.vector_selector.name
            if not is_counter(name):
                yield rule["alert"], f"{found.func.name}() of {name}, which is not a counter"
            if argument.range < minimum:
                yield rule["alert"], (f"{found.func.name}() over {argument.range}, less than two "
                                      f"scrape intervals ({minimum})")


def guarded(divisor: Node) -> bool:
    """Whether a divisor can never be 0: a non-zero number, `x > c` with c >= 0, or
    clamp_min(x, c) with c > 0 (the fixes pint's promql/nan recommends)."""
    divisor = unparen(divisor)
    if isinstance(divisor, promql.NumberLiteral):
        return divisor.val != 0
    if isinstance(divisor, promql.BinaryExpr) and op(divisor) in {">", "<"}:
        bound = unparen(divisor.rhs)
        bool_result = divisor.modifier is not None and divisor.modifier.return_bool
        if isinstance(bound, promql.NumberLiteral) and not bool_result:
            return bound.val >= 0 if op(divisor) == ">" else bound.val <= 0
    if is_call(divisor, "clamp_min"):
        bound = unparen(divisor.args[1])
        return isinstance(bound, promql.NumberLiteral) and bound.val > 0
    return False


@alert_rule("promql/nan")
def alert_nan(files: AlertFiles) -> Problems:
    """pint promql/nan (internal/checks/promql_nan.go): a division that can divide by zero
    gives NaN (0/0) or Inf. pint only reports divisions inside sum/avg/stddev/stdvar; here
    every division and modulo of an alert must have a guarded divisor, so that with no traffic
    a ratio alert has no series instead of NaN."""
    for rule, node in alert_expressions(files):
        for found, _ in walk(node):
            if (isinstance(found, promql.BinaryExpr) and op(found) in {"/", "%"}
                    and not guarded(found.rhs)):
                yield rule["alert"], (f"divides by {unparen(found.rhs).prettify().strip()!r}, "
                                      "which can be 0: divide by `(... > 0)`")


def has_aggregation(node: Node) -> bool:
    return any(isinstance(found, promql.AggregateExpr) for found, _ in walk(node))


def duration(rule: Json, field: str = "for") -> timedelta:
    value = rule.get(field)
    return prometheus_duration(str(value)) if value is not None else timedelta(0)


@alert_rule("promql/fragile")
def alert_fragile(files: AlertFiles) -> Problems:
    """pint promql/fragile (internal/checks/promql_fragile.go): no sampling aggregations
    (topk, bottomk, limitk: the set of alerts changes between evaluations), and arithmetic
    between two aggregations waits at least one scrape interval (`for:`), since right after a
    Prometheus restart one side may hold only some of its targets."""
    for rule, node in alert_expressions(files):
        for found, _ in walk(node):
            if isinstance(found, promql.AggregateExpr) and op(found) in SAMPLING_AGGREGATIONS:
                yield rule["alert"], f"{op(found)}() makes the alerts flap"
            if (isinstance(found, promql.BinaryExpr)
                    and op(found) not in COMPARISONS | SET_OPERATORS
                    and has_aggregation(found.lhs) and has_aggregation(found.rhs)
                    and duration(rule) < files.scrape_interval):
                yield rule["alert"], ("arithmetic between aggregations needs a `for:` of at least "
                                      f"one scrape interval ({files.scrape_interval})")


# pint's promql/aggregate is configured per project; this one's convention (alerts.yml) is that
# job and instance survive every aggregation, so Alertmanager can group and inhibit by them.
KEEP_LABELS = ("job", "instance")


@alert_rule("promql/aggregate")
def alert_aggregate(files: AlertFiles) -> Problems:
    """pint promql/aggregate (internal/checks/promql_aggregation.go) configured with
    `keep = ["job", "instance"]`: every aggregation keeps the target labels."""
    for rule, node in alert_expressions(files):
        for found, _ in walk(node):
            if not isinstance(found, promql.AggregateExpr) or op(found) in SAMPLING_AGGREGATIONS:
                continue
            modifier = found.modifier
            listed = set(modifier.labels) if modifier else set()
            by = modifier is None or modifier.type == promql.AggModifierType.By
            lost = [label for label in KEEP_LABELS if (label not in listed) == by]
            if lost:
                yield rule["alert"], f"{op(found)}() drops {', '.join(lost)}"


def has_condition(node: Node) -> bool:
    """Whether the expression only returns series that meet a condition (see alerts/comparison)."""
    node = unparen(node)
    if isinstance(node, promql.BinaryExpr):
        name = op(node)
        if name in COMPARISONS:
            return not (node.modifier is not None and node.modifier.return_bool)
        if name == "or":
            return has_condition(node.lhs) and has_condition(node.rhs)
        if name == "unless":
            return True  # pint does not judge these
        return has_condition(node.lhs) or has_condition(node.rhs)
    if is_call(node, "absent", "absent_over_time"):
        return True
    if isinstance(node, (promql.AggregateExpr, promql.Call, promql.UnaryExpr)):
        return any(has_condition(child) for child in children(node))
    return False


@alert_rule("alerts/comparison")
def alert_comparison(files: AlertFiles) -> Problems:
    """pint alerts/comparison (internal/checks/alerts_comparison.go): every branch of an alert
    has a condition (a comparison without `bool`, or absent()), or it fires whenever its series
    exist."""
    for rule, node in alert_expressions(files):
        if not has_condition(node):
            yield rule["alert"], "has no condition: it fires whenever its series exist"


@alert_rule("alerts/for")
def alert_for(files: AlertFiles) -> Problems:
    """pint alerts/for (internal/checks/alerts_for.go): `for:` and `keep_firing_for:` are
    valid durations and not 0 (the default, a redundant line)."""
    for rule in files.rules:
        for field in ("for", "keep_firing_for"):
            if field not in rule:
                continue
            try:
                value = duration(rule, field)
            except ValueError as error:
                yield rule["alert"], f"invalid {field}: {error}"
                continue
            if value == timedelta(0):
                yield rule["alert"], f"{field}: {rule[field]} is the default, remove it"


NO_FOR_REASON = "No `for:`"


@alert_rule("zego/for-or-reason")
def alert_for_or_reason(files: AlertFiles) -> Problems:
    """This project's rule, next to pint's alerts/for: an alert without `for:` fires on one
    evaluation, so the comment above it says why that is right, starting with "No `for:`"."""
    for rule in files.rules:
        if "for" not in rule and NO_FOR_REASON not in files.comments.get(rule["alert"], ""):
            yield rule["alert"], f"has no `for:` and no comment saying why ({NO_FOR_REASON}: ...)"


_LABEL_REFERENCE = re.compile(r"(?:\$labels|\.Labels)\.(\w+)")
_VALUE_REFERENCE = re.compile(r"\$value\b|\.Value\b")
_TEMPLATE_ACTION = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)


@alert_rule("alerts/template")
def alert_template(files: AlertFiles) -> Problems:
    """pint alerts/template (internal/checks/alerts_template.go): labels never carry the
    query value (each new value would be a new alert, restarting `for:`); templates only read
    labels the expression can return (an aggregation may have dropped them); the value of a
    rate(), irate() or deriv() is shown through a humanize function."""
    for rule, node in alert_expressions(files):
        for label, value in rule.get("labels", {}).items():
            if _VALUE_REFERENCE.search(str(value)):
                yield rule["alert"], f"label {label} uses the query value"
        returned = output_labels(node)
        rated = any(is_call(found, "rate", "irate", "deriv") for found, _ in walk(node))
        texts = {**rule.get("labels", {}), **rule.get("annotations", {})}
        for key, text in texts.items():
            for label in _LABEL_REFERENCE.findall(str(text)):
                if returned is not None and label not in returned:
                    yield rule["alert"], (f"{key} uses $labels.{label}, which the query never "
                                          f"returns (it returns {sorted(returned)})")
            for action in _TEMPLATE_ACTION.findall(str(text)):
                if rated and _VALUE_REFERENCE.search(action) and "humanize" not in action:
                    yield rule["alert"], f"{key} shows a rate's value without humanize"


REQUIRED_ANNOTATIONS = ("summary", "description", "runbook_url", "dashboard_url")


def dashboard_url_prefix(dashboard: Json) -> str:
    """Where a dashboard_url starts: the Grafana base, `/d/<uid>/<slug>`, `?viewPanel=`."""
    slug = re.sub(r"[^a-z0-9]+", "-", str(dashboard["title"]).lower()).strip("-")
    return f"{GRAFANA_BASE}/d/{dashboard['uid']}/{slug}?viewPanel="


def linked_panel(dashboard: Json, url: str) -> int | None:
    """The panel id a dashboard_url opens, or None when it is not a link to this dashboard."""
    link = re.fullmatch(re.escape(dashboard_url_prefix(dashboard)) + r"(\d+)", url)
    return int(link.group(1)) if link else None


@alert_rule("alerts/annotation")
def alert_annotation(files: AlertFiles) -> Problems:
    """pint alerts/annotation (internal/checks/alerts_annotation.go), configured as the
    monitoring-mixins guidelines ask: summary and description are required, and so are
    runbook_url (an https link) and dashboard_url (this dashboard's `/d/<uid>/<slug>` with
    `?viewPanel=<id>`, at the documented Grafana base)."""
    prefix = dashboard_url_prefix(files.dashboard)
    for rule in files.rules:
        annotations = rule.get("annotations", {})
        for name in REQUIRED_ANNOTATIONS:
            if not str(annotations.get(name, "")).strip():
                yield rule["alert"], f"has no {name} annotation"
        runbook = str(annotations.get("runbook_url", ""))
        if runbook and not runbook.startswith("https://"):
            yield rule["alert"], f"runbook_url is not an https link: {runbook!r}"
        url = str(annotations.get("dashboard_url", ""))
        if url and linked_panel(files.dashboard, url) is None:
            yield rule["alert"], f"dashboard_url {url!r} is not {prefix}<panel id>"


@alert_rule("zego/dashboard-url-panel")
def alert_dashboard_panel(files: AlertFiles) -> Problems:
    """This project's rule behind dashboard_url: the linked panel exists on the committed
    dashboard, is not a row, and queries at least one metric its alert's expression selects,
    so the link shows what the alert saw."""
    panels = {panel["id"]: panel for panel in iter_panels(files.dashboard["panels"])}
    for rule, node in alert_expressions(files):
        url = str(rule.get("annotations", {}).get("dashboard_url", ""))
        panel_id = linked_panel(files.dashboard, url)
        if panel_id is None:
            continue  # alerts/annotation reports it
        panel = panels.get(panel_id)
        if panel is None or panel["type"] == "row":
            yield rule["alert"], f"dashboard_url names panel {panel_id}, which is no panel"
            continue
        shown: set[str] = set()
        for target in panel.get("targets", []):
            shown |= metric_names(parse(expand_variables(target["expr"])))
        if not shown & metric_names(node):
            yield rule["alert"], (f"panel {panel['title']!r} queries none of "
                                  f"{sorted(metric_names(node))}")


def template_labels(text: str) -> set[str]:
    return set(_LABEL_REFERENCE.findall(text))


@alert_rule("mixin/alert-summary-templating")
def alert_summary_templating(files: AlertFiles) -> Problems:
    """The monitoring-mixins alert guidelines (README, "Guidelines for alert names, labels,
    and annotations"; mixtool lint checks them): the summary is a common headline for the
    alerts one notification groups, so it may template only labels those alerts share (the
    example Alertmanager route's group_by) and never the value."""
    for rule in files.rules:
        summary = str(rule.get("annotations", {}).get("summary", ""))
        differing = template_labels(summary) - set(files.group_by)
        if differing:
            yield rule["alert"], (f"summary templates {sorted(differing)}, which differ within "
                                  f"one notification (grouped by {list(files.group_by)})")
        if _VALUE_REFERENCE.search(summary):
            yield rule["alert"], "summary templates the value"


@alert_rule("mixin/alert-summary-style")
def alert_summary_style(files: AlertFiles) -> Problems:
    """The monitoring-mixins alert guidelines: the summary is a human-readable sentence,
    starting with a capital letter and ending with a period."""
    for rule in files.rules:
        summary = str(rule.get("annotations", {}).get("summary", "")).strip()
        if summary and not (summary[0].isupper() and summary.endswith(".")):
            yield rule["alert"], f"summary is not a sentence: {summary!r}"
