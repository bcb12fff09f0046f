"""The README and the manual in docs/ stay true to the code and to each other.

The README is a short front page that names the two real commands (the demo and the test
command `.ci/run` runs); every flag (with its environment variable and its default) and
every metric is documented on its page; every relative link and anchor resolves; every
alert's `runbook_url` lands on its own heading in docs/alerts.md. Each check is a function
returning the problems it found, and each test also feeds its checker a deliberately broken
copy, so a check that cannot fail shows up.
"""

from __future__ import annotations

import re
import subprocess
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from tests.support.components import require_binary
from tests.support.contract_metrics import CONTRACT_METRICS
from zego_exporter.cli import cli

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
ALERTS = ROOT / "prometheus" / "alerts.yml"
ALERTS_PAGE = DOCS / "alerts.md"

FRONT_PAGE_MAX_LINES = 300
# The one-command first run on a fresh machine, exactly as the README prints it.
DEMO_COMMAND = "python3 -m venv .venv && .venv/bin/pip install -q . && .venv/bin/zego-exporter demo"
RUNBOOK_BASE = "https://github.com/zego-exporter/zego-exporter/blob/main/docs/alerts.md#"

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`[^`\n]*`")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
INLINE_LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]\n]+\]:\s*<?(\S+?)>?(?:\s.*)?$", re.MULTILINE)


def pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def prose(text: str) -> str:
    """Markdown without fenced code blocks, where `#` lines and brackets are not markup."""
    return FENCE.sub("", text)


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: its rendered text lowercased, every character other
    than a letter, digit, space, hyphen or underscore dropped, and spaces turned to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link renders as its text
    text = "".join(c for c in text.lower() if c.isalnum() or c in " -_")
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading anchor of a page; repeated headings get -1, -2... as on GitHub."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for heading in HEADING.findall(prose(text)):
        anchor = github_anchor(heading)
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        found.add(anchor if count == 0 else f"{anchor}-{count}")
    return found


def link_problems(page: Path, text: str) -> list[str]:
    """Relative links of `page` (whose content is `text`) that point at no file, at a file
    outside the repository, or at a heading the target page does not have."""
    body = CODE_SPAN.sub("", prose(text))
    targets = INLINE_LINK.findall(body) + REFERENCE_LINK.findall(body)
    problems = []
    for target in targets:
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
            continue  # https:, mailto: and the like: not ours to check offline
        path_part, _, anchor = target.partition("#")
        where = f"{page.relative_to(ROOT)}: link {target!r}"
        resolved = (page.parent / path_part).resolve() if path_part else page
        if not resolved.is_relative_to(ROOT):
            problems.append(f"{where} leaves the repository")
            continue
        if not resolved.exists():
            problems.append(f"{where} points at a missing file")
            continue
        if anchor:
            if resolved.suffix != ".md":
                problems.append(f"{where} has an anchor into a file that is not Markdown")
                continue
            target_text = text if resolved == page else resolved.read_text(encoding="utf-8")
            if anchor not in anchors(target_text):
                problems.append(f"{where} names no heading of {resolved.relative_to(ROOT)}")
    return problems


def test_github_anchors_follow_githubs_rules() -> None:
    assert github_anchor("ZegoDigitalHumanApiDown") == "zegodigitalhumanapidown"
    assert github_anchor("Delivery is not guaranteed: polling still reconciles") == (
        "delivery-is-not-guaranteed-polling-still-reconciles"
    )
    assert github_anchor("Running it on its own: `zego-exporter simulate`") == (
        "running-it-on-its-own-zego-exporter-simulate"
    )
    assert anchors("# A\n```sh\n# not a heading\n```\n## A\n") == {"a", "a-1"}


# -- links --------------------------------------------------------------------------------------


def test_every_relative_link_resolves() -> None:
    problems = [p for page in pages() for p in link_problems(page, page.read_text("utf-8"))]
    assert not problems, "\n".join(problems)


def test_the_link_checker_catches_broken_links() -> None:
    page = DOCS / "configuration.md"
    broken = (
        "[gone](no-such-page.md) [wrong heading](metrics.md#no-such-heading) "
        "[no heading here](#nowhere) [outside](../../etc/passwd) "
        "[fine](metrics.md#example-promql)\n"
        "[ref]: alerts.md#zegodigitalhumanapidownn\n"
        "```\n[in code, not a link](nowhere.md)\n```\n"
    )
    problems = link_problems(page, broken)
    assert len(problems) == 5, problems
    for expected in ("no-such-page.md", "no-such-heading", "#nowhere", "etc/passwd",
                     "zegodigitalhumanapidownn"):
        assert any(expected in problem for problem in problems), (expected, problems)


def test_the_front_page_links_every_docs_page() -> None:
    readme = README.read_text("utf-8")
    missing = [p.name for p in sorted(DOCS.glob("*.md")) if f"(docs/{p.name})" not in readme]
    assert not missing, f"README.md links no docs page {missing}"
    index = (DOCS / "README.md").read_text("utf-8")
    unindexed = [p.name for p in sorted(DOCS.glob("*.md"))
                 if p.name != "README.md" and f"({p.name})" not in index]
    assert not unindexed, f"docs/README.md does not list {unindexed}"


# -- the front page -----------------------------------------------------------------------------


def ci_test_command() -> str:
    """The command `.ci/run` hands over to: CI runs exactly what the README promises."""
    ci = (ROOT / ".ci" / "run").read_text("utf-8")
    found: list[str] = re.findall(r"^exec (.+)$", ci, re.MULTILINE)  # one group: its text
    assert len(found) == 1, f".ci/run should end in one `exec <the test command>`: {found}"
    return found[0].strip()


def front_page_problems(text: str, test_cmd: str) -> list[str]:
    problems = []
    lines = text.count("\n") + (not text.endswith("\n"))
    if lines > FRONT_PAGE_MAX_LINES:
        problems.append(f"README.md has {lines} lines; the front page keeps to "
                        f"{FRONT_PAGE_MAX_LINES}: move the rest into a docs/ page")
    blocks = re.findall(r"^```sh\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    for command, what in ((DEMO_COMMAND, "demo"), (test_cmd, "test")):
        if not any(command in block.splitlines() for block in blocks):
            problems.append(f"README.md lacks the {what} command `{command}` on a line of its own "
                            "in a ```sh block")
    return problems


def test_front_page_is_short_and_shows_the_two_real_commands() -> None:
    assert ci_test_command() == "bash scripts/test.sh"
    assert "scripts/test.sh" in ci_test_command() and (ROOT / "scripts" / "test.sh").exists()
    # The demo command's parts are real: the console script and its demo subcommand.
    scripts = {script.name: script.value for script in entry_points(group="console_scripts")}
    assert scripts.get("zego-exporter") == "zego_exporter.cli:main" and "demo" in cli.commands
    text = README.read_text("utf-8")
    assert front_page_problems(text, ci_test_command()) == []
    assert "## Quick start" in text and "grafana/preview.png" in text and "Apache-2.0" in text


def test_the_front_page_checker_catches_a_long_or_wrong_readme() -> None:
    text = README.read_text("utf-8")
    too_long = text + "filler\n" * FRONT_PAGE_MAX_LINES
    assert len(front_page_problems(too_long, ci_test_command())) == 1
    assert len(front_page_problems(text.replace(DEMO_COMMAND, "zego-exporter demo"),
                                   ci_test_command())) == 1
    assert len(front_page_problems(text, "bash scripts/other.sh")) == 1


# -- the runbook --------------------------------------------------------------------------------


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text("utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def runbook_problems(rules: list[dict[str, Any]], page: str) -> list[str]:
    """Alerts whose runbook_url is not docs/alerts.md#<anchor of a heading that is exactly the
    alert's name>."""
    headings = {heading.strip() for heading in HEADING.findall(prose(page))}
    page_anchors = anchors(page)
    problems = []
    for rule in rules:
        name = rule["alert"]
        url = rule.get("annotations", {}).get("runbook_url", "")
        if name not in headings:
            problems.append(f"docs/alerts.md has no heading `### {name}`")
        if not url.startswith(RUNBOOK_BASE):
            problems.append(f"{name}: runbook_url {url!r} does not start with {RUNBOOK_BASE}")
        elif url.removeprefix(RUNBOOK_BASE) != github_anchor(name):
            problems.append(f"{name}: runbook_url anchor should be #{github_anchor(name)}")
        elif url.removeprefix(RUNBOOK_BASE) not in page_anchors:
            problems.append(f"{name}: runbook_url anchor names no heading of docs/alerts.md")
    return problems


def test_every_alert_has_its_runbook_heading_and_links_to_it() -> None:
    rules = alert_rules()
    assert len(rules) >= 11
    assert runbook_problems(rules, ALERTS_PAGE.read_text("utf-8")) == []


def test_the_runbook_checker_catches_a_missing_heading_or_a_wrong_url() -> None:
    rules = alert_rules()
    page = ALERTS_PAGE.read_text("utf-8")
    name = rules[0]["alert"]
    renamed = page.replace(f"### {name}\n", f"### {name} (renamed)\n")
    assert renamed != page
    assert len(runbook_problems(rules, renamed)) == 2  # no heading, so the anchor lands nowhere
    old_url = [{**rules[0], "annotations": {"runbook_url": RUNBOOK_BASE.replace(
        "docs/alerts.md", "README.md") + name.lower()}}]
    assert len(runbook_problems(old_url, page)) == 1
    typo = [{**rules[0], "annotations": {"runbook_url": RUNBOOK_BASE + name.lower() + "x"}}]
    assert len(runbook_problems(typo, page)) == 1


# -- the reference pages ------------------------------------------------------------------------


def configuration_problems(page: str) -> list[str]:
    """`serve` flags missing from the configuration table, or missing their environment twin."""
    problems = []
    for param in cli.commands["serve"].params:
        if not isinstance(param, click.Option) or param.name == "help":
            continue
        flag = max(param.opts, key=len)
        env = param.envvar if isinstance(param.envvar, str) else "ZEGO_TASK_IDS"
        row_start = re.compile(rf"\| `{re.escape(flag)}[` ]")
        rows = [line for line in page.splitlines() if row_start.match(line)]
        if not rows:
            problems.append(f"{flag} is not in the docs/configuration.md table")
        elif f"`{env}`" not in rows[0]:
            problems.append(f"{flag}: its environment twin {env} is not in its row")
    return problems


def test_configuration_table_lists_every_serve_flag_with_its_environment_twin() -> None:
    page = (DOCS / "configuration.md").read_text("utf-8")
    assert configuration_problems(page) == []
    no_qps = "\n".join(line for line in page.splitlines() if "`--zego.qps`" not in line)
    assert configuration_problems(no_qps) == [
        "--zego.qps is not in the docs/configuration.md table"
    ]
    assert len(configuration_problems(page.replace("`ZEGO_TIMEOUT`", "`ZEGO_TIMEOUTS`"))) == 1


def configuration_default_problems(page: str) -> list[str]:
    """Rows of the docs/configuration.md table whose default is not the one `serve` has: a
    value in backticks where click has one, `on`/`off` for a switch, and no value otherwise."""
    problems = []
    for param in cli.commands["serve"].params:
        if not isinstance(param, click.Option) or param.name == "help":
            continue
        flag = max(param.opts, key=len)
        row_start = re.compile(rf"\| `{re.escape(flag)}[` ]")
        rows = [line for line in page.splitlines() if row_start.match(line)]
        if not rows:
            continue  # configuration_problems reports it
        documented = rows[0].strip().strip("|").split("|")[2].strip()
        default = param.default
        if isinstance(default, bool):
            expected: str | None = "on" if default else "off"
        elif isinstance(default, (str, int, float)):
            expected = f"`{default}`"
        else:  # no default (click's UNSET, None)
            expected = None
        if expected is None:
            if documented.startswith("`"):
                problems.append(f"{flag}: documented default {documented}, but it has none")
        elif documented != expected:
            problems.append(f"{flag}: documented default {documented}, `serve` has {expected}")
    return problems


def test_configuration_table_shows_the_defaults_serve_has() -> None:
    page = (DOCS / "configuration.md").read_text("utf-8")
    assert configuration_default_problems(page) == []
    stale = page.replace("| `ZEGO_DISCOVERY_INTERVAL` | `3s` |",
                         "| `ZEGO_DISCOVERY_INTERVAL` | `15s` |")
    assert configuration_default_problems(stale) == [
        "--discovery.interval: documented default `15s`, `serve` has `3s`"
    ]
    invented = page.replace("| `ZEGO_TASK_FILE` | none |", "| `ZEGO_TASK_FILE` | `tasks.txt` |")
    switched = page.replace("| `ZEGO_DISCOVERY` | on |", "| `ZEGO_DISCOVERY` | off |")
    for broken in (invented, switched):
        assert broken != page
        assert len(configuration_default_problems(broken)) == 1


def metrics_problems(page: str) -> list[str]:
    return [f"{metric.name} is not in the docs/metrics.md table" for metric in CONTRACT_METRICS
            if f"| `{metric.name}` |" not in page]


def test_metrics_table_lists_every_contract_metric() -> None:
    page = (DOCS / "metrics.md").read_text("utf-8")
    assert metrics_problems(page) == []
    assert len(metrics_problems(page.replace("| `zego_digital_human_up` |", "| up |"))) == 1


# -- example PromQL -----------------------------------------------------------------------------

# Two exporters, sampled every 30 s for two hours. Exporter a watches t1 (streaming for 21 h),
# t2 (streaming for 1 h) and t3 (init_failed, 25 h old, last fetched long ago); exporter b
# watches t4. Room r1's failure counter goes 0 -> 1 within the last hour, r3's series appears
# at 1 within it (a task first seen already failed), r2 never fails.
_A = 'job="zego-exporter",instance="a:9877"'
_B = 'job="zego-exporter",instance="b:9877"'
_T1 = f'{_A},task_id="t1",room_id="r1",stream_id="s1"'
_T2 = f'{_A},task_id="t2",room_id="r2",stream_id="s2"'
_T3 = f'{_A},task_id="t3",room_id="r3",stream_id="s3"'
_T4 = f'{_B},task_id="t4",room_id="r4",stream_id="s4"'
_GET = 'action="GetDigitalHumanStreamTaskStatus"'
EXAMPLE_SERIES = {
    **{f'zego_digital_human_task_state{{{task},state="{state}"}}': f"{value}x240"
       for task, streaming in ((_T1, 1), (_T2, 1), (_T3, 0), (_T4, 1))
       for state, value in (("streaming", streaming), ("init_failed", 1 - streaming))},
    f"zego_digital_human_task_age_seconds{{{_T1}}}": "75600x240",
    f"zego_digital_human_task_age_seconds{{{_T2}}}": "3600x240",
    f"zego_digital_human_task_age_seconds{{{_T3}}}": "90000x240",
    f"zego_digital_human_task_age_seconds{{{_T4}}}": "3600x240",
    f'zego_digital_human_task_info{{{_T1},fail_reason=""}}': "1x240",
    f'zego_digital_human_task_info{{{_T3},fail_reason="quota"}}': "1x240",
    f"zego_digital_human_task_last_success_timestamp_seconds{{{_T1}}}": "7190x240",
    f"zego_digital_human_task_last_success_timestamp_seconds{{{_T2}}}": "7100x240",
    f"zego_digital_human_task_last_success_timestamp_seconds{{{_T3}}}": "0x240",
    f"zego_digital_human_task_last_success_timestamp_seconds{{{_T4}}}": "7000x240",
    f'zego_digital_human_task_failures_total{{{_A},room_id="r1",stream_id="s1"}}': "0x200 1x39",
    f'zego_digital_human_task_failures_total{{{_A},room_id="r2",stream_id="s2"}}': "0x240",
    f'zego_digital_human_task_failures_total{{{_A},room_id="r3",stream_id="s3"}}': "_x180 1x59",
    f'zego_digital_human_api_requests_total{{{_A},{_GET},code="0"}}': "0+30x240",
    f'zego_digital_human_api_requests_total{{{_B},{_GET},code="0"}}': "0+15x240",
    f"zego_digital_human_rate_limit_qps{{{_A},{_GET}}}": "10x240",
    f"zego_digital_human_rate_limit_qps{{{_B},{_GET}}}": "10x240",
}
# What each example of docs/metrics.md answers on those series at 2h, by its comment's first
# sentence.
EXAMPLE_ANSWERS: dict[str, dict[str, float]] = {
    "How many tasks are streaming, initializing, failed right now": {
        '{state="streaming"}': 3, '{state="init_failed"}': 1},
    "Tasks that failed to start, with ZEGO's reason": {
        f'zego_digital_human_task_info{{{_T3},fail_reason="quota"}}': 1},
    "Init failures by room in the last hour": {
        '{room_id="r1"}': 1, '{room_id="r2"}': 0, '{room_id="r3"}': 1},
    "Tasks streaming for more than 20 hours (ZEGO ends them at the 24 h TTL by default)": {
        f"zego_digital_human_task_age_seconds{{{_T1}}}": 75600},
    "API calls per second by outcome": {f'{{{_GET},code="0"}}': 1.5},
    "API calls per second against the budget, per exporter and Action (1 is the limit)": {
        f"{{{_A},{_GET}}}": 0.1, f"{{{_B},{_GET}}}": 0.05},
    "How stale the data is: the oldest status among tasks still polled": {"{}": 200},
}


def promql_examples(page: str) -> dict[str, str]:
    """The queries of the page's Example PromQL block, by the first sentence of their comment."""
    block = page.split("## Example PromQL", 1)[1].split("```promql\n", 1)[1].split("```", 1)[0]
    examples = {}
    for group in block.strip().split("\n\n"):
        lines = group.splitlines()
        comments = [line for line in lines if line.startswith("#")]
        first_line = comments[0].lstrip("# ") if comments else "(no comment)"
        title = first_line.split(". ", 1)[0].strip().rstrip(".")
        examples[title] = "\n".join(line for line in lines if not line.startswith("#"))
    return examples


def promql_example_problems(page: str, tmp_path: Path) -> list[str]:
    """Examples with no recorded answer, answers with no example, and what promtool finds
    when it runs each example on EXAMPLE_SERIES."""
    examples = promql_examples(page)
    problems = [f"example {title!r} has no answer in EXAMPLE_ANSWERS"
                for title in examples if title not in EXAMPLE_ANSWERS]
    problems += [f"EXAMPLE_ANSWERS has {title!r}, docs/metrics.md has no such example"
                 for title in EXAMPLE_ANSWERS if title not in examples]
    tests = {"rule_files": [], "evaluation_interval": "30s", "tests": [{
        "interval": "30s",
        "input_series": [{"series": series, "values": values}
                         for series, values in EXAMPLE_SERIES.items()],
        "promql_expr_test": [
            {"expr": expr, "eval_time": "2h",
             "exp_samples": [{"labels": labels, "value": value}
                             for labels, value in EXAMPLE_ANSWERS[title].items()]}
            for title, expr in examples.items() if title in EXAMPLE_ANSWERS],
    }]}
    path = tmp_path / "promql_examples_test.yml"
    path.write_text(yaml.safe_dump(tests), encoding="utf-8")
    result = subprocess.run([require_binary("promtool"), "test", "rules", str(path)],
                            capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        problems.append(result.stdout + result.stderr)
    return problems


@pytest.mark.e2e
def test_every_promql_example_answers_what_its_comment_says(tmp_path: Path) -> None:
    page = (DOCS / "metrics.md").read_text("utf-8")
    assert promql_example_problems(page, tmp_path) == []


@pytest.mark.e2e
def test_the_promql_example_check_catches_a_query_that_answers_wrong(tmp_path: Path) -> None:
    page = (DOCS / "metrics.md").read_text("utf-8")
    # The form the page had: `and` binds more loosely than `>`, so this compares the state.
    misparsed = page.replace(
        "zego_digital_human_task_age_seconds > 20 * 3600\n"
        "  and on (job, instance, task_id) (zego_digital_human_task_state"
        '{state="streaming"} == 1)',
        "zego_digital_human_task_age_seconds\n"
        "  and on (job, instance, task_id) (zego_digital_human_task_state"
        '{state="streaming"} == 1)\n  > 20 * 3600')
    one_exporter_join = page.replace("  / on (job, instance, action) zego_digital",
                                     "  / on (action) zego_digital")
    unanswered = page.replace("# API calls per second by outcome", "# API calls by outcome")
    for broken in (misparsed, one_exporter_join, unanswered):
        assert broken != page
        assert promql_example_problems(broken, tmp_path) != []
