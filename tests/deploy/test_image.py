"""deploy/Dockerfile, built for real and run: the manager and workers from the image.

The image is built once a session (`kube_image` in tests/conftest.py) on
localhost/kube-python-base:bookworm, the Debian stand-in for python:3.11-slim that
deploy/images/python-base.sh builds, since no registry answers here. The containers use
the host's network, so they reach the test broker on the loopback address as the tests do.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from importlib.metadata import version
from typing import Any

import docker
import pytest
from docker.models.containers import Container

from kube.client import Client
from shared.models import NodeStatus, TaskRecord, TaskSpec
from shared.settings import Settings
from shared.states import TaskState
from tests.conftest import remove_node_containers
from tests.support.reports import call_failed
from tests.support.waiting import wait_for

Start = Callable[..., Container]
MANAGER_DB = "/var/lib/kube/manager.db"  # compose's manager-data volume is /var/lib/kube


@pytest.fixture
def start(
    kube_image: str, docker_client: docker.DockerClient, request: pytest.FixtureRequest
) -> Iterator[Start]:
    """Start a detached container of the image on the host's network.

    At teardown each is removed, and then every task container labelled with one of their
    names: a worker's container is named after its node, and once it is gone nothing can
    start another task container behind our back.
    """
    started: list[Container] = []

    def run(command: list[str], **options: Any) -> Container:
        container = docker_client.containers.run(
            kube_image, command, detach=True, network_mode="host", **options
        )
        started.append(container)
        return container

    yield run
    for container in started:
        if call_failed(request):
            print(f"----- {container.name}\n{container.logs(tail=200).decode(errors='replace')}")
        container.remove(force=True)
    for container in started:
        remove_node_containers(docker_client, container.name)


def test_the_image_runs_kube_as_uid_10001(start: Start) -> None:
    # when the image runs with its own entrypoint and user
    about = start(["--version"])
    who = start([], entrypoint=["id", "-u"])
    # then it is the kube command of this checkout, run by the unprivileged user
    for container in (about, who):
        assert container.wait(timeout=60)["StatusCode"] == 0, container.logs()
    assert about.logs().decode().strip() == f"kube {version('kube')}"
    assert who.logs().decode().strip() == "10001"


def start_cluster(start: Start, vhost: str, *worker_args: str, **worker_options: Any) -> str:
    """The manager as the image's own user and one worker as root (as compose runs it).

    Returns the worker's node name, once the manager reports it ready.
    """
    node = f"image-{uuid.uuid4().hex[:6]}"
    env = {"KUBE_AMQP_URL": vhost}
    heartbeat = ["--heartbeat-interval", "1", "--metrics-port", "0"]
    start(["manager", "--db", MANAGER_DB, *heartbeat], environment=env, name=f"{node}-manager")
    worker = ["worker", "--name", node, *worker_args, *heartbeat]
    start(worker, environment=env, user="0:0", name=node, **worker_options)
    with Client(Settings(amqp_url=vhost, request_timeout=5)) as kube:
        wait_for(
            lambda: any(n.name == node and n.status is NodeStatus.READY for n in kube.nodes()),
            timeout=60,
            what=f"node {node} to be ready",
        )
    return node


def run_task(vhost: str, spec: TaskSpec) -> TaskRecord:
    """Submit spec through the client and wait for it to run (or end)."""
    with Client(Settings(amqp_url=vhost, request_timeout=5)) as kube:
        task_id = kube.submit(spec)
        return kube.wait(task_id, {TaskState.RUNNING}, timeout=60)


def test_the_manager_and_a_mock_worker_from_the_image_run_a_task(
    vhost: str, start: Start, docker_client: docker.DockerClient
) -> None:
    # given the manager and a worker on the mock runtime (no Docker socket), both ready
    node = start_cluster(start, vhost, "--runtime", "mock")
    # when a task is submitted
    task = run_task(vhost, TaskSpec(name="from-image", image="mock/img", command=("serve",)))
    # then it runs on that worker
    assert (task.state, task.node) == (TaskState.RUNNING, node)
    # and the manager keeps its state where compose mounts its volume, owned by uid 10001
    manager = docker_client.containers.get(f"{node}-manager")
    code, owner = manager.exec_run(["stat", "-c", "%u", MANAGER_DB])
    assert (code, owner.decode().strip()) == (0, "10001")


def test_a_worker_from_the_image_runs_containers_through_the_docker_socket(
    vhost: str, start: Start, docker_client: docker.DockerClient, busybox_image: str
) -> None:
    # given a worker from the image with the host's Docker socket, as compose mounts it
    socket = {"/var/run/docker.sock": {"bind": "/var/run/docker.sock", "mode": "rw"}}
    node = start_cluster(start, vhost, volumes=socket)
    # when a task is submitted
    task = run_task(vhost, TaskSpec(name="sleeper", image=busybox_image, command=("sleep", "300")))
    # then it runs on that worker, in a container of the host's engine
    assert (task.state, task.node) == (TaskState.RUNNING, node)
    (container,) = docker_client.containers.list(filters={"label": f"kube.node={node}"})
    assert container.labels["kube.task-id"] == task.id
