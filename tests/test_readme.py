"""The README stays true to the code: every flag, env var and metric is documented, and the
two commands it promises are the ones CI and users run."""

from __future__ import annotations

import re
from pathlib import Path

import click
from contract_metrics import CONTRACT_METRICS

from zego_exporter.cli import cli

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def section(title: str) -> str:
    return re.split(r"^## ", README.split(f"\n## {title}\n", 1)[1], maxsplit=1,
                    flags=re.MULTILINE)[0]


def test_configuration_table_lists_every_serve_flag_with_its_environment_twin() -> None:
    table = section("Configuration")
    serve = cli.commands["serve"]
    for param in serve.params:
        if not isinstance(param, click.Option) or param.name == "help":
            continue
        flag = max(param.opts, key=len)
        assert f"`{flag}" in table, f"{flag} is not in the README configuration table"
        env = param.envvar if isinstance(param.envvar, str) else "ZEGO_TASK_IDS"
        row = next(line for line in table.splitlines() if f"`{flag}" in line)
        assert f"`{env}`" in row, f"{flag}: its environment twin {env} is not in its row"


def test_metrics_table_lists_every_contract_metric() -> None:
    table = section("Metrics")
    for metric in CONTRACT_METRICS:
        assert f"| `{metric.name}` |" in table, metric.name


def test_quick_start_and_test_commands_are_the_real_ones() -> None:
    assert "zego-exporter demo" in section("Quick start")
    assert "bash scripts/test.sh" in section("Quick start")
    assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text()
