"""Task and component life cycles end to end: exits, restarts of workers and the manager."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import docker
import pytest

from kube.client import Client
from shared.errors import RequestError
from shared.models import MAX_BODY_BYTES, TaskSpec
from shared.settings import Settings
from shared.states import TaskState
from tests.conftest import Cluster, running_cluster
from tests.support.broker import dead_letters
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


def client_for(cluster: Cluster) -> Client:
    return Client(Settings(amqp_url=cluster.url, request_timeout=10))


def spec(image: str, *command: str, name: str = "job", restart: str = "never") -> TaskSpec:
    return TaskSpec(
        name=name,
        image=image,
        command=command,
        pull_policy="never",
        restart={"policy": restart, "backoff_seconds": 0.2},
    )


def test_container_exits_are_learned_from_the_engine(cluster: Cluster, busybox_image: str) -> None:
    with client_for(cluster) as client:
        # given one task that succeeds and one that fails
        ok = client.submit(spec(busybox_image, "sh", "-c", "echo done"))
        bad = client.submit(spec(busybox_image, "sh", "-c", "exit 3"))
        # then each ends in the state its exit code says, with the reason
        done = client.wait(ok, {TaskState.COMPLETED}, timeout=60)
        failed = client.wait(bad, {TaskState.FAILED}, timeout=60)
    assert (done.state, done.exit_code, done.error) == (TaskState.COMPLETED, 0, None)
    assert (failed.state, failed.exit_code) == (TaskState.FAILED, 3)
    assert failed.error == "exited with code 3"


def test_a_restarted_worker_reports_its_running_containers_and_starts_none_twice(
    cluster: Cluster, busybox_image: str, docker_client: docker.DockerClient
) -> None:
    # given a task running on a worker
    with client_for(cluster) as client:
        task_id = client.submit(spec(busybox_image, "sleep", "300"))
        task = client.wait(task_id, {TaskState.RUNNING}, timeout=60)
    assert task.node is not None
    # when that worker is killed and started again
    cluster.kill(task.node)
    cluster.start_worker(task.node)
    # then the container was never orphaned or duplicated: one container, still running
    containers = docker_client.containers.list(
        all=True, filters={"label": f"kube.task-id={task_id}"}
    )
    assert [c.id for c in containers] == [task.container_id]
    # and the restarted worker still owns it: a stop reaches it and completes the task
    with client_for(cluster) as client:
        wait_for(
            lambda: any(n.name == task.node and n.status.value == "ready" for n in client.nodes()),
            what="the worker to come back",
        )
        client.stop(task_id)
        stopped = client.wait(task_id, {TaskState.COMPLETED}, timeout=60)
    assert stopped.state == TaskState.COMPLETED
    assert not docker_client.containers.list(all=True, filters={"label": f"kube.task-id={task_id}"})


def test_a_task_stopped_while_its_container_starts_ends_stopped_with_no_container_left(
    cluster: Cluster, busybox_image: str, docker_client: docker.DockerClient
) -> None:
    with client_for(cluster) as client:
        # given a task whose dispatch was just sent to its node
        scheduled = client.watch(["task.scheduled"], timeout=60)
        task_id = client.submit(spec(busybox_image, "sleep", "300"))
        next(e for e in scheduled if e.task is not None and e.task.id == task_id)
        scheduled.close()
        # when it is stopped at once, while the engine is still starting its container
        client.stop(task_id)
        # then it ends stopped
        stopped = client.wait(task_id, {TaskState.COMPLETED}, timeout=60)
    assert stopped.state == TaskState.COMPLETED
    # and no container of it is left, running or not
    wait_for(
        lambda: (
            not docker_client.containers.list(
                all=True, filters={"label": f"kube.task-id={task_id}"}
            )
        ),
        what="no container of the stopped task",
    )


def test_a_restarted_manager_keeps_every_task(cluster: Cluster, busybox_image: str) -> None:
    # given a running task
    with client_for(cluster) as client:
        task_id = client.submit(spec(busybox_image, "sleep", "300"))
        client.wait(task_id, {TaskState.RUNNING}, timeout=60)
    # when the manager is killed and started again on the same database
    cluster.kill("manager")
    cluster.start_manager()
    # then it still knows the task, running, and its history
    with client_for(cluster) as client:
        task, events = wait_for(lambda: client.inspect(task_id), what="the manager")
    assert task.state == TaskState.RUNNING
    assert [e.state for e in events][-1] == TaskState.RUNNING


def test_unknown_tasks_and_oversized_bodies_are_refused_and_dead_lettered(
    cluster: Cluster,
) -> None:
    with client_for(cluster) as client:
        # when a stop names a task that does not exist
        with pytest.raises(RequestError, match="unknown task or service 'ghost'"):
            client.stop("ghost")
        # and a body over the size limit is submitted
        raw = client._rpc.request("kube.commands", "task.submit", b" " * (MAX_BODY_BYTES + 1))
        assert "over the" in json.loads(raw)["error"]
        # and an unknown routing key is used
        raw = client._rpc.request("kube.commands", "task.frobnicate", b"{}")
        assert "unknown routing key" in json.loads(raw)["error"]
        # then the manager still answers
        assert client.list() == []
    reasons = [headers["x-kube-reason"] for headers in dead_letters(cluster.url)]
    assert len(reasons) == 3


def test_logs_of_a_frozen_worker_end_in_a_clear_error_and_the_stale_answer_is_dropped(
    vhost: str, tmp_path: Path, docker_client: docker.DockerClient, request: pytest.FixtureRequest
) -> None:
    # given a task running on a mock worker, and a manager slow to call nodes down
    workers = {"frozen": ("--runtime", "mock")}
    slow = ("--node-down-after", "60")
    with (
        running_cluster(vhost, tmp_path, docker_client, request, workers, slow) as cluster,
        Client(Settings(amqp_url=vhost, request_timeout=20)) as kube,
    ):
        spec = TaskSpec(name="quiet", image="mock/img", command=("serve",))
        task_id = kube.submit(spec)
        kube.wait(task_id, {TaskState.RUNNING}, timeout=30)
        assert "mock: mock/img serve" in kube.logs(task_id)
        # when its worker is frozen (SIGSTOP: connected, but answering nothing)
        worker = cluster.procs[cluster.nodes[0]]
        worker.send_signal(signal.SIGSTOP)
        try:
            # then the manager answers for it, naming the node, instead of leaving us waiting
            with pytest.raises(RequestError, match=rf"worker {cluster.nodes[0]} did not answer"):
                kube.logs(task_id)
        finally:
            worker.send_signal(signal.SIGCONT)
        # and once it thaws it answers the next one; the answer to the stale request (it
        # held it already: the broker's expiration applies only to what waits in the
        # queue) finds nobody waiting at the manager
        assert "mock: mock/img serve" in kube.logs(task_id)
        wait_for(
            lambda: "came after the asker gave up" in cluster.logs(),
            timeout=10,
            what="the manager to drop the stale answer",
        )
