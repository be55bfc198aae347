#!/usr/bin/env bash
# Set up this machine (Docker engine, base image, .venv), then deploy the reference stack with
# `pytest --bg-deploy`: on an empty host a first deploy (to blue) comes first, so that the
# release given here (default: this checkout's commit) is a real blue-green switch under test.
# Usage: bash scripts/deploy.sh [RELEASE [PYTEST OPTIONS...]]
# Reports land in reports/: an HTML report and JUnit XML per deploy; records in .bluegreen/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/setup.sh

release=${1:-$(git rev-parse --short HEAD 2>/dev/null || date -u +%Y%m%d%H%M%S)}
[ "$#" -eq 0 ] || shift
# Any further arguments go to every pytest call (for example --bg-config=FILE).
mkdir -p reports

deploy() {
  pytest --bg-deploy --bg-release "$1" "${@:2}" \
    --html="reports/deploy-$1.html" --self-contained-html --junitxml="reports/deploy-$1.xml"
}

if ! pytest --bg-status "$@" | grep -q '^live colour: \(blue\|green\) (HAProxy'; then
  echo "deploy.sh: no live stack here yet: first deploy (release initial)"
  deploy initial "$@"
fi
deploy "$release" "$@"
pytest --bg-status "$@"
