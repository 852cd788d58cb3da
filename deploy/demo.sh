#!/usr/bin/env bash
# A local cluster in one command: a manager and two workers in the background, then a
# demo web server task, fetched over its published port.
#
#   bash deploy/demo.sh        # up: install, build the image, start, run the demo task
#   bash deploy/demo.sh down   # stop the demo task, the workers and the manager
#
# Needs RabbitMQ at $KUBE_AMQP_URL (default amqp://guest:guest@localhost:5672/%2F) and a
# Docker engine. State, logs and pids go under .kube/ in the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
state=.kube
mkdir -p "$state"
kube() { .venv/bin/kube "$@"; }

down() {
    if [ -f "$state/demo.id" ]; then kube stop "$(cat "$state/demo.id")" >/dev/null 2>&1 || true; fi
    for pidfile in "$state"/*.pid; do
        [ -e "$pidfile" ] || continue
        kill "$(cat "$pidfile")" 2>/dev/null || true
        rm -f "$pidfile"
    done
    for node in demo-node-1 demo-node-2; do
        docker ps -aq --filter "label=kube.node=$node" | xargs -r docker rm -f >/dev/null
    done
    rm -f "$state/demo.id"
    echo "demo cluster stopped"
}

if [ "${1:-up}" = down ]; then down; exit 0; fi

docker info >/dev/null 2>&1 || { echo "no Docker engine answers: start dockerd" >&2; exit 1; }
[ -x .venv/bin/kube ] || { python3 -m venv .venv && .venv/bin/pip install -q -e .; }
bash deploy/images/busybox.sh

start() {  # start NAME ARGS...: a background kube process with its log and pid
    local name=$1; shift
    if [ -f "$state/$name.pid" ] && kill -0 "$(cat "$state/$name.pid")" 2>/dev/null; then return; fi
    nohup .venv/bin/kube "$@" >"$state/$name.log" 2>&1 &
    echo $! >"$state/$name.pid"
}
# /metrics: the manager on 9464, the workers on 9465 and 9466 (see deploy/prometheus/)
start manager manager --db "$state/manager.db" --metrics-port 9464
start demo-node-1 worker --name demo-node-1 --metrics-port 9465
start demo-node-2 worker --name demo-node-2 --metrics-port 9466

for _ in $(seq 1 30); do
    ready=$(kube nodes --json 2>/dev/null | grep -c '"status": "ready"' || true)
    [ "$ready" -ge 2 ] && break
    sleep 1
done
kube nodes

echo
echo "running the demo task:"
kube run --name hello --image localhost/kube-busybox:latest --port 8080 --memory 32m \
    --pull-policy never --wait -- \
    sh -c 'mkdir -p /www && echo "hello from kube" > /www/index.html && exec httpd -f -p 8080 -h /www' \
    | tee "$state/demo.out"
head -n1 "$state/demo.out" >"$state/demo.id"
port=$(kube inspect "$(cat "$state/demo.id")" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["host_ports"]["8080"])')
for _ in $(seq 1 20); do
    if page=$(wget -qO- "http://127.0.0.1:$port/index.html" 2>/dev/null); then break; fi
    sleep 0.5
done
echo "GET http://127.0.0.1:$port/ -> ${page:-nothing}"
echo
echo "try: .venv/bin/kube ps; .venv/bin/kube logs $(cat "$state/demo.id"); bash deploy/demo.sh down"
