"""Two workers started under one name at the same instant: the broker lets one hold it
(issue 13: both passed the check of the node queue's consumers, and both consumed it)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import docker
import pytest

from shared import topology
from tests.conftest import running_cluster
from tests.support.broker import consumers
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

ROUNDS = 5


def test_of_two_workers_started_at_once_under_one_name_exactly_one_holds_it(
    vhost: str, tmp_path: Path, docker_client: docker.DockerClient, request: pytest.FixtureRequest
) -> None:
    with running_cluster(vhost, tmp_path, docker_client, request, {}) as cluster:
        manager = cluster.procs["manager"]
        for round in range(ROUNDS):
            node = f"pcfix-race{round}"
            # when two workers of one name start at the same instant, while the manager is
            # slow to say who holds it (frozen: each waits claim.ASK_TIMEOUT for it), so
            # both count the node queue's consumers before either consumes
            os.kill(manager.pid, signal.SIGSTOP)
            try:
                pair = [
                    cluster.start(
                        f"{node}-{i}",
                        "worker",
                        "--name",
                        node,
                        "--runtime",
                        "mock",
                        "--metrics-port",
                        "0",
                    )
                    for i in (0, 1)
                ]
                # then one stops, saying why, and the other holds the node's queue alone
                wait_for(
                    lambda pair=pair: any(p.poll() is not None for p in pair),
                    timeout=30,
                    what=f"round {round}: one of the two refused",
                )
            finally:
                os.kill(manager.pid, signal.SIGCONT)
            refused = [p for p in pair if p.poll() is not None]
            assert [p.returncode for p in refused] == [4], cluster.logs()
            log = (tmp_path / f"{node}-{pair.index(refused[0])}.log").read_text()
            assert f"another worker named {node} is running" in log
            assert "Traceback" not in log
            queue = topology.node_queue(node)
            wait_for(
                lambda queue=queue: consumers(vhost, queue) == 1, timeout=30, what="one consumer"
            )
            for i in (0, 1):
                cluster.stop(f"{node}-{i}")
