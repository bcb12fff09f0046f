"""Renders the metric families of `families.py` in the Prometheus text format and in OpenMetrics,
fast, and a piece at a time.

prometheus_client builds a Sample object per sample and escapes every label of every sample;
with 10,000 tasks that is about 130,000 samples. Here each family is written from its spec (the
same specs the collector walks), a chunk of rows at a time, each line one f-string of constant
text and values; a chunk's label values are checked at once for a quote, backslash or newline,
and only a chunk that has one is escaped (the check is made once per scrape for the families
reading the same labels of the same rows); floats skip the overhead of floatToGoString. The text
is made as it is taken, in pieces of about PIECE_CHARS, so a scrape in progress holds a few
hundred KB whatever the number of tasks. Both formats take this path (Prometheus asks for
OpenMetrics first); they differ in a few family headers and the closing `# EOF`. The output is
byte-identical to prometheus_client's `generate_latest` (either format) over `ZegoCollector`
plus the other collectors (tests/test_exposition.py holds it to that). This module renders
only: it never takes a snapshot or calls the API itself.
"""

from __future__ import annotations

from bisect import bisect
from collections.abc import Callable, Iterator, Sequence
from itertools import chain, compress, islice, repeat
from typing import Any

from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from zego_exporter.collector import ZegoCollector
from zego_exporter.families import FAMILIES, PREFIX, Family, OneHot, Scrape
from zego_exporter.tracker import Snapshot

_ONE, _ZERO = "1.0", "0.0"
_EOF = "# EOF\n"
# prometheus_client's own float formatting (Go style), so both renderers agree to the byte.
_go_float: Callable[[float], str] = floatToGoString
# Status codes and failure counts are small integers: their text never changes.
_SMALL_INTS: dict[int, str] = {n: _go_float(n) for n in range(-1, 100)}


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _header(name: str, kind: str, help_text: str, *, openmetrics: bool) -> str:
    escaped = help_text.replace("\\", r"\\").replace("\n", r"\n")
    if openmetrics:
        escaped = escaped.replace('"', r"\"")
    return f"# HELP {name} {escaped}\n# TYPE {name} {kind}\n"


def _interleave(parts: Sequence[str], first: int) -> Callable[[Sequence[str]], str]:
    """A function of label values `v` giving parts[0] v[first] parts[1] v[first + 1] ... parts[-1].

    Written out for up to four values: one f-string is several times faster than a join or
    a %-format, and this runs for every row of a one-hot family.
    """
    i = first
    match parts:
        case [a]:
            return lambda v: a
        case [a, b]:
            return lambda v: f"{a}{v[i]}{b}"
        case [a, b, c]:
            return lambda v: f"{a}{v[i]}{b}{v[i + 1]}{c}"
        case [a, b, c, d]:
            return lambda v: f"{a}{v[i]}{b}{v[i + 1]}{c}{v[i + 2]}{d}"
        case [a, b, c, d, e]:
            return lambda v: f"{a}{v[i]}{b}{v[i + 1]}{c}{v[i + 2]}{d}{v[i + 3]}{e}"
    *inner, last = parts
    count = len(inner)
    return lambda v: "".join(
        [part + value for part, value in zip(inner, v[i:i + count], strict=True)]) + last


_Lines = Callable[[list[Sequence[str]], list[str]], list[str]]


def _line_writer(parts: Sequence[str]) -> _Lines:
    """A function of rows' label values and value texts giving their sample lines.

    The same as _interleave, for a whole chunk of rows in one comprehension: one f-string per
    line with nothing called, which is what keeps this close to a renderer written by hand.
    """
    match parts:
        case [a]:
            return lambda labels, texts: [f"{a}{t}\n" for t in texts]
        case [a, b]:
            return lambda labels, texts: [f"{a}{x}{b}{t}\n"
                                          for (x,), t in zip(labels, texts, strict=True)]
        case [a, b, c]:
            return lambda labels, texts: [f"{a}{x}{b}{y}{c}{t}\n"
                                          for (x, y), t in zip(labels, texts, strict=True)]
        case [a, b, c, d]:
            return lambda labels, texts: [f"{a}{x}{b}{y}{c}{z}{d}{t}\n"
                                          for (x, y, z), t in zip(labels, texts, strict=True)]
        case [a, b, c, d, e]:
            return lambda labels, texts: [f"{a}{w}{b}{x}{c}{y}{d}{z}{e}{t}\n"
                                          for (w, x, y, z), t in zip(labels, texts, strict=True)]
    text = _interleave(parts, 0)
    return lambda labels, texts: [f"{text(v)}{t}\n" for v, t in zip(labels, texts, strict=True)]


def _label_parts(opening: str, names: Sequence[str], closing: str) -> list[str]:
    """The constant text around the label values of `names`: opening + 'a="', '",b="', ...,
    '"' + closing; just opening + closing when there are none."""
    if not names:
        return [opening + closing]
    return [f'{opening}{names[0]}="', *(f'",{name}="' for name in names[1:]), '"' + closing]


def _needs_escaping(labels: list[Sequence[str]]) -> bool:
    probe = "".join(chain.from_iterable(labels))
    return '"' in probe or "\\" in probe or "\n" in probe


def _always_one(row: object, now: float) -> float:
    return 1


def _value_text(value: float) -> str:
    """floatToGoString(value), the same text, about twice as fast on the values exported here.

    Small integers (status codes, counts) are looked up. Otherwise this is prometheus_client's
    own conversion (Python's shortest repr; positive values with more than six digits before the
    point in Go's exponent form) without its checks for infinities and NaN up front: those,
    like every repr without a point, go to floatToGoString itself.
    """
    if type(value) is int:
        text = _SMALL_INTS.get(value)
        if text is not None:
            return text
    text = repr(float(value))
    dot = text.find(".")
    if dot > 6 and value > 0:
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1:]}".rstrip("0.")
        return f"{mantissa}e+0{dot - 1}"
    return _go_float(value) if dot < 0 else text


ROWS_PER_CHUNK = 64
"""Rows rendered at a time (~70 KB of text for a one-hot family, ~9 KB for the others). Every
family over the same rows cuts them the same way, so that each chunk's escaping check is made
once per scrape (see _Plan.chunks): one byte per chunk, 1.6 KB at 100,000 tasks."""


class _Plan:
    """How one family is written: the constant text around its values, worked out once."""

    def __init__(self, spec: Family[Any]) -> None:
        self.spec = spec
        self.name = spec.name
        family = PREFIX + spec.name
        sample = family + {"counter": "_total", "info": "_info"}.get(spec.kind, "")
        # The text format names counter and info families by their samples; info is a gauge.
        self.headers = {False: (sample, "gauge" if spec.kind == "info" else spec.kind),
                        True: (family, spec.kind)}
        self.value = spec.value or _always_one
        # Families reading the same label values of the same rows share escaping checks.
        self.check_key = (spec.rows, spec.label_values)
        labels, one_hot = spec.labels, spec.one_hot
        if one_hot is None:
            braces = ("{", "} ") if labels else ("", " ")
            self.write = _line_writer(_label_parts(sample + braces[0], labels, braces[1]))
            return
        # head + 'state="streaming"' + tail, the one-hot label in its sorted place.
        at = bisect(labels, one_hot.label)
        before, after = labels[:at], labels[at:]
        self.head = _interleave(_label_parts(sample + "{", before, "," if before else ""), 0)
        self.tail = _interleave(_label_parts(",", after, "} ") if after else ["} "], at)
        # The sample lines' label and value for each current value, worked out once.
        self.variants = {
            current: [(f'{one_hot.label}="{choice}"', _ONE if choice == current else _ZERO)
                      for choice in one_hot.values]
            for current in one_hot.values
        }
        self.none_current = [(label, _ZERO) for label, _ in self.variants[one_hot.values[0]]]

    def chunks(self, scrape: Scrape, checked: dict[object, bytearray]) -> Iterator[str]:
        """The family's sample lines, ROWS_PER_CHUNK rows at a time."""
        spec, now = self.spec, scrape.now
        rows = iter(spec.rows(scrape))
        escape = checked.setdefault(self.check_key, bytearray())
        for index, chunk in enumerate(iter(lambda: list(islice(rows, ROWS_PER_CHUNK)), [])):
            labels: list[Sequence[str]] = list(map(spec.label_values, chunk))
            if index == len(escape):
                escape.append(_needs_escaping(labels))
            if escape[index]:
                labels = [tuple(map(_escape, row_labels)) for row_labels in labels]
            if spec.one_hot is not None:
                yield "".join(self._one_hot_lines(chunk, labels, spec.one_hot))
                continue
            values = list(map(self.value, chunk, repeat(now)))
            if None in values:  # rows without a sample, e.g. a task's age before CreateTime
                labels = list(compress(labels, [value is not None for value in values]))
            texts = [_value_text(value) for value in values if value is not None]
            yield "".join(self.write(labels, texts))

    def _one_hot_lines(self, chunk: list[Any], labels: list[Sequence[str]],
                       one_hot: OneHot[Any]) -> list[str]:
        head, tail, variants, none_current = self.head, self.tail, self.variants, self.none_current
        out: list[str] = []
        for row_labels, current in zip(labels, map(one_hot.current, chunk), strict=True):
            start, end = head(row_labels), tail(row_labels)
            out += [f"{start}{label}{end}{value}\n"
                    for label, value in variants.get(current, none_current)]
        return out


PIECE_CHARS = 128 * 1024
"""Text gathered before a piece is handed on: big enough that the per-piece costs (gzip flush,
chunk header, system call) stay small, small enough that a scrape's buffers stay a few hundred
KB whatever the task count."""


class TextRenderer:
    """Renders snapshots in either format; it keeps nothing between scrapes."""

    def __init__(self, collector: ZegoCollector) -> None:
        self._collector = collector
        self._plans = tuple(_Plan(spec) for spec in FAMILIES)

    def pieces(self, snap: Snapshot, rest: Collector | None = None, *,
               openmetrics: bool = False) -> Iterator[bytes]:
        """The exposition of `snap`, then of `rest` (other collectors), as UTF-8 pieces of about
        PIECE_CHARS each; OpenMetrics ends with a single `# EOF`. Rendering happens as the
        pieces are taken, so memory stays the same whatever the number of tasks."""
        gathered: list[str] = []
        size = 0
        for text in self._texts(snap, rest, openmetrics=openmetrics):
            gathered.append(text)
            size += len(text)
            if size >= PIECE_CHARS:
                yield "".join(gathered).encode()
                gathered.clear()
                size = 0
        if gathered:
            yield "".join(gathered).encode()

    def render(self, snap: Snapshot, rest: Collector | None = None) -> bytes:
        """The whole text exposition of `snap` and `rest` at once (tests, benchmarks)."""
        return b"".join(self.pieces(snap, rest))

    def render_openmetrics(self, snap: Snapshot, rest: Collector | None = None) -> bytes:
        """The whole OpenMetrics exposition of `snap` and `rest` at once (tests, benchmarks)."""
        return b"".join(self.pieces(snap, rest, openmetrics=True))

    def _texts(self, snap: Snapshot, rest: Collector | None, *,
               openmetrics: bool) -> Iterator[str]:
        scrape, help_texts = self._collector.scrape(snap), self._collector.help
        checked: dict[object, bytearray] = {}
        for plan in self._plans:
            name, kind = plan.headers[openmetrics]
            yield _header(name, kind, help_texts[plan.name], openmetrics=openmetrics)
            yield from plan.chunks(scrape, checked)
        if rest is None:
            if openmetrics:
                yield _EOF
        elif openmetrics:
            yield generate_openmetrics(rest).decode()  # type: ignore[no-untyped-call]
        else:
            yield generate_latest(rest).decode()
