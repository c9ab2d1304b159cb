#!/usr/bin/env bash
# Build an offline stand-in for the public base image python:3.11-slim-bookworm from Debian
# packages, for machines that cannot pull from a container registry:
#
#   scripts/base-image.sh [IMAGE]          (default localhost/slipway-base:bookworm)
#
# Debian bookworm's python3 is 3.11, the same minor version as python:3.11-slim-bookworm, so
# wheels resolved and installed on it are the ones the published images get. Use the result with
#   podman build --build-arg BASE_IMAGE=localhost/slipway-base:bookworm -f Dockerfile.serve .
# The image carries the sha256 of this script as the label org.slipway.base-recipe; nothing is
# rebuilt when an image with the same recipe exists (pass --force to rebuild anyway).
set -euo pipefail

force=0
if [ "${1:-}" = "--force" ]; then
  force=1
  shift
fi
image="${1:-localhost/slipway-base:bookworm}"
here="$(cd "$(dirname "$0")" && pwd)"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$here/containers.conf}"
recipe="$(sha256sum "$0" | cut -d' ' -f1)"

if [ "$force" = 0 ] && podman image exists "$image"; then
  have="$(podman image inspect --format '{{ index .Labels "org.slipway.base-recipe" }}' "$image")"
  if [ "$have" = "$recipe" ]; then
    echo "$image is up to date (recipe ${recipe:0:12})"
    exit 0
  fi
fi

for tool in mmdebstrap podman; do
  command -v "$tool" >/dev/null || { echo "$tool is not installed (apt-get install $tool)" >&2; exit 1; }
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mirror="http://deb.debian.org/debian"

# minbase + Python 3.11 with venv/ensurepip and CA certificates: what python:3.11-slim offers
# to a Dockerfile (pip comes from ensurepip in the venv the Dockerfiles create).
mmdebstrap --quiet --variant=minbase \
  --include=python3,python3-venv,ca-certificates \
  --aptopt='APT::Install-Recommends "false"' \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
  bookworm "$work/base.tar" \
  "deb $mirror bookworm main" \
  "deb $mirror bookworm-updates main" \
  "deb http://deb.debian.org/debian-security bookworm-security main"

podman import --quiet \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  --change "LABEL org.slipway.base-recipe=$recipe" \
  --change 'LABEL org.opencontainers.image.description="offline stand-in for python:3.11-slim-bookworm"' \
  "$work/base.tar" "$image" >/dev/null
echo "built $image (recipe ${recipe:0:12}): $(podman run --rm "$image" python3 --version)"
