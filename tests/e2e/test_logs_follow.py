"""Streaming sessions end to end (issue 16): a real broker, manager, workers and Docker.

Each test ends by counting what is left: the broker's queues and consumers as before, no
session on the manager, no reader thread on any worker (both from /metrics).
"""

from __future__ import annotations

import re
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

from kube.client import Client
from kube.sessions import Received
from shared.models import TaskSpec
from shared.sessions import EndReason, Fd, LogsParams
from shared.settings import Settings
from shared.states import TaskState
from tests.conftest import Cluster, running_cluster
from tests.support.ports import free_port
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

TICKER = "i=0; while true; do echo out $i; echo err $i >&2; i=$((i+1)); sleep 0.1; done"
"""Prints a line on stdout and one on stderr every 100 ms."""


@dataclass
class Watched:
    """A cluster whose manager and workers serve /metrics."""

    cluster: Cluster
    ports: dict[str, int]

    def metric(self, process: str, name: str) -> float:
        url = f"http://127.0.0.1:{self.ports[process]}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - our own
            text = response.read().decode()
        found = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE)
        assert found is not None, f"{name} not served by {process}"
        return float(found.group(1))


def broker_footprint(url: str) -> tuple[list[str], list[int]]:
    """The vhost's queues, and the consumers of each of its channels (a client's direct
    reply-to consumer is counted there: it has no queue)."""
    vhost = url.rsplit("/", 1)[1]

    def table(*args: str) -> list[list[str]]:
        out = subprocess.run(
            ["rabbitmqctl", "-q", *args], capture_output=True, text=True, check=True, timeout=30
        ).stdout
        return [line.split("\t") for line in out.splitlines()[1:] if line.strip()]

    queues = sorted(row[0] for row in table("list_queues", "-p", vhost, "name"))
    channels = table("list_channels", "vhost", "consumer_count")
    return queues, sorted(int(row[1]) for row in channels if row[0] == vhost)


@pytest.fixture
def watched(
    vhost: str,
    tmp_path: Path,
    docker_client: docker.DockerClient,
    busybox_image: str,
    request: pytest.FixtureRequest,
) -> Iterator[Watched]:
    ports = {"manager": free_port(), "node-1": free_port(), "node-2": free_port()}
    workers = {n: ("--metrics-port", str(ports[n])) for n in ("node-1", "node-2")}
    manager_args = ("--metrics-port", str(ports["manager"]))
    with running_cluster(vhost, tmp_path, docker_client, request, workers, manager_args) as cluster:
        by_name = {"manager": ports["manager"]}
        for node in cluster.nodes:
            by_name[node] = ports[node.split("-", 1)[1]]
        yield Watched(cluster, by_name)


def client_for(cluster: Cluster) -> Client:
    return Client(Settings(amqp_url=cluster.url, request_timeout=10))


def ticker(image: str, name: str = "ticker", replicas: int | None = None) -> TaskSpec:
    return TaskSpec(
        name=name,
        image=image,
        command=("sh", "-c", TICKER),
        pull_policy="never",
        replicas=replicas,
    )


def no_sessions(watched: Watched, timeout: float = 30) -> None:
    """No session on the manager, no reader thread on any worker."""
    wait_for(
        lambda: watched.metric("manager", "kube_manager_stream_sessions") == 0,
        what="no session left on the manager",
        timeout=timeout,
    )
    for node in watched.cluster.nodes:
        wait_for(
            lambda node=node: watched.metric(node, "kube_worker_stream_readers") == 0,
            what=f"no reader thread left on {node}",
            timeout=timeout,
        )


def nothing_left(watched: Watched, baseline: tuple[list[str], list[int]]) -> None:
    """No session on the manager, no reader on a worker, the broker as before."""
    cluster = watched.cluster
    no_sessions(watched)
    seen: list[tuple[list[str], list[int]]] = []

    def as_before() -> bool:
        seen[:] = [broker_footprint(cluster.url)]
        return seen[0] == baseline

    try:
        wait_for(as_before, what="the broker's queues and consumers as before", timeout=30)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {seen} != {baseline}") from None


def test_following_a_task_gets_its_lines_as_written_and_leaves_nothing_behind(
    watched: Watched, busybox_image: str
) -> None:
    cluster = watched.cluster
    with client_for(cluster) as client:
        # given a task that prints a line on stdout and one on stderr every 100 ms
        task_id = client.submit(ticker(busybox_image))
        client.wait(task_id, {TaskState.RUNNING}, timeout=60)
        baseline = broker_footprint(cluster.url)
        # when a client follows it
        got: list[Received] = []
        with client.sessions() as sessions:
            asked = time.monotonic()
            opened = sessions.open(task_id, logs=LogsParams(follow=True, tail=0))
            first: float | None = None
            stdout = []
            while len(stdout) < 20:
                for received in sessions.read(timeout=1.0):
                    got.append(received)
                    for chunk in received.frame.chunks:
                        first = first or time.monotonic()
                        if chunk.fd == Fd.STDOUT:
                            stdout.append(chunk.data)
                    assert received.frame.end is None, received.frame.end
                assert time.monotonic() - asked < 20, "too slow"
            assert watched.metric(opened.node, "kube_worker_stream_readers") == 1
            assert watched.metric("manager", "kube_manager_stream_sessions") == 1
        # then the lines come in order, stdout apart from stderr, each with its time,
        # the first within a second
        assert first is not None and first - asked < 1.0
        numbers = [int(line.split()[1]) for line in stdout]
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
        chunks = [c for r in got for c in r.frame.chunks]
        assert {c.fd for c in chunks} == {Fd.STDOUT, Fd.STDERR}
        assert all(c.data.startswith("err") for c in chunks if c.fd == Fd.STDERR)
        assert all(c.at is not None for c in chunks)
        seqs = [r.frame.seq for r in got]
        assert seqs == list(range(1, len(seqs) + 1))
        # and once it stopped following, nothing is left anywhere
        nothing_left(watched, baseline)


def test_a_stream_ends_with_the_task_and_a_killed_client_is_cleaned_up_by_its_lease(
    watched: Watched, busybox_image: str
) -> None:
    cluster = watched.cluster
    with client_for(cluster) as client:
        # given a task that prints three lines and exits
        spec = TaskSpec(
            name="short",
            image=busybox_image,
            command=("sh", "-c", "sleep 1; echo one; echo two; echo three; sleep 1"),
            pull_policy="never",
            restart={"policy": "never"},
        )
        task_id = client.submit(spec)
        client.wait(task_id, {TaskState.RUNNING}, timeout=60)
        baseline = broker_footprint(cluster.url)
        # when it is followed to its end
        lines: list[str] = []
        with client.sessions() as sessions:
            sessions.open(task_id, logs=LogsParams(follow=True))
            end = None
            deadline = time.monotonic() + 30
            while end is None and time.monotonic() < deadline:
                for received in sessions.read(timeout=1.0):
                    lines += [c.data for c in received.frame.chunks]
                    end = end or received.frame.end
        # then the session ends with it, every line given
        assert end is not None and end.reason == EndReason.EXITED
        assert "".join(lines) == "one\ntwo\nthree\n"
        nothing_left(watched, baseline)
        # when a client opens a session and then goes silent (as one killed would)
        other = client_for(cluster)
        sessions = other.sessions()
        sessions.open(client.submit(ticker(busybox_image, "quiet")), logs=LogsParams(), lease=3)
        wait_for(lambda: watched.metric("manager", "kube_manager_stream_sessions") == 1)
        # then its lease runs out: the manager and the worker end the session
        try:
            no_sessions(watched, timeout=20)
        finally:
            other.close()
