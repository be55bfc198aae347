#!/usr/bin/env bash
# Make a Docker engine and Compose available, idempotently.
#
# If the daemon already answers, nothing is changed. Otherwise Debian's docker.io and
# docker-compose are installed when missing, dockerd is started in the background with its
# log in a file, and we wait (bounded) until it answers. Exit status 0 only when `docker info`
# works and a Compose (v2 plugin or v1 binary) is present.
# Every failure is one line on stderr ("ensure-docker: error: ..."); apt's and dockerd's own
# output goes to log files, named in that line.
set -euo pipefail

log_file=${BLUEGREEN_DOCKERD_LOG:-/var/log/bluegreen-dockerd.log}
apt_log=${BLUEGREEN_APT_LOG:-/var/log/bluegreen-apt.log}
wait_seconds=${BLUEGREEN_DOCKERD_WAIT:-60}

say() { printf 'ensure-docker: %s\n' "$*"; }
die() { printf 'ensure-docker: error: %s\n' "$*" >&2; exit 1; }

daemon_answers() { timeout 10 docker info >/dev/null 2>&1; }
compose_present() {
  timeout 10 docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1
}

# apt_detail LINE REGEX...: the decisive line of apt's log (from line LINE on) for a one-line
# message: the first line matching the first REGEX that matches any, without apt's "E: "/"W: "
# and with its runs of blanks squeezed.
apt_detail() {
  local from=$1 pattern line
  shift
  for pattern in "$@"; do
    line=$(tail -n "+$from" "$apt_log" 2>/dev/null | grep -m 1 -E "$pattern" || true)
    if [ -n "$line" ]; then
      printf '%s' "$line" | sed -E 's/^[EW]: //; s/[[:space:]]+/ /g'
      return
    fi
  done
}

# apt-get update that fails when an index cannot be fetched: by default apt only warns (and
# exits 0) then; --error-on=any (apt >= 2.1.16, Debian 11+) makes that an error.
apt_update() {
  apt-get update --error-on=any >>"$apt_log" 2>&1 && return 0
  grep -q -- '--error-on' "$apt_log" || return 1
  # An older apt without --error-on: plain update, and its warnings decide.
  apt-get update >>"$apt_log" 2>&1 && ! grep -q -E '^W: (Failed to fetch|Some index files failed)' "$apt_log"
}

apt_install() {
  [ "$(id -u)" -eq 0 ] || die "Docker is missing ($*) and installing it needs root; install Debian's docker.io and docker-compose, or run this script as root"
  command -v apt-get >/dev/null 2>&1 || die "Docker is missing and this is not a Debian-like system (no apt-get); install Docker Engine and Compose yourself"
  say "installing $* with apt-get (log: $apt_log)"
  mkdir -p "$(dirname "$apt_log")"
  : >"$apt_log"
  # Without package lists (a fresh machine) the first try fails, and an update comes first.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >>"$apt_log" 2>&1 && return 0
  local update_from detail
  update_from=$(( $(wc -l <"$apt_log") + 1 ))
  if ! apt_update; then
    detail=$(apt_detail "$update_from" '^[EW]: Failed to fetch' '^E: ')
    die "Debian's package archive cannot be reached (apt-get update failed${detail:+: $detail}), so Docker ($*) could not be installed; check the network and the sources in /etc/apt, or install Docker yourself; apt's output: $apt_log"
  fi
  local install_from
  install_from=$(( $(wc -l <"$apt_log") + 1 ))
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >>"$apt_log" 2>&1; then
    detail=$(apt_detail "$install_from" '^E: ')
    die "apt-get install $* failed${detail:+: $detail}; Docker could not be installed; apt's output: $apt_log"
  fi
}

# The decisive line of dockerd's log: its last error (message only), else its last line.
dockerd_detail() {
  local line
  line=$({ grep -E 'level=(fatal|error)|failed to start daemon' "$log_file" 2>/dev/null || true; } | tail -n 1)
  [ -n "$line" ] || line=$(tail -n 1 "$log_file" 2>/dev/null || true)
  printf '%s' "$line" | sed -E 's/.*msg="(([^"\\]|\\.)*)".*/\1/' | cut -c 1-300
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
    detail=$(dockerd_detail)
    die "dockerd did not answer within ${wait_seconds}s${detail:+ (its log: $detail)}; see $log_file, or wait longer with BLUEGREEN_DOCKERD_WAIT"
  fi
  if ! pgrep -x dockerd >/dev/null 2>&1; then
    detail=$(dockerd_detail)
    die "dockerd exited while starting${detail:+ ($detail)}; see $log_file"
  fi
  sleep 0.5
done
say "Docker engine is up ($(docker version --format '{{.Server.Version}}' 2>/dev/null))"
