"""Direct instrumentation of the exporter's own activity: API calls, unreadable entries of the
running-task list, callbacks received, web config reads, storage writes.

These are live counters and a histogram (prometheus_client's own types), updated as calls
happen; per-task values never live here (they come from the tracker via the collector).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.registry import CollectorRegistry

from zego_exporter.responses import ACTIONS

# Outcomes that alerts look at: their series exist at 0 from the start, so that the first
# occurrence shows up in increase() (a series born at 1 shows no increase).
ALERTED_OUTCOMES = ("0", "400010009", "100000004", "100000005")
CALLBACK_EVENT_TYPES = ("3", "4")
CALLBACK_RESULTS = ("accepted", "bad_signature", "wrong_app", "invalid", "ignored")


class Instruments:
    """The exporter's self-instrumentation, registered in the registries it is given."""

    def __init__(self) -> None:
        # `_created` series double the output and no dashboard or alert here reads them.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.api_requests = Counter(
            "zego_digital_human_api_requests",
            "ZEGO API calls made by the exporter, by Action and outcome: code is \"0\" on "
            "success, else ZEGO's Code, http_<status>, timeout, connection_error or "
            "invalid_response. An answer in ZEGO's JSON envelope is counted by its Code "
            "whatever the HTTP status it came with. Counted live.",
            ("action", "code"),
            registry=None,
        )
        # Not in the contract's table: a list that is used although some of its entries are
        # not is neither a failed call nor a clean one, and must not pass unnoticed.
        self.skipped_entries = Counter(
            "zego_digital_human_skipped_task_entries",
            "Entries of QueryDigitalHumanStreamTasks' running-task list that could not be read "
            "(no TaskId, a Status or CreateTime that is not a number...) and were left out; "
            "the rest of the list was used. The exporter logs each new count with ZEGO's "
            "RequestId. Counted live.",
            registry=None,
        )
        self.api_duration = Histogram(
            "zego_digital_human_api_request_duration_seconds",
            "Latency of ZEGO API calls made by the exporter, by Action. Observed live.",
            ("action",),
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=None,
        )
        self.callbacks = Counter(
            "zego_digital_human_callbacks",
            "ZEGO callbacks received, by EventType and result (accepted, bad_signature, "
            "wrong_app: correctly signed but for another AppId, invalid, ignored). Counted "
            "live.",
            ("event_type", "result"),
            registry=None,
        )
        self.web_config_valid = Gauge(
            "zego_digital_human_web_config_last_reload_successful",
            "1 if the web config file (--web.config.file) was valid when last read. While it "
            "is not, every request but /-/healthy is answered 500, scrapes included, so a 0 is "
            "rarely seen: watch up. The file is checked at most once a second, when requests "
            "come. Set live.",
            registry=None,
        )
        # Not in the contract's table: with --storage.path, the one sign besides the log that
        # what the exporter learns is not being kept.
        self.storage_ok = Gauge(
            "zego_digital_human_storage_last_write_successful",
            "1 if the last write of the storage file (--storage.path) worked, 0 while writes "
            "fail (a full disk, an I/O error) or when no file could be opened at start (another "
            "exporter has it): what is learned meanwhile would not survive a restart, and "
            "failures_total holds back new failures until they are written. Written at most "
            "every half second, when something changed. Set live.",
            registry=None,
        )
        self._web_config = False
        self._storage = False
        for action in ACTIONS:
            self.api_duration.labels(action)
            for outcome in ALERTED_OUTCOMES:
                self.api_requests.labels(action, outcome)

    def enable_callbacks(self) -> None:
        """Show the callback counters at 0 once the endpoint exists."""
        for event_type in CALLBACK_EVENT_TYPES:
            for result in CALLBACK_RESULTS:
                self.callbacks.labels(event_type, result)

    def enable_web_config(self) -> None:
        """Export the web config gauge: only with --web.config.file, before register()."""
        self._web_config = True

    def enable_storage(self, opened: bool) -> None:
        """Export the storage gauge: only with --storage.path, before register(); `opened`:
        whether a file could be opened."""
        self._storage = True
        self.storage_written(opened)

    def register(self, registry: CollectorRegistry) -> None:
        metrics = [self.api_requests, self.api_duration, self.skipped_entries, self.callbacks]
        if self._web_config:
            metrics.append(self.web_config_valid)
        if self._storage:
            metrics.append(self.storage_ok)
        for metric in metrics:
            registry.register(metric)

    def observe_api(self, action: str, outcome: str, seconds: float) -> None:
        """The client's observer: one call of `action` ended with `outcome` after `seconds`."""
        self.api_requests.labels(action, outcome).inc()
        self.api_duration.labels(action).observe(seconds)

    def count_skipped_entries(self, entries: int) -> None:
        """The refresh engine's count_skipped: `entries` list entries were left out."""
        self.skipped_entries.inc(entries)

    def count_callback(self, event_type: str, result: str) -> None:
        self.callbacks.labels(event_type, result).inc()

    def web_config_read(self, valid: bool) -> None:
        """The web config watcher's observer: the file was just read, valid or not."""
        self.web_config_valid.set(1 if valid else 0)

    def storage_written(self, ok: bool) -> None:
        """The storage writer's observer: a write of the file just worked, or failed."""
        self.storage_ok.set(1 if ok else 0)
