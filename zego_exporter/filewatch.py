"""Notices that files changed: the task file, the web config and the certificates it names.

A `FileWatch` remembers each file's identity, size and modification time and says whether any
of them differ when asked. It only stats: reading, parsing and deciding what a change means are
the caller's job, and it never raises over a file that is missing or unreadable (a file that
goes away or comes back is a change like any other).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

# (inode, device, size, mtime in ns), or None when the file cannot be stat'ed. The inode catches
# a rename over the file (how editors, cert-manager and ConfigMaps replace files) even when the
# size and the modification time happen to match.
_Stamp = tuple[int, int, int, int] | None


class FileWatch:
    """The files to watch, and how they looked when last seen."""

    def __init__(
        self,
        paths: Iterable[str] = (),
        *,
        stat: Callable[[str], os.stat_result] = os.stat,
    ) -> None:
        self._stat = stat
        self._seen: dict[str, _Stamp] = {}
        self.follow(paths)

    def follow(self, paths: Iterable[str]) -> None:
        """Watch exactly `paths` from now on. A path already watched keeps the state last seen
        (so a change made while the caller was reading it still shows); a new one is taken as
        it is now."""
        self._seen = {
            path: self._seen[path] if path in self._seen else self._stamp(path) for path in paths
        }

    def changed(self) -> bool:
        """True when a watched file changed, appeared or went away since the last look."""
        now = {path: self._stamp(path) for path in self._seen}
        if now == self._seen:
            return False
        self._seen = now
        return True

    def _stamp(self, path: str) -> _Stamp:
        try:
            result = self._stat(path)
        except OSError:
            return None
        return (result.st_ino, result.st_dev, result.st_size, result.st_mtime_ns)
