#!/usr/bin/env bash
# Build the local image localhost/kube-busybox:latest from the host's static busybox.
#
# No registry is needed: the root filesystem is one static binary plus a symlink per
# applet, imported with `docker import`. The `localhost/` prefix is deliberate: if
# anything tries to pull this name it fails fast instead of waiting on Docker Hub.
#
# Usage: deploy/images/busybox.sh [--force]
#   --force   rebuild even if the image already exists
# Environment: BUSYBOX (default /bin/busybox, Debian's busybox-static), IMAGE.
set -euo pipefail

IMAGE="${IMAGE:-localhost/kube-busybox:latest}"
BUSYBOX="${BUSYBOX:-/bin/busybox}"
REQUIRED_APPLETS=(sh sleep httpd nc wget echo cat ls env true false printf date)

# shellcheck source=deploy/images/lib.sh
source "$(dirname "$0")/lib.sh"
image_begin "$0" "$@"

if [[ ! -x "$BUSYBOX" ]]; then
    echo "busybox.sh: $BUSYBOX not found; install Debian's busybox-static" >&2
    exit 1
fi
# A dynamically linked busybox would need the host's libc inside the image.
if ldd "$BUSYBOX" >/dev/null 2>&1; then
    echo "busybox.sh: $BUSYBOX is dynamically linked; install busybox-static" >&2
    exit 1
fi

applets="$("$BUSYBOX" --list)"
for applet in "${REQUIRED_APPLETS[@]}"; do
    if ! grep -qx -- "$applet" <<<"$applets"; then
        echo "busybox.sh: $BUSYBOX lacks the applet '$applet'" >&2
        exit 1
    fi
done

root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT

mkdir -p "$root/bin" "$root/etc" "$root/tmp"
chmod 1777 "$root/tmp"
cp "$BUSYBOX" "$root/bin/busybox"
while IFS= read -r applet; do
    [[ -z "$applet" || "$applet" == busybox ]] && continue
    ln -sf busybox "$root/bin/$applet"
done <<<"$applets"
echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
echo 'root:x:0:' >"$root/etc/group"

tar -C "$root" --numeric-owner --owner=0 --group=0 -c . \
    | docker import \
        --change 'ENV PATH=/bin' \
        --change 'CMD ["sh"]' \
        - "$IMAGE" >/dev/null
image_end
echo "busybox.sh: built $IMAGE"
