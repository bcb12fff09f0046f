"""`zego-exporter serve` and `demo` as real processes, scraped over HTTP on loopback.

The simulated ZEGO API runs in the test process; the exporter is started the way a user starts
it (`python -m zego_exporter ...`, configured through the environment), and every process and
server is stopped by the test or fixture that started it. Its helpers are
in tests/support (processes.py, scrapes.py).
"""

from __future__ import annotations

import gzip
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)

from tests.support.components import require_binary
from tests.support.contract_metrics import CONTRACT_METRICS
from tests.support.credentials import SECRET_TEXT, basic_auth
from tests.support.processes import (
    ExporterRun,
    answers,
    clean_env,
    exporter_process,
    fetch,
    free_port,
    serve_env,
    showcase_simulator,
)
from tests.support.scrapes import metric_types, samples, task_states
from tests.support.waiting import wait_until
from zego_exporter.simulator import Faults, Latency, Simulator

STATES = ("initializing", "init_failed", "streaming", "stopping", "stopped", "not_found",
          "unknown")
WEB_CONFIG_GAUGE = "zego_digital_human_web_config_last_reload_successful"
OPENMETRICS_ACCEPT = "application/openmetrics-text; version=1.0.0; charset=utf-8"


# -- serve against the simulated API ---------------------------------------------------------

@dataclass
class Served:
    sim: Simulator
    exporter: ExporterRun
    scrape: str


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """serve, configured with every showcase task plus discovery, scraped once every showcase
    state shows. The "stopped" task streams for 5 s first: ZEGO's current docs describe task
    status for running tasks only, so it then answers "task not found", and it is stopped
    because the exporter saw it running (no callbacks here: discovery sees it leave)."""
    with showcase_simulator() as sim:
        args = ["serve"]
        for task_ids in sim.showcase.values():
            args += ["--task-id", task_ids[0]]
        with exporter_process(args, serve_env(sim), tmp_path_factory.mktemp("serve")) as exp:
            exp.wait_ready()
            stopped = sim.showcase["stopped"][0]
            wait_until(lambda: task_states(fetch(exp.url, "/metrics").text, stopped) == {"stopped"},
                       timeout=15, what="the showcase's stopped task to show stopped",
                       proc=exp.proc)
            scrape = fetch(exp.url, "/metrics")
            assert scrape.status == 200, exp.stderr()
            yield Served(sim, exp, scrape.text)


def test_scrape_passes_promtool_without_warnings(served: Served) -> None:
    promtool = require_binary("promtool")
    result = subprocess.run([promtool, "check", "metrics"], input=served.scrape,
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == ""


def test_every_contract_metric_is_there_with_its_type_and_labels(served: Served) -> None:
    types = metric_types(served.scrape)
    found = samples(served.scrape)
    for metric in CONTRACT_METRICS:
        if metric.name == WEB_CONFIG_GAUGE:
            assert metric.name not in types  # only with --web.config.file (not given here)
            continue
        expected = "gauge" if metric.type == "info" else metric.type
        assert types.get(metric.name) == expected, metric.name
        if metric.type == "counter":
            assert metric.name.endswith("_total")
        of_metric = [s for s in found if s.name == metric.name or (
            metric.type == "histogram" and s.name.startswith(metric.name + "_"))]
        if metric.name == "zego_digital_human_callbacks_total":
            continue  # series exist only with a callback secret (not given here)
        assert of_metric, f"{metric.name} has no series"
        for sample in of_metric:
            assert set(sample.labels) - {"le"} == set(metric.labels), sample


def test_every_showcase_task_shows_its_state_with_task_room_and_stream(served: Served) -> None:
    found = samples(served.scrape)
    for state, task_ids in served.sim.showcase.items():
        task_id = task_ids[0]
        assert task_states(served.scrape, task_id) == {state}, task_id
        own = [s for s in found if s.labels.get("task_id") == task_id
               and s.name != "zego_digital_human_task_lookup_success"]
        assert own
        for sample in own:
            if state == "not_found":  # never answered with a room or stream
                assert sample.labels["room_id"] == sample.labels["stream_id"] == ""
            else:
                assert sample.labels["room_id"] and sample.labels["stream_id"], sample
        status = [s for s in own if s.name == "zego_digital_human_task_status"]
        assert (status == []) == (state == "not_found")
        if state == "stopped":  # seen streaming, then "task not found": ended, not a typo
            assert [s.value for s in status] == [5]
            assert stopped_is_unknown_to_zego(served, task_id)
        info = [s for s in own if s.name == "zego_digital_human_task_info"]
        assert (info[0].labels["fail_reason"] != "") == (state == "init_failed")


def stopped_is_unknown_to_zego(served: Served, task_id: str) -> bool:
    """GetStatus answers "task not found" for it now (the simulator's default reading)."""
    return served.sim.ended_tasks == "not-found" and any(
        r.task_id == task_id and r.code == "400000005" for r in served.sim.stats.requests())


def test_discovered_tasks_and_api_health_are_exported(served: Served) -> None:
    found = samples(served.scrape)

    def value(name: str, **labels: str) -> float:
        matching = [s.value for s in found if s.name == name and labels.items() <= s.labels.items()]
        assert len(matching) == 1, (name, labels)
        return matching[0]

    running = [task.task_id for task in served.sim.world.running()]
    for task_id in running:
        assert task_states(served.scrape, task_id) & {"streaming", "initializing"}
    # The showcase's stopped task was listed while it streamed: it stays tracked, ended.
    assert value("zego_digital_human_tracked_tasks", source="discovered") == len(running) + 1
    assert value("zego_digital_human_tracked_tasks", source="static") == len(STATES)
    assert value("zego_digital_human_up") == 1
    assert value("zego_digital_human_rate_limit_qps",
                 action="GetDigitalHumanStreamTaskStatus") == 10
    assert value("zego_digital_human_api_requests_total",
                 action="QueryDigitalHumanStreamTasks", code="0") >= 1
    assert SECRET_TEXT not in served.scrape


def test_openmetrics_when_asked(served: Served) -> None:
    answer = fetch(served.exporter.url, "/metrics", headers={"Accept": OPENMETRICS_ACCEPT})
    assert answer.status == 200
    assert answer.headers["content-type"].startswith("application/openmetrics-text")
    assert answer.text.endswith("# EOF\n")
    types = {f.name: f.type for f in parse_openmetrics(answer.text)}  # type: ignore[no-untyped-call]
    assert types["zego_digital_human_task"] == "info"
    assert types["zego_digital_human_task_failures"] == "counter"
    assert types["zego_digital_human_api_request_duration_seconds"] == "histogram"


def test_gzip_when_asked_decompresses_to_the_same_families(served: Served) -> None:
    plain = fetch(served.exporter.url, "/metrics")
    zipped = fetch(served.exporter.url, "/metrics", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in plain.headers
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.headers["transfer-encoding"] == "chunked" and len(zipped.body) < len(plain.body)
    assert metric_types(gzip.decompress(zipped.body).decode()) == metric_types(plain.text)


def test_landing_health_unknown_paths_methods_and_head(served: Served) -> None:
    base = served.exporter.url
    landing = fetch(base, "/")
    assert landing.status == 200 and landing.headers["content-type"].startswith("text/html")
    assert 'href="/metrics"' in landing.text and SECRET_TEXT not in landing.text
    assert fetch(base, "/-/healthy").status == 200
    assert fetch(base, "/-/ready").status == 200
    assert fetch(base, "/nope").status == 404
    assert fetch(base, "/metrics/extra").status == 404
    assert fetch(base, "/zego/callback").status == 404  # no callback secret: no endpoint
    assert fetch(base, "/zego/callback", method="POST", body=b"{}").status == 404
    post = fetch(base, "/metrics", method="POST", body=b"x=1")
    assert post.status == 405 and "GET" in post.headers["allow"]
    head = fetch(base, "/metrics", method="HEAD")
    assert head.status == 200 and head.body == b""
    assert head.headers["content-type"].startswith("text/plain; version=0.0.4")
    head = fetch(base, "/", method="HEAD")
    assert head.status == 200 and head.body == b""


# -- a slow API: readiness, scrape deadline and SIGTERM --------------------------------------

def test_slow_api_readiness_scrape_deadline_and_sigterm(tmp_path: Path) -> None:
    with showcase_simulator(3, faults=Faults(latency=Latency(seconds=2.0))) as sim:
        running = [task.task_id for task in sim.world.running()]
        args = ["serve", "--task-id", running[0], "--task-id", running[1]]
        with exporter_process(args, serve_env(sim), tmp_path) as exp:
            wait_until(answers(exp.url, "/-/healthy", 200), timeout=10, what="/-/healthy",
                       proc=exp.proc)
            # Every answer takes 2 s: the first round cannot be done yet.
            assert fetch(exp.url, "/-/ready").status == 503

            started = time.monotonic()
            scrape = fetch(exp.url, "/metrics",
                           headers={"X-Prometheus-Scrape-Timeout-Seconds": "1"})
            assert time.monotonic() - started < 1.0
            assert scrape.status == 200
            assert "zego_digital_human_exporter_build_info" in scrape.text

            sim.faults = Faults()
            exp.wait_ready()
            code, took = exp.terminate()
            assert code == 0, exp.stderr()
            assert took < 4.0
            assert "Traceback" not in exp.stderr()
            assert SECRET_TEXT not in exp.stderr()


def test_a_web_config_file_that_breaks_fails_closed_until_it_is_fixed(tmp_path: Path) -> None:
    import bcrypt

    def users(**passwords: str) -> str:
        return "basic_auth_users:\n" + "".join(
            f"  {user}: '{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(4)).decode()}'\n"
            for user, pw in passwords.items())

    def login(user: str, password: str) -> dict[str, str]:
        return {"Authorization": basic_auth(user, password)}

    web_config = tmp_path / "web.yml"
    web_config.write_text(users(alice="wonderland"))
    alice = login("alice", "wonderland")
    with showcase_simulator(1) as sim:
        args = ["serve", "--no-discovery", "--web.config.file", str(web_config)]
        with exporter_process(args, serve_env(sim), tmp_path / "run") as exp:
            wait_until(answers(exp.url, "/-/healthy", 200), timeout=10, what="/-/healthy",
                       proc=exp.proc)
            scrape = fetch(exp.url, "/metrics", headers=alice)
            assert scrape.status == 200
            assert [s.value for s in samples(scrape.text) if s.name == WEB_CONFIG_GAUGE] == [1]

            # Alice is removed in an edit that also breaks the file: she must not get in.
            web_config.write_text(users(bob="builder") + "  carol: hunter2\n")
            wait_until(lambda: fetch(exp.url, "/metrics", headers=alice).status == 500, timeout=10,
                       what="the broken file to apply", proc=exp.proc)
            assert fetch(exp.url, "/", headers=login("bob", "builder")).status == 500
            assert fetch(exp.url, "/-/healthy").status == 200
            problems = [line for line in exp.stderr().splitlines() if "web config" in line]
            assert len(problems) == 1, exp.stderr()
            assert "basic_auth_users.carol: not a bcrypt hash" in problems[0]
            assert "hunter2" not in exp.stderr()

            web_config.write_text(users(bob="builder"))
            bob = login("bob", "builder")
            wait_until(lambda: fetch(exp.url, "/metrics", headers=bob).status == 200, timeout=10,
                       what="the fixed file to apply", proc=exp.proc)
            assert fetch(exp.url, "/metrics", headers=alice).status == 401
            scrape = fetch(exp.url, "/metrics", headers=bob)
            assert [s.value for s in samples(scrape.text) if s.name == WEB_CONFIG_GAUGE] == [1]
            code, _ = exp.terminate()
            assert code == 0, exp.stderr()


# -- demo ------------------------------------------------------------------------------------

def test_demo_shows_every_state_within_ten_seconds_and_stops_on_sigterm() -> None:
    port = free_port()
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "zego_exporter", "demo",
         "--web.listen-address", f"127.0.0.1:{port}"],
        env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    output: list[str] = []
    errors: list[str] = []
    readers = [threading.Thread(target=lambda s=s, into=into: into.extend(s), daemon=True)
               for s, into in ((proc.stdout, output), (proc.stderr, errors))]
    for reader in readers:
        reader.start()
    base = f"http://127.0.0.1:{port}"
    try:
        last = ""

        def complete() -> bool:
            nonlocal last
            try:
                answer = fetch(base, "/metrics", timeout=5)
            except OSError:
                return False
            last = answer.text
            types = metric_types(last)
            shown = {s.labels["state"] for s in samples(last)
                     if s.name == "zego_digital_human_task_state" and s.value == 1}
            return all(m.name in types for m in CONTRACT_METRICS
                       if m.name != WEB_CONFIG_GAUGE) and shown >= set(STATES)

        wait_until(complete, timeout=10 - (time.monotonic() - started),
                   what="every metric and state", proc=proc)
        assert f"{base}/metrics" in "".join(output)

        proc.send_signal(signal.SIGTERM)
        stopping = time.monotonic()
        assert proc.wait(5) == 0
        assert time.monotonic() - stopping < 4.0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for reader in readers:
            reader.join(5)
    assert "Traceback" not in "".join(errors)
