"""Named volumes end to end (docs/volumes.md), on a real broker and Docker engine: a busybox
service appends a line to a file on its volume at each start; the file keeps every line
across `kube update`, a crash of its container and its worker's restart, the task stays
on the node holding the volume and waits for it while it is down, and `kube volume ls/rm`
list it and remove it (refused while in use)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import docker
import pytest

from kube.client import Client
from shared.models import TaskRecord
from shared.settings import Settings
from shared.states import TaskState
from shared.volumes import engine_volume
from tests.conftest import Cluster, remove_node_containers, remove_node_volumes
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

SERVICE = "counter"
APPEND = "echo started >> /data/log; exec sleep 600"


@pytest.fixture
def two(cluster: Cluster, docker_client: docker.DockerClient) -> Iterator[Cluster]:
    """The cluster; after the test, its processes stopped, then its containers and the
    volumes of its nodes removed (the cluster fixture leaves volumes)."""
    try:
        yield cluster
    finally:
        for name in list(cluster.procs):
            cluster.stop(name)
        for node in cluster.nodes:
            remove_node_containers(docker_client, node)
            remove_node_volumes(docker_client, node)


def current(client: Client) -> TaskRecord | None:
    """The service's task that is meant to run (none while a stop is under way)."""
    tasks = [t for t in client.list() if t.service == SERVICE and t.desired_state == "running"]
    return tasks[0] if len(tasks) == 1 else None


def running(client: Client, *, after: TaskRecord | None = None) -> TaskRecord:
    """The service's task once it runs, another attempt or task than `after` if given."""

    def found() -> TaskRecord | None:
        task = current(client)
        if task is None or task.state != TaskState.RUNNING:
            return None
        if after is not None and (task.id, task.attempt) == (after.id, after.attempt):
            return None
        return task

    return wait_for(found, f"{SERVICE} running anew", timeout=90)


def lines(docker_client: docker.DockerClient, task: TaskRecord) -> list[str]:
    """The lines of the file on the volume, as the task's container reads it."""
    assert task.container_id is not None
    code, out = docker_client.containers.get(task.container_id).exec_run(["cat", "/data/log"])
    assert code == 0, out
    return out.decode().split()


def test_a_volume_keeps_its_data_and_its_task_on_its_node(
    two: Cluster, docker_client: docker.DockerClient, busybox_image: str
) -> None:
    cluster = two
    with Client(Settings(amqp_url=cluster.url, request_timeout=10)) as client:
        # given a one-replica service that appends a line to its volume at each start
        ran = cluster.kube(
            "run", "--name", SERVICE, "--image", busybox_image, "--pull-policy", "never",
            "--replicas", "1", "--restart", "always", "--unlimited-restarts",
            "--volume", "data:/data", "--wait", "--", "sh", "-c", APPEND,
        )  # fmt: skip
        assert ran.returncode == 0, ran.stderr
        first = running(client)
        holder = first.node
        assert holder is not None
        assert lines(docker_client, first) == ["started"]
        # then the volume is the node's engine's, named with the cluster, labelled as kube's
        assert first.container_id is not None
        cluster_id = docker_client.containers.get(first.container_id).labels["kube.cluster"]
        engine_name = engine_volume(holder, "data", cluster_id)
        made = docker_client.volumes.get(engine_name)
        labels = made.attrs["Labels"]
        assert (
            labels["kube.managed"],
            labels["kube.node"],
            labels["kube.volume"],
            labels["kube.cluster"],
        ) == ("true", holder, "data", cluster_id)
        listed = json.loads(cluster.kube("volume", "ls", "--json").stdout)
        assert [(v["name"], v["node"], v["used_by"]) for v in listed] == [
            ("data", holder, [first.id])
        ]

        # when the service is updated: its new task goes to the volume's node, data kept
        updated = cluster.kube("update", SERVICE, "--env", "VERSION=2", "--wait-timeout", "90")
        assert updated.returncode == 0, updated.stderr
        second = running(client, after=first)
        assert second.id != first.id and second.node == holder
        assert lines(docker_client, second) == ["started"] * 2

        # when its container crashes (killed): the restart runs there, data kept
        assert second.container_id is not None
        docker_client.containers.get(second.container_id).kill()
        third = running(client, after=second)
        assert third.node == holder and third.attempt > second.attempt
        assert lines(docker_client, third) == ["started"] * 3

        # when the volume's worker stops, the other node is up and free
        cluster.stop(holder)
        waiting = f"waiting for {holder}, which holds volume data"

        def waits() -> TaskRecord | None:
            task = current(client)
            pending = task is not None and task.state == TaskState.PENDING
            return task if pending and task.error == waiting else None

        # then the task waits for it, with the reason, and runs nowhere else
        pending = wait_for(waits, "the task waiting for the volume's node", timeout=60)
        assert pending.unplaced is not None and pending.unplaced.volumes == {"data": holder}
        other = next(n for n in cluster.nodes if n != holder)
        assert docker_client.containers.list(filters={"label": f"kube.node={other}"}) == []
        shown = cluster.kube("inspect", pending.id)
        assert waiting in shown.stdout, shown.stdout

        # when the worker comes back: the task runs there again, every line kept
        cluster.start_worker(holder)
        fourth = running(client, after=third)
        assert fourth.node == holder
        assert lines(docker_client, fourth) == ["started"] * 4

        # when the volume is removed while in use, or the service scaled past one: refused
        busy = cluster.kube("volume", "rm", "data")
        assert busy.returncode == 4 and f"in use by task {fourth.id}" in busy.stderr
        scaled = cluster.kube("scale", SERVICE, "2")
        assert scaled.returncode == 4 and "at most 1 replica" in scaled.stderr

        # when the service is stopped, then the volume removed
        stopped = cluster.kube("stop", SERVICE)
        assert stopped.returncode == 0, stopped.stderr
        wait_for(lambda: current(client) is None, "the service stopped", timeout=60)
        wait_for(
            lambda: all(t.state.terminal for t in client.list() if t.service == SERVICE),
            "the service's tasks ended",
            timeout=60,
        )
        removed = cluster.kube("volume", "rm", "data")
        assert removed.returncode == 0, removed.stderr
        assert removed.stdout.strip() == "removed volume data"

        # then it is gone from the list and from the engine
        assert json.loads(cluster.kube("volume", "ls", "--json").stdout) == []

        def gone() -> bool:
            try:
                docker_client.volumes.get(engine_name)
            except docker.errors.NotFound:
                return True
            return False

        wait_for(gone, "the engine's volume removed", timeout=30)
