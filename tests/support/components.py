"""Real programs the tests need (promtool, prometheus, podman...): present, or a clear failure."""

from __future__ import annotations

import os
import shutil

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


# Components scripts/test.sh cannot install, and where they come from instead.
NOT_INSTALLED_BY_THE_TEST_SCRIPT = {
    "kubectl": "the development and CI machines have it; Debian's packages have no kubectl with "
               "kustomize components (kubernetes-client is 1.20): install kubectl 1.21 or newer",
}


def require_binary(name: str) -> str:
    """The path of a real component; a failure in CI when it is missing, a skip elsewhere."""
    path = shutil.which(name)
    if path is None:
        where = NOT_INSTALLED_BY_THE_TEST_SCRIPT.get(
            name, "run `bash scripts/test.sh`, which installs it")
        message = f"{name} not found: {where}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path
