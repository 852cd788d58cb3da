"""A dispatch the broker dead-letters never leaves its task scheduled for ever: the
attempt ends failed with the reason, and the restart policy decides (issue 12)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import docker
import pytest

from kube.client import Client
from shared.models import TaskSpec
from shared.settings import Settings
from shared.states import TaskState
from tests.conftest import running_cluster

pytestmark = pytest.mark.e2e


def test_a_dead_lettered_dispatch_fails_its_attempt_with_the_reason(
    vhost: str, tmp_path: Path, docker_client: docker.DockerClient, request: pytest.FixtureRequest
) -> None:
    workers = {"node-1": ("--runtime", "mock")}
    manager_args = ("--node-down-after", "120")  # the stopped worker stays "ready"
    with running_cluster(vhost, tmp_path, docker_client, request, workers, manager_args) as cluster:
        node = cluster.nodes[0]
        # given a node whose worker is gone and whose queue lets messages live 10 ms
        cluster.stop(node)
        subprocess.run(
            ["rabbitmqctl", "-q", "set_policy", "-p", vhost.rsplit("/", 1)[1], "short-lived",
             f"^kube\\.node\\.{node}$", '{"message-ttl": 10}', "--apply-to", "queues"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        with Client(Settings(amqp_url=vhost, request_timeout=10)) as client:
            # when a task is placed there and its dispatch expires unread
            spec = TaskSpec(name="stranded", image="busybox", restart={"policy": "never"})  # type: ignore[arg-type]
            task_id = client.submit(spec)
            # then the task does not stay scheduled: it fails, saying why
            task = client.wait(task_id, {TaskState.FAILED}, timeout=30)
    assert task.error is not None and "dead-lettered" in task.error, task.error
    assert "expired" in task.error
