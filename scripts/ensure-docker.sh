#!/usr/bin/env bash
# Make a Docker engine and Compose available, idempotently.
#
# If the daemon already answers, nothing is changed. Otherwise Debian's docker.io and
# docker-compose are installed when missing, dockerd is started in the background with its
# log in a file, and we wait (bounded) until it answers. Exit status 0 only when `docker info`
# works and a Compose (v2 plugin or v1 binary) is present.
set -euo pipefail

log_file=${BLUEGREEN_DOCKERD_LOG:-/var/log/bluegreen-dockerd.log}
wait_seconds=${BLUEGREEN_DOCKERD_WAIT:-60}

say() { printf 'ensure-docker: %s\n' "$*"; }
die() { printf 'ensure-docker: error: %s\n' "$*" >&2; exit 1; }

daemon_answers() { timeout 10 docker info >/dev/null 2>&1; }
compose_present() {
  timeout 10 docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1
}

apt_install() {
  [ "$(id -u)" -eq 0 ] || die "Docker is missing ($*) and installing it needs root; install Debian's docker.io and docker-compose, or run this script as root"
  command -v apt-get >/dev/null 2>&1 || die "Docker is missing and this is not a Debian-like system (no apt-get); install Docker Engine and Compose yourself"
  say "installing $* with apt-get"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1; then
    apt-get update -qq >/dev/null 2>&1 || die "apt-get update failed; cannot install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null || die "apt-get install $* failed"
  fi
}

command -v docker >/dev/null 2>&1 || apt_install docker.io
compose_present || apt_install docker-compose

if daemon_answers; then
  say "Docker engine answers; nothing to do"
  exit 0
fi

command -v dockerd >/dev/null 2>&1 || apt_install docker.io
[ "$(id -u)" -eq 0 ] || die "the Docker daemon does not answer and starting dockerd needs root; start it (systemctl start docker) or run this script as root"

if pgrep -x dockerd >/dev/null 2>&1; then
  say "dockerd is running but does not answer yet; waiting for it"
else
  say "starting dockerd (log: $log_file)"
  mkdir -p "$(dirname "$log_file")"
  # setsid: the daemon must not die with the shell that started it.
  setsid dockerd >>"$log_file" 2>&1 </dev/null &
fi

deadline=$(( $(date +%s) + wait_seconds ))
until daemon_answers; do
  if [ "$(date +%s)" -ge "$deadline" ]; then
    tail -n 20 "$log_file" >&2 2>/dev/null || true
    die "dockerd did not answer within ${wait_seconds}s; see $log_file"
  fi
  if ! pgrep -x dockerd >/dev/null 2>&1; then
    tail -n 20 "$log_file" >&2 2>/dev/null || true
    die "dockerd exited while starting; see $log_file"
  fi
  sleep 0.5
done
say "Docker engine is up ($(docker version --format '{{.Server.Version}}' 2>/dev/null))"
