"""Several broker URLs for real: the first points at a closed port, the second at RabbitMQ."""

from __future__ import annotations

from pathlib import Path

import docker
import pytest

from kube.client import Client
from shared.settings import Settings
from tests.conftest import running_cluster
from tests.support.ports import free_port
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


def test_manager_worker_and_cli_move_past_a_broker_that_does_not_answer(
    vhost: str, tmp_path: Path, docker_client: docker.DockerClient, request: pytest.FixtureRequest
) -> None:
    # given a URL list whose first broker is a closed port on this machine
    dead = f"amqp://guest:guest@127.0.0.1:{free_port()}/{vhost.rpartition('/')[2]}"
    urls = f"{dead},{vhost}"
    workers = {"node-1": ("--runtime", "mock")}
    # when the manager and a worker start with it (running_cluster waits for the node)
    with (
        running_cluster(urls, tmp_path, docker_client, request, workers) as cluster,
        Client(Settings(amqp_url=urls, request_timeout=10)) as client,
    ):
        # then a task submitted through the CLI, with the list as a repeated flag, runs
        submitted = cluster.kube(
            "--amqp-url", dead, "--amqp-url", vhost, "run", "--name", "web", "--image", "busybox"
        )
        assert submitted.returncode == 0, submitted.stderr
        task_id = submitted.stdout.strip().split()[-1]
        wait_for(
            lambda: client.get(task_id).state.value == "running",
            timeout=30,
            what="the task running",
        )
        listed = cluster.kube("ps")  # KUBE_AMQP_URL holds the list
        assert listed.returncode == 0, listed.stderr
        assert task_id in listed.stdout
        logs = cluster.logs()
    # and both services said they skipped the dead broker, without its password
    assert logs.count("does not answer") >= 2, logs
    assert "guest:guest@127.0.0.1" not in logs
