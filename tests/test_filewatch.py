"""The shared file watcher: what counts as a change, and what `follow` keeps."""

from __future__ import annotations

import os
from pathlib import Path

from zego_exporter.filewatch import FileWatch


def test_nothing_changed_until_a_file_does(tmp_path: Path) -> None:
    path = tmp_path / "a"
    path.write_text("one\n")
    watch = FileWatch([str(path)])

    assert not watch.changed()
    path.write_text("one\ntwo\n")
    assert watch.changed()
    assert not watch.changed()  # the new state is remembered


def test_a_rename_over_the_file_is_a_change_even_with_equal_size_and_time(tmp_path: Path) -> None:
    path, replacement = tmp_path / "a", tmp_path / "a.new"
    path.write_text("same\n")
    replacement.write_text("same\n")
    stat = path.stat()
    os.utime(replacement, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    watch = FileWatch([str(path)])

    os.replace(replacement, path)

    assert watch.changed()


def test_a_file_going_and_coming_back_are_changes_and_never_raise(tmp_path: Path) -> None:
    path = tmp_path / "a"
    watch = FileWatch([str(path)])  # not there yet
    assert not watch.changed()

    path.write_text("here\n")
    assert watch.changed()
    path.unlink()
    assert watch.changed()
    assert not watch.changed()


def test_follow_keeps_what_it_saw_of_known_files_and_takes_new_ones_as_they_are(
    tmp_path: Path,
) -> None:
    config, cert = tmp_path / "config", tmp_path / "cert"
    config.write_text("v1\n")
    cert.write_text("cert\n")
    watch = FileWatch([str(config)])
    config.write_text("v2, written while the caller was reading v1\n")

    watch.follow([str(config), str(cert)])

    assert watch.changed()  # the edit made before follow() is not lost
    cert.write_text("renewed cert\n")
    assert watch.changed()  # a newly followed file is watched
    watch.follow([str(cert)])
    config.write_text("v3\n")
    assert not watch.changed()  # no longer watched


def test_stat_is_a_parameter(tmp_path: Path) -> None:
    calls: list[str] = []

    def stat(path: str) -> os.stat_result:
        calls.append(path)
        raise FileNotFoundError(path)

    watch = FileWatch(["x", "y"], stat=stat)
    assert not watch.changed()
    assert calls == ["x", "y", "x", "y"]
