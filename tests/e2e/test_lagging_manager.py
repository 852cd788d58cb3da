"""A manager that lags behind its results queue judges no live node down: the heartbeats
that wait in its prefetch window are read before any silence is (manager/silence.py)."""

from __future__ import annotations

import os
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

import docker
import pytest

from kube.client import Client
from shared.models import NodeStatus
from shared.settings import Settings
from tests.conftest import Cluster, running_cluster
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

MOCK = ("--runtime", "mock")
DOWN_AFTER = 4.0  # running_cluster's manager: --node-down-after 4, heartbeats every 1 s
FROZEN = 3 * DOWN_AFTER  # the workers' heartbeats wait unread all that time
MARGIN = 5.0  # a tick, the confirm probe's tick, the results queue's probe, polling


def client_for(cluster: Cluster) -> Client:
    return Client(Settings(amqp_url=cluster.url, request_timeout=10))


def statuses(client: Client, cluster: Cluster) -> dict[str, NodeStatus]:
    return {node.name: node.status for node in client.nodes() if node.name in cluster.nodes}


def test_a_manager_frozen_past_node_down_after_calls_no_live_node_down(
    vhost: str, tmp_path: Path, docker_client: docker.DockerClient, request: pytest.FixtureRequest
) -> None:
    with running_cluster(vhost, tmp_path, docker_client, request, {"a": MOCK, "b": MOCK}) as c:
        manager = c.procs["manager"]
        dies, lives = c.nodes
        # given a manager stopped (SIGSTOP: as starved of CPU) for three down intervals,
        # while both workers keep sending heartbeats, which the broker pushes into its
        # prefetch window, where the queue's depth does not count them
        os.kill(manager.pid, signal.SIGSTOP)
        try:
            deadline = time.monotonic() + FROZEN
            while time.monotonic() < deadline:  # a period: nothing can be asked meanwhile
                assert all(c.procs[node].poll() is None for node in c.nodes)
                time.sleep(0.2)
        finally:
            os.kill(manager.pid, signal.SIGCONT)
        resumed = datetime.now(UTC)
        with client_for(c) as client:
            # when it runs again and reads what waited, and heartbeats sent since
            wait_for(
                lambda: all(
                    (node.last_heartbeat - resumed).total_seconds() > DOWN_AFTER
                    for node in client.nodes()
                    if node.name in c.nodes
                ),
                timeout=60,
                what="heartbeats of a down interval after the resume",
            )
            # then no node was called down, and no task would have been lost
            assert statuses(client, c) == {dies: NodeStatus.READY, lives: NodeStatus.READY}
            log = (c.workdir / "manager.log").read_text()
            assert ": down (not heard" not in log, log[-3000:]
            assert "results queue" in log  # it did wait for its probe before judging
            # and a worker that dies is still called down in time: the probe goes through
            # the broker and comes back
            c.kill(dies)
            killed_at = time.monotonic()
            wait_for(
                lambda: statuses(client, c)[dies] == NodeStatus.DOWN,
                timeout=DOWN_AFTER + MARGIN + 10,
                what=f"{dies} down",
            )
            assert time.monotonic() - killed_at < DOWN_AFTER + MARGIN
            assert statuses(client, c)[lives] == NodeStatus.READY
