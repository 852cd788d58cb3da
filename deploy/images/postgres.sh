#!/usr/bin/env bash
# Build localhost/kube-postgres:bookworm, a PostgreSQL 15 server from Debian's packages.
#
# Where no container registry answers there is no postgres image to pull: this builds a
# Debian bookworm root filesystem with mmdebstrap (minbase plus postgresql-15) and
# `docker import`s it, as python-base.sh does. Its entrypoint makes the database in
# $PGDATA on first start (trust authentication, listening on every address: a test
# image, never for production) and then runs the server as the postgres user, in the
# foreground, as PID 1 so that it gets the engine's stop signal.
# tests/e2e/test_volume_postgres.py runs it as a task with a named volume.
#
# Usage: deploy/images/postgres.sh [--force]     (as root: mmdebstrap's root mode)
#   --force   rebuild even if the image already exists
# Environment: IMAGE.
set -euo pipefail

IMAGE="${IMAGE:-localhost/kube-postgres:bookworm}"

# shellcheck source=deploy/images/lib.sh
source "$(dirname "$0")/lib.sh"
image_begin "$0" "$@"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cat >"$work/postgres-foreground" <<'SCRIPT'
#!/bin/sh
set -eu
bin=/usr/lib/postgresql/15/bin
mkdir -p "$PGDATA" /run/postgresql
chown postgres:postgres "$PGDATA" /run/postgresql
chmod 700 "$PGDATA"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    setpriv --reuid=postgres --regid=postgres --init-groups \
        "$bin/initdb" --pgdata="$PGDATA" --username=postgres --auth=trust >/dev/null
    echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
    echo "host all all all trust" >>"$PGDATA/pg_hba.conf"
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups "$bin/postgres" -D "$PGDATA"
SCRIPT
chmod 755 "$work/postgres-foreground"

debian_rootfs "$work/rootfs.tar" postgresql-15 \
    --customize-hook="copy-in $work/postgres-foreground /usr/local/bin"

docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PGDATA=/var/lib/postgresql/data' \
    --change 'EXPOSE 5432' \
    --change 'CMD ["postgres-foreground"]' \
    "$work/rootfs.tar" "$IMAGE" >/dev/null
image_end
echo "postgres.sh: built $IMAGE in ${SECONDS}s"
