"""Ended tasks are purged past `--keep-ended`, with their containers (issue 12)."""

from __future__ import annotations

from pathlib import Path

import docker
import pytest

from kube.client import Client
from shared.models import TaskSpec
from shared.settings import Settings
from tests.conftest import running_cluster
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


def test_a_manager_keeps_only_as_many_ended_tasks_as_it_is_told(
    vhost: str, tmp_path: Path, docker_client: docker.DockerClient, request: pytest.FixtureRequest
) -> None:
    workers = {"node-1": ("--runtime", "mock")}
    manager_args = ("--keep-ended", "2", "--purge-interval", "0.5")
    with (
        running_cluster(vhost, tmp_path, docker_client, request, workers, manager_args) as cluster,
        Client(Settings(amqp_url=vhost, request_timeout=10)) as client,
    ):
        # given a long-running task, and five short ones that run to completion
        web = client.submit(TaskSpec(name="web", image="busybox"))
        quick = TaskSpec(name="job", image="busybox", env={"MOCK_RUN_SECONDS": "0.1"})
        jobs = [client.submit(quick) for _ in range(5)]
        # then once they have ended, two of them stay beside the running one
        wait_for(
            lambda: sorted(t.state.value for t in client.list()) == ["completed"] * 2 + ["running"],
            timeout=30,
            what="two ended tasks kept",
        )
        listed = cluster.kube("ps", "-a")  # ended tasks too
    assert listed.returncode == 0, listed.stderr
    assert web in listed.stdout
    assert sum(job in listed.stdout for job in jobs) == 2
