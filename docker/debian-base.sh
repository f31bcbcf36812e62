#!/usr/bin/env bash
# A Debian 12 base image made on this machine, for building the Astralog image where no image
# registry is reachable (the test suite, air-gapped CI):
#   docker/debian-base.sh [tag]     (default astralog-base:bookworm; kept and reused if present)
#   docker build --network host --build-arg BASE_IMAGE=astralog-base:bookworm -f docker/Dockerfile .
# debootstrap builds a minimal root filesystem from the Debian mirror and `docker import` turns it
# into an image. The host's CA bundle goes in and pip is pointed at it, so a build behind a
# TLS-inspecting proxy reaches PyPI the way the host does; it sits beside Debian's bundle, which
# installing ca-certificates rebuilds from Debian's list. Needs root, debootstrap and dockerd.
set -euo pipefail
tag="${1:-astralog-base:bookworm}"
docker="${DOCKER:-docker}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if "$docker" image inspect "$tag" >/dev/null 2>&1; then
  echo "$tag exists; reused" >&2
  exit 0
fi
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] \
  || { echo "debootstrap is not installed (apt-get install debootstrap, as root)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "debootstrap needs root to build $tag" >&2; exit 1; }
PATH="$PATH:/usr/sbin:/sbin"
root="$(mktemp -d /tmp/astralog-rootfs.XXXXXX)"
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase bookworm "$root" "$mirror" >"$root.log" 2>&1 \
  || { tail -20 "$root.log" >&2; echo "debootstrap failed (log: $root.log)" >&2; exit 1; }
rm -f "$root.log"
bundle=/etc/ssl/host-ca-bundle.pem
mkdir -p "$root/etc/ssl"
cp /etc/ssl/certs/ca-certificates.crt "$root$bundle"
# A smaller image: no package lists, docs or man pages left behind.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/usr/share/doc/* \
  "$root"/usr/share/man/*
chmod 0755 "$root"  # mktemp made it 0700: the image's / would shut out its non-root user
tar -C "$root" -c . | "$docker" import \
  --change "ENV PIP_CERT=$bundle" \
  --change "ENV SSL_CERT_FILE=$bundle" \
  --change 'CMD ["/bin/bash"]' \
  - "$tag" >/dev/null
echo "$tag built" >&2
