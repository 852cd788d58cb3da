"""A second manager on a vhost is refused at start, naming the first: no silent split
(issues 12 and 14: a second manager dead-lettered the workers' updates and stopped
running containers)."""

from __future__ import annotations

import socket
from pathlib import Path

import docker
import pytest

from kube.client import Client
from shared.models import TaskSpec
from shared.settings import Settings
from shared.states import TaskState
from tests.conftest import running_cluster
from tests.support.broker import dead_letters

pytestmark = pytest.mark.e2e


def test_a_second_manager_is_refused_and_the_first_goes_on(
    vhost: str, tmp_path: Path, docker_client: docker.DockerClient, request: pytest.FixtureRequest
) -> None:
    workers = {"node-1": ("--runtime", "mock")}
    named = ("--name", "first")
    with (
        running_cluster(vhost, tmp_path, docker_client, request, workers, named) as cluster,
        Client(Settings(amqp_url=vhost, request_timeout=10)) as client,
    ):
        before = client.submit(TaskSpec(name="before", image="busybox"))
        client.wait(before, {TaskState.RUNNING}, timeout=30)
        # when a second manager is started on the same vhost, with a database of its own
        second = cluster.kube(
            "manager", "--db", str(tmp_path / "second.db"), "--metrics-port", "0", timeout=60
        )
        # then it stops at once, saying why, and touched nothing
        assert second.returncode == 4, second.stderr
        assert "another kube manager is running" in second.stderr
        pid = cluster.procs["manager"].pid
        assert f"(manager first, pid {pid} on {socket.gethostname()}" in second.stderr
        assert "Traceback" not in second.stderr
        # and a second manager on the first one's own SQLite file is refused too, naming it
        same = cluster.kube(
            "manager", "--db", str(tmp_path / "manager.db"), "--metrics-port", "0", timeout=60
        )
        assert same.returncode == 4, same.stderr
        assert f"manager first (pid {pid} on {socket.gethostname()}" in same.stderr
        assert "Traceback" not in same.stderr
        after = client.submit(TaskSpec(name="after", image="busybox"))
        assert client.wait(after, {TaskState.RUNNING}, timeout=30).state == TaskState.RUNNING
        assert client.get(before).state == TaskState.RUNNING
        assert dead_letters(vhost) == []
        # and once the first is stopped, a manager starts there again
        cluster.stop("manager")
        cluster.start_manager()
        assert client.wait(before, {TaskState.RUNNING}, timeout=30).attempt == 1


def test_a_second_worker_with_a_nodes_name_is_refused_and_its_tasks_live_on(
    vhost: str, tmp_path: Path, docker_client: docker.DockerClient, request: pytest.FixtureRequest
) -> None:
    workers = {"node-1": ("--runtime", "mock")}
    with (
        running_cluster(vhost, tmp_path, docker_client, request, workers) as cluster,
        Client(Settings(amqp_url=vhost, request_timeout=10)) as client,
    ):
        (node,) = cluster.nodes
        tasks = [client.submit(TaskSpec(name=f"t{i}", image="busybox")) for i in range(5)]
        for task in tasks:
            client.wait(task, {TaskState.RUNNING}, timeout=30)
        # when a second worker process is started under the same node name
        second = cluster.kube("worker", "--name", node, "--runtime", "mock", timeout=60)
        # then it stops at once, saying why
        assert second.returncode == 4, second.stderr
        assert f"another worker named {node}" in second.stderr
        # naming the first as the manager knows it: its host, its pid, since when
        first = f"host {socket.gethostname()}, pid {cluster.procs[node].pid}, since "
        assert first in second.stderr, second.stderr
        assert "Traceback" not in second.stderr
        # and the node's tasks run on, in their first attempt
        assert [client.get(task).attempt for task in tasks] == [1] * 5
        assert {client.get(task).state for task in tasks} == {TaskState.RUNNING}
