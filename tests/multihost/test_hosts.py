"""Workers on hosts of their own: a task runs in its worker's engine and answers at its
worker's address; a cut host is off the network until it is healed."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import docker
import pytest

from kube.client import Client
from shared.models import PullPolicy, TaskSpec
from shared.settings import Settings
from shared.states import TaskState
from tests.conftest import running_cluster
from tests.support.engines import alive
from tests.support.hosts import BEDS_DIR, ROOT, Bed, running_bed
from tests.support.network import BROKER_PORT, NETNS_DIR
from tests.support.waiting import wait_for

pytestmark = pytest.mark.multihost

ANSWER = "answer from the task"
WEB = (
    "sh",
    "-c",
    f"mkdir -p /www && echo '{ANSWER}' > /www/index.html && exec httpd -f -p 8080 -h /www",
)

AMQP_LOGIN = "import pika, sys; pika.BlockingConnection(pika.URLParameters(sys.argv[1])).close()"


def test_a_task_runs_in_its_workers_engine_and_answers_at_its_workers_address(
    bed: Bed,
    tmp_path: Path,
    docker_client: docker.DockerClient,
    busybox_image: str,
    request: pytest.FixtureRequest,
) -> None:
    # given a manager here and a worker on each of two hosts, each with its own engine
    first, second = bed.add_hosts(2)
    (outside,) = bed.add_hosts(1, engine=False)
    url_on_hosts = {"KUBE_AMQP_URL": bed.url()}
    prefixes = {"a": first.prefix(url_on_hosts), "b": second.prefix(url_on_hosts)}
    workers: dict[str, tuple[str, ...]] = {"a": (), "b": ()}
    with running_cluster(
        bed.url("127.0.0.1"), tmp_path, docker_client, request, workers, prefixes=prefixes
    ) as cluster:
        hosts = dict(zip(cluster.nodes, (first, second), strict=True))

        # when a task with a published port runs
        spec = TaskSpec(
            name="web",
            image=busybox_image,
            pull_policy=PullPolicy.NEVER,
            command=WEB,
            ports=(8080,),
        )
        with Client(Settings(amqp_url=cluster.url, request_timeout=10)) as kube:
            task = kube.wait(kube.submit(spec), {TaskState.RUNNING}, timeout=60)

        # then its container is in its worker's engine, and in no other
        assert task.node is not None
        host = hosts[task.node]
        other = second if host is first else first
        assert [c.labels["kube.task-id"] for c in host.containers()] == [task.id]
        assert other.containers() == []
        assert (
            docker_client.containers.list(all=True, filters={"label": f"kube.task-id={task.id}"})
            == []
        )

        # and a fourth host gets its answer at the worker's address, not at this host's loopback
        port = task.host_ports["8080"]
        body = wait_for(
            lambda: outside.fetch(f"http://{host.address}:{port}/"), what="the task's answer"
        )
        assert body.strip() == ANSWER
        assert outside.fetch(f"http://{other.address}:{port}/", timeout=2) is None
        local = subprocess.run(
            ["curl", "--silent", "--max-time", "2", f"http://127.0.0.1:{port}/"],
            capture_output=True,
            text=True,
        )
        assert ANSWER not in local.stdout


def test_a_cut_host_is_off_the_network_both_ways_until_healed(bed: Bed) -> None:
    # given a host that serves a port, and reaches the broker
    (host,) = bed.add_hosts(1, engine=False)
    host.spawn(["busybox", "httpd", "-f", "-p", f"{host.address}:8000", "-h", str(host.root)])
    wait_for(lambda: reaches(host.address, 8000), what="the host's server")
    assert host.connects(bed.broker_address, BROKER_PORT)

    # when it is cut, neither side reaches the other
    host.cut()
    assert not host.connects(bed.broker_address, BROKER_PORT, timeout=1)
    assert not reaches(host.address, 8000, timeout=1)

    # and when it is healed, both do, and its worker's user logs in to the broker again
    host.heal()
    wait_for(lambda: reaches(host.address, 8000), what="the host's server after the heal")
    assert host.connects(bed.broker_address, BROKER_PORT)
    login = host.run([sys.executable, "-c", AMQP_LOGIN, bed.url()])
    assert login.returncode == 0, login.stderr


def reaches(address: str, port: int, timeout: float = 2.0) -> bool:
    """Whether a TCP connection from the root namespace opens."""
    try:
        socket.create_connection((address, port), timeout=timeout).close()
    except OSError:
        return False
    return True


# A run killed with -9 while its bed is up: its engine, worker and namespace live on.
KILLED_RUN = """
import sys, time
from tests.support.hosts import running_bed
with running_bed(sys.argv[1], sys.argv[2]) as bed:
    (host,) = bed.add_hosts(1)
    worker = host.spawn(["sleep", "600"])
    assert host.engine is not None and host.engine.proc is not None
    print(bed.id, host.netns, host.engine.proc.pid, worker.pid, bed.user, flush=True)
    time.sleep(600)
"""


def test_a_bed_left_by_a_killed_run_is_removed_by_the_next(
    vhost: str, busybox_image: str, tmp_path: Path
) -> None:
    # given a bed whose run was killed with SIGKILL
    run = subprocess.Popen(
        [sys.executable, "-c", KILLED_RUN, vhost, busybox_image],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert run.stdout is not None
        bed_id, netns, dockerd, worker, user = run.stdout.readline().split()
    finally:
        run.kill()
        run.wait(10)
    assert alive(int(dockerd)) and alive(int(worker))

    # when the next bed starts
    with running_bed(vhost, busybox_image):
        # then the killed run's bed is gone: processes, namespace, files, broker user
        assert not alive(int(dockerd)) and not alive(int(worker))
        assert not (NETNS_DIR / netns).exists()
        assert not (BEDS_DIR / bed_id).exists()
        users = subprocess.run(
            ["rabbitmqctl", "-q", "list_users"], capture_output=True, text=True, check=True
        ).stdout
        assert user not in users.split()
