#!/usr/bin/env bash
# Build localhost/kube-rabbitmq:bookworm, a stand-in for rabbitmq:3.13-management, from Debian.
#
# `kube up --start-broker` runs the official image, which no registry here can give. This
# builds Debian bookworm's rabbitmq-server (3.10) with mmdebstrap and `docker import`s it,
# set up as the official image is where kube up relies on it: guest may log in from
# outside the container (loopback_users = none), the management and prometheus plugins
# are on, logs go to stdout, and the server runs in the foreground as user rabbitmq.
# tests/kube/test_up.py starts a cluster with it (`kube up --start-broker --broker-image`).
#
# Usage: deploy/images/rabbitmq.sh [--force]     (as root: mmdebstrap's root mode)
#   --force   rebuild even if the image already exists
# Environment: IMAGE.
set -euo pipefail

IMAGE="${IMAGE:-localhost/kube-rabbitmq:bookworm}"

# shellcheck source=deploy/images/lib.sh
source "$(dirname "$0")/lib.sh"
image_begin "$0" "$@"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
printf 'loopback_users = none\nlisteners.tcp.default = 5672\n' >"$work/rabbitmq.conf"
printf '[rabbitmq_management,rabbitmq_prometheus].\n' >"$work/enabled_plugins"
# The package's wrapper (/usr/sbin/rabbitmq-server) su's to rabbitmq and logs to files;
# the image runs the server script itself, as that user, in the foreground.
cat >"$work/rabbitmq-foreground" <<'SCRIPT'
#!/bin/sh
exec /usr/lib/rabbitmq/lib/rabbitmq_server-*/sbin/rabbitmq-server "$@"
SCRIPT
chmod 755 "$work/rabbitmq-foreground"

debian_rootfs "$work/rootfs.tar" rabbitmq-server \
    --customize-hook="copy-in $work/rabbitmq.conf $work/enabled_plugins /etc/rabbitmq" \
    --customize-hook="copy-in $work/rabbitmq-foreground /usr/local/bin"

docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV HOME=/var/lib/rabbitmq' \
    --change 'ENV RABBITMQ_LOGS=-' \
    --change 'USER rabbitmq' \
    --change 'WORKDIR /var/lib/rabbitmq' \
    --change 'EXPOSE 5672 15672 15692' \
    --change 'CMD ["rabbitmq-foreground"]' \
    "$work/rootfs.tar" "$IMAGE" >/dev/null
image_end
echo "rabbitmq.sh: built $IMAGE in ${SECONDS}s"
