#!/usr/bin/env bash
# Build a local Debian bookworm base image when no registry can be reached.
#
# Every Dockerfile of the reference stack starts `FROM ${BASE_IMAGE}` (default debian:bookworm-slim).
# Where that image cannot be pulled, this script debootstraps a minimal bookworm and imports it
# as $BLUEGREEN_BASE_IMAGE (default bluegreen-base:bookworm). It does nothing when the tag exists.
# Prints the image tag to use on its last line.
set -euo pipefail

tag=${BLUEGREEN_BASE_IMAGE:-bluegreen-base:bookworm}
mirror=${BLUEGREEN_DEBIAN_MIRROR:-http://deb.debian.org/debian}

say() { printf 'build-base-image: %s\n' "$*" >&2; }
die() { printf 'build-base-image: error: %s\n' "$*" >&2; exit 1; }

timeout 10 docker info >/dev/null 2>&1 || die "the Docker daemon does not answer; run scripts/ensure-docker.sh first"

if docker image inspect "$tag" >/dev/null 2>&1; then
  say "$tag is present; reusing it"
  echo "$tag"
  exit 0
fi

[ "$(id -u)" -eq 0 ] || die "debootstrap needs root"
if ! command -v debootstrap >/dev/null 2>&1; then
  say "installing debootstrap"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; } \
    || die "cannot install debootstrap"
fi

rootfs=$(mktemp -d "${TMPDIR:-/tmp}/bluegreen-rootfs.XXXXXX")
trap 'rm -rf "$rootfs"' EXIT
say "debootstrap --variant=minbase bookworm from $mirror (about a minute)"
debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 \
  || { tail -n 20 "$rootfs.log" >&2; rm -f "$rootfs.log"; die "debootstrap failed"; }
rm -f "$rootfs.log"

# Slim it the way debian:bookworm-slim is: no apt lists, no docs, no man pages.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
  "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
printf 'path-exclude /usr/share/doc/*\npath-exclude /usr/share/man/*\npath-exclude /usr/share/info/*\n' \
  >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim"
printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' >"$rootfs/etc/apt/apt.conf.d/docker-no-recommends"

say "importing as $tag"
tar -C "$rootfs" -c . | docker import --change 'CMD ["bash"]' - "$tag" >/dev/null
echo "$tag"
