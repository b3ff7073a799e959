#!/usr/bin/env bash
# Builds orch-examples/debian:bookworm — a minimal Debian rootfs with Debian's PostgreSQL 15 and Redis — without any
# image registry: debootstrap fetches Debian packages, `docker import` turns the tree into an image. Idempotent.
set -euo pipefail
IMAGE=orch-examples/debian:bookworm
if docker image inspect "$IMAGE" >/dev/null 2>&1 && [ "${FORCE:-}" != 1 ]; then
  echo "$IMAGE already present"; exit 0
fi
command -v debootstrap >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap; }
MIRROR=${DEBIAN_MIRROR:-$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
ROOT=$(mktemp -d /tmp/orch-rootfs.XXXXXX)
trap 'rm -rf "$ROOT"' EXIT
debootstrap --variant=minbase --include=postgresql-15,redis-server,procps,busybox bookworm "$ROOT" "$MIRROR"
# The package install starts nothing inside the chroot; drop caches and docs to keep the image small.
rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/* "$ROOT"/usr/share/doc "$ROOT"/usr/share/man
tar -C "$ROOT" -c . | docker import --change 'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' - "$IMAGE"
echo "built $IMAGE"
