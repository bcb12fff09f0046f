#!/usr/bin/env bash
# The one test command: installs what the tests need, then runs lint, types and the suite.
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

# Real Prometheus, promtool and Alertmanager for the end-to-end tests (Debian packages).
if ! command -v promtool >/dev/null || ! command -v prometheus-alertmanager >/dev/null; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "== installing prometheus and prometheus-alertmanager (apt-get)"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    prometheus prometheus-alertmanager >/dev/null
fi

# A virtual environment of the project's own, so nothing installed by hand can hide a gap.
venv="${ZEGO_TEST_VENV:-.venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
echo "== installing zego-exporter[test] into $venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
"$venv/bin/python" -m pip install -q --disable-pip-version-check -e '.[test]'

echo "== ruff"
"$venv/bin/ruff" check .
echo "== mypy --strict"
"$venv/bin/mypy" --strict zego_exporter

echo "== pytest"
set +e
"$venv/bin/python" -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure, not a pass" >&2
  exit 1
fi
exit "$rc"
