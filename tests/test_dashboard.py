"""Structure of the Grafana dashboard: generated, importable anywhere, and true to the contract.

No Grafana runs here, so these tests check what an import needs (valid JSON, unique ids, a
non-overlapping grid, the `${datasource}` variable everywhere, no `__inputs`) and what the
queries need (contract metric names, the variable filters, PromQL that promtool parses).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest
import yaml

from grafana import build_dashboard as generator
from tests.support.components import require_binary
from tests.support.contract_metrics import CONTRACT_METRICS

GRAFANA = Path(__file__).resolve().parents[1] / "grafana"
DASHBOARD_FILE = GRAFANA / "zego-digital-human.json"

# The contract's metric table (/work/shared/contract.md).
CONTRACT = tuple((metric.name, metric.type) for metric in CONTRACT_METRICS)

# Per-task metrics carry room_id, so their selectors must honour the room variable.
PER_TASK = {
    "zego_digital_human_task_status",
    "zego_digital_human_task_state",
    "zego_digital_human_task_age_seconds",
    "zego_digital_human_task_created_timestamp_seconds",
    "zego_digital_human_task_info",
    "zego_digital_human_task_last_success_timestamp_seconds",
    "zego_digital_human_task_failures_total",
}
SUBSTITUTIONS = {
    "job": "zego",
    "instance": ".+",
    "room_id": ".*",
    "__rate_interval": "1m",
    "__range": "1h",
}
GRAFANA_BUILTINS = {"__rate_interval", "__range", "__interval"}




@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))
    return loaded


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return list(generator.iter_panels(dashboard["panels"]))


def _content_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [panel for panel in _panels(dashboard) if panel["type"] != "row"]


def _walk(node: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) pair in a JSON document, at any depth."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def _expressions(dashboard: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in _panels(dashboard) for t in p.get("targets", [])]
    exprs += [v["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return exprs


def _unbalanced(expr: str) -> str | None:
    """Why the brackets of `expr` do not balance (quoted strings skipped), or None."""
    closing = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []
    quote: str | None = None
    escaped = False
    for char in expr:
        if quote:
            if escaped:
                escaped = False
            elif char == "\\" and quote != "`":
                escaped = True
            elif char == quote:
                quote = None
        elif char in "\"'`":
            quote = char
        elif char in "([{":
            stack.append(char)
        elif char in closing:
            opener = stack.pop() if stack else None
            if opener != closing[char]:
                return f"unexpected {char!r}"
    if quote:
        return f"unterminated {quote} string"
    if stack:
        return f"unclosed {stack[-1]!r}"
    return None


# --- the file is the generator's output --------------------------------------------------


def test_committed_json_is_the_generator_output() -> None:
    assert DASHBOARD_FILE.read_text(encoding="utf-8") == generator.render(), (
        "grafana/zego-digital-human.json is out of date: run python grafana/build_dashboard.py"
    )


def test_generator_output_is_stable_and_formatted() -> None:
    text = generator.render()
    assert text == generator.render()
    assert text.endswith("}\n")
    assert text.splitlines()[1].startswith('  "')  # 2-space indent
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def test_check_mode_passes_when_up_to_date() -> None:
    assert generator.main(["--check"]) == 0


def test_check_mode_fails_with_one_line_when_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = tmp_path / DASHBOARD_FILE.name
    stale.write_text(DASHBOARD_FILE.read_text(encoding="utf-8").replace("Streaming", "Streamin"))
    monkeypatch.setattr(generator, "OUTPUT", stale)
    assert generator.main(["--check"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "out of date" in err
    assert generator.main([]) == 0
    assert generator.main(["--check"]) == 0


# --- importable: ids, grid, datasource ---------------------------------------------------


def test_dashboard_identity(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "zego-digital-human"
    assert dashboard["id"] is None
    assert dashboard["schemaVersion"] == 39
    assert dashboard["title"] and dashboard["tags"]
    assert dashboard["time"]["from"].startswith("now-") and dashboard["refresh"]


def test_panel_ids_are_unique(dashboard: dict[str, Any]) -> None:
    ids = [panel["id"] for panel in _panels(dashboard)]
    assert len(ids) == len(set(ids))
    assert all(isinstance(panel_id, int) and panel_id > 0 for panel_id in ids)


def test_layout_refuses_a_panel_id_used_twice() -> None:
    # Ids are written out in the generator (alerts link to them), so a copied panel spec could
    # bring a second panel with the same id.
    twice = [generator.stat("A", "d", generator.Query("up"), panel_id=2),
             generator.stat("B", "d", generator.Query("up"), panel_id=2)]
    with pytest.raises(ValueError, match=r"panel ids used twice: \[2\]"):
        generator.layout([("Row", 1, twice)])
    with pytest.raises(ValueError, match=r"panel ids used twice: \[1\]"):
        generator.layout([("Row", 1, twice[:1]), ("Another row", 1, ())])


def test_panels_fit_the_grid_without_overlapping(dashboard: dict[str, Any]) -> None:
    boxes = []
    for panel in _panels(dashboard):
        pos = panel["gridPos"]
        assert pos["w"] > 0 and pos["h"] > 0, panel["title"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24 and pos["y"] >= 0, panel["title"]
        boxes.append((panel["title"], pos["x"], pos["y"], pos["x"] + pos["w"], pos["y"] + pos["h"]))
    for (a, ax0, ay0, ax1, ay1), (b, bx0, by0, bx1, by1) in combinations(boxes, 2):
        assert ax1 <= bx0 or bx1 <= ax0 or ay1 <= by0 or by1 <= ay0, f"{a!r} overlaps {b!r}"


def test_every_datasource_reference_is_the_variable(dashboard: dict[str, Any]) -> None:
    expected = {"type": "prometheus", "uid": "${datasource}"}
    for panel in _content_panels(dashboard):
        assert panel["datasource"] == expected, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == expected, panel["title"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            assert variable["datasource"] == expected, variable["name"]
    references = [value for key, value in _walk(dashboard) if key == "datasource"]
    assert references and all(reference == expected for reference in references)


def test_datasource_variable_is_prometheus(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"


def test_no_import_placeholders(dashboard: dict[str, Any]) -> None:
    assert "__inputs" not in dashboard
    assert all(key != "__inputs" for key, _ in _walk(dashboard))
    assert "${DS_" not in DASHBOARD_FILE.read_text(encoding="utf-8")


def test_filter_variables(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    # build_info, not up: up waits for the first API call, and an exporter that has made none
    # yet (callbacks only, say) must still be selectable
    assert "zego_digital_human_exporter_build_info" in variables["job"]["query"]
    assert "zego_digital_human_exporter_build_info" in variables["instance"]["query"]
    room = variables["room_id"]
    assert "zego_digital_human_task_state" in room["query"]
    assert room["multi"] and room["includeAll"]
    # tasks whose room is not known yet have room_id="": "All" must still match them
    assert re.fullmatch(room["allValue"], "")


# --- readable: titles, descriptions, colours ---------------------------------------------


def test_every_panel_has_title_and_description(dashboard: dict[str, Any]) -> None:
    for panel in _panels(dashboard):
        assert panel["title"].strip()
    for panel in _content_panels(dashboard):
        assert len(panel["description"].strip()) > 20, panel["title"]


def test_state_timeline_colours_every_state(dashboard: dict[str, Any]) -> None:
    wanted = {
        "streaming": "green", "initializing": "blue", "init_failed": "red",
        "stopping": "orange", "stopped": "#8e8e8e", "not_found": "purple", "unknown": "yellow",
    }
    timeline = next(p for p in _panels(dashboard) if p["title"] == "Task states over time")
    (mapping,) = timeline["fieldConfig"]["defaults"]["mappings"]
    assert {o["text"]: o["color"] for o in mapping["options"].values()} == wanted


def test_task_table_joins_state_age_and_fail_reason(dashboard: dict[str, Any]) -> None:
    table = next(p for p in _panels(dashboard) if p["type"] == "table")
    assert all(t["instant"] and t["format"] == "table" for t in table["targets"])
    exprs = " ".join(t["expr"] for t in table["targets"])
    for metric in ("task_state", "task_age_seconds", "task_info"):
        assert f"zego_digital_human_{metric}" in exprs
    assert [t["id"] for t in table["transformations"]] == ["merge", "organize"]
    renamed = table["transformations"][1]["options"]["renameByName"]
    assert {"Room", "Stream", "State", "Age", "Fail reason"} <= set(renamed.values())


# --- queries: contract names, filters, PromQL --------------------------------------------


def test_every_metric_name_is_in_the_contract(dashboard: dict[str, Any]) -> None:
    names = {name for name, _ in CONTRACT}
    histograms = {name for name, kind in CONTRACT if kind == "histogram"}
    allowed = names | {h + suffix for h in histograms for suffix in ("_bucket", "_sum", "_count")}
    used = {m for e in _expressions(dashboard) for m in re.findall(r"zego_digital_human_\w+", e)}
    assert used, "no zego metric in any query"
    assert used <= allowed, f"not in the contract: {sorted(used - allowed)}"


def test_every_selector_uses_the_filter_variables(dashboard: dict[str, Any]) -> None:
    for panel in _content_panels(dashboard):
        for target in panel["targets"]:
            selectors = re.findall(r"(\b[a-z_:]+)\{([^}]*)\}", target["expr"])
            assert selectors, panel["title"]
            for metric, matchers in selectors:
                assert 'job=~"$job"' in matchers, (panel["title"], metric)
                assert 'instance=~"$instance"' in matchers, (panel["title"], metric)
                if metric in PER_TASK:
                    assert 'room_id=~"$room_id"' in matchers, (panel["title"], metric)


def test_ranges_use_grafana_intervals(dashboard: dict[str, Any]) -> None:
    for panel in _content_panels(dashboard):
        for target in panel["targets"]:
            for window in re.findall(r"\[([^\]]+)\]", target["expr"]):
                assert window in {"$__rate_interval", "$__range"}, (panel["title"], window)


def test_every_variable_used_is_defined(dashboard: dict[str, Any]) -> None:
    defined = {v["name"] for v in dashboard["templating"]["list"]} | GRAFANA_BUILTINS
    for expr in _expressions(dashboard):
        used = set(re.findall(r"\$\{?(\w+)", expr))
        assert used <= defined, (expr, used - defined)


def test_expressions_have_balanced_brackets(dashboard: dict[str, Any]) -> None:
    for expr in _expressions(dashboard):
        assert _unbalanced(expr) is None, (expr, _unbalanced(expr))


def test_bracket_checker_catches_mistakes() -> None:
    assert _unbalanced('sum(rate(x{a="("}[1m]))') is None
    assert _unbalanced("sum(rate(x[1m])") == "unclosed '('"
    assert _unbalanced("sum(x{a='b'))") == "unexpected ')'"
    assert _unbalanced('x{a="b}') == 'unterminated " string'


def test_panel_queries_substitutes_every_variable(dashboard: dict[str, Any]) -> None:
    queries = generator.panel_queries(SUBSTITUTIONS)
    expected = sum(len(p.get("targets", [])) for p in _panels(dashboard))
    assert len(queries) == expected
    titles = {p["title"] for p in _content_panels(dashboard)}
    assert {title for title, _ in queries} == titles
    for title, expr in queries:
        assert "$" not in expr, (title, expr)
    assert any("[1m]" in expr for _, expr in queries)
    assert any('job=~"zego"' in expr for _, expr in queries)


def test_panel_queries_refuses_a_missing_variable() -> None:
    with pytest.raises(KeyError, match="room_id"):
        generator.panel_queries({k: v for k, v in SUBSTITUTIONS.items() if k != "room_id"})


def test_promtool_parses_every_query(tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    queries = generator.panel_queries(SUBSTITUTIONS)
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{index}", "expr": expr}
        for index, (_, expr) in enumerate(queries)
    ]}]}
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(json.dumps(rules), encoding="utf-8")  # JSON is YAML
    result = subprocess.run([promtool, "check", "rules", str(path)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# --- provisioning examples ---------------------------------------------------------------


def test_provisioning_examples() -> None:
    dashboards = yaml.safe_load((GRAFANA / "provisioning/dashboards/zego.yml").read_text())
    (provider,) = dashboards["providers"]
    assert provider["type"] == "file" and provider["options"]["path"].startswith("/")
    datasources = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["url"].startswith("http")


def test_provisioned_data_source_knows_the_example_scrape_interval() -> None:
    # Grafana derives $__rate_interval from timeInterval: one shorter than the real scrape
    # interval makes the rate panels' windows too short to hold two samples.
    datasources = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    prometheus = yaml.safe_load((GRAFANA.parent / "prometheus/prometheus.yml").read_text())
    (job,) = [job for job in prometheus["scrape_configs"] if job["job_name"] == "zego-exporter"]
    assert source["jsonData"]["timeInterval"] == job["scrape_interval"]
