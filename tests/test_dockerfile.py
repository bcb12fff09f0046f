"""The Dockerfile: hadolint-clean, and consistent with the package and the contract.

tests/test_image.py builds and runs the image (podman, on a stand-in base); these checks are
instant and catch what a build would not: an entry point that is not the console script, a
wrong port, a root user, a leaky build context.
"""

from __future__ import annotations

import fnmatch
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require_binary

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DEFAULT_PORT = "9877"  # contract: --web.listen-address defaults to :9877


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        keyword, _, arguments = full.partition(" ")
        result.append((keyword.upper(), arguments.strip()))
    return result


def final_stage() -> list[tuple[str, str]]:
    everything = instructions()
    last_from = max(i for i, (keyword, _) in enumerate(everything) if keyword == "FROM")
    return everything[last_from:]


def only(stage: list[tuple[str, str]], keyword: str) -> str:
    found = [arguments for k, arguments in stage if k == keyword]
    assert len(found) == 1, f"expected one {keyword} in the final stage, found {found}"
    return found[0]


def hadolint_path() -> str:
    beside_python = Path(sys.executable).parent / "hadolint"
    if beside_python.is_file():
        return str(beside_python)
    return require_binary("hadolint")  # on PATH, or fail in CI / skip elsewhere


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run(
        [hadolint_path(), "--no-color", "--failure-threshold", "warning", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_runtime_image_is_python_slim_pinned_by_tag() -> None:
    base = only(final_stage(), "FROM")
    assert base == "python:3.12-slim"


def test_entrypoint_is_the_console_script_and_cmd_is_serve() -> None:
    stage = final_stage()
    entrypoint = json.loads(only(stage, "ENTRYPOINT"))
    cmd = json.loads(only(stage, "CMD"))

    assert entrypoint == ["zego-exporter"]
    assert cmd == ["serve"]


def test_entrypoint_is_declared_in_pyproject() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    entrypoint = json.loads(only(final_stage(), "ENTRYPOINT"))

    assert scripts.get(entrypoint[0]) == "zego_exporter.cli:main"


def test_exposes_the_default_port_and_checks_health_there() -> None:
    stage = final_stage()
    assert only(stage, "EXPOSE").split() == [DEFAULT_PORT]
    assert f"http://127.0.0.1:{DEFAULT_PORT}/-/healthy" in only(stage, "HEALTHCHECK")


def test_runs_as_a_numeric_non_root_user() -> None:
    user = only(final_stage(), "USER")
    ids = user.split(":")

    assert all(part.isdigit() for part in ids), f"USER {user} must be numeric (uid[:gid])"
    assert all(int(part) != 0 for part in ids), f"USER {user} must not be root"


def test_python_does_not_buffer_or_write_bytecode() -> None:
    env = " ".join(arguments for keyword, arguments in final_stage() if keyword == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "PYTHONUNBUFFERED=1" in env


def test_oci_labels() -> None:
    labels = " ".join(arguments for keyword, arguments in final_stage() if keyword == "LABEL")
    for name in ("title", "description", "source", "licenses", "version"):
        assert f"org.opencontainers.image.{name}=" in labels
    assert 'org.opencontainers.image.version="${VERSION}"' in labels


# ---------------------------------------------------------------------------------------------
# .dockerignore


def dockerignore_excludes(path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        glob = pattern.lstrip("!").rstrip("/")
        globs = [glob, glob.removeprefix("**/")]
        if any(fnmatch.fnmatchcase(c, g) for c in candidates for g in globs):
            excluded = not negated
    return excluded


@pytest.mark.parametrize(
    "path",
    [
        ".git/HEAD",
        ".venv/bin/python",
        ".pytest_cache/v/cache",
        ".mypy_cache/3.11/x.json",
        ".ruff_cache/content",
        ".hypothesis/examples/x",
        "zego_exporter/__pycache__/cli.cpython-312.pyc",
        "zego_exporter.egg-info/PKG-INFO",
        "tests/test_webconfig.py",
        ".env",
    ],
)
def test_dockerignore_keeps_out(path: str) -> None:
    assert dockerignore_excludes(path)


def test_dockerignore_keeps_what_the_dockerfile_copies() -> None:
    copied = [
        source
        for keyword, arguments in instructions()
        if keyword == "COPY" and "--from" not in arguments
        for source in arguments.split()[:-1]
    ]
    assert copied, "the build stage copies the project"
    for source in copied:
        assert not dockerignore_excludes(source.rstrip("/")), source
    assert not dockerignore_excludes("zego_exporter/webconfig/__init__.py")
