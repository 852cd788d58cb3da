#!/usr/bin/env bash
# Build localhost/kube-python-base:bookworm, a stand-in for python:3.11-slim, from Debian.
#
# Where no container registry answers, deploy/Dockerfile cannot pull its base. This builds
# a Debian bookworm root filesystem with mmdebstrap from the Debian mirror (minbase plus
# python3, python3-venv and ca-certificates: Python 3.11 and `python3 -m venv`; useradd
# comes with passwd, a priority-required package minbase has) and `docker import`s it.
# The host's CA bundle replaces Debian's, so pip in a build trusts what the host trusts
# (a TLS-intercepting proxy included); PIP_CERT points pip at it, since pip ships its own
# CA list otherwise.
# tests/deploy/test_image.py builds the Dockerfile on it; .ci/run runs this first.
#
# Usage: deploy/images/python-base.sh [--force]     (as root: mmdebstrap's root mode)
#   --force   rebuild even if the image already exists
# Environment: IMAGE, CA_BUNDLE (default /etc/ssl/certs/ca-certificates.crt).
set -euo pipefail

IMAGE="${IMAGE:-localhost/kube-python-base:bookworm}"
CA_BUNDLE="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"

# shellcheck source=deploy/images/lib.sh
source "$(dirname "$0")/lib.sh"
image_begin "$0" "$@"

if [[ ! -s "$CA_BUNDLE" ]]; then
    echo "python-base.sh: no CA bundle at $CA_BUNDLE" >&2
    exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

debian_rootfs "$work/rootfs.tar" python3,python3-venv,ca-certificates \
    --customize-hook="copy-in $CA_BUNDLE /etc/ssl/certs"

docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt" \
    --change 'CMD ["python3"]' \
    "$work/rootfs.tar" "$IMAGE" >/dev/null
image_end
echo "python-base.sh: built $IMAGE in ${SECONDS}s"
