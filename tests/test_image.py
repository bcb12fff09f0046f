"""The Docker image, built from the Dockerfile and run: `demo` serves /metrics as uid 65534,
and the image's own HEALTHCHECK command passes against it.

Docker can't run here; podman builds the image (scripts/build-image.sh, on an offline
stand-in for python:3.12-slim: Debian's Python 3.11) and `buildah run` runs it, since
`podman run` can't set rlimits in these sandboxes. The container runs in a network namespace
of the test's own, where the default port 9877 the HEALTHCHECK probes is free by construction
and nothing else can answer on it. Needs root.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.support.components import IN_CI, require_binary
from tests.support.credentials import APP_ID, SECRET_TEXT
from zego_exporter import __version__

ROOT = Path(__file__).resolve().parent.parent
TAG = "localhost/zego-exporter:test"
PODMAN = ["podman", "--storage-driver", "vfs"]  # the storage scripts/build-image.sh uses
BUILDAH = ["buildah", "--storage-driver", "vfs"]
NOBODY = "65534"
OCI_LABELS = ("title", "description", "source", "licenses", "version")

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# Fetches a URL and prints the status and the body; run inside the test's network namespace.
FETCH = """
import sys, urllib.error, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=5) as answer:
        print(answer.status); sys.stdout.write(answer.read().decode())
except (urllib.error.URLError, OSError) as exc:
    print(0); print(exc)
"""


def require_root() -> None:
    if os.geteuid() != 0:
        message = "building and running the image with podman/buildah (vfs, chroot) needs root"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def image(figures: list[str]) -> Iterator[dict[str, Any]]:
    """Builds the image (and the stand-in base, unless this machine has it already)."""
    for tool in ("podman", "buildah", "debootstrap", "unshare", "nsenter", "ip"):
        require_binary(tool)
    require_root()
    started = time.monotonic()
    # --layers=false: no intermediate images. On vfs each one is a full copy of the file
    # system, and building without them took a quarter of the time here.
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build-image.sh"), "--tag", TAG, "--layers=false"],
        capture_output=True, text=True, timeout=1500, check=False, cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    report = [line.removeprefix("== ") for line in result.stdout.splitlines()
              if line.startswith("== ") and re.search(r"took|already built|MB$", line)]
    figures.extend(f"image: {line}" for line in report)
    figures.append(f"image: build-image.sh ran {time.monotonic() - started:.0f} s in all")
    inspected = subprocess.run([*PODMAN, "image", "inspect", TAG], capture_output=True,
                               text=True, timeout=60, check=True)
    yield json.loads(inspected.stdout)[0]
    subprocess.run([*PODMAN, "rmi", "--force", TAG], capture_output=True, timeout=120,
                   check=False)


def test_image_metadata(image: dict[str, Any]) -> None:
    config = image["Config"]
    assert config["User"] == f"{NOBODY}:{NOBODY}"
    assert list(config["ExposedPorts"]) == ["9877/tcp"]
    assert config["Entrypoint"] == ["zego-exporter"] and config["Cmd"] == ["serve"]
    assert "ZEGO_STORAGE_PATH=/var/lib/zego-exporter/zego-exporter.db" in config["Env"]
    labels = config["Labels"]
    for name in OCI_LABELS:
        assert f"org.opencontainers.image.{name}" in labels, name
    assert labels["org.opencontainers.image.version"] == __version__
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    healthcheck = image["Healthcheck"]
    assert healthcheck["Test"][0] == "CMD"
    assert "http://127.0.0.1:9877/-/healthy" in " ".join(healthcheck["Test"])


class Namespace:
    """A network namespace of the test's own, with loopback up, held open by a sleeper."""

    def __init__(self) -> None:
        self.holder = subprocess.Popen(
            ["unshare", "--net", "--", "sh", "-c",
             "ip link set lo up && echo up && exec sleep 900"],
            stdout=subprocess.PIPE, text=True,
        )
        assert self.holder.stdout is not None
        assert self.holder.stdout.readline().strip() == "up"
        self.path = f"/proc/{self.holder.pid}/ns/net"
        self.inode = os.readlink(self.path)

    def command(self, *argv: str) -> list[str]:
        return ["nsenter", f"--net={self.path}", "--", *argv]

    def fetch(self, url: str) -> tuple[int, str]:
        result = subprocess.run(self.command(sys.executable, "-c", FETCH, url),
                                capture_output=True, text=True, timeout=30, check=True)
        status, _, body = result.stdout.partition("\n")
        return int(status), body

    def processes(self, *words: str) -> list[int]:
        """PIDs in this namespace whose command line has all these words."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if os.readlink(entry / "ns" / "net") != self.inode:
                    continue
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:  # gone meanwhile
                continue
            text = [part.decode(errors="replace") for part in argv]
            if all(any(word in part for part in text) for word in words):
                found.append(int(entry.name))
        return found

    def close(self) -> None:
        self.holder.kill()
        self.holder.wait(timeout=10)


@pytest.fixture
def namespace() -> Iterator[Namespace]:
    space = Namespace()
    yield space
    space.close()


@pytest.fixture
def container(image: dict[str, Any]) -> Iterator[str]:
    name = f"zego-exporter-test-{os.getpid()}"
    subprocess.run([*BUILDAH, "rm", name], capture_output=True, timeout=60, check=False)
    subprocess.run([*BUILDAH, "from", "--pull-never", "--name", name, TAG],
                   capture_output=True, text=True, timeout=300, check=True)
    yield name
    subprocess.run([*BUILDAH, "rm", name], capture_output=True, timeout=120, check=False)


def run_in(container: str, namespace: Namespace, *argv: str,
           options: Sequence[str] = ()) -> list[str]:
    """`buildah run` as the image's USER, sharing the test's namespace (--network host)."""
    return namespace.command(*BUILDAH, "run", "--isolation", "chroot", "--network", "host",
                             *options, container, "--", *argv)


def serving(namespace: Namespace, exporter: subprocess.Popen[str], *wanted: str) -> str:
    """Wait up to 90 s until the exporter on the default port serves /metrics with
    `zego_digital_human_up 1` and each wanted text in it, and answers 200 on each wanted path
    (a wanted string starting with "/"). Returns the /metrics body."""
    base = "http://127.0.0.1:9877"
    body = ""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        status, body = namespace.fetch(f"{base}/metrics")
        up = re.search(r"^zego_digital_human_up 1(\.0)?$", body, re.M) is not None
        if status == 200 and up and all(
                text in body if not text.startswith("/")
                else namespace.fetch(base + text)[0] == 200 for text in wanted):
            return body
        assert exporter.poll() is None, "the exporter exited early"
        time.sleep(0.5)
    pytest.fail(f"not serving {wanted} within 90 s: {body[-500:]}")


def test_demo_serves_metrics_as_nobody_and_passes_the_healthcheck(
    image: dict[str, Any], container: str, namespace: Namespace, figures: list[str]
) -> None:
    healthcheck = image["Healthcheck"]["Test"][1:]  # after "CMD"
    before = subprocess.run(run_in(container, namespace, *healthcheck), capture_output=True,
                            text=True, timeout=120, check=False)
    assert before.returncode != 0, "the HEALTHCHECK passed with nothing listening"

    started = time.monotonic()
    exporter = subprocess.Popen(
        run_in(container, namespace, "zego-exporter", "demo",
               "--web.listen-address", "127.0.0.1:9877"),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        body = serving(namespace, exporter)
        took = time.monotonic() - started

        assert f'zego_digital_human_exporter_build_info{{version="{__version__}"}} 1' in body
        assert "zego_digital_human_task_state{" in body

        pids = namespace.processes("zego-exporter", "demo")
        exporters = [pid for pid in pids
                     if "python" in os.path.basename(os.readlink(f"/proc/{pid}/exe"))]
        assert exporters, f"no exporter process among {pids}"
        for pid in exporters:
            status_lines = Path(f"/proc/{pid}/status").read_text().splitlines()
            ids = {line.split(":")[0]: line.split()[1:] for line in status_lines
                   if line.startswith(("Uid:", "Gid:"))}
            assert ids == {"Uid": [NOBODY] * 4, "Gid": [NOBODY] * 4}, ids

        check = subprocess.run(run_in(container, namespace, *healthcheck), capture_output=True,
                               text=True, timeout=120, check=False)
        assert check.returncode == 0, check.stdout + check.stderr
        figures.append(f"image: demo served /metrics {took:.1f} s after `buildah run`")
    finally:
        for pid in namespace.processes("zego-exporter", "demo"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        try:
            exporter.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(exporter.pid, signal.SIGKILL)
            exporter.wait(timeout=10)


def test_nobody_can_create_the_storage_file_where_the_image_points(
    container: str, namespace: Namespace,
) -> None:
    # serve refuses a storage path whose directory takes no new files (exit 2): the image's
    # default must pass that same check as the image's user.
    code = ("import os; from zego_exporter.storage import path_problem; "
            "print(path_problem(os.environ['ZEGO_STORAGE_PATH']))")
    result = subprocess.run(run_in(container, namespace, "python", "-c", code),
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "None", result.stdout


# What the exporter may write to in a container whose root file system is read-only: the
# storage volume (ZEGO_STORAGE_PATH's directory) and /tmp (an emptyDir in deploy/kubernetes).
WRITABLE = ("/var/lib/zego-exporter/", "/tmp/")


@contextlib.contextmanager
def mounted(container: str) -> Iterator[Path]:
    """The container's root file system, mounted on the host."""
    mount = subprocess.run([*BUILDAH, "mount", container], capture_output=True, text=True,
                           timeout=120, check=True)
    try:
        yield Path(mount.stdout.strip())
    finally:
        subprocess.run([*BUILDAH, "umount", container], capture_output=True, timeout=120,
                       check=False)


def paths(root: Path, *tests: str) -> set[str]:
    """Every path under the container's root file system (that `find` tests select)."""
    found = subprocess.run(["find", str(root), "-xdev", *tests], capture_output=True, text=True,
                           timeout=120, check=True)
    return {"/" + os.path.relpath(line, root) for line in found.stdout.splitlines()}


def stop(process: subprocess.Popen[str], namespace: Namespace, *words: str) -> str:
    """SIGTERM the Python processes in the namespace with these words (not buildah, which
    would then report the command killed); their output."""
    for pid in namespace.processes(*words):
        with contextlib.suppress(OSError):
            if "python" in os.path.basename(os.readlink(f"/proc/{pid}/exe")):
                os.kill(pid, signal.SIGTERM)
    try:
        output, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate(timeout=10)
    return output


def test_serve_keeps_its_storage_in_the_volume_and_writes_nothing_else(
    image: dict[str, Any], container: str, namespace: Namespace, tmp_path: Path,
) -> None:
    """The image's default command, as docs/docker.md runs it (the secret as a file readable by
    uid 65534), against a simulated API: it gets ready and tracks tasks, and on SIGTERM
    leaves its SQLite file and `<path>.lock` owned by nobody in the storage directory, and no
    file anywhere else a read-only root file system would refuse."""
    secret = tmp_path / "zego-server-secret"
    secret.write_text(SECRET_TEXT)
    os.chown(secret, int(NOBODY), int(NOBODY))
    secret.chmod(0o400)
    options = ["--volume", f"{secret}:/run/secrets/zego_server_secret:ro",
               "--env", f"ZEGO_APP_ID={APP_ID}",
               "--env", "ZEGO_SERVER_SECRET_FILE=/run/secrets/zego_server_secret",
               "--env", "ZEGO_API_URL=http://127.0.0.1:9878"]
    # A first run makes the mount points buildah itself needs; then what the file system holds.
    subprocess.run(run_in(container, namespace, "true", options=options), capture_output=True,
                   text=True, timeout=120, check=True)
    with mounted(container) as root:
        before = paths(root)
        marker = tmp_path / "marker"
        marker.touch()
        time.sleep(0.01)  # mtimes after the marker's

        simulator = subprocess.Popen(
            namespace.command(sys.executable, "-m", "zego_exporter", "simulate",
                              "--listen-address", "127.0.0.1:9878", "--app-id", str(APP_ID),
                              "--server-secret", SECRET_TEXT, "--tasks", "5",
                              "--lifecycle", "forever"),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
            cwd=ROOT,
        )
        exporter = subprocess.Popen(
            run_in(container, namespace, "zego-exporter", "serve", options=options),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )
        try:
            serving(namespace, exporter, "/-/ready", "zego_digital_human_task_state{")
        finally:
            log = stop(exporter, namespace, "zego-exporter", "serve")
            stop(simulator, namespace, "zego_exporter", "simulate")
        assert exporter.returncode == 0, log
        assert "memory only" not in log and "level=error" not in log, log

        environment = dict(item.split("=", 1) for item in image["Config"]["Env"])
        storage = Path(environment["ZEGO_STORAGE_PATH"])
        for name in (storage.name, f"{storage.name}.lock"):
            written = root / storage.parent.relative_to("/") / name
            assert written.is_file(), f"{storage.parent}/{name} was not written"
            assert (written.stat().st_uid, written.stat().st_gid) == (int(NOBODY),) * 2, name
        # New paths, and files (not directories: buildah itself touches /run) changed since.
        changed = sorted((paths(root) - before) | paths(root, "-newer", str(marker),
                                                         "-not", "-type", "d"))
        outside = [path for path in changed
                   if not any(f"{path}/".startswith(area) for area in WRITABLE)]
        assert outside == [], f"written outside {WRITABLE}: {outside}"


def test_the_exporter_environment_carries_no_build_tools(
    container: str, namespace: Namespace,
) -> None:
    # The runtime stage copies the virtual environment only: no pip, setuptools or wheel in it
    # (the base image's own pip is outside it), and no compiler on PATH.
    code = ("import importlib.util, shutil, sys; "
            "print(sys.prefix, [m for m in ('pip', 'setuptools', 'wheel') "
            "if importlib.util.find_spec(m)], [t for t in ('cc', 'gcc', 'make') "
            "if shutil.which(t)])")
    result = subprocess.run(run_in(container, namespace, "python", "-c", code),
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split(maxsplit=1) == ["/opt/zego-exporter", "[] []\n"], result.stdout
