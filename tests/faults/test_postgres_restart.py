"""The machine's PostgreSQL restarted under a running manager (and its standby) while
tasks flow: the managers wait for the store, reconnect, one leads again, and nothing is
lost, placed twice or restarted (manager/succession.py, docs/managers.md).

This restarts the shared PostgreSQL server: it runs with the other faults, last in CI,
alone (no other test may use PostgreSQL meanwhile).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import docker
import pytest

from kube.client import Client
from shared.models import ManagerRole, TaskSpec
from shared.settings import Settings
from shared.states import TaskState
from tests.conftest import running_cluster
from tests.faults.test_faults import publishing
from tests.support.faults import restart_postgres, tasks_now
from tests.support.stores import Stores
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.faults, pytest.mark.postgres, pytest.mark.e2e]

TASKS = 60
FLAGS = ("--heartbeat-interval", "1", "--node-down-after", "4", "--metrics-port", "0")


def test_postgres_restarted_under_the_managers_loses_nothing(
    vhost: str,
    tmp_path: Path,
    docker_client: docker.DockerClient,
    request: pytest.FixtureRequest,
    postgres_database: str,
) -> None:
    store = Stores("postgresql", postgres_database, tmp_path).new()
    workers = {"node-1": ("--runtime", "mock")}
    prefix = uuid.uuid4().hex[:6]
    specs = [TaskSpec(id=f"pg{prefix}-{i}", name="pg", image="busybox") for i in range(TASKS)]
    ids = [str(s.id) for s in specs]
    with (
        running_cluster(
            vhost, tmp_path, docker_client, request, workers, ("--name", "m1"), store=store
        ) as cluster,
        Client(Settings(amqp_url=vhost, request_timeout=30)) as client,
    ):
        cluster.start("m2", "manager", "--store", store, "--name", "m2", *FLAGS)
        # given a leader and a standby, and tasks flowing in
        publisher = publishing(vhost, specs, pause=0.1)
        wait_for(lambda: len(tasks_now(vhost)) >= 15, what="15 tasks accepted")
        # when PostgreSQL restarts under them
        restart_postgres()
        publisher.join(120)
        # then they wait for it and reconnect: the managers still run, one leads again
        assert all(cluster.procs[name].poll() is None for name in ("manager", "m2"))
        wait_for(
            lambda: [m.role for m in client.managers()].count(ManagerRole.LEADER) == 1,
            what="a leader again",
            timeout=60,
        )
        # and every task runs its first attempt, once; one submitted after runs too
        after = client.submit(TaskSpec(name="after", image="busybox"))
        assert client.wait(after, {TaskState.RUNNING}, timeout=60).attempt == 1
        tasks = wait_for(
            lambda: (
                (t := tasks_now(vhost))
                and all(i in t and t[i].state == TaskState.RUNNING for i in ids)
                and t
            ),
            what="every task to run",
            timeout=120,
        )
        assert {tasks[i].attempt for i in ids} == {1}
        for task_id in ids[:10]:
            _, events = client.inspect(task_id)
            assert [e.state for e in events].count(TaskState.SCHEDULED) == 1
        (node,) = client.nodes()
        assert node.status.value == "ready"
        logs = "".join((tmp_path / f"{n}.log").read_text() for n in ("manager", "m2"))
        assert "connection is lost" in logs or "waiting for the store" in logs
