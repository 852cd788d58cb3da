"""A manager on PostgreSQL, for real: it runs tasks, keeps them there, and a manager
started again on the same database carries on from it."""

from __future__ import annotations

from pathlib import Path

import docker
import pytest

from kube.client import Client
from manager.store import connect
from shared.models import TaskSpec
from shared.settings import Settings
from shared.states import TaskState
from tests.conftest import Cluster, running_cluster
from tests.support.stores import Stores
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


def client_for(cluster: Cluster) -> Client:
    return Client(Settings(amqp_url=cluster.url, request_timeout=10))


def spec(image: str, *command: str) -> TaskSpec:
    return TaskSpec(name="job", image=image, command=command, pull_policy="never")


def test_a_manager_on_postgresql_runs_tasks_and_a_restarted_one_carries_on(
    vhost: str,
    tmp_path: Path,
    docker_client: docker.DockerClient,
    busybox_image: str,
    postgres_database: str,
    request: pytest.FixtureRequest,
) -> None:
    store = Stores("postgresql", postgres_database, tmp_path).new()
    workers: dict[str, tuple[str, ...]] = {"node-1": ()}
    with running_cluster(vhost, tmp_path, docker_client, request, workers, store=store) as cluster:
        # given a manager on PostgreSQL that ran one task to its end and runs another
        with client_for(cluster) as client:
            done = client.submit(spec(busybox_image, "sh", "-c", "echo done"))
            runs = client.submit(spec(busybox_image, "sleep", "300"))
            client.wait(done, {TaskState.COMPLETED}, timeout=60)
            client.wait(runs, {TaskState.RUNNING}, timeout=60)
        # then their rows are in PostgreSQL, and no SQLite file was made
        db = connect(store)
        rows = dict(db.query("SELECT id, state FROM tasks"))
        db.close()
        assert rows == {done: "completed", runs: "running"}
        assert not (tmp_path / "manager.db").exists()
        # when the manager is killed and started again on the same database
        cluster.kill("manager")
        cluster.start_manager()
        # then it knows both tasks as they were, with their history
        with client_for(cluster) as client:
            task, events = wait_for(lambda: client.inspect(runs), what="the manager")
            assert task.state == TaskState.RUNNING and events[-1].state == TaskState.RUNNING
            assert client.get(done).state == TaskState.COMPLETED
            # and it carries on: its node is still ready, and a new task runs to its end
            (node,) = client.nodes()
            assert node.name == cluster.nodes[0] and node.status.value == "ready"
            more = client.submit(spec(busybox_image, "sh", "-c", "echo again"))
            assert client.wait(more, {TaskState.COMPLETED}, timeout=60).node == node.name
            # and the running task was not restarted by the change of manager
            assert client.get(runs).attempt == task.attempt
