#!/usr/bin/env bash
# Build a local Debian bookworm base image when no registry can be reached.
#
# Every Dockerfile of the reference stack starts `FROM ${BASE_IMAGE}` (default debian:bookworm-slim).
# Where that image cannot be pulled, this script debootstraps a minimal bookworm and imports it
# as $BLUEGREEN_BASE_IMAGE (default bluegreen-base:bookworm). It does nothing when the tag exists.
# debootstrap fetches from $BLUEGREEN_DEBIAN_MIRROR when set, else from its own default mirror.
# Prints the image tag to use on its last line. Every failure is one line on stderr
# ("build-base-image: error: ..."), with no image made and no rootfs left behind.
set -euo pipefail

tag=${BLUEGREEN_BASE_IMAGE:-bluegreen-base:bookworm}
mirror=${BLUEGREEN_DEBIAN_MIRROR:-}
default_mirror="debootstrap's default mirror"
from=${mirror:-$default_mirror}
# Free space required before anything is made. Docker's root dir: the same minimum as
# scripts/setup.sh's (see there), since the stack's images follow this one. TMPDIR: a minbase
# bookworm rootfs is about 150 MB unpacked, plus its .debs while debootstrap runs; 512 MB leaves
# room for both and for a larger rootfs in a later Debian.
min_free_mb=${BLUEGREEN_MIN_FREE_MB:-3072}
min_tmp_mb=${BLUEGREEN_MIN_TMP_MB:-512}
tmp=${TMPDIR:-/tmp}

say() { printf 'build-base-image: %s\n' "$*" >&2; }
die() { printf 'build-base-image: error: %s\n' "$*" >&2; exit 1; }

# need_free_mb DIR WHAT MB VARIABLE: die unless DIR's file system has MB megabytes free.
need_free_mb() {
  local have
  have=$(df -Pm -- "$1" 2>/dev/null | awk 'NR == 2 { print $4 }')
  [ -n "$have" ] || return 0 # not a folder here (a remote daemon's): nothing to measure
  [ "$have" -ge "$3" ] \
    || die "$1 ($2) has $have MB free and $3 MB are needed; free some space there, or lower the minimum with $4 (default: $5 MB)"
}

for setting in BLUEGREEN_MIN_FREE_MB="$min_free_mb" BLUEGREEN_MIN_TMP_MB="$min_tmp_mb"; do
  [[ ${setting#*=} =~ ^[0-9]+$ ]] || die "${setting%%=*} must be a whole number of megabytes, not '${setting#*=}'"
done

timeout 10 docker info >/dev/null 2>&1 || die "the Docker daemon does not answer; run scripts/ensure-docker.sh first"

if docker image inspect "$tag" >/dev/null 2>&1; then
  say "$tag is present; reusing it"
  echo "$tag"
  exit 0
fi

[ "$(id -u)" -eq 0 ] || die "there is no image $tag, and making one with debootstrap needs root; run this script as root, or set BASE_IMAGE to a Debian bookworm image you have"
if ! [ -d "$tmp" ] || ! [ -w "$tmp" ]; then
  die "TMPDIR $tmp is not a writable folder; set TMPDIR to one with ${min_tmp_mb} MB free"
fi
case ${DOCKER_HOST:-unix://} in
  unix://*) need_free_mb "$(docker info --format '{{.DockerRootDir}}')" "Docker's root dir" "$min_free_mb" BLUEGREEN_MIN_FREE_MB 3072 ;;
esac
need_free_mb "$tmp" "TMPDIR, where debootstrap makes the rootfs" "$min_tmp_mb" BLUEGREEN_MIN_TMP_MB 512

if ! command -v debootstrap >/dev/null 2>&1; then
  apt_log="$tmp/bluegreen-apt-debootstrap.log"
  say "installing debootstrap (log: $apt_log)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >"$apt_log" 2>&1 \
    || { apt-get update --error-on=any >>"$apt_log" 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >>"$apt_log" 2>&1; } \
    || die "cannot install debootstrap with apt-get ($(tac "$apt_log" | grep -m 1 -E '^E: ' | sed -E 's/^E: //; s/[[:space:]]+/ /g' || true)); apt's output: $apt_log"
  rm -f "$apt_log"
fi

rootfs=$(mktemp -d "$tmp/bluegreen-rootfs.XXXXXX")
# --one-file-system: never into a /proc or /dev a killed debootstrap may have left mounted there.
trap 'rm -rf --one-file-system "$rootfs"' EXIT
log=$(mktemp --suffix=.log "$tmp/bluegreen-debootstrap.XXXXXX")
say "debootstrap --variant=minbase bookworm from $from (about a minute)"
# No mirror argument unless one is set: debootstrap then uses its own default.
if ! debootstrap --variant=minbase bookworm "$rootfs" ${mirror:+"$mirror"} >"$log" 2>&1; then
  # debootstrap's own log inside the rootfs has the details of a failed download.
  cat "$rootfs/debootstrap/debootstrap.log" >>"$log" 2>/dev/null || true
  detail=$({ grep -E '^E: ' "$log" || true; } | tail -n 1 | sed -E 's/^E: //; s/[[:space:]]+/ /g')
  die "debootstrap failed to make a bookworm rootfs from $from${detail:+ ($detail)}; log kept in $log; set BLUEGREEN_DEBIAN_MIRROR to a reachable Debian mirror"
fi
rm -f "$log"

# Slim it the way debian:bookworm-slim is: no apt lists, no docs, no man pages.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
  "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
printf 'path-exclude /usr/share/doc/*\npath-exclude /usr/share/man/*\npath-exclude /usr/share/info/*\n' \
  >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim"
printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' >"$rootfs/etc/apt/apt.conf.d/docker-no-recommends"

say "importing as $tag"
tar -C "$rootfs" -c . | docker import --change 'CMD ["bash"]' - "$tag" >/dev/null \
  || die "docker import of the rootfs as $tag failed; see the Docker daemon's log"
echo "$tag"
