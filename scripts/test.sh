#!/usr/bin/env bash
# Set up this machine (Docker engine, base image, .venv) and run every check: ruff, mypy, the unit
# tests and the integration tests against a real reference stack. Extra arguments go to pytest,
# e.g. `bash scripts/test.sh -m "not integration"` for the fast unit tests alone.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/setup.sh

echo "== ruff"
ruff check .
ruff format --check .
echo "== mypy"
mypy
echo "== pytest"
mkdir -p reports
set +e
pytest --junitxml=reports/junit.xml --html=reports/tests.html --self-contained-html "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "test.sh: error: pytest collected no test; a run that checks nothing is a failure" >&2
  exit 1
fi
exit "$status"
