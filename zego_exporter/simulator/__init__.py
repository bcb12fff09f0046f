"""A faithful stand-in for the ZEGO Digital Human server API, for tests, benchmarks and demos.

`Simulator` serves the real wire protocol on loopback (signed `POST /?Action=...`, the
documented gateway codes, a strict 10-per-second sliding window per Action) over a seeded
`World` of tasks whose lifecycles are computed from an injectable clock, with `Faults`
switchable at run time and every request counted in `Simulator.stats`. It follows ZEGO's
current docs by default: GetStatus never answers Status 5, a stopped task answers "task not
found" (`ended_tasks="status-5"` keeps the older reading). Where the docs are silent, faults
play the other readings: errors inside non-200 HTTP statuses (`ErrorStatus`), an empty list
as `Data: null` (`EmptyList`), unreadable list entries (`BadEntries`), and an Action denied
to the AppId (`ErrorCode(code=400010001, action=...)`). It is our own model of ZEGO, so the
tests also run against an independent stand-in (tests/standin.py). The package imports
nothing from the exporter beyond the client's own signing, error codes and Action names, and
must never be used to reach the real API.

    with Simulator(app_id, Secret("..."), world=World.static(300)) as sim:
        client = ZegoClient(app_id, Secret("..."), sim.url)
        ...
        assert sim.stats.peak(accepted_only=True) <= 10

With a callback URL and secret (`Simulator(..., callback_url=..., callback_secret=...)`,
`enable_callbacks`, or `simulate --callback-url --callback-secret`), a `CallbackSender` also
POSTs a signed EventType 3 callback for every task status change, lifecycle steps and changes
by hand alike, retrying as ZEGO does; `CallbackFaults` make it misbehave for tests.

Admin API (JSON, no signature, never counted in the stats), under `<url>/admin/`:

    GET    tasks[?status=3&limit=N]     tasks that exist now, with Count and Now
    POST   tasks                        add {"Status"?, "RoomId"?, "StreamId"?, "FailReason"?,
                                        "TaskId"?, "CreateTime"?}; no Status: follow the
                                        lifecycle, else pinned. Answers 201 {"TaskId": ...}
    GET    tasks/<id>                   one task and its schedule (404 when unknown)
    DELETE tasks/<id>                   remove: it answers 400000005 from now on
    POST   tasks/<id>/status            pin {"Status": 7, "FailReason"?: "..."}
    POST   tasks/<id>/fail              pin to 2 with {"FailReason"?: "..."}
    POST   tasks/<id>/stream            pin to 3
    POST   tasks/<id>/stop              stopping (4), stopped (5), then gone
    GET    faults                       the faults in force (`Faults.to_json` format)
    POST   faults  (or PUT)             replace them, e.g. {"error": {"rate": 0.5, "code":
                                        400010002, "action": "GetDigitalHumanStreamTaskStatus"}}
    DELETE faults                       clear them
    GET    stats                        counters per Action and peak arrivals per second
    POST   stats/reset (or DELETE stats)  forget counters and the request log
    GET    requests[?limit=N]           the last N logged requests (default 1000)
    GET    showcase                     TaskIds per state of the showcase tasks
    GET    callbacks                    callback URL, faults and delivery counters (404: off)
    POST   callbacks  (or PUT)          replace the callback faults, e.g. {"drop": true}
"""

from __future__ import annotations

from zego_exporter.simulator.actions import ENDED_NOT_FOUND, ENDED_STATUS_5, ENDED_TASKS
from zego_exporter.simulator.callbacks import (
    RETRY_GAPS,
    Attempt,
    CallbackFaults,
    CallbackSender,
    DeliveryStats,
)
from zego_exporter.simulator.faults import (
    BadEntries,
    ClockSkew,
    Drop,
    EmptyList,
    ErrorCode,
    ErrorStatus,
    Fault,
    FaultInjector,
    Faults,
    HtmlPage,
    HttpStatus,
    Latency,
    MalformedJson,
    Oversized,
    Slow,
    WrongTypes,
)
from zego_exporter.simulator.gateway import SlidingWindowLimiter, check_common_params
from zego_exporter.simulator.server import Simulator
from zego_exporter.simulator.stats import ActionStats, LoggedRequest, Stats
from zego_exporter.simulator.world import (
    FAIL_REASONS,
    INIT_FAILED,
    INITIALIZING,
    LIFECYCLES,
    STOPPED,
    STOPPING,
    STREAMING,
    UNEXPECTED_STATUS,
    Lifecycle,
    TaskView,
    World,
)

__all__ = [
    "ENDED_NOT_FOUND",
    "ENDED_STATUS_5",
    "ENDED_TASKS",
    "FAIL_REASONS",
    "INITIALIZING",
    "INIT_FAILED",
    "LIFECYCLES",
    "RETRY_GAPS",
    "STOPPED",
    "STOPPING",
    "STREAMING",
    "UNEXPECTED_STATUS",
    "ActionStats",
    "Attempt",
    "BadEntries",
    "CallbackFaults",
    "CallbackSender",
    "ClockSkew",
    "DeliveryStats",
    "Drop",
    "EmptyList",
    "ErrorCode",
    "ErrorStatus",
    "Fault",
    "FaultInjector",
    "Faults",
    "HtmlPage",
    "HttpStatus",
    "Latency",
    "Lifecycle",
    "LoggedRequest",
    "MalformedJson",
    "Oversized",
    "Simulator",
    "SlidingWindowLimiter",
    "Slow",
    "Stats",
    "TaskView",
    "World",
    "WrongTypes",
    "check_common_params",
]
