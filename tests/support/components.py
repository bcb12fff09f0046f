"""Real programs the tests need (promtool, prometheus, podman...): present, or a clear failure."""

from __future__ import annotations

import os
import shutil

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require_binary(name: str) -> str:
    """The path of a real component; a failure in CI when it is missing, a skip elsewhere."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} not found: run `bash scripts/test.sh`, which installs it"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path
