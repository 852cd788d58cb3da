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

if ! command -v mmdebstrap >/dev/null; then
    echo "python-base.sh: mmdebstrap not found; install Debian's mmdebstrap" >&2
    exit 1
fi
if [[ ! -s "$CA_BUNDLE" ]]; then
    echo "python-base.sh: no CA bundle at $CA_BUNDLE" >&2
    exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# No mirror named: mmdebstrap's default Debian mirror, with the updates and security
# suites it adds for a stable release. The merged-usr hook sets up merged /usr itself,
# which spares the image the usrmerge package and the whole of perl it pulls in; man
# pages, docs (but their copyright files) and translations are left out, as in the
# official slim images.
mmdebstrap --quiet --variant=minbase \
    --include=python3,python3-venv,ca-certificates \
    --aptopt='APT::Install-Recommends "false"' \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook="copy-in $CA_BUNDLE /etc/ssl/certs" \
    bookworm "$work/rootfs.tar"

# A file, not a pipe: a build that fails halfway must not leave a tagged, half-filled image.
docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt" \
    --change 'CMD ["python3"]' \
    "$work/rootfs.tar" "$IMAGE" >/dev/null
image_end
echo "python-base.sh: built $IMAGE in ${SECONDS}s"
