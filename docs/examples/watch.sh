#!/usr/bin/env bash
# Print every task state change kube publishes, one JSON task record a line, with
# Debian's amqp-tools (`apt-get install amqp-tools`).
#
#   KUBE_AMQP_URL=amqp://guest:guest@localhost:5672/%2F bash watch.sh ['task.*']
#
# amqp-consume declares an exclusive, server-named queue, binds it to the kube.events
# topic exchange with the routing key (task.<state>; `node.*` for the nodes, `#` for all)
# and runs the command (after --, so that its options are not taken for amqp-consume's)
# once per message with the body on its standard input.
set -euo pipefail
url=${KUBE_AMQP_URL:-amqp://guest:guest@localhost:5672/%2F}
exec amqp-consume --url "$url" --exchange kube.events --routing-key "${1:-task.*}" \
    --exclusive --no-ack -- sh -c 'cat; echo'
