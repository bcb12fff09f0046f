"""Fault injection for the simulated API: what goes wrong, how often, and for which Action.

`Faults` is an immutable set of settings, built in Python or from the admin API's JSON (the
same document `Faults.to_json` writes). `FaultInjector` holds the current settings and a
seeded RNG and decides, request by request, which faults fire; `corrupt_types` and
`truncate` are what the wrong-types and malformed-JSON faults do to an answer. This module
only decides and rewrites values: it never sleeps, touches a socket or the task table.
"""

from __future__ import annotations

import dataclasses
import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True, slots=True)
class Fault:
    """One kind of misbehaviour: fires with probability `rate`, for `action` only if set."""

    rate: float = 1.0
    action: str | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"fault rate must be between 0 and 1, got {self.rate}")
        # Checked by name here because zero-argument super() fails in slotted dataclasses.
        for name in ("seconds", "chunk_delay", "size"):
            value = getattr(self, name, 0)
            if value < 0 and not isinstance(self, ClockSkew):
                raise ValueError(f"fault {name} must be >= 0, got {value}")
        if getattr(self, "chunk_size", 1) < 1:
            raise ValueError("fault chunk_size must be at least 1 byte")
        status = getattr(self, "status", 200)
        if not (100 <= status <= 599 or (status == 0 and isinstance(self, ErrorStatus))):
            raise ValueError("fault status must be an HTTP status between 100 and 599")
        if getattr(self, "form", EMPTY_LIST_FORMS[0]) not in EMPTY_LIST_FORMS:
            raise ValueError(f"fault form must be one of {', '.join(EMPTY_LIST_FORMS)}")
        if getattr(self, "every", 1) < 1:
            raise ValueError("fault every must be at least 1")

    def applies_to(self, action: str) -> bool:
        return self.action is None or self.action == action


@dataclass(frozen=True, slots=True)
class Latency(Fault):
    """Add `seconds` before every answer (or a `rate` share of them)."""

    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class ErrorCode(Fault):
    """Answer with ZEGO Code `code` instead of the Action's result (after the rate limit)."""

    code: int = 400010002


@dataclass(frozen=True, slots=True)
class HttpStatus(Fault):
    """Answer with HTTP `status` and a short text body, as a failing proxy would."""

    status: int = 503


@dataclass(frozen=True, slots=True)
class ErrorStatus(Fault):
    """Send ZEGO's error envelopes (any non-zero Code) with a non-200 HTTP status: `status`,
    or with 0 one that fits the Code (401 signature, 403 permission, 404 task not found, 429
    rate limit, 500/503 system, 400 otherwise). ZEGO's docs never say which status an error
    comes with (zego-api.md section 7)."""

    status: int = 0


EMPTY_LIST_FORMS = ("null_data", "no_data", "null_list", "no_list", "empty_list")


@dataclass(frozen=True, slots=True)
class EmptyList(Fault):
    """Send an empty running-task list as `form`: "null_data" (`"Data": null`), "no_data"
    (no Data), "null_list" (`"TaskList": null`), "no_list" (`"Data": {}`) or "empty_list"
    (`"TaskList": []`, what the docs' example suggests)."""

    form: str = "null_data"


@dataclass(frozen=True, slots=True)
class BadEntries(Fault):
    """Spoil every `every`-th entry of the running-task list (no TaskId, or a Status that is
    not a number), as a service that is not quite consistent would."""

    every: int = 2


@dataclass(frozen=True, slots=True)
class HtmlPage(Fault):
    """Answer with a 502 Bad Gateway HTML page, sent with HTTP `status` (502 or 200)."""

    status: int = 502


@dataclass(frozen=True, slots=True)
class MalformedJson(Fault):
    """Cut the JSON answer short, so that it no longer parses."""


@dataclass(frozen=True, slots=True)
class WrongTypes(Fault):
    """Send fields with the wrong JSON type (Status as a string, a non-list TaskList...)."""


@dataclass(frozen=True, slots=True)
class Slow(Fault):
    """Wait `seconds` before answering: long enough to pass the client's read timeout."""

    seconds: float = 10.0


@dataclass(frozen=True, slots=True)
class Oversized(Fault):
    """Pad the (valid) JSON answer to `size` bytes, sent in `chunk_size` pieces with
    `chunk_delay` seconds between them. Content-Length is always declared."""

    size: int = 32 * 1024 * 1024
    chunk_size: int = 64 * 1024
    chunk_delay: float = 0.0


@dataclass(frozen=True, slots=True)
class Drop(Fault):
    """Close the connection without answering."""


@dataclass(frozen=True, slots=True)
class ClockSkew(Fault):
    """Check request Timestamps against the simulator's clock plus `seconds` (the task
    table keeps the real clock): 601 or more makes every signature look expired."""

    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class Faults:
    """The faults in force; None means off. Build with keywords, e.g.
    `Faults(error=ErrorCode(code=400010000, rate=0.2), latency=Latency(seconds=0.05))`."""

    latency: Latency | None = None
    error: ErrorCode | None = None
    error_status: ErrorStatus | None = None
    empty_list: EmptyList | None = None
    bad_entries: BadEntries | None = None
    http_status: HttpStatus | None = None
    html: HtmlPage | None = None
    malformed_json: MalformedJson | None = None
    wrong_types: WrongTypes | None = None
    slow: Slow | None = None
    oversized: Oversized | None = None
    drop: Drop | None = None
    clock_skew: ClockSkew | None = None

    KINDS: ClassVar[Mapping[str, type[Fault]]] = {
        "latency": Latency, "error": ErrorCode, "error_status": ErrorStatus,
        "empty_list": EmptyList, "bad_entries": BadEntries,
        "http_status": HttpStatus, "html": HtmlPage,
        "malformed_json": MalformedJson, "wrong_types": WrongTypes, "slow": Slow,
        "oversized": Oversized, "drop": Drop, "clock_skew": ClockSkew,
    }

    def active(self) -> list[tuple[str, Fault]]:
        return [(name, fault) for name in self.KINDS
                if (fault := getattr(self, name)) is not None]

    def to_json(self) -> dict[str, dict[str, Any]]:
        return {name: dataclasses.asdict(fault) for name, fault in self.active()}

    @classmethod
    def from_json(cls, doc: object) -> Faults:
        """Faults from `{"error": {"rate": 0.5, "code": 400010002}, "slow": {...}, ...}`.

        Raises ValueError naming the offending key or field.
        """
        if not isinstance(doc, dict):
            raise ValueError("faults must be a JSON object")
        settings: dict[str, Fault] = {}
        for name, value in doc.items():
            kind = cls.KINDS.get(name)
            if kind is None:
                raise ValueError(f"unknown fault {name!r}; known: {', '.join(cls.KINDS)}")
            if value is None:
                continue
            settings[name] = _fault_from_json(kind, name, value)
        return cls(**settings)  # type: ignore[arg-type]  # keys checked against KINDS


def _fault_from_json(kind: type[Fault], name: str, value: object) -> Fault:
    if not isinstance(value, dict):
        raise ValueError(f"fault {name} must be a JSON object of its settings")
    known = {f.name: f for f in dataclasses.fields(kind)}
    arguments: dict[str, object] = {}
    for key, given in value.items():
        setting = known.get(key)
        if setting is None:
            raise ValueError(f"fault {name} has no setting {key!r}; known: {', '.join(known)}")
        arguments[key] = _setting(f"{name}.{key}", setting.default, given)
    return kind(**arguments)  # type: ignore[arg-type]  # fields checked above


def _setting(where: str, default: object, given: object) -> object:
    """`given`, checked against the type of the setting's default (None: optional text)."""
    if default is None:
        if given is None or isinstance(given, str):
            return given
        raise ValueError(f"fault {where} must be a string or null, got {given!r}")
    if isinstance(default, str):
        if isinstance(given, str):
            return given
        raise ValueError(f"fault {where} must be a string, got {given!r}")
    if isinstance(given, bool) or not isinstance(given, (int, float)):
        raise ValueError(f"fault {where} must be a number, got {given!r}")
    if isinstance(default, float):
        return float(given)
    if not isinstance(given, int):
        raise ValueError(f"fault {where} must be an integer, got {given!r}")
    return given


@dataclass(frozen=True, slots=True)
class Decision:
    """What happens to one request; `fired` names the faults that fired, for the stats."""

    fired: tuple[str, ...] = ()
    delay: float = 0.0
    clock_skew: float = 0.0
    drop: bool = False
    error_status: int | None = None
    empty_list: str | None = None
    bad_entries: int | None = None
    http_status: int | None = None
    html_status: int | None = None
    error_code: int | None = None
    malformed_json: bool = False
    wrong_types: bool = False
    oversized: Oversized | None = None


class FaultInjector:
    """The current Faults and a seeded RNG; `decide` is thread-safe.

    Each request draws one number per fault that applies to its Action, in a fixed order,
    so a given seed and request order give the same decisions.
    """

    def __init__(self, faults: Faults | None = None, *, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._faults = faults if faults is not None else Faults()
        self._rng = random.Random(f"zego-simulator-faults:{seed}")

    @property
    def faults(self) -> Faults:
        with self._lock:
            return self._faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        with self._lock:
            self._faults = faults

    def decide(self, action: str) -> Decision:
        with self._lock:
            fired = [(name, fault) for name, fault in self._faults.active()
                     if fault.applies_to(action) and self._rng.random() < fault.rate]
        if not fired:
            return Decision()
        changes: dict[str, Any] = {"fired": tuple(name for name, _ in fired)}
        delay = 0.0
        for _name, fault in fired:
            if isinstance(fault, (Latency, Slow)):
                delay += fault.seconds
            elif isinstance(fault, ClockSkew):
                changes["clock_skew"] = fault.seconds
            elif isinstance(fault, Drop):
                changes["drop"] = True
            elif isinstance(fault, HttpStatus):
                changes["http_status"] = fault.status
            elif isinstance(fault, ErrorStatus):
                changes["error_status"] = fault.status
            elif isinstance(fault, EmptyList):
                changes["empty_list"] = fault.form
            elif isinstance(fault, BadEntries):
                changes["bad_entries"] = fault.every
            elif isinstance(fault, HtmlPage):
                changes["html_status"] = fault.status
            elif isinstance(fault, ErrorCode):
                changes["error_code"] = fault.code
            elif isinstance(fault, MalformedJson):
                changes["malformed_json"] = True
            elif isinstance(fault, WrongTypes):
                changes["wrong_types"] = True
            elif isinstance(fault, Oversized):
                changes["oversized"] = fault
        return Decision(delay=delay, **changes)


def corrupt_types(envelope: dict[str, Any]) -> dict[str, Any]:
    """The envelope with the wrong JSON types where a client expects numbers or lists (not a
    number written as a string: ZEGO may well do that, and a client should read it)."""
    broken = dict(envelope)
    data = broken.get("Data")
    if broken.get("Code") != 0 or not isinstance(data, dict):
        broken["Code"] = [broken.get("Code")]
        return broken
    data = dict(data)
    if "TaskList" in data:
        data["TaskList"] = {"Tasks": data["TaskList"]}
    else:
        data["Status"] = {"Value": data.get("Status")}
        data["CreateTime"] = "yesterday"
    broken["Data"] = data
    return broken


def error_status_for(code: int) -> int:
    """An HTTP status that fits a ZEGO Code, as a REST-minded service might choose it."""
    if code in (100000004, 100000005):
        return 401
    if code in (400010001, 400000002):
        return 403
    if code == 400000005:
        return 404
    if code == 400010009:
        return 429
    if code in (400010000, 100000015):
        return 500
    if code in (400010002, 400010007):
        return 503
    return 400


def empty_list_data(form: str) -> dict[str, Any]:
    """The envelope's Data entry for an empty running-task list in `form` ({}: no Data)."""
    forms: dict[str, dict[str, Any]] = {
        "null_data": {"Data": None}, "no_data": {}, "null_list": {"Data": {"TaskList": None}},
        "no_list": {"Data": {}}, "empty_list": {"Data": {"TaskList": []}}}
    return forms[form]


def spoil_entries(tasks: list[dict[str, Any]], every: int) -> list[dict[str, Any]]:
    """Every `every`-th entry spoiled: alternately without TaskId, or with a Status that is
    not a number."""
    spoiled = []
    for index, task in enumerate(tasks):
        if index % every != every - 1:
            spoiled.append(task)
        elif (index // every) % 2:
            spoiled.append({**task, "Status": "streaming"})
        else:
            spoiled.append({key: value for key, value in task.items() if key != "TaskId"})
    return spoiled


def truncate(body: bytes) -> bytes:
    """A proper prefix of a JSON object never parses: keep two thirds of it."""
    return body[: max(1, len(body) * 2 // 3)]
