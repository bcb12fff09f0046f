"""The command line: `serve`, `check`, `simulate` and `demo`, with every flag's environment twin.

Only the click wiring lives here: flags and their help, which parser reads each value
(config.py), one-line usage errors with exit code 2 (never a traceback, never the secret), and
the hand-over to the exporter, the `check` workflow (check.py) or the simulator. Nothing else
in the package imports this module.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar

import click

from zego_exporter import __version__
from zego_exporter import config as parse
from zego_exporter import log as logsetup
from zego_exporter.check import CheckFailed, failure_json, run_check
from zego_exporter.client import DEFAULT_API_URL
from zego_exporter.config import (
    ConfigError,
    Connection,
    ServeOptions,
    callback_secret_of,
    exporter_config,
)
from zego_exporter.exporter import Exporter, ExporterConfig
from zego_exporter.refresh import LISTING_CPU_SHARE
from zego_exporter.signing import Secret
from zego_exporter.sources import TaskFileError
from zego_exporter.tracker import RefreshPolicy
from zego_exporter.webconfig import WebConfigError

log = logging.getLogger("zego_exporter.cli")

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")
V = TypeVar("V")


def _parsed(parser: Callable[[V], T]) -> Callable[[click.Context, click.Parameter, V | None],
                                                 T | None]:
    """A click callback that reads a value with one of config.py's parsers."""
    def callback(_ctx: click.Context, _param: click.Parameter, value: V | None) -> T | None:
        if value is None:
            return None
        try:
            return parser(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
    return callback


def _task_ids(given: tuple[str, ...]) -> tuple[str, ...]:
    """--task-id values, or else ZEGO_TASK_IDS split on commas and whitespace; all checked."""
    return parse.task_ids(given, os.environ.get("ZEGO_TASK_IDS", ""))


_duration = _parsed(parse.duration)
_positive_duration = _parsed(parse.positive_duration)


# -- shared option groups --

def zego_options(command: F) -> F:
    """The `--zego.*` connection flags, shared by `serve` and `check`."""
    options = [
        click.option("--zego.app-id", "app_id", envvar="ZEGO_APP_ID", show_envvar=True,
                     metavar="APPID", callback=_parsed(parse.app_id),
                     help="Your project's AppId (ZEGO console), a number. Required."),
        click.option("--zego.server-secret", "server_secret", envvar="ZEGO_SERVER_SECRET",
                     show_envvar=True, metavar="SECRET",
                     help="The project's ServerSecret. Prefer --zego.server-secret-file: "
                          "a flag value is visible in the process list."),
        click.option("--zego.server-secret-file", "server_secret_file",
                     envvar="ZEGO_SERVER_SECRET_FILE", show_envvar=True, metavar="PATH",
                     help="File holding the ServerSecret (a trailing newline is ignored); "
                          "for Docker and Kubernetes secrets."),
        click.option("--zego.api-url", "api_url", envvar="ZEGO_API_URL", show_envvar=True,
                     default=DEFAULT_API_URL, show_default=True,
                     help="Base URL of the ZEGO Digital Human server API (overseas hosts "
                          "come from ZEGO support)."),
        click.option("--zego.qps", "qps", envvar="ZEGO_QPS", show_envvar=True, default="10",
                     show_default=True, metavar="QPS", callback=_parsed(parse.qps),
                     help="Requests per second allowed for each Action. ZEGO allows 10 per "
                          "AppId; lower it when other programs (or replicas) share the AppId."),
        click.option("--zego.timeout", "timeout", envvar="ZEGO_TIMEOUT", show_envvar=True,
                     default="5s", show_default=True, callback=_positive_duration,
                     help="Connect and read timeout of each API call."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def callback_options(*, serving: bool) -> Callable[[F], F]:
    """The `--zego.callback-*` flags: `serve` enables its endpoint with them; `check` takes
    them too (the contract: the same `--zego.*` flags) and checks that the secret is usable."""
    does = ("enables the callback endpoint" if serving
            else "used by serve, check only makes sure it can be read")
    options = [
        click.option("--zego.callback-secret", "callback_secret",
                     envvar="ZEGO_CALLBACK_SECRET", show_envvar=True, metavar="SECRET",
                     help=f"Callback secret (ZEGO console); {does}."),
        click.option("--zego.callback-secret-file", "callback_secret_file",
                     envvar="ZEGO_CALLBACK_SECRET_FILE", show_envvar=True, metavar="PATH",
                     help=f"File holding the callback secret; {does}."),
        click.option("--zego.callback-path", "callback_path", envvar="ZEGO_CALLBACK_PATH",
                     show_envvar=True, default="/zego/callback", show_default=True,
                     help="Path of the callback endpoint."),
    ]

    def decorate(command: F) -> F:
        for option in reversed(options):
            command = option(command)
        return command
    return decorate


def log_options(command: F) -> F:
    command = click.option(
        "--log.format", "log_format", envvar="ZEGO_EXPORTER_LOG_FORMAT", show_envvar=True,
        default="logfmt", show_default=True, type=click.Choice(logsetup.FORMATS),
        help="Log line format on stderr.")(command)
    return click.option(
        "--log.level", "log_level", envvar="ZEGO_EXPORTER_LOG_LEVEL", show_envvar=True,
        default="info", show_default=True, type=click.Choice(logsetup.LEVELS),
        help="Only log messages with this severity or above.")(command)


def _secrets_of(*values: Secret | None) -> list[str]:
    return [v.reveal() for v in values if v is not None]


# -- the commands --

@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="zego-exporter")
def cli() -> None:
    """Prometheus exporter for ZEGOCLOUD Digital Human stream tasks.

    Start with `zego-exporter demo` to see it work against the built-in simulated ZEGO API.
    """


@cli.command()
@zego_options
@click.option("--task-id", "task_ids", multiple=True, callback=_parsed(_task_ids),
              help="A TaskId to watch (repeatable).  [env var: ZEGO_TASK_IDS, TaskIds "
                   "separated by commas or spaces]")
@click.option("--task-file", envvar="ZEGO_TASK_FILE", show_envvar=True, metavar="PATH",
              help="File with one TaskId per line (# comments); re-read when it changes.")
@click.option("--discovery/--no-discovery", envvar="ZEGO_DISCOVERY", show_envvar=True,
              default=True, show_default=True,
              help="Find running tasks with QueryDigitalHumanStreamTasks.")
@click.option("--discovery.interval", "discovery_interval", envvar="ZEGO_DISCOVERY_INTERVAL",
              show_envvar=True, default="3s", show_default=True, callback=_duration,
              help="How often to list the running tasks (one API call each time). The list "
                   "shows initializing and streaming tasks only: a task that fails sooner "
                   "after its creation may never be seen. Lists so large that reading them "
                   f"would take more than {LISTING_CPU_SHARE:.0%} of a CPU core are read less "
                   "often.")
@click.option("--refresh.interval", "refresh_interval", envvar="ZEGO_REFRESH_INTERVAL",
              show_envvar=True, default="30s", show_default=True, callback=_duration,
              help="Refresh target for streaming tasks not covered by discovery.")
@click.option("--refresh.fast-interval", "fast_interval", envvar="ZEGO_REFRESH_FAST_INTERVAL",
              show_envvar=True, default="5s", show_default=True, callback=_duration,
              help="Refresh target for initializing and stopping tasks and failed lookups.")
@click.option("--refresh.workers", "workers", envvar="ZEGO_REFRESH_WORKERS", show_envvar=True,
              default=4, show_default=True, type=click.IntRange(1, 64),
              help="Lookups in flight at once (raise it for API latencies above ~300 ms).")
@click.option("--refresh.idle-after", "idle_after", envvar="ZEGO_REFRESH_IDLE_AFTER",
              show_envvar=True, default="10m", show_default=True, callback=_duration,
              help="Pause API calls when nobody has scraped for this long (0: never pause).")
@click.option("--refresh.callback-interval", "callback_interval",
              envvar="ZEGO_REFRESH_CALLBACK_INTERVAL", show_envvar=True, default="5m",
              show_default=True, callback=_positive_duration,
              help="With callbacks on, tasks they keep up to date are still looked up this "
                   "often, since ZEGO does not guarantee delivery.")
@click.option("--tasks.retention", "retention", envvar="ZEGO_TASKS_RETENTION",
              show_envvar=True, default="1h", show_default=True, callback=_duration,
              help="Forget discovered or callback tasks this long after they ended.")
@callback_options(serving=True)
@click.option("--web.listen-address", "listen_address", envvar="ZEGO_EXPORTER_LISTEN_ADDRESS",
              show_envvar=True, default=":9877", show_default=True,
              help="Address to listen on: host:port, :port (every interface) or [::1]:port.")
@click.option("--web.telemetry-path", "telemetry_path", envvar="ZEGO_EXPORTER_TELEMETRY_PATH",
              show_envvar=True, default="/metrics", show_default=True,
              help="Path under which to expose metrics.")
@click.option("--web.config.file", "web_config_file", envvar="ZEGO_EXPORTER_WEB_CONFIG_FILE",
              show_envvar=True, metavar="PATH",
              help="TLS and basic auth settings, in the exporter-toolkit web-config format.")
@click.option("--web.max-scrape-wait", "max_scrape_wait",
              envvar="ZEGO_EXPORTER_MAX_SCRAPE_WAIT", show_envvar=True, default="2s",
              show_default=True, callback=_duration,
              help="Longest a scrape waits for due lookups before serving the cache.")
@click.option("--storage.path", "storage_path", envvar="ZEGO_STORAGE_PATH", show_envvar=True,
              metavar="PATH",
              help="SQLite file that keeps what the exporter knows (tasks, states, fail "
                   "reasons, failure counts) across restarts; its directory must exist and be "
                   "writable. Not set: memory only.")
@log_options
def serve(app_id: int | None, server_secret: str | None, server_secret_file: str | None,
          api_url: str, qps: float, timeout: float, task_ids: tuple[str, ...],
          task_file: str | None, discovery: bool, discovery_interval: float,
          refresh_interval: float, fast_interval: float, workers: int, idle_after: float,
          callback_interval: float, retention: float, callback_secret: str | None,
          callback_secret_file: str | None, callback_path: str, listen_address: str,
          telemetry_path: str, web_config_file: str | None, max_scrape_wait: float,
          storage_path: str | None, log_level: str, log_format: str) -> None:
    """Run the exporter (the main job)."""
    config = exporter_config(ServeOptions(
        connection=Connection(app_id, server_secret, server_secret_file, api_url, qps, timeout),
        task_ids=task_ids, task_file=task_file, discovery=discovery,
        discovery_interval=discovery_interval, refresh_interval=refresh_interval,
        fast_interval=fast_interval, workers=workers, idle_after=idle_after,
        callback_interval=callback_interval, retention=retention,
        callback_secret=callback_secret, callback_secret_file=callback_secret_file,
        callback_path=callback_path, listen_address=listen_address,
        telemetry_path=telemetry_path, web_config_file=web_config_file,
        max_scrape_wait=max_scrape_wait, storage_path=storage_path,
    ))
    logsetup.configure(log_level, log_format,
                       secrets=_secrets_of(config.server_secret, config.callback_secret))
    try:
        exporter = Exporter(config)  # reads the web config file, binds the listen address
    except WebConfigError as exc:
        raise ConfigError(str(exc)) from None
    except OSError as exc:
        _fail_runtime(f"cannot listen on {config.listen_address}: {exc.strerror or exc}: "
                      "check --web.listen-address")
    _run_until_signalled(exporter.start, exporter.stop, "could not start the exporter")


def _run_until_signalled(start: Callable[[], object], stop: Callable[[], None],
                         what: str) -> None:
    """Start, then block until SIGINT or SIGTERM, then stop cleanly."""
    done = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        start()
    except TaskFileError as exc:
        raise ConfigError(str(exc)) from None
    except OSError as exc:
        _fail_runtime(f"{what}: {exc.strerror or exc}")
    try:
        while not done.wait(1.0):
            pass
    finally:
        stop()


@cli.command()
@zego_options
@click.argument("task_ids", nargs=-1, callback=_parsed(parse.checked_task_ids))
@click.option("--output", "-o", type=click.Choice(["table", "json"]), default="table",
              show_default=True, help="How to print the tasks.")
@callback_options(serving=False)
@log_options
def check(app_id: int | None, server_secret: str | None, server_secret_file: str | None,
          api_url: str, qps: float, timeout: float, task_ids: tuple[str, ...], output: str,
          callback_secret: str | None, callback_secret_file: str | None, callback_path: str,
          log_level: str, log_format: str) -> None:
    """Verify credentials and connectivity, and print the tasks.

    With TASK_IDs, looks each one up; without, lists the running tasks. A task ZEGO answers
    "task not found" for shows as not_found: it has ended (ZEGO describes task status for
    running tasks only) or the TaskId is wrong. When none of the TASK_IDs is found and no task
    is running, it warns that the setup looks wrong (AppId, or the region's API host). Exit
    code 0 when the API answered, 1 on an API or credential failure, 2 on a usage error.
    It takes serve's --zego.* flags, so the same command line or environment can be reused:
    a callback secret given is checked (readable, one place) as serve would, not used.
    """
    connection = Connection(app_id, server_secret, server_secret_file, api_url, qps, timeout)
    checked_app_id, secret = connection.credentials()
    callback = callback_secret_of(callback_secret, callback_secret_file, callback_path)
    logsetup.configure(log_level, log_format, secrets=_secrets_of(secret, callback))
    try:
        report = run_check(checked_app_id, secret, api_url, timeout=timeout, qps=qps,
                           task_ids=task_ids)
    except CheckFailed as exc:
        if output == "json":
            click.echo(failure_json(checked_app_id, api_url, " ".join(str(exc).split())))
        _fail_runtime(str(exc))
    click.echo(report.to_json() if output == "json" else report.to_text())
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)


@cli.command()
@click.option("--listen-address", default="127.0.0.1:9878", show_default=True,
              envvar="ZEGO_SIMULATOR_LISTEN_ADDRESS", show_envvar=True,
              help="Where the simulated API listens (loopback by default).")
@click.option("--app-id", default=1234567890, show_default=True, envvar="ZEGO_APP_ID",
              show_envvar=True, type=click.IntRange(1, 2**32 - 1),
              help="The AppId the simulator accepts.")
@click.option("--server-secret", default="0123456789abcdef0123456789abcdef",
              envvar="ZEGO_SERVER_SECRET", show_envvar=True, metavar="SECRET",
              help="The ServerSecret the simulator checks signatures with (a demo value by "
                   "default).")
@click.option("--tasks", default=20, show_default=True, type=click.IntRange(0),
              help="Tasks at start.")
@click.option("--arrival-rate", default=0.1, show_default=True, type=click.FloatRange(0),
              help="New tasks per second.")
@click.option("--time-scale", default=1.0, show_default=True,
              type=click.FloatRange(0, min_open=True),
              help="Lifecycle durations are multiplied by this (0.1: ten times faster).")
@click.option("--lifecycle", type=click.Choice(["realistic", "demo", "forever"]),
              default="realistic", show_default=True,
              help="How tasks live: realistic (minutes), demo (every state within ~15 s), or "
                   "forever (streaming).")
@click.option("--faults", "faults_json", envvar="ZEGO_SIMULATOR_FAULTS", show_envvar=True,
              metavar="JSON",
              help='Faults to inject from the start, as the admin API takes them, e.g. '
                   '\'{"latency": {"seconds": 0.2}, "error": {"rate": 0.1, "code": '
                   '400010002}}\'. Readings the docs leave open: \'{"error_status": {}}\' '
                   '(errors inside 4xx/5xx), \'{"empty_list": {"form": "null_data"}}\', '
                   '\'{"error": {"code": 400010001, "action": '
                   '"QueryDigitalHumanStreamTasks"}}\' (an Action denied).')
# The simulator's ENDED_TASKS, written out so that `serve` never loads the simulator (a test
# holds the two equal).
@click.option("--ended-tasks", type=click.Choice(["not-found", "status-5"]),
              default="not-found", show_default=True, envvar="ZEGO_SIMULATOR_ENDED_TASKS",
              show_envvar=True,
              help="What GetDigitalHumanStreamTaskStatus answers for a stopped task: "
                   "not-found (400000005; ZEGO's current docs list Status 1-4 only) or "
                   "status-5 (Status 5, as the docs said before Nov 2025).")
@click.option("--static", is_flag=True, help="Tasks stream forever and none arrive (benchmarks).")
@click.option("--showcase", is_flag=True, help="Add one task pinned in every state.")
@click.option("--qps", default=10, show_default=True, type=click.IntRange(0),
              help="Per-Action rate limit the simulator enforces (0: none).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the task world.")
@click.option("--callback-url", envvar="ZEGO_SIMULATOR_CALLBACK_URL", show_envvar=True,
              metavar="URL",
              help="POST a signed callback here on every task status change, e.g. "
                   "http://127.0.0.1:9877/zego/callback (needs --callback-secret).")
@click.option("--callback-secret", envvar="ZEGO_CALLBACK_SECRET", show_envvar=True,
              metavar="SECRET",
              help="Secret to sign callbacks with: the exporter's --zego.callback-secret.")
@log_options
def simulate(listen_address: str, app_id: int, server_secret: str, tasks: int,
             arrival_rate: float, time_scale: float, lifecycle: str, faults_json: str | None,
             ended_tasks: str, static: bool, showcase: bool, qps: int, seed: int,
             callback_url: str | None, callback_secret: str | None, log_level: str,
             log_format: str) -> None:
    """Run the built-in simulated ZEGO API (for demos and tests).

    It listens on loopback by default; its admin API (`/admin/...`: tasks, faults, stats) has
    no authentication, so do not expose it.
    """
    from zego_exporter.simulator import Faults, Simulator  # noqa: PLC0415

    faults = None
    if faults_json:
        try:
            faults = Faults.from_json(json.loads(faults_json))
        except ValueError as exc:  # json.JSONDecodeError is a ValueError too
            raise ConfigError(f"--faults: {exc}") from None

    logsetup.configure(log_level, log_format,
                       secrets=[server_secret, *([callback_secret] if callback_secret else [])])
    host, port = parse.listen_address(listen_address)
    simulator = _build_simulator(lambda: Simulator.from_options(
        app_id=app_id, server_secret=Secret(server_secret), host=host or "127.0.0.1",
        port=port, seed=seed, tasks=tasks, arrival_rate=arrival_rate, time_scale=time_scale,
        lifecycle=lifecycle, faults=faults, static=static, showcase=showcase, qps=qps,
        ended_tasks=ended_tasks, callback_url=callback_url,
        callback_secret=None if callback_secret is None else Secret(callback_secret)))
    click.echo(f"simulated ZEGO API at {simulator.url} (AppId {app_id}); Ctrl-C to stop")
    if callback_url:
        click.echo(f"  callbacks to {callback_url}")
    _run_until_signalled(simulator.start, simulator.stop, "could not start the simulator")


def _build_simulator(build: Callable[[], T]) -> T:
    try:
        return build()
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    except OSError as exc:
        _fail_runtime(f"could not start the simulator: {exc.strerror or exc}")


DEMO_APP_ID = 1234567890


@cli.command()
@click.option("--web.listen-address", "listen_address", default="127.0.0.1:9877",
              show_default=True, envvar="ZEGO_EXPORTER_LISTEN_ADDRESS", show_envvar=True,
              help="Where the exporter listens (port 0: any free port).")
@click.option("--seed", default=1, show_default=True, type=int, help="Seed of the task world.")
@log_options
def demo(listen_address: str, seed: int, log_level: str, log_format: str) -> None:
    """The simulated ZEGO API and the exporter in one process: the one-command first run.

    About 20 tasks move through every state within seconds; the exporter discovers the
    running ones and watches a few configured ones, and the simulated API sends it a signed
    callback for every status change. Prints the URLs to open.
    """
    from zego_exporter.simulator import Simulator  # noqa: PLC0415

    secret = Secret(os.urandom(16).hex())
    callback_secret = Secret(os.urandom(16).hex())
    logsetup.configure(log_level, log_format,
                       secrets=[secret.reveal(), callback_secret.reveal()])
    parse.listen_address(listen_address)
    simulator = _build_simulator(lambda: Simulator.from_options(
        app_id=DEMO_APP_ID, server_secret=secret, seed=seed, tasks=14, arrival_rate=0.2,
        lifecycle="demo", showcase=True, qps=10))
    configured = tuple(task_id for ids in simulator.showcase.values() for task_id in ids)
    config = ExporterConfig(
        app_id=DEMO_APP_ID, server_secret=secret, api_url=simulator.url, task_ids=configured,
        listen_address=listen_address, callback_secret=callback_secret,
        policy=RefreshPolicy(interval=10, fast_interval=2, discovery_interval=5,
                             callback_reconcile=60, retention=600),
        idle_after=None,
    )
    exporter: Exporter | None = None

    def start() -> None:
        nonlocal exporter
        simulator.start()
        exporter = Exporter(config)
        exporter.start()
        base = exporter.web.url
        simulator.enable_callbacks(base + config.callback_path, callback_secret)
        click.echo(f"zego-exporter demo: {len(configured)} configured tasks plus discovery "
                   f"against a simulated ZEGO API at {simulator.url}")
        click.echo(f"  metrics:   {base}/metrics")
        click.echo(f"  landing:   {base}/")
        click.echo(f"  readiness: {base}/-/ready")
        click.echo(f"  callbacks: {base}{config.callback_path} (the simulated API POSTs every "
                   "task status change there)")
        click.echo("Press Ctrl-C to stop.")

    def stop() -> None:
        if exporter is not None:
            exporter.stop()
        simulator.stop()

    _run_until_signalled(start, stop, "could not start the demo")


# -- entry point --

def _fail_usage(command: str, message: str) -> NoReturn:
    text = " ".join(message.split())
    click.echo(f"{command}: error: {text}", err=True)
    sys.exit(2)


def _fail_runtime(message: str) -> NoReturn:
    click.echo(f"zego-exporter: {' '.join(message.split())}", err=True)
    sys.exit(1)


def main(argv: Sequence[str] | None = None) -> None:
    """The console script. Usage errors end with one line on stderr and exit code 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    command = "zego-exporter" + (f" {args[0]}" if args and args[0] in cli.commands else "")
    try:
        code = cli.main(args=args, prog_name="zego-exporter", standalone_mode=False)
    except click.UsageError as exc:
        hint = f" (see {command} --help)"
        _fail_usage(command, exc.format_message().rstrip(".") + hint)
    except ConfigError as exc:
        _fail_usage(command, str(exc))
    except click.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        _fail_usage(command, exc.format_message())
    sys.exit(code if isinstance(code, int) else 0)
