"""The sdist and the wheel: built the way a release builds them, carrying the LICENSE and the
README, and accepted by `twine check`.

The build runs without isolation (offline: setuptools comes from the test extra) in a copy of
the repository, so the working tree gets no build/ or egg-info droppings.
"""

from __future__ import annotations

import email
import email.message
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from zego_exporter import __version__

ROOT = Path(__file__).resolve().parent.parent
LICENSE = (ROOT / "LICENSE").read_text(encoding="utf-8")
README = (ROOT / "README.md").read_text(encoding="utf-8")
NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv*", "__pycache__", "*.egg-info", ".mypy_cache", ".ruff_cache",
    ".pytest_cache", ".hypothesis", "build", "dist",
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("source") / "zego-exporter"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCES)
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--sdist", "--wheel",
         "--outdir", str(out), str(source)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


def the(dist: Path, pattern: str) -> Path:
    found = sorted(dist.glob(pattern))
    assert len(found) == 1, f"expected one {pattern} in {dist}, found {found}"
    return found[0]


def wheel_metadata(dist: Path) -> email.message.Message:
    with zipfile.ZipFile(the(dist, "*.whl")) as wheel:
        text = wheel.read(f"zego_exporter-{__version__}.dist-info/METADATA").decode("utf-8")
    return email.message_from_string(text)


def test_license_is_the_apache_2_0_text() -> None:
    assert LICENSE.lstrip().startswith("Apache License\n                           Version 2.0")
    assert "END OF TERMS AND CONDITIONS" in LICENSE
    assert "APPENDIX: How to apply the Apache License to your work." in LICENSE
    assert len(LICENSE.splitlines()) == 201  # the full text, not a summary


def test_wheel_metadata_names_the_license_and_carries_the_readme(dist: Path) -> None:
    metadata = wheel_metadata(dist)

    assert metadata["Name"] == "zego-exporter"
    assert metadata["Version"] == __version__
    assert metadata["License-Expression"] == "Apache-2.0"
    assert metadata.get_all("License-File") == ["LICENSE"]
    assert metadata["Description-Content-Type"] == "text/markdown"
    # The README's links are relative (docs/...): on PyPI the project's URLs lead to them.
    urls = dict(entry.split(", ", 1) for entry in metadata.get_all("Project-URL") or [])
    assert set(urls) == {"Homepage", "Documentation", "Issues"}
    assert all(url.startswith("https://github.com/zego-exporter/zego-exporter")
               for url in urls.values())
    description = metadata.get_payload()
    assert isinstance(description, str)
    assert description.strip() == README.strip()


def test_wheel_and_sdist_carry_the_license_file(dist: Path) -> None:
    with zipfile.ZipFile(the(dist, "*.whl")) as wheel:
        in_wheel = wheel.read(f"zego_exporter-{__version__}.dist-info/licenses/LICENSE")
    with tarfile.open(the(dist, "*.tar.gz")) as sdist:
        member = sdist.extractfile(f"zego_exporter-{__version__}/LICENSE")
        assert member is not None
        in_sdist = member.read()
        pkg_info = sdist.extractfile(f"zego_exporter-{__version__}/PKG-INFO")
        assert pkg_info is not None
        sdist_metadata = email.message_from_string(pkg_info.read().decode("utf-8"))

    assert in_wheel.decode() == LICENSE
    assert in_sdist.decode() == LICENSE
    assert sdist_metadata.get_all("License-File") == ["LICENSE"]
    assert sdist_metadata["License-Expression"] == "Apache-2.0"


def test_twine_check_accepts_both(dist: Path) -> None:
    files = [str(the(dist, "*.whl")), str(the(dist, "*.tar.gz"))]
    result = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *files],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("PASSED") == 2, result.stdout
