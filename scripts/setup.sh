#!/usr/bin/env bash
# Set up a machine for pytest-bluegreen, idempotently: Docker engine and Compose, a base image for
# the reference stack's Dockerfiles, and the project's virtualenv in .venv.
# Source it (". scripts/setup.sh") to get BASE_IMAGE and the venv on PATH; running it works too.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
say() { printf 'setup: %s\n' "$*" >&2; }

bash "$repo/scripts/ensure-docker.sh"

# Room for the stack's images in Docker's root dir, checked before anything is built (the deploy
# or test run after this builds them). The reference stack's four images take about 1.3 GB
# (db 575 MB, backend 290, frontend 250, loadbalancer 200); a deploy builds a release's backend
# and frontend (about 540 MB) next to the live one's, and the builds' layers and cache come on
# top: 3072 MB covers that with some margin. BLUEGREEN_MIN_FREE_MB changes the minimum.
setup_min_free_mb=${BLUEGREEN_MIN_FREE_MB:-3072}
if ! [[ $setup_min_free_mb =~ ^[0-9]+$ ]]; then
  printf 'setup: error: BLUEGREEN_MIN_FREE_MB must be a whole number of megabytes, not %s\n' "'$setup_min_free_mb'" >&2
  exit 1
fi
case ${DOCKER_HOST:-unix://} in
  unix://*) # a local daemon: its root dir is a folder here
    setup_docker_root=$(docker info --format '{{.DockerRootDir}}' 2>/dev/null || true)
    setup_free_mb=$(df -Pm -- "${setup_docker_root:-/nonexistent}" 2>/dev/null | awk 'NR == 2 { print $4 }')
    if [ -n "$setup_free_mb" ] && [ "$setup_free_mb" -lt "$setup_min_free_mb" ]; then
      printf "setup: error: %s (Docker's root dir) has %s MB free and %s MB are needed for the stack's images; free some space there, or lower the minimum with BLUEGREEN_MIN_FREE_MB (default: 3072 MB)\n" \
        "$setup_docker_root" "$setup_free_mb" "$setup_min_free_mb" >&2
      exit 1
    fi
    ;;
esac

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
  if ! "$repo/.venv/bin/python" -m pip install --disable-pip-version-check -e "${repo}[dev]" >"$log" 2>&1; then
    detail=$({ grep -E '^ERROR: ' "$log" || true; } | tail -n 1 | sed -E 's/^ERROR: //' | cut -c 1-300)
    say "error: pip install failed${detail:+ ($detail)}; see $log"
    exit 1
  fi
  rm -f "$repo"/.venv/.installed-*
  touch "$stamp"
fi
export PATH="$repo/.venv/bin:$PATH"
