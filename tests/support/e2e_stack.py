"""A real monitoring stack on loopback, for the end-to-end tests and the dashboard preview.

`Stack` starts, each on a free 127.0.0.1 port, the simulated ZEGO API (in this process),
`zego-exporter serve` (a subprocess of this Python), Debian's `prometheus` and
`prometheus-alertmanager`, and a webhook receiver that keeps what Alertmanager posts. Each
start waits until the component answers; each process logs to a file in the stack's
directory; `close()` stops everything in reverse order (terminate, wait, kill on timeout).
Prometheus and Alertmanager get copies of the shipped prometheus/alerts.yml and
prometheus/alertmanager.yml with only their timings shortened (and the webhook address), so the
rules and routes under test are the ones users get. Used by tests/test_e2e.py and
grafana/preview.py; it imports nothing from pytest, never listens beyond 127.0.0.1 and never
writes to the repository.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import requests
import yaml

from tests.support import waiting
from tests.support.paths import ROOT
from tests.support.processes import LOCALHOST, free_port
from zego_exporter.simulator import Simulator

SHIPPED_ALERTS = ROOT / "prometheus" / "alerts.yml"
SHIPPED_ALERTMANAGER = ROOT / "prometheus" / "alertmanager.yml"
JOB = "zego-exporter"
"""The scrape job name the shipped rules expect (ZegoDigitalHumanExporterDown matches on it)."""

STOP_TIMEOUT = 10.0
LOG_TAIL_LINES = 60

# Short intervals so that a change in the simulated world shows in Prometheus within seconds.
FAST_EXPORTER_ARGS: tuple[str, ...] = (
    "--discovery.interval=1s",
    "--refresh.interval=2s",
    "--refresh.fast-interval=1s",
    "--refresh.idle-after=0",  # never pause, even between scrapes
    "--web.max-scrape-wait=200ms",
    "--log.level=info",
)

T = TypeVar("T")
Json = dict[str, Any]


class StackError(RuntimeError):
    """A component did not start, died, or did not get somewhere in time (logs included)."""


# -- processes --------------------------------------------------------------------------------


class Process:
    """A started program whose output (stdout and stderr) goes to a log file."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path,
                 env: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self._log_file = log_path.open("wb")
        self.popen = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=self._log_file,
            stderr=subprocess.STDOUT, env=dict(env) if env is not None else None,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def exit_code(self) -> int | None:
        """None while it runs."""
        return self.popen.poll()

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Terminate, wait up to `timeout`, kill if it is still there. Idempotent."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout)
        self._log_file.close()

    def describe(self) -> str:
        code = self.exit_code()
        state = "running" if code is None else f"exited with {code}"
        return f"{self.name} (pid {self.pid}, {state}): {' '.join(self.argv)}"


def wait_until(check: Callable[[], T | None], *, timeout: float, what: str,
               interval: float = 0.2, watch: Iterable[Process] = (),
               logs: Callable[[], str] = lambda: "") -> T:
    """`tests.support.waiting.wait_until` for a stack of servers: connection errors and bad
    answers while waiting count as "not yet", and it raises StackError (with `logs()`) when a
    process in `watch` exits or `timeout` seconds pass.
    """
    last_error = ""

    def attempt() -> T | None:
        nonlocal last_error
        for process in watch:
            if process.exit_code() is not None:
                raise StackError(f"{process.describe()}\nwhile waiting for {what}\n{logs()}")
        try:
            return check()
        except (OSError, ValueError, KeyError, requests.RequestException) as exc:
            last_error = f" (last error: {exc})"
            return None

    try:
        return waiting.wait_until(attempt, timeout=timeout, what=what, every=interval)
    except waiting.WaitTimedOut:
        raise StackError(f"{what}: not within {timeout:g}s{last_error}\n{logs()}") from None


# -- Prometheus' HTTP API ---------------------------------------------------------------------


@dataclass(frozen=True)
class QueryResult:
    """One answer of /api/v1/query or /api/v1/query_range."""

    http_status: int
    status: str
    result_type: str = ""
    result: Any = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.http_status == 200 and self.status == "success"

    @property
    def has_data(self) -> bool:
        """Some series (vector, matrix) or a value (scalar, string)."""
        if not self.ok:
            return False
        if self.result_type in ("vector", "matrix"):
            return bool(self.result)
        return self.result is not None

    @property
    def series(self) -> list[Json]:
        return list(self.result) if self.ok and self.result_type in ("vector", "matrix") else []

    def values(self) -> list[float]:
        """The instant values of a vector result."""
        return [float(sample["value"][1]) for sample in self.series]


class PrometheusApi:
    """The few endpoints of a Prometheus server the tests and the preview read."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.session = requests.Session()

    def _get(self, path: str, params: Mapping[str, Any] | None = None) -> requests.Response:
        return self.session.get(self.url + path, params=params, timeout=10)

    def query(self, expr: str, at: float | None = None) -> QueryResult:
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = at
        return self._result(self._get("/api/v1/query", params))

    def query_range(self, expr: str, start: float, end: float, step: float) -> QueryResult:
        params = {"query": expr, "start": start, "end": end, "step": step}
        return self._result(self._get("/api/v1/query_range", params))

    @staticmethod
    def _result(response: requests.Response) -> QueryResult:
        try:
            body = response.json()
        except ValueError:
            return QueryResult(response.status_code, "invalid", error=response.text[:500])
        data = body.get("data") or {}
        return QueryResult(response.status_code, body.get("status", ""),
                           data.get("resultType", ""), data.get("result"),
                           body.get("error", ""))

    def targets(self) -> list[Json]:
        """The active targets, each with scrapePool, scrapeUrl, health, lastError, labels."""
        response = self._get("/api/v1/targets", {"state": "active"})
        response.raise_for_status()
        return list(response.json()["data"]["activeTargets"])

    def rule_groups(self) -> list[Json]:
        response = self._get("/api/v1/rules")
        response.raise_for_status()
        return list(response.json()["data"]["groups"])

    def ready(self) -> bool:
        return self._get("/-/ready").status_code == 200


# -- the webhook receiver ---------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedAlert:
    """One alert of one notification Alertmanager posted."""

    path: str
    """The URL path it was posted to: which receiver of alertmanager.yml sent it."""
    status: str
    labels: dict[str, str]
    annotations: dict[str, str]
    received_at: float
    """time.monotonic() when the notification arrived."""

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")


class WebhookReceiver:
    """An HTTP server on 127.0.0.1 that keeps every notification Alertmanager posts to it."""

    def __init__(self) -> None:
        self._alerts: list[ReceivedAlert] = []
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                try:
                    receiver._add(self.path, json.loads(body))
                except (ValueError, KeyError, TypeError):
                    self.send_response(400)
                else:
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # Alertmanager's own log says what it sent

        self._server = ThreadingHTTPServer((LOCALHOST, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name="e2e-webhook", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{LOCALHOST}:{self._server.server_address[1]}"

    def _add(self, path: str, notification: Json) -> None:
        now = time.monotonic()
        alerts = [
            ReceivedAlert(path, alert["status"], dict(alert["labels"]),
                          dict(alert.get("annotations") or {}), now)
            for alert in notification["alerts"]
        ]
        with self._changed:
            self._alerts.extend(alerts)
            self._changed.notify_all()

    def alerts(self, name: str | None = None) -> list[ReceivedAlert]:
        with self._changed:
            return [alert for alert in self._alerts if name is None or alert.name == name]

    def wait_for(self, name: str, labels: Mapping[str, str], *, timeout: float,
                 status: str = "firing") -> ReceivedAlert | None:
        """The first `name` alert whose labels include `labels`, or None after `timeout`."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for alert in self._alerts:
                    if alert.name == name and alert.status == status and all(
                        alert.labels.get(key) == value for key, value in labels.items()
                    ):
                        return alert
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._changed.wait(remaining)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(STOP_TIMEOUT)


# -- configuration files ----------------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def write_yaml(path: Path, document: Any) -> Path:
    path.write_text(yaml.safe_dump(document, sort_keys=False, width=1000), encoding="utf-8")
    return path


def shortened_rules(for_duration: str) -> Json:
    """The shipped alerting rules with every `for:` set to `for_duration`; nothing else changes."""
    document: Json = copy.deepcopy(load_yaml(SHIPPED_ALERTS))
    for group in document["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = for_duration
    return document


def e2e_alertmanager_config(webhook_url: str, *, group_wait: str = "1s",
                            group_interval: str = "1s") -> Json:
    """The shipped alertmanager.yml with short group timings and every webhook sent to
    `webhook_url` (the receiver's URL path is kept, so the path tells which receiver sent)."""
    document: Json = copy.deepcopy(load_yaml(SHIPPED_ALERTMANAGER))
    document["route"]["group_wait"] = group_wait
    document["route"]["group_interval"] = group_interval
    target = urlsplit(webhook_url)
    for receiver in document["receivers"]:
        for webhook in receiver.get("webhook_configs", []):
            path = urlsplit(webhook["url"]).path
            webhook["url"] = urlunsplit((target.scheme, target.netloc, path, "", ""))
    return document


def scrape_job(target: str, *, job: str = JOB, scheme: str = "http",
               ca_file: Path | None = None, username: str | None = None,
               password: str | None = None) -> Json:
    """One scrape job for one exporter at host:port."""
    config: Json = {"job_name": job, "scheme": scheme,
                    "static_configs": [{"targets": [target]}]}
    if ca_file is not None:
        config["tls_config"] = {"ca_file": str(ca_file)}
    if username is not None:
        config["basic_auth"] = {"username": username, "password": password or ""}
    return config


def prometheus_config(jobs: Sequence[Json], *, scrape_interval: str = "1s",
                      evaluation_interval: str = "1s", rule_files: Sequence[Path] = (),
                      alertmanager: str | None = None) -> Json:
    """A Prometheus configuration; `alertmanager` is host:port, or None for no alerting."""
    config: Json = {
        "global": {
            "scrape_interval": scrape_interval,
            "scrape_timeout": scrape_interval,
            "evaluation_interval": evaluation_interval,
        },
        "scrape_configs": list(jobs),
    }
    if rule_files:
        config["rule_files"] = [str(path) for path in rule_files]
    if alertmanager:
        config["alerting"] = {"alertmanagers": [
            {"api_version": "v2", "static_configs": [{"targets": [alertmanager]}]},
        ]}
    return config


# -- the stack --------------------------------------------------------------------------------


@dataclass
class ExporterProcess:
    """A running `zego-exporter serve`."""

    process: Process
    address: str
    """host:port, the scrape target."""
    url: str
    """scheme://host:port"""
    task_ids: tuple[str, ...]


@dataclass
class Stack:
    """Everything one run started, in start order; `close()` stops it all in reverse."""

    workdir: Path
    processes: list[Process] = field(default_factory=list)
    _closers: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._closers.close()

    def logs(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last `lines` lines of every process' log, for failure reports."""
        return "\n".join(
            f"----- {process.describe()}\n{process.log_tail(lines)}"
            for process in self.processes
        )

    def _dir(self, name: str) -> Path:
        path = self.workdir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _start(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None) -> (
        Process
    ):
        process = Process(name, argv, self._dir(name) / "output.log", env)
        self.processes.append(process)
        self._closers.callback(process.stop)
        return process

    def _wait(self, check: Callable[[], T | None], what: str, process: Process,
              timeout: float = 30.0) -> T:
        return wait_until(check, timeout=timeout, what=what, watch=[process], logs=self.logs)

    # -- components --

    def simulator(self, simulator: Simulator) -> Simulator:
        """Serve `simulator` (already bound to its port) until the stack closes."""
        self._closers.enter_context(simulator)
        return simulator

    def webhook(self) -> WebhookReceiver:
        receiver = WebhookReceiver()
        self._closers.callback(receiver.close)
        return receiver

    def exporter(self, api_url: str, *, app_id: int, server_secret: str,
                 task_ids: Sequence[str] = (), args: Sequence[str] = FAST_EXPORTER_ARGS,
                 callback_secret: str | None = None, web_config: Path | None = None,
                 ca_file: Path | None = None, auth: tuple[str, str] | None = None,
                 name: str = "exporter", port: int | None = None) -> ExporterProcess:
        """`python -m zego_exporter serve` against `api_url`, ready (first API round done).

        The secrets go through files, as the contract recommends. With `web_config` it
        serves HTTPS; readiness is then checked with `ca_file` and `auth`. It listens on
        `port` (a free one by default): the same port again for an exporter that restarts.
        """
        directory = self._dir(name)
        secret_file = directory / "server-secret"
        secret_file.write_text(server_secret + "\n", encoding="utf-8")
        secret_file.chmod(0o600)
        port = free_port() if port is None else port
        argv = [
            sys.executable, "-m", "zego_exporter", "serve",
            f"--zego.app-id={app_id}", f"--zego.server-secret-file={secret_file}",
            f"--zego.api-url={api_url}", f"--web.listen-address={LOCALHOST}:{port}",
            *(f"--task-id={task_id}" for task_id in task_ids), *args,
        ]
        if callback_secret is not None:
            callback_file = directory / "callback-secret"
            callback_file.write_text(callback_secret + "\n", encoding="utf-8")
            callback_file.chmod(0o600)
            argv.append(f"--zego.callback-secret-file={callback_file}")
        if web_config is not None:
            argv.append(f"--web.config.file={web_config}")
        # A clean environment for the flags: no ZEGO_* of the caller's shell may leak in.
        env = {key: value for key, value in os.environ.items() if not key.startswith("ZEGO")}
        process = self._start(name, argv, env)
        scheme = "https" if web_config is not None else "http"
        url = f"{scheme}://{LOCALHOST}:{port}"
        verify: str | bool = str(ca_file) if ca_file is not None else True

        def ready() -> bool:
            response = requests.get(url + "/-/ready", timeout=5, verify=verify, auth=auth)
            return response.status_code == 200

        try:
            self._wait(ready, f"{name} at {url} to be ready", process)
        except StackError as exc:
            raise StackError(f"{exc}\n{listeners(port)}") from None
        return ExporterProcess(process, f"{LOCALHOST}:{port}", url, tuple(task_ids))

    def alertmanager(self, binary: str, config: Json, *, amtool: str | None = None,
                     name: str = "alertmanager") -> str:
        """Alertmanager with `config`, clustering off; returns its host:port once ready."""
        directory = self._dir(name)
        config_file = write_yaml(directory / "alertmanager.yml", config)
        if amtool is not None:
            _check_config([amtool, "check-config", str(config_file)], "amtool check-config")
        port = free_port()
        process = self._start(name, [
            binary, f"--config.file={config_file}", f"--storage.path={directory / 'data'}",
            f"--web.listen-address={LOCALHOST}:{port}", "--cluster.listen-address=",
            "--log.level=info",
        ])
        address = f"{LOCALHOST}:{port}"
        self._wait(lambda: requests.get(f"http://{address}/-/ready", timeout=5).ok,
                   f"{name} at {address} to be ready", process)
        return address

    def prometheus(self, binary: str, config: Json, *, promtool: str | None = None,
                   name: str = "prometheus") -> PrometheusApi:
        """Prometheus with `config` and a fresh TSDB; returns its API once it is ready.

        With `promtool`, the configuration (and the rule files it names) is checked first.
        """
        directory = self._dir(name)
        config_file = write_yaml(directory / "prometheus.yml", config)
        if promtool is not None:
            _check_config([promtool, "check", "config", str(config_file)],
                          "promtool check config")
        port = free_port()
        process = self._start(name, [
            binary, f"--config.file={config_file}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address={LOCALHOST}:{port}", "--log.level=info",
        ])
        api = PrometheusApi(f"http://{LOCALHOST}:{port}")
        self._wait(api.ready, f"{name} at {api.url} to be ready", process)
        return api


def listeners(port: int) -> str:
    """What the kernel knows of sockets on `port` (for a component that does not answer)."""
    try:
        result = subprocess.run(["ss", "-tanp", f"( sport = :{port} or dport = :{port} )"],
                                capture_output=True, text=True, timeout=10, check=False)
    except OSError as exc:
        return f"(ss not available: {exc})"
    return f"sockets on port {port}:\n{result.stdout}{result.stderr}"


def _check_config(argv: list[str], what: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                            check=False)
    if result.returncode != 0:
        raise StackError(f"{what} refused the generated file:\n{result.stdout}{result.stderr}")
