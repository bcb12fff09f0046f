"""Generate the Kubernetes objects that carry copies of other files in the repository.

`python deploy/kubernetes/generate.py` rewrites `prometheusrule.yaml` (a PrometheusRule whose
`spec` is prometheus/alerts.yml, comments included) and `dashboard-configmap.yaml` (a
ConfigMap holding grafana/zego-digital-human.json, labelled for Grafana's dashboard sidecar);
`--check` writes nothing and exits 1, naming each stale file. The sources are copied verbatim
by indenting their text, never re-serialised or edited, so the copies mean exactly what the
originals mean; the tests prove it by parsing both. Standard library only, so CI and anyone
with a bare python3 can run it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
ALERTS = ROOT / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "grafana" / "zego-digital-human.json"

PROMETHEUS_RULE = "prometheusrule.yaml"
DASHBOARD_CONFIGMAP = "dashboard-configmap.yaml"
NAME = "zego-exporter"


def _header(source: Path) -> str:
    return (
        f"# Generated from {source.relative_to(ROOT)} by deploy/kubernetes/generate.py: do not\n"
        "# edit. Change the source, then run `python deploy/kubernetes/generate.py`.\n"
    )


def _indent(text: str, spaces: int) -> str:
    """Every non-empty line indented alike: YAML (block scalars included) keeps its meaning."""
    prefix = " " * spaces
    return "".join(prefix + line if line.strip() else line
                   for line in text.splitlines(keepends=True))


def prometheus_rule(alerts_text: str) -> str:
    """alerts.yml's `groups:` under a PrometheusRule's `spec:`, the file's own header left out."""
    lines = alerts_text.splitlines(keepends=True)
    top_level = [line.rstrip("\n") for line in lines if line[:1] not in ("", " ", "#", "\n")]
    if top_level != ["groups:"]:
        raise ValueError(f"{ALERTS.name}: expected `groups:` as the only top-level key, found "
                         f"{top_level}; a PrometheusRule's spec holds nothing else")
    groups = "".join(lines[lines.index("groups:\n"):])
    return (
        _header(ALERTS)
        + "apiVersion: monitoring.coreos.com/v1\n"
        + "kind: PrometheusRule\n"
        + "metadata:\n"
        + f"  name: {NAME}\n"
        + "  labels:\n"
        + f"    app.kubernetes.io/name: {NAME}\n"
        + "spec:\n"
        + _indent(groups, 2)
    )


def dashboard_configmap(dashboard_text: str) -> str:
    """The dashboard JSON as a block scalar: the sidecar writes it out byte for byte."""
    if not dashboard_text.endswith("\n") or dashboard_text.startswith((" ", "\n")):
        raise ValueError(f"{DASHBOARD.name}: expected JSON starting with `{{` and ending with "
                         "a newline; run python grafana/build_dashboard.py")
    return (
        _header(DASHBOARD)
        + "apiVersion: v1\n"
        + "kind: ConfigMap\n"
        + "metadata:\n"
        + f"  name: {NAME}-dashboard\n"
        + "  labels:\n"
        + f"    app.kubernetes.io/name: {NAME}\n"
        + '    grafana_dashboard: "1"  # picked up by Grafana\'s dashboard sidecar\n'
        + "data:\n"
        + f"  {DASHBOARD.name}: |\n"
        + _indent(dashboard_text, 4)
    )


def render() -> dict[str, str]:
    """File name (in this directory) -> the text it must have."""
    return {
        PROMETHEUS_RULE: prometheus_rule(ALERTS.read_text(encoding="utf-8")),
        DASHBOARD_CONFIGMAP: dashboard_configmap(DASHBOARD.read_text(encoding="utf-8")),
    }


def main(argv: Sequence[str] | None = None, directory: Path = HERE) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if a generated file is out of date")
    args = parser.parse_args(argv)
    try:
        wanted = render()
    except ValueError as exc:
        print(f"generate.py: {exc}", file=sys.stderr)
        return 2
    stale = False
    for name, text in wanted.items():
        path = directory / name
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        if args.check:
            print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} is out of "
                  "date: run `python deploy/kubernetes/generate.py`", file=sys.stderr)
            stale = True
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
