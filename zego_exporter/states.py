"""The task state vocabulary: ZEGO's Status codes and the states the exporter shows for them.

ZEGO describes a stream task by a Status number (1 initializing, 2 init_failed, 3 streaming,
4 stopping; 5 stopped, which its docs no longer list). The exporter shows one of `STATES` per
task: the state of its Status, or `not_found` (ZEGO answers "task not found" for a task this
exporter never saw) or `unknown` (any other Status, or no answer yet). The tracker, the
collector, `check` and the simulator all take these names and numbers from here, so a metric
label, a table cell and a simulated answer can never disagree. This module holds values only:
it must never import another part of the exporter.
"""

from __future__ import annotations

from typing import Final

STATUS_INITIALIZING: Final = 1
STATUS_INIT_FAILED: Final = 2
STATUS_STREAMING: Final = 3
STATUS_STOPPING: Final = 4
STATUS_STOPPED: Final = 5

STATUS_STATES: Final = {
    STATUS_INITIALIZING: "initializing",
    STATUS_INIT_FAILED: "init_failed",
    STATUS_STREAMING: "streaming",
    STATUS_STOPPING: "stopping",
    STATUS_STOPPED: "stopped",
}
RUNNING_STATUSES: Final = frozenset({STATUS_INITIALIZING, STATUS_STREAMING})
"""The Statuses QueryDigitalHumanStreamTasks lists."""

NOT_FOUND: Final = "not_found"
UNKNOWN: Final = "unknown"
STATES: Final = (*STATUS_STATES.values(), NOT_FOUND, UNKNOWN)
"""Every value of the `state` label, in the order the exposition writes them."""
TERMINAL_STATES: Final = frozenset({"init_failed", "stopped", NOT_FOUND})


def state_of(status: int) -> str:
    """The state shown for a Status from ZEGO; `unknown` for one this version does not know."""
    return STATUS_STATES.get(status, UNKNOWN)
