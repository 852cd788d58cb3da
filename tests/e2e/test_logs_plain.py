"""`kube logs TASK` without -f, and -f on a task whose worker died (the hostile tester's
findings): a real broker, manager, workers and Docker engine."""

from __future__ import annotations

import time
from pathlib import Path

import docker
import pytest

from kube.client import Client
from shared.models import TaskSpec
from shared.settings import Settings
from shared.states import TaskState
from tests.conftest import Cluster, running_cluster
from tests.e2e.test_logs_follow import STARTUP, following, ticker
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


def test_plain_logs_show_all_of_a_long_output_with_stderr_on_stderr(
    cluster: Cluster, busybox_image: str
) -> None:
    # given a task that printed 200,000 lines (over 1 MiB) and a last word on stderr
    script = "seq 1 200000; echo oops >&2"
    with Client(Settings(amqp_url=cluster.url, request_timeout=10)) as kube:
        spec = TaskSpec(
            name="long",
            image=busybox_image,
            command=("sh", "-c", script),
            restart={"policy": "never"},
            pull_policy="never",
        )
        task_id = kube.submit(spec)
        kube.wait(task_id, {TaskState.COMPLETED}, timeout=60)
    # when its output is asked for, as a whole and its last lines
    shown = cluster.kube("logs", task_id)
    tail = cluster.kube("logs", task_id, "--tail", "1000000")
    # then all of it is on stdout, from its first line, and its stderr on stderr
    expected = "".join(f"{n}\n" for n in range(1, 200001))
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == expected, (len(shown.stdout), shown.stdout[:40])
    assert shown.stderr == "oops\n"
    assert (tail.returncode, tail.stdout == expected, tail.stderr) == (0, True, "oops\n")


def test_following_a_task_whose_worker_died_says_so_soon_and_goes_on_onto_its_next_attempt(
    vhost: str,
    tmp_path: Path,
    docker_client: docker.DockerClient,
    busybox_image: str,
    request: pytest.FixtureRequest,
) -> None:
    # given a ticker running on one of two nodes
    workers: dict[str, tuple[str, ...]] = {"node-1": (), "node-2": ()}
    with (
        running_cluster(vhost, tmp_path, docker_client, request, workers) as cluster,
        Client(Settings(amqp_url=cluster.url, request_timeout=10)) as kube,
    ):
        task_id = kube.submit(ticker(busybox_image))
        first = kube.wait(task_id, {TaskState.RUNNING}, timeout=60)
        assert first.node is not None
        # when its worker is killed (SIGKILL), and then the task is followed
        cluster.kill(first.node)
        with following(cluster, "-f", "--tail", "1", task_id) as follow:
            started = time.monotonic()
            # then kube says at once that the node's output cannot be had
            marker = f"kube: partial: {first.node} "

            def marked() -> bool:
                return any(line.startswith(marker) for line in follow.errors())

            wait_for(marked, f"the marker for {first.node}", timeout=5 + STARTUP + 3)
            assert time.monotonic() - started < 5 + STARTUP + 3
            assert not any("no container yet" in line for line in follow.errors())
            # and follows the task onto its next attempt, on the other node, from its start
            wait_for(
                lambda: "out 0" in follow.lines() and "err 0" in follow.errors(),
                "the next attempt's first lines",
                timeout=60,
            )
            again = kube.get(task_id)
            assert again.attempt > first.attempt and again.node != first.node
            assert follow.proc.poll() is None
            assert follow.interrupt() == 130
        assert not any("Traceback" in line for line in follow.errors())


def test_following_a_task_whose_node_is_down_says_so_at_once_and_waits_for_its_next_attempt(
    vhost: str,
    tmp_path: Path,
    docker_client: docker.DockerClient,
    busybox_image: str,
    request: pytest.FixtureRequest,
) -> None:
    # given a ticker on a cluster of one node, whose worker is killed and judged down
    with (
        running_cluster(vhost, tmp_path, docker_client, request, {"node-1": ()}) as cluster,
        Client(Settings(amqp_url=cluster.url, request_timeout=10)) as kube,
    ):
        (node,) = cluster.nodes
        task_id = kube.submit(ticker(busybox_image))
        first = kube.wait(task_id, {TaskState.RUNNING}, timeout=60)
        cluster.kill(node)
        kube.wait(task_id, {TaskState.LOST, TaskState.PENDING}, timeout=30)
        # when the task is followed
        with following(cluster, "-f", "--tail", "1", task_id) as follow:
            # then kube says at once that its node is down, and nothing misleading
            marker = f"kube: partial: {node} is down ({task_id})"
            wait_for(lambda: marker in follow.errors(), "the marker", timeout=STARTUP + 3)
            assert not any("no container yet" in line for line in follow.errors())
            # and when the node is back, the task's next attempt is followed from its start
            cluster.start_worker(node)
            wait_for(lambda: "out 0" in follow.lines(), "the next attempt's lines", timeout=60)
            assert kube.get(task_id).attempt > first.attempt
            assert follow.interrupt() == 130
        assert not any("Traceback" in line for line in follow.errors())
