"""End to end: simulated ZEGO API -> `zego-exporter serve` -> real Prometheus -> real Alertmanager.

Everything runs on 127.0.0.1 (see tests/support/e2e_stack.py): Debian's prometheus scrapes the
exporter every second and evaluates the shipped alerts.yml (only its `for:` durations
shortened), Debian's prometheus-alertmanager routes with the shipped alertmanager.yml (only
group timings and webhook addresses changed) to a webhook receiver run by the test. Checked:
the target is up, every contract metric reaches Prometheus, a task failed in the simulator
arrives at the webhook as ZegoDigitalHumanTaskInitFailed with its room, stream and reason, a
configured task ZEGO does not know arrives as ZegoDigitalHumanConfiguredTaskNotFound, and every
query of the Grafana dashboard is valid PromQL that returns data. A second stack serves the
metrics over TLS with basic auth, scraped by a Prometheus configured the documented way.

When a test fails, the logs of the stack it used are added to its report.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Generator, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import requests

from grafana.build_dashboard import panel_queries
from tests.support.certs import certificate, new_key, write_certificate, write_key
from tests.support.components import require_binary
from tests.support.contract_metrics import queryable_names
from tests.support.credentials import APP_ID, SECRET_TEXT
from tests.support.e2e_stack import (
    FAST_EXPORTER_ARGS,
    JOB,
    SHIPPED_ALERTS,
    ExporterProcess,
    PrometheusApi,
    QueryResult,
    Stack,
    StackError,
    WebhookReceiver,
    e2e_alertmanager_config,
    load_yaml,
    prometheus_config,
    scrape_job,
    shortened_rules,
    wait_until,
    write_yaml,
)
from tests.support.processes import free_port
from zego_exporter.signing import Secret
from zego_exporter.simulator import Simulator, World
from zego_exporter.states import STATUS_STREAMING

pytestmark = pytest.mark.e2e

E2E_FOR_SECONDS = 2
E2E_FOR = f"{E2E_FOR_SECONDS}s"
"""Every `for:` of the shipped rules becomes this: long enough to go through pending."""
ALERT_TIMEOUT = 30.0
"""Bound on simulator change -> exporter -> Prometheus -> Alertmanager -> webhook."""
DATA_TIMEOUT = 30.0

FAIL_TASK = "e2e-task-to-fail"
FAIL_ROOM = "room-e2e"
FAIL_STREAM = "stream-e2e"
FAIL_REASON = "e2e: digital human model load timeout"
MISSING_TASK = "e2e-task-that-never-existed"
CALLBACK_SECRET = "e2e-callback-secret"
CALLBACK_PATH = "/zego/callback"

TARGET_LABELS = frozenset({"__name__", "job", "instance"})


# -- the logs of a failed test's stack in its report --------------------------------------------


class StackLogsOnFailure:
    """A plugin that adds the process logs of the stacks a failed test used to its report."""

    def __init__(self) -> None:
        self.stacks: dict[str, Stack] = {}
        """Fixture name -> the stack it started."""

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        if report.failed:
            for name, stack in self.stacks.items():
                if name in getattr(item, "fixturenames", ()):
                    report.sections.append((f"logs of the `{name}` stack", stack.logs()))
        return report


@pytest.fixture(scope="module")
def stack_logs(request: pytest.FixtureRequest) -> Iterator[StackLogsOnFailure]:
    plugin = StackLogsOnFailure()
    request.config.pluginmanager.register(plugin, "e2e-stack-logs")
    yield plugin
    request.config.pluginmanager.unregister(plugin)


@pytest.fixture(scope="module")
def binaries() -> dict[str, str]:
    return {name: require_binary(name) for name in (
        "prometheus", "promtool", "prometheus-alertmanager", "amtool",
    )}


# -- the main stack: simulator, exporter, Prometheus with the rules, Alertmanager, webhook ------


@dataclass
class Main:
    simulator: Simulator
    exporter: ExporterProcess
    prometheus: PrometheusApi
    webhook: WebhookReceiver
    rules_file: Path
    started: float
    """time.monotonic() once every component was ready."""


@pytest.fixture(scope="module")
def main(
    tmp_path_factory: pytest.TempPathFactory, binaries: dict[str, str],
    stack_logs: StackLogsOnFailure,
) -> Iterator[Main]:
    with Stack(tmp_path_factory.mktemp("e2e-main")) as stack:
        stack_logs.stacks["main"] = stack
        # A lively world (every state within seconds) for discovery, one pinned task per
        # state (showcase), and the task the tests fail by hand.
        simulator = stack.simulator(Simulator.from_options(
            app_id=APP_ID, server_secret=_secret(), seed=7, tasks=6, arrival_rate=0.2,
            lifecycle="demo", showcase=True,
        ))
        simulator.world.add_task(task_id=FAIL_TASK, status=STATUS_STREAMING, room_id=FAIL_ROOM,
                                 stream_id=FAIL_STREAM)
        showcase = [task_id for ids in simulator.showcase.values() for task_id in ids]
        exporter = stack.exporter(
            simulator.url, app_id=APP_ID, server_secret=SECRET_TEXT,
            task_ids=[FAIL_TASK, MISSING_TASK, *showcase], callback_secret=CALLBACK_SECRET,
        )
        # ZEGO's callbacks too, as a production setup with a callback secret gets them.
        simulator.enable_callbacks(exporter.url + CALLBACK_PATH, Secret(CALLBACK_SECRET),
                                   retry_scale=0.01)
        webhook = stack.webhook()
        alertmanager = stack.alertmanager(
            binaries["prometheus-alertmanager"], e2e_alertmanager_config(webhook.url),
            amtool=binaries["amtool"],
        )
        rules_file = write_yaml(stack.workdir / "alerts.e2e.yml", shortened_rules(E2E_FOR))
        prometheus = stack.prometheus(
            binaries["prometheus"],
            prometheus_config([scrape_job(exporter.address)], rule_files=[rules_file],
                              alertmanager=alertmanager),
            promtool=binaries["promtool"],
        )
        yield Main(simulator, exporter, prometheus, webhook, rules_file, time.monotonic())


def _secret() -> Secret:
    return Secret(SECRET_TEXT)


# -- the shipped rules, shortened -------------------------------------------------------------


def test_the_e2e_rules_are_the_shipped_rules_with_short_for(main: Main) -> None:
    shipped = load_yaml(SHIPPED_ALERTS)
    loaded = load_yaml(main.rules_file)
    shipped_rules = [rule for group in shipped["groups"] for rule in group["rules"]]
    e2e_rules = [rule for group in loaded["groups"] for rule in group["rules"]]
    assert [rule["alert"] for rule in e2e_rules] == [rule["alert"] for rule in shipped_rules]
    for ours, theirs in zip(e2e_rules, shipped_rules, strict=True):
        assert ours["expr"] == theirs["expr"], f"{ours['alert']}: the expression changed"
        assert {k: v for k, v in ours.items() if k != "for"} == {
            k: v for k, v in theirs.items() if k != "for"
        }
        assert ours.get("for") == (E2E_FOR if "for" in theirs else None)

    # ... and they are what the running Prometheus evaluates.
    (group,) = main.prometheus.rule_groups()
    durations = {rule["name"]: rule["duration"] for rule in group["rules"]}
    assert durations == {
        rule["alert"]: (E2E_FOR_SECONDS if "for" in rule else 0) for rule in shipped_rules
    }


# -- issue 5: scraped, every metric, alerts delivered -------------------------------------------


def test_the_exporter_target_is_up(main: Main) -> None:
    def scraped() -> list[dict[str, Any]] | None:
        targets = [t for t in main.prometheus.targets() if t["scrapePool"] == JOB]
        return targets if targets and all(t["health"] == "up" for t in targets) else None

    (target,) = wait_until(scraped, timeout=DATA_TIMEOUT, what="the exporter target up")
    assert target["scrapeUrl"] == main.exporter.url + "/metrics"
    assert target["labels"] == {"job": JOB, "instance": main.exporter.address}
    assert target["lastError"] == ""
    up = main.prometheus.query(f'up{{job="{JOB}", instance="{main.exporter.address}"}}')
    assert up.ok and up.values() == [1.0], up


def _expected_labels(name: str) -> set[str]:
    metric = queryable_names()[name]
    extra = {"le"} if name.endswith("_bucket") else set()
    return set(metric.labels) | extra | TARGET_LABELS


WEB_CONFIG_GAUGE = "zego_digital_human_web_config_last_reload_successful"


@pytest.mark.parametrize("name", sorted(set(queryable_names()) - {WEB_CONFIG_GAUGE}))
def test_every_contract_metric_reaches_prometheus(main: Main, name: str) -> None:
    selector = f'{name}{{job="{JOB}", instance="{main.exporter.address}"}}'

    def series() -> QueryResult | None:
        result = main.prometheus.query(selector)
        return result if result.has_data else None

    remaining = DATA_TIMEOUT - (time.monotonic() - main.started)
    result = wait_until(series, timeout=max(remaining, 3.0), what=f"series of {name}")
    # Prometheus drops empty labels (room_id="" of a task not known yet), so compare the
    # union over all series: together they must show exactly the contract's labels.
    seen = set().union(*(sample["metric"] for sample in result.series))
    assert seen == _expected_labels(name), f"{name}: labels {sorted(seen)}"


def test_a_failed_task_reaches_the_webhook_as_init_failed(main: Main) -> None:
    # The exporter knows the task streaming first: a real transition, not a first sight.
    streaming = (f'zego_digital_human_task_state{{job="{JOB}", task_id="{FAIL_TASK}", '
                 'state="streaming"} == 1')
    wait_until(lambda: main.prometheus.query(streaming).has_data, timeout=DATA_TIMEOUT,
               what=f"{FAIL_TASK} streaming in Prometheus")

    failed_at = time.monotonic()
    answer = requests.post(f"{main.simulator.url}/admin/tasks/{FAIL_TASK}/fail",
                           json={"FailReason": FAIL_REASON}, timeout=5)
    assert answer.status_code == 200 and answer.json()["Status"] == 2, answer.text

    alert = main.webhook.wait_for("ZegoDigitalHumanTaskInitFailed", {"task_id": FAIL_TASK},
                                  timeout=ALERT_TIMEOUT)
    received = [a.labels.get("task_id") for a in main.webhook.alerts()]
    assert alert is not None, f"no alert for {FAIL_TASK} in {ALERT_TIMEOUT:g}s; got {received}"
    print(f"init failure -> webhook in {alert.received_at - failed_at:.1f}s")
    assert alert.path == "/alerts/warning"  # routed by severity, as alertmanager.yml says
    assert alert.labels == {
        "alertname": "ZegoDigitalHumanTaskInitFailed", "severity": "warning",
        "job": JOB, "instance": main.exporter.address, "state": "init_failed",
        "task_id": FAIL_TASK, "room_id": FAIL_ROOM, "stream_id": FAIL_STREAM,
        "fail_reason": FAIL_REASON,
    }
    description = alert.annotations["description"]
    assert f"room {FAIL_ROOM}" in description and f"stream {FAIL_STREAM}" in description
    assert FAIL_REASON in description
    assert alert.annotations["runbook_url"].endswith("#zegodigitalhumantaskinitfailed")

    # The failure was also counted once for its room and stream.
    failures = main.prometheus.query(
        f'zego_digital_human_task_failures_total{{job="{JOB}", room_id="{FAIL_ROOM}", '
        f'stream_id="{FAIL_STREAM}"}}')
    assert failures.values() == [1.0]


def test_a_configured_task_zego_does_not_know_reaches_the_webhook(main: Main) -> None:
    alert = main.webhook.wait_for("ZegoDigitalHumanConfiguredTaskNotFound",
                                  {"task_id": MISSING_TASK}, timeout=ALERT_TIMEOUT)
    received = sorted({a.name for a in main.webhook.alerts()})
    assert alert is not None, f"no alert for {MISSING_TASK}; alerts received: {received}"
    print(f"not found -> webhook {alert.received_at - main.started:.1f}s after the start; "
          f"alerts received so far: {received}")
    assert alert.path == "/alerts/info"
    assert alert.labels == {
        "alertname": "ZegoDigitalHumanConfiguredTaskNotFound", "severity": "info",
        "job": JOB, "instance": main.exporter.address, "state": "not_found",
        "task_id": MISSING_TASK,
    }
    # Never seen with a room: the description says to check the TaskId.
    assert "check the TaskId" in alert.annotations["description"]


def test_callbacks_from_the_simulated_api_are_accepted(main: Main) -> None:
    counted = (f'sum by (result) (zego_digital_human_callbacks_total{{job="{JOB}", '
               'event_type="3"})')

    def accepted() -> dict[str, float] | None:
        by_result = {s["metric"]["result"]: float(s["value"][1])
                     for s in main.prometheus.query(counted).series}
        return by_result if by_result.get("accepted", 0) > 0 else None

    by_result = wait_until(accepted, timeout=DATA_TIMEOUT, what="accepted callbacks")
    assert by_result.get("bad_signature") == 0, by_result
    assert by_result.get("invalid") == 0, by_result


# -- issue 6: every dashboard query against the real Prometheus ---------------------------------


PanelResults = list[tuple[str, str, QueryResult]]
"""(panel title, query, answer) for every query of the dashboard."""


def _run_panels(api: PrometheusApi, variables: dict[str, str]) -> PanelResults:
    return [(title, expr, api.query(expr)) for title, expr in panel_queries(variables)]


def _describe(result: QueryResult) -> str:
    if not result.ok:
        return f"HTTP {result.http_status} {result.status}: {result.error}"
    if result.result_type in ("vector", "matrix"):
        return f"{result.result_type}, {len(result.series)} series"
    return f"{result.result_type} {result.result}"


@pytest.mark.parametrize(("rate_interval", "query_range"), [("15s", "5m"), ("1m", "1h")])
def test_every_dashboard_query_returns_data(
    main: Main, rate_interval: str, query_range: str
) -> None:
    variables = {
        "job": JOB, "instance": main.exporter.address, "room_id": ".*",
        "__rate_interval": rate_interval, "__range": query_range,
    }

    def all_answered() -> PanelResults | None:
        results = _run_panels(main.prometheus, variables)
        invalid = [r for r in results if not r[2].ok]
        empty = [r for r in results if r[2].ok and not r[2].has_data]
        return results if invalid or not empty else None

    try:
        results = wait_until(all_answered, timeout=DATA_TIMEOUT, interval=1.0,
                             what="every dashboard query to return data")
    except StackError:
        results = _run_panels(main.prometheus, variables)
    lines = [f"{title}: {_describe(result)}" for title, _, result in results]
    print("\n".join(lines))
    problems = [
        f"{title}: {_describe(result)}\n    {expr}"
        for title, expr, result in results
        if not result.has_data
    ]
    assert not problems, "dashboard queries failing:\n" + "\n".join(problems)


# -- issue 7: TLS and basic auth, scraped by a real Prometheus --------------------------------

USER = "prometheus"
PASSWORD = "e2e-scrape-password"
NO_CREDENTIALS_JOB = "zego-exporter-no-credentials"


@dataclass(frozen=True)
class Pki:
    ca: Path
    cert: Path
    key: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA and a server certificate for 127.0.0.1 signed by it."""
    directory = tmp_path_factory.mktemp("e2e-pki")
    ca_key, server_key = new_key(), new_key()
    pki = Pki(directory / "ca.crt", directory / "server.crt", directory / "server.key")
    write_certificate(pki.ca, certificate("e2e-ca", ca_key, "e2e-ca", ca_key, ca=True))
    write_certificate(pki.cert, certificate("127.0.0.1", server_key, "e2e-ca", ca_key,
                                            server=True))
    write_key(pki.key, server_key)
    return pki


@dataclass
class Secure:
    exporter: ExporterProcess
    prometheus: PrometheusApi
    pki: Pki


@pytest.fixture(scope="module")
def secure(
    tmp_path_factory: pytest.TempPathFactory, binaries: dict[str, str], pki: Pki,
    stack_logs: StackLogsOnFailure,
) -> Iterator[Secure]:
    with Stack(tmp_path_factory.mktemp("e2e-secure")) as stack:
        stack_logs.stacks["secure"] = stack
        simulator = stack.simulator(Simulator(
            APP_ID, _secret(), world=World.static(3, seed=3)))
        password_hash = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
        web_config = write_yaml(stack.workdir / "web-config.yml", {
            "tls_server_config": {"cert_file": str(pki.cert), "key_file": str(pki.key)},
            "basic_auth_users": {USER: password_hash},
        })
        exporter = stack.exporter(
            simulator.url, app_id=APP_ID, server_secret=SECRET_TEXT, web_config=web_config,
            ca_file=pki.ca, auth=(USER, PASSWORD),
        )
        prometheus = stack.prometheus(binaries["prometheus"], prometheus_config([
            # As the commented example in prometheus/prometheus.yml says.
            scrape_job(exporter.address, scheme="https", ca_file=pki.ca, username=USER,
                       password=PASSWORD),
            scrape_job(exporter.address, job=NO_CREDENTIALS_JOB, scheme="https",
                       ca_file=pki.ca),
        ]), promtool=binaries["promtool"])
        yield Secure(exporter, prometheus, pki)


def _target(api: PrometheusApi, job: str) -> dict[str, Any] | None:
    """The job's one target once it has been scraped at least once."""
    targets = [t for t in api.targets() if t["scrapePool"] == job]
    return targets[0] if targets and targets[0]["health"] != "unknown" else None


def test_prometheus_scrapes_over_tls_with_basic_auth(secure: Secure) -> None:
    target = wait_until(lambda: _target(secure.prometheus, JOB), timeout=DATA_TIMEOUT,
                        what="the first TLS scrape")
    assert target["scrapeUrl"] == f"https://{secure.exporter.address}/metrics"
    assert (target["health"], target["lastError"]) == ("up", "")
    api_up = wait_until(
        lambda: secure.prometheus.query(f'zego_digital_human_up{{job="{JOB}"}}').series,
        timeout=DATA_TIMEOUT, what="zego_digital_human_up over TLS")
    assert [sample["value"][1] for sample in api_up] == ["1"]
    tracked = secure.prometheus.query(
        f'zego_digital_human_tracked_tasks{{job="{JOB}", source="discovered"}}')
    assert tracked.values() == [3.0]
    # Only with --web.config.file, as here.
    web_config = secure.prometheus.query(f'{WEB_CONFIG_GAUGE}{{job="{JOB}"}}')
    assert web_config.values() == [1.0]


def test_a_scrape_without_credentials_gets_401(secure: Secure) -> None:
    metrics = secure.exporter.url + "/metrics"
    ca = str(secure.pki.ca)
    anonymous = requests.get(metrics, verify=ca, timeout=5)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Basic ")
    assert requests.get(metrics, verify=ca, auth=(USER, "wrong"), timeout=5).status_code == 401
    allowed = requests.get(metrics, verify=ca, auth=(USER, PASSWORD), timeout=5)
    assert allowed.status_code == 200 and "zego_digital_human_up " in allowed.text

    # Prometheus' own scrape without basic_auth is refused the same way.
    target = wait_until(lambda: _target(secure.prometheus, NO_CREDENTIALS_JOB),
                        timeout=DATA_TIMEOUT, what="the scrape without credentials")
    assert target["health"] == "down"
    assert "401" in target["lastError"], target["lastError"]


# -- issue 16: failures counted across a kill -9, as Prometheus sees them ----------------------

RESTART_ROOM = "room-restart"


@pytest.fixture
def restart_stack(tmp_path_factory: pytest.TempPathFactory,
                  stack_logs: StackLogsOnFailure) -> Iterator[Stack]:
    with Stack(tmp_path_factory.mktemp("e2e-restart")) as stack:
        stack_logs.stacks["restart_stack"] = stack
        yield stack


def _saved_failures(storage: Path) -> int:
    """Failures the storage file holds, read as another process would."""
    with closing(sqlite3.connect(f"file:{storage}?mode=ro", uri=True)) as db:
        return int(db.execute("SELECT coalesce(sum(count), 0) FROM failures").fetchone()[0])


def test_increase_over_a_window_spanning_a_kill_9_counts_each_failure_once(
    restart_stack: Stack, binaries: dict[str, str], figures: list[str],
) -> None:
    stack = restart_stack
    simulator = stack.simulator(Simulator(APP_ID, _secret(), world=World(tasks=0,
                                                                         arrival_rate=0.0)))
    world = simulator.world
    tasks = [world.add_task(status=STATUS_STREAMING, room_id=RESTART_ROOM,
                            stream_id=f"stream-{n}", task_id=f"restart-{n}") for n in range(8)]
    storage = stack.workdir / "zego-exporter.db"
    args = (*FAST_EXPORTER_ARGS, f"--storage.path={storage}")
    port = free_port()
    first = stack.exporter(simulator.url, app_id=APP_ID, server_secret=SECRET_TEXT, args=args,
                           port=port, name="exporter-1")  # discovery finds the tasks
    prometheus = stack.prometheus(binaries["prometheus"],
                                  prometheus_config([scrape_job(first.address)]),
                                  promtool=binaries["promtool"])
    selector = f'zego_digital_human_task_failures_total{{job="{JOB}", room_id="{RESTART_ROOM}"}}'
    up = f'up{{job="{JOB}"}}'

    def counted() -> float | None:
        values = prometheus.query(selector).values()
        return sum(values) if len(values) == len(tasks) else None

    def reaches(total: int, what: str) -> None:
        wait_until(lambda: counted() == total, timeout=DATA_TIMEOUT, what=what,
                   logs=stack.logs)

    # Every stream known at 0, so that increase() sees each failure as 0 -> 1.
    reaches(0, "every stream of the room at 0")
    window_start = time.time()

    def fail(task_ids: list[str]) -> None:
        for task_id in task_ids:
            world.fail(task_id, "e2e: failed around a restart")

    fail(tasks[:2])
    reaches(2, "two failures before the kill")
    wait_until(lambda: _saved_failures(storage) == 2, timeout=DATA_TIMEOUT,
               what="the two failures in the storage file", logs=stack.logs)
    first.process.popen.kill()  # SIGKILL
    assert first.process.popen.wait(10) == -9
    killed_at = time.monotonic()

    fail(tasks[2:5])  # while it is down: nobody can see these but the restarted exporter
    wait_until(lambda: prometheus.query(up).values() == [0.0], timeout=DATA_TIMEOUT,
               what="Prometheus to see the exporter down", logs=stack.logs)
    stack.exporter(simulator.url, app_id=APP_ID, server_secret=SECRET_TEXT, args=args,
                   port=port, name="exporter-2")
    reaches(5, "the failures while it was down, counted by the restarted exporter")
    recovered = time.monotonic() - killed_at
    fail(tasks[5:6])
    reaches(6, "a failure after the restart")

    # Evaluated at the last scrape, so that increase() has nothing to extrapolate at the end
    # (nor at the start: each series starts at 0).
    (last,) = prometheus.query(f"timestamp({up})").values()
    window = f"{round(last - window_start) + 2}s"
    increase = prometheus.query(f"sum(increase({selector}[{window}]))", at=last)
    resets = prometheus.query(f"sum(resets({selector}[{window}]))", at=last)
    down = prometheus.query(f"count_over_time(({up} == 0)[{window}:1s])", at=last)
    assert increase.values() == [6.0], increase
    assert resets.values() == [0.0], resets  # the counters never went back
    assert down.values() and down.values()[0] >= 1, down  # the window spans the outage
    figures.append(
        f"restart: increase() over {window} spanning a kill -9 = {increase.values()[0]:g} "
        f"(6 tasks failed: 2 before, 3 while down, 1 after); failures counted "
        f"{recovered:.1f} s after the kill")
