"""What the benchmarks' plots need, checked before a run rather than after it.

A benchmark that runs for ten minutes and then fails on `import matplotlib` loses its figures;
`require_matplotlib` makes the script refuse at once, naming the fix. It must never import
matplotlib itself at module level: the benchmarks run without it when no plot is asked for.
"""

from __future__ import annotations

import argparse
import importlib.util


def require_matplotlib(parser: argparse.ArgumentParser, flag: str = "--plot") -> None:
    """Exit 2 with one line when matplotlib is missing (`parser.error`)."""
    if importlib.util.find_spec("matplotlib") is None:
        parser.error(f"{flag} needs matplotlib: pip install -e '.[bench]' first")
