"""A client's connection that the broker dropped while it sat idle (a blocking connection
sends no heartbeats between calls) is made anew on the next call, not reported as
"Channel is closed" on every call after (the CI failure of d374e27)."""

from __future__ import annotations

import subprocess

from shared.rpc import RpcChannel
from shared.settings import Settings
from tests.support.waiting import wait_for


def connections(vhost_name: str) -> list[str]:
    out = subprocess.run(
        ["rabbitmqctl", "-q", "list_connections", "vhost", "name"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    rows = (line.split("\t") for line in out.splitlines())
    return [row[1] for row in rows if len(row) == 2 and row[0] == vhost_name]


def test_a_connection_the_broker_dropped_is_made_anew_on_the_next_call(vhost: str) -> None:
    name = vhost.rsplit("/", 1)[1]
    with RpcChannel(Settings.from_env(amqp_url=[vhost])) as rpc:
        # given a client that has asked the broker something
        assert rpc.held("kube.nothing") is False
        wait_for(lambda: len(connections(name)) == 1, what="the client's connection")
        # when the broker closes its connection while it is idle
        subprocess.run(
            ["rabbitmqctl", "-q", "close_all_connections", "-p", name, "idle too long"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        wait_for(lambda: not connections(name), what="the connection to be closed")
        # then its next calls work, on a new connection
        assert rpc.held("kube.nothing") is False
        assert rpc.held("kube.nothing") is False
        assert len(connections(name)) == 1
