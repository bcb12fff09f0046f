#!/usr/bin/env bash
# The one test command: installs what the tests need, then runs lint, types, dead code and the
# suite.
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the end-to-end tests need, installed when missing: real Prometheus, promtool
# and Alertmanager; podman, buildah and debootstrap to build and run the Docker image
# (tests/test_image.py), with what rootful vfs/chroot builds use alongside them.
packages=()
command -v promtool >/dev/null || packages+=(prometheus)
command -v prometheus-alertmanager >/dev/null || packages+=(prometheus-alertmanager)
for tool in podman buildah debootstrap; do
  command -v "$tool" >/dev/null || packages+=("$tool")
done
command -v ip >/dev/null || packages+=(iproute2)  # loopback up in the image test's namespace
# `python3 -m venv` below: Debian's python3 needs python3-venv for it (ensurepip).
python3 -c 'import ensurepip, venv' 2>/dev/null || packages+=(python3 python3-venv)
if [ "${#packages[@]}" -gt 0 ]; then
  packages+=(uidmap fuse-overlayfs slirp4netns)
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "== installing ${packages[*]} (apt-get)"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${packages[@]}" >/dev/null
fi

# kubectl with kustomize (tests/test_kubernetes.py) is not installed here: Debian's only kubectl
# (kubernetes-client, 1.20) predates kustomize components. The development and CI machines have
# it; without it those tests fail under CI=true and are skipped otherwise.
command -v kubectl >/dev/null ||
  echo "== kubectl not found: tests/test_kubernetes.py needs kubectl 1.21 or newer" >&2

# A virtual environment of the project's own, so nothing installed by hand can hide a gap.
venv="${ZEGO_TEST_VENV:-.venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
# The bench extra too: mypy reads bench/ and grafana/preview.py, which import matplotlib and
# Pillow (both ship their types).
echo "== installing zego-exporter[test,bench] into $venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
"$venv/bin/python" -m pip install -q --disable-pip-version-check -e '.[test,bench]'

echo "== ruff"
"$venv/bin/ruff" check .
# Everything Python in the repository: what it reads is [tool.mypy]'s `files` in pyproject.toml.
echo "== mypy --strict (package, tests, bench, grafana, deploy)"
"$venv/bin/mypy" --strict
echo "== vulture (dead code; what it may ignore: [tool.vulture] in pyproject.toml)"
"$venv/bin/vulture"

# Every test, on every core (pytest-xdist); e2e tests that share a fixture keep to one worker.
echo "== pytest"
set +e
"$venv/bin/python" -m pytest -n auto "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure, not a pass" >&2
  exit 1
fi
exit "$rc"
