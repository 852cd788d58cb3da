"""A worker killed and restarted under its name, asked for attempt 2 of a task whose
attempt 1 it still runs: attempt 1 goes first (issue 13: both lived ~10 s)."""

from __future__ import annotations

import signal
from pathlib import Path

import docker
import pytest

from kube.client import Client
from shared.models import NodeStatus, TaskSpec
from shared.settings import Settings
from shared.states import TaskState
from tests.conftest import running_cluster
from tests.support.copies import Copies
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


def test_a_restarted_worker_removes_the_old_attempt_before_it_starts_the_new_one(
    vhost: str,
    tmp_path: Path,
    docker_client: docker.DockerClient,
    busybox_image: str,
    request: pytest.FixtureRequest,
) -> None:
    with (
        running_cluster(vhost, tmp_path, docker_client, request, {"solo": ()}) as cluster,
        Client(Settings(amqp_url=vhost, request_timeout=10)) as client,
    ):
        (node,) = cluster.nodes
        # given a task running on the only worker (sleep ignores SIGTERM: a 10 s grace)
        spec = TaskSpec(
            name="t", image=busybox_image, command=("sleep", "300"), pull_policy="never"
        )
        task_id = client.submit(spec)
        client.wait(task_id, {TaskState.RUNNING}, timeout=60)
        copies = Copies([docker_client])
        copies.watch([task_id])
        copies.start()
        try:
            # when the worker is killed, its node called down (the task placed again),
            # and the worker started again under its name
            cluster.procs[node].send_signal(signal.SIGKILL)
            cluster.procs.pop(node).wait(10)
            wait_for(
                lambda: any(n.status == NodeStatus.DOWN for n in client.nodes()),
                timeout=30,
                what="the node down",
            )
            cluster.start_worker(node)
            # then attempt 2 runs, and never beside attempt 1
            wait_for(
                lambda: (t := client.get(task_id)).state == TaskState.RUNNING and t.attempt >= 2,
                timeout=60,
                what="attempt 2 running",
            )
            wait_for(lambda: copies.last_seen(task_id, 2), timeout=10, what="attempt 2 sampled")
        finally:
            copies.stop()
        assert copies.errors == []
        assert copies.doubled([task_id]) == []
