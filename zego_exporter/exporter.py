"""Assembles the running exporter: sources -> tracker -> refresh engine -> collector -> web.

This is the one place that knows every part; each part knows only the one before it. It holds
the configuration as plain values (the CLI builds it from flags) and owns start and stop.
With a storage path, the tracker starts from what the file holds and the store's writer
keeps the file up to date beside it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client import GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_TYPE
from prometheus_client.registry import CollectorRegistry

from zego_exporter import __version__
from zego_exporter.callback import CallbackReceiver
from zego_exporter.client import DEFAULT_API_URL, DEFAULT_TIMEOUT, ZegoClient
from zego_exporter.collector import ZegoCollector
from zego_exporter.exposition import TextRenderer
from zego_exporter.instruments import Instruments
from zego_exporter.ratelimit import SlidingWindowLimiter
from zego_exporter.refresh import REJECTED_RETRY_SECONDS, Refresher
from zego_exporter.responses import ACTIONS
from zego_exporter.signing import Secret
from zego_exporter.sources import TaskFileWatcher
from zego_exporter.storage import Saved, StorageError, Store, StoreWriter, open_store
from zego_exporter.tracker import FILE, STATIC, RefreshPolicy, Tracker
from zego_exporter.web import Endpoints, Security, WebServer, landing_page
from zego_exporter.webconfig import WebConfigWatcher

log = logging.getLogger(__name__)

TEXT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DEFAULT_SCRAPE_TIMEOUT = 10.0  # Prometheus' default, when a scraper does not say
SCRAPE_MARGIN = 0.5  # seconds kept back from the scraper's deadline for rendering and transfer


@dataclass(frozen=True)
class ExporterConfig:
    """Everything `serve` can be told, as plain values."""

    app_id: int
    server_secret: Secret
    api_url: str = DEFAULT_API_URL
    qps: float = 10.0
    task_ids: tuple[str, ...] = ()
    task_file: str | None = None
    discovery: bool = True
    callback_secret: Secret | None = None
    callback_path: str = "/zego/callback"
    listen_address: str = ":9877"
    telemetry_path: str = "/metrics"
    web_config_file: str | None = None
    """exporter-toolkit web config (TLS, basic auth, rate limit), re-read when it changes."""
    policy: RefreshPolicy = field(default_factory=RefreshPolicy)
    workers: int = 4
    idle_after: float | None = 600.0
    timeout: float = DEFAULT_TIMEOUT
    max_scrape_wait: float = 2.0
    backoff_cap: float = 30.0
    """Longest pause after ZEGO pushes back (rate limit, busy, 5xx, timeouts), in seconds."""
    rejected_retry: float = REJECTED_RETRY_SECONDS
    """Pause after ZEGO rejects the signature or AppId before probing again, in seconds."""
    storage_path: str | None = None
    """SQLite file that keeps what the exporter knows across restarts; None: memory only."""


class Exporter:
    """The exporter as one object: `start()`, serve until `stop()`."""

    def __init__(
        self,
        config: ExporterConfig,
        *,
        security: Callable[[], Security | None] | None = None,
        clock: Callable[[], float] = time.time,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        """Raises WebConfigError when `config.web_config_file` cannot be used (and `security`,
        which takes its place in tests, is not given). `clock` is the wall clock of the
        tracker's timestamps; `timer` times scrapes."""
        self.config = config
        self._timer = timer
        self.instruments = Instruments()
        if security is None:
            security = self._web_security(config.web_config_file)
        self.client = ZegoClient(
            config.app_id, config.server_secret, config.api_url,
            connect_timeout=config.timeout, read_timeout=config.timeout,
            pool_size=config.workers + 2, observer=self.instruments.observe_api,
        )
        opened = _open_storage(config.storage_path) if config.storage_path else None
        self.tracker = Tracker(config.policy, clock=clock, keep_changes=opened is not None)
        self.writer: StoreWriter | None = None
        if opened is not None:
            store, saved = opened
            unfinished = self.tracker.restore(saved.tasks, saved.failures)
            if saved.tasks or saved.failures:
                log.info("storage: restored what the last run knew", extra={
                    "path": store.path, "tasks": len(saved.tasks),
                    "to_look_up_first": unfinished})
            else:  # a new file, or one a previous run left empty
                log.info("storage: nothing saved yet; keeping what this run learns",
                         extra={"path": store.path})
            self.writer = StoreWriter(store, self.tracker.take_changes,
                                      written=self.tracker.changes_written,
                                      note_all_changed=self.tracker.note_all_changed,
                                      observe=self.instruments.storage_written)
        if config.storage_path:
            self.instruments.enable_storage(opened is not None)
        self.limiters = {action: SlidingWindowLimiter(config.qps, backoff_cap=config.backoff_cap)
                         for action in ACTIONS}
        self.refresher = Refresher(
            self.client, self.tracker, self.limiters,
            workers=config.workers, discovery=config.discovery, idle_after=config.idle_after,
            rejected_retry=config.rejected_retry,
            count_skipped=self.instruments.count_skipped_entries,
        )
        self.collector = ZegoCollector(
            self.tracker.snapshot, dict.fromkeys(ACTIONS, config.qps), config.policy
        )
        self._renderer = TextRenderer(self.collector)
        # Either format: the collector's families rendered fast, then the rest.
        self._rest = CollectorRegistry(auto_describe=True)
        self.instruments.register(self._rest)
        ProcessCollector(registry=self._rest)
        PlatformCollector(registry=self._rest)
        GCCollector(registry=self._rest)
        self.task_file = (
            TaskFileWatcher(config.task_file, self._file_tasks) if config.task_file else None
        )
        self.callbacks: CallbackReceiver | None = None
        handle_callback = None
        if config.callback_secret is not None:
            self.callbacks = CallbackReceiver(
                config.callback_secret, self.tracker, self.instruments.count_callback,
                app_id=config.app_id)
            handle_callback = self.callbacks.handle
            self.instruments.enable_callbacks()
        self.web = WebServer(
            config.listen_address,
            Endpoints(
                telemetry_path=config.telemetry_path,
                render_metrics=self.render_metrics,
                is_ready=lambda: self.refresher.ready,
                landing_html=self._landing,
                callback_path=config.callback_path if handle_callback else None,
                handle_callback=handle_callback,
            ),
            security,
        )

    def _web_security(self, web_config_file: str | None) -> Callable[[], Security | None]:
        if not web_config_file:
            return lambda: None
        watcher = WebConfigWatcher(web_config_file, on_reload=self.instruments.web_config_read)
        self.instruments.enable_web_config()
        return watcher.current

    def _file_tasks(self, task_ids: list[str]) -> None:
        self.tracker.set_configured(FILE, task_ids)

    def start(self) -> None:
        """Load the task sources, start refreshing and serving. Raises TaskFileError."""
        # Both configured sources name their tasks before either lets go of one: a TaskId
        # moved between --task-id and the task file since the last run keeps what storage
        # knew of it (its ending, whether its failure was counted).
        self.tracker.set_configured(STATIC, self.config.task_ids, let_go=False)
        if self.task_file is not None:
            self.task_file.load()
            self.task_file.start()
        else:
            self.tracker.set_configured(FILE, ())  # restored tasks of a task file gone since
        self.tracker.set_configured(STATIC, self.config.task_ids)
        self.tracker.expire()  # restored tasks that ended longer ago than the retention
        if self.writer is not None:
            self.writer.start()
        self.refresher.start()
        self.web.start()
        log.info("zego-exporter started", extra={
            "version": __version__, "url": self.web.url + self.config.telemetry_path,
            "app_id": self.config.app_id, "tasks": len(self.tracker),
            "discovery": self.config.discovery, "qps": self.config.qps,
        })
        if self.nothing_to_watch():
            log.warning("nothing to watch: discovery is off and no TaskId, task file or "
                        "callback secret is configured, so no task will ever be tracked; pass "
                        "--task-id or --task-file, or drop --no-discovery (ZEGO_DISCOVERY)")
        if self.callbacks is not None:
            log.info("callback endpoint on: ZEGO technical support sends callbacks to this "
                     "path at the exporter's public https address", extra={
                         "path": self.config.callback_path,
                         "local_url": self.web.url + self.config.callback_path,
                         "reconcile_seconds": self.config.policy.callback_reconcile})

    def nothing_to_watch(self) -> bool:
        """No source can ever name a task: a setup mistake, though not an invalid one (the
        web configuration can still be tried out this way)."""
        return not (self.config.discovery or self.config.task_ids
                    or self.task_file is not None or self.callbacks is not None)

    def stop(self) -> None:
        self.web.stop()
        if self.task_file is not None:
            self.task_file.stop()
        self.refresher.stop()
        if self.writer is not None:
            self.writer.stop()  # writes the last changes
        self.client.close()

    def render_metrics(
        self, accept: str, scrape_timeout: float | None,
    ) -> tuple[Iterator[bytes], str]:
        """One scrape: its body as pieces, and their content type.

        Nothing happens until the body is iterated (a HEAD request never does it). Then the
        scrape notes the demand, waits briefly for due refreshes, takes a snapshot of the cache
        and renders it a piece at a time, as the web layer takes the pieces to send them.
        """
        openmetrics = "application/openmetrics-text" in accept  # what Prometheus asks for first
        return (self._scrape(scrape_timeout, openmetrics=openmetrics),
                OPENMETRICS_TYPE if openmetrics else TEXT_TYPE)

    def _scrape(self, scrape_timeout: float | None, *, openmetrics: bool) -> Iterator[bytes]:
        self.refresher.touch()
        deadline = scrape_timeout if scrape_timeout and scrape_timeout > 0 else (
            DEFAULT_SCRAPE_TIMEOUT)
        wait = min(self.config.max_scrape_wait,
                   deadline - SCRAPE_MARGIN - 2 * self.collector.last_scrape_duration)
        if wait > 0:
            self.refresher.wait_for_fresh(wait)
        started = self._timer()
        yield from self._renderer.pieces(self.tracker.snapshot(), self._rest,
                                         openmetrics=openmetrics)
        # Only a scrape whose every piece was taken (and so sent) gets here: one that a client
        # abandoned is closed at its last yield and says nothing about how long a scrape takes.
        self.collector.last_scrape_duration = self._timer() - started

    def _landing(self) -> str:
        config = self.config
        return landing_page(config.telemetry_path, [
            ("ZEGO API", config.api_url),
            ("AppId", str(config.app_id)),
            ("Tracked tasks", str(len(self.tracker))),
            ("Discovery", "on" if config.discovery else "off"),
            ("Budget", f"{config.qps:g} requests/s per Action"),
            ("Ready", "yes" if self.refresher.ready else "not yet"),
            ("Callbacks", (
                f"on at POST {config.callback_path}; polled every "
                f"{config.policy.callback_reconcile:g}s to reconcile"
                if self.callbacks is not None else "off (no callback secret)")),
        ])


def _open_storage(path: str) -> tuple[Store, Saved] | None:
    try:
        return open_store(path)
    except StorageError as exc:  # it always serves; what it learns is then not kept
        log.error("%s; running with memory only", exc)
        return None
