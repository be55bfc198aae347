#!/usr/bin/env bash
# Set up a machine for pytest-bluegreen, idempotently: Docker engine and Compose, a base image for
# the reference stack's Dockerfiles, and the project's virtualenv in .venv.
# Source it (". scripts/setup.sh") to get BASE_IMAGE and the venv on PATH; running it works too.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
say() { printf 'setup: %s\n' "$*" >&2; }

bash "$repo/scripts/ensure-docker.sh"

# The base image: the one the user names, else debian:bookworm-slim (present or pullable),
# else one made locally with debootstrap (no registry reachable).
if [ -z "${BASE_IMAGE:-}" ]; then
  if docker image inspect debian:bookworm-slim >/dev/null 2>&1 \
    || timeout 120 docker pull -q debian:bookworm-slim >/dev/null 2>&1; then
    BASE_IMAGE=debian:bookworm-slim
  else
    say "no registry reachable: using a locally built base image"
    BASE_IMAGE=$(bash "$repo/scripts/build-base-image.sh")
  fi
fi
export BASE_IMAGE
say "base image: $BASE_IMAGE"

# The virtualenv, reinstalled only when pyproject.toml changed.
python=${PYTHON:-python3}
stamp="$repo/.venv/.installed-$(sha256sum "$repo/pyproject.toml" | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  say "installing the project into .venv (pip)"
  [ -x "$repo/.venv/bin/python" ] || "$python" -m venv "$repo/.venv"
  log="$repo/.venv/pip-install.log"
  if ! "$repo/.venv/bin/python" -m pip install --disable-pip-version-check -e "$repo[dev]" >"$log" 2>&1; then
    grep -v '^WARNING: Location' "$log" | tail -n 20 >&2
    say "error: pip install failed; see $log"
    exit 1
  fi
  rm -f "$repo"/.venv/.installed-*
  touch "$stamp"
fi
export PATH="$repo/.venv/bin:$PATH"
