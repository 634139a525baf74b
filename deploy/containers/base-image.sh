#!/usr/bin/env bash
# Makes the runtime base image that deploy/docker/Dockerfile names,
# gcr.io/distroless/cc-debian12:nonroot, without any image registry: from Debian 12's packages
# (mmdebstrap, Debian's mirror), trimmed to what distroless holds (deploy/containers/slim-rootfs.py:
# glibc, libgcc, CA certificates, time zones; user 65532 "nonroot"; no shell, no coreutils, no
# package manager), imported into podman and tagged with the distroless name, so that
# `podman build --pull=never` resolves the Dockerfile's FROM locally.
#
#   sudo bash deploy/containers/base-image.sh      (needs podman and mmdebstrap)
#
# Cached: the image carries the hash of its recipe (this script and slim-rootfs.py) as a label,
# and is rebuilt only when it is missing or the recipe changed (about a minute, mostly the
# download). The trimmed rootfs tarball is kept under .local/containers/ too, so a podman storage
# reset re-imports it without downloading.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
here="$root/deploy/containers"
export CONTAINERS_CONF=${CONTAINERS_CONF:-$here/containers.conf}
log() { echo "base-image: $*" >&2; }

IMAGE=gcr.io/distroless/cc-debian12:nonroot
SUITE=bookworm
MIRROR=${PRESENCE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# libgcc-s1 and ca-certificates are not in minbase; netbase and tzdata are in distroless.
INCLUDE=libgcc-s1,ca-certificates,netbase,tzdata
LABEL=io.presence.base-recipe

recipe=$(cat "$here/base-image.sh" "$here/slim-rootfs.py" | sha256sum | cut -c1-16)
if [ "$(podman image inspect --format "{{ index .Labels \"$LABEL\" }}" "$IMAGE" 2>/dev/null)" = "$recipe" ]; then
  log "$IMAGE is up to date (recipe $recipe)"
  exit 0
fi

cache="$root/.local/containers/base"
slim="$cache/rootfs-$recipe.tar"
mkdir -p "$cache"
if [ ! -f "$slim" ]; then
  log "building a Debian $SUITE minbase rootfs with $INCLUDE from $MIRROR"
  started=$SECONDS
  rm -f "$cache"/rootfs-*.tar "$cache/minbase.tar"
  mmdebstrap --quiet --variant=minbase --include="$INCLUDE" "$SUITE" "$cache/minbase.tar" "$MIRROR"
  python3 "$here/slim-rootfs.py" "$cache/minbase.tar" "$slim.partial"
  mv "$slim.partial" "$slim"
  rm -f "$cache/minbase.tar"
  log "rootfs built in $((SECONDS - started)) s"
fi

# The image configuration of distroless' :nonroot variant.
podman import --quiet \
  --change "USER 65532:65532" \
  --change "WORKDIR /home/nonroot" \
  --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
  --change "ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" \
  --change "LABEL $LABEL=$recipe" \
  "$slim" "$IMAGE" >/dev/null

# Like distroless, no shell can run: podman says 127 (executable not found) for each.
for shell in /bin/sh /bin/bash /bin/dash /usr/bin/sh /usr/bin/bash /sbin/sh; do
  status=0
  podman run --rm --network none --entrypoint "$shell" "$IMAGE" -c true >/dev/null 2>&1 || status=$?
  if [ "$status" -ne 127 ]; then
    podman rmi --force "$IMAGE" >/dev/null 2>&1 || true
    log "the image runs $shell (exit status $status, not 127): it must have no shell"
    exit 1
  fi
done
log "imported $IMAGE (recipe $recipe, $(podman image inspect --format '{{ .Size }}' "$IMAGE") bytes, no shell)"
