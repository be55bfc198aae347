#!/usr/bin/env bash
# The swarm tests' cluster from a shell: a Docker Swarm of Docker-in-Docker nodes with a local
# registry, all on this machine's engine under the prefix bgswarm (see tests/swarm/cluster.py).
#   up [WORKERS]  start it, or reuse a healthy one (default 2 workers); prints DOCKER_HOST=...
#   down          remove its containers, network and volumes
#   status        each node's state; exit 0 only when all are ready
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
python=python3
[ -x "$repo/.venv/bin/python" ] && python="$repo/.venv/bin/python"
exec "$python" -m tests.swarm.cluster "$@"
