"""A real stateful service on a named volume (docs/volumes.md): PostgreSQL, from the image
deploy/images/postgres.sh builds of Debian's packages, keeps a row it was given across
`kube update`, a crash of its container and its worker's restart, always on the volume's
node."""

from __future__ import annotations

from collections.abc import Iterator

import docker
import psycopg
import pytest

from kube.client import Client
from shared.models import TaskRecord
from shared.settings import Settings
from shared.states import TaskState
from tests.conftest import Cluster, remove_node_containers
from tests.support.images import postgres_image
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

SERVICE = "pg"


@pytest.fixture
def two(cluster: Cluster, docker_client: docker.DockerClient) -> Iterator[Cluster]:
    """The cluster; after the test its processes stopped, its containers and volumes gone."""
    try:
        yield cluster
    finally:
        for name in list(cluster.procs):
            cluster.stop(name)
        for node in cluster.nodes:
            remove_node_containers(docker_client, node)
            for volume in docker_client.volumes.list(filters={"label": f"kube.node={node}"}):
                volume.remove(force=True)


def serving(client: Client, after: TaskRecord | None = None) -> TaskRecord:
    """The service's task once it runs and PostgreSQL answers on its port (another
    attempt or task than `after`, if given)."""

    def found() -> TaskRecord | None:
        tasks = [t for t in client.list() if t.service == SERVICE and t.desired_state == "running"]
        if len(tasks) != 1 or tasks[0].state != TaskState.RUNNING:
            return None
        task = tasks[0]
        if after is not None and (task.id, task.attempt) == (after.id, after.attempt):
            return None
        with connect(task):
            return task

    return wait_for(found, "PostgreSQL answering", timeout=120, interval=0.5)


def connect(task: TaskRecord) -> psycopg.Connection[tuple[object, ...]]:
    port = task.host_ports["5432"]
    return psycopg.connect(
        f"postgresql://postgres@127.0.0.1:{port}/postgres", connect_timeout=3, autocommit=True
    )


def rows(task: TaskRecord) -> list[tuple[object, ...]]:
    with connect(task) as db:
        return db.execute("SELECT note FROM kept ORDER BY note").fetchall()


def test_postgres_keeps_its_data_on_its_volume(
    two: Cluster, docker_client: docker.DockerClient
) -> None:
    cluster, image = two, postgres_image()
    with Client(Settings(amqp_url=cluster.url, request_timeout=10)) as client:
        # given PostgreSQL as a one-replica service on a volume, given a row
        ran = cluster.kube(
            "run", "--name", SERVICE, "--image", image, "--pull-policy", "never",
            "--replicas", "1", "--restart", "always", "--unlimited-restarts", "-p", "5432",
            "--volume", "pgdata:/var/lib/postgresql/data",
        )  # fmt: skip
        assert ran.returncode == 0, ran.stderr
        first = serving(client)
        with connect(first) as db:
            db.execute("CREATE TABLE kept (note text)")
            db.execute("INSERT INTO kept VALUES ('before')")

        # when the service is updated: the new server, on the same node, has the row
        updated = cluster.kube("update", SERVICE, "--env", "V=2", "--wait-timeout", "120")
        assert updated.returncode == 0, updated.stderr
        second = serving(client, after=first)
        assert second.node == first.node and rows(second) == [("before",)]

        # when its container is killed: the restarted server has it too
        assert second.container_id is not None
        docker_client.containers.get(second.container_id).kill()
        third = serving(client, after=second)
        assert third.node == first.node and rows(third) == [("before",)]

        # when its worker stops, the task waits for it; back, the server has the row
        assert first.node is not None
        cluster.stop(first.node)
        waiting = f"waiting for {first.node}, which holds volume pgdata"
        wait_for(
            lambda: any(t.error == waiting for t in client.list() if t.service == SERVICE),
            "the task waiting for its node",
            timeout=60,
        )
        cluster.start_worker(first.node)
        fourth = serving(client, after=third)
        assert fourth.node == first.node and rows(fourth) == [("before",)]
