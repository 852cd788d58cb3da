"""The end of ended attempts' output, kept by the manager (issue 16, "after the fact"):
real broker, real Docker engine, manager and worker as real processes."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import docker
import pytest

from kube.client import Client
from shared.kept import AttemptSummary
from shared.models import TaskSpec
from shared.settings import Settings
from shared.states import TaskState
from tests.conftest import Cluster, remove_node_containers, running_cluster
from tests.e2e.test_bad_input import publish_raw
from tests.support.broker import dead_letters
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


def kept_attempts(kube: Client, task_id: str, count: int) -> list[AttemptSummary]:
    """The task's attempts, once the output of `count` of them is kept."""
    found: list[AttemptSummary] = []

    def enough() -> bool:
        found[:] = kube.inspect_attempts(task_id)[2]
        return sum(a.kept for a in found) >= count

    wait_for(enough, timeout=30, what=f"the output of {count} attempts of {task_id} kept")
    return found


def test_a_failed_tasks_last_lines_and_exit_code_outlive_its_container(
    vhost: str,
    tmp_path: Path,
    docker_client: docker.DockerClient,
    busybox_image: str,
    request: pytest.FixtureRequest,
) -> None:
    # given a task that prints 20,000 lines (over 64 KiB) and a last word on stderr, then
    # exits 3, restarted once
    with (
        running_cluster(vhost, tmp_path, docker_client, request, {"node-1": ()}) as cluster,
        Client(Settings(amqp_url=vhost, request_timeout=10)) as kube,
    ):
        script = "seq 1 20000; echo oops >&2; exit 3"
        restart = {"policy": "on-failure", "max_restarts": 1, "backoff_seconds": 0.2}
        spec = TaskSpec(
            name="kept",
            image=busybox_image,
            command=("sh", "-c", script),
            restart=restart,
            pull_policy="never",
        )
        task_id = kube.submit(spec)
        assert kube.wait(task_id, {TaskState.FAILED}, timeout=60).attempt == 2
        # then inspect lists both attempts, each with its exit code
        attempts = kept_attempts(kube, task_id, 2)
        assert [(a.attempt, a.node, a.state, a.exit_code) for a in attempts] == [
            (1, cluster.nodes[0], TaskState.FAILED, 3),
            (2, cluster.nodes[0], TaskState.FAILED, 3),
        ]
        assert all(a.started is not None and a.ended is not None for a in attempts)
        # when the last attempt's container is removed behind kube's back
        remove_node_containers(docker_client, cluster.nodes[0])
        # then kube logs shows its last lines, and says whose they are and how it ended
        shown = cluster.kube("logs", task_id)
        assert shown.returncode == 0, shown.stderr
        # (stdout on stdout, the header and stderr on stderr: the two kept apart)
        assert shown.stdout.endswith("\n19999\n20000\n")
        assert not shown.stdout.startswith("1\n")  # only the last 64 KiB are kept
        assert 60 * 1024 < len(shown.stdout) <= 64 * 1024
        header, last_words = shown.stderr.splitlines()
        assert header.startswith("(kept output of attempt 2, which exited with code 3 at ")
        assert "only the last 64 KiB of each stream were kept" in header
        assert last_words == "oops"
        # and the first attempt's output is there too, and the last lines of the last one
        first = cluster.kube("logs", task_id, "--attempt", "1", "--tail", "2")
        assert (first.returncode, first.stdout) == (0, "19999\n20000\n"), first.stderr
        assert first.stderr.startswith("(kept output of attempt 1, which exited with code 3")
        assert first.stderr.endswith(")\noops\n")
        previous = cluster.kube("logs", task_id, "--previous", "--tail", "1")
        assert (previous.returncode, previous.stdout) == (0, "20000\n"), previous.stderr
        assert previous.stderr.startswith("(kept output of attempt 2, which exited with code 3")
        missing = cluster.kube("logs", task_id, "--attempt", "3")
        assert missing.returncode == 4 and "no output of attempt 3" in missing.stderr
        # and kube inspect shows the attempts, as a table and in JSON
        text = cluster.kube("inspect", task_id)
        assert "attempts:\nATTEMPT" in text.stdout, text.stderr
        rows = json.loads(cluster.kube("inspect", task_id, "--json").stdout)["attempts"]
        assert [(r["attempt"], r["exit_code"], r["kept"]) for r in rows] == [
            (1, 3, True),
            (2, 3, True),
        ]


def test_kept_output_is_shown_when_the_node_is_gone_and_says_it_does_not_answer(
    vhost: str,
    tmp_path: Path,
    docker_client: docker.DockerClient,
    busybox_image: str,
    request: pytest.FixtureRequest,
) -> None:
    # given a task whose first attempt prints and exits 3, and whose second runs on (its
    # command tells them apart by the time: the second starts after a 12 s backoff), on a
    # node the manager is slow to call down
    workers = {"node-1": ()}
    slow = ("--node-down-after", "60")
    with (
        running_cluster(vhost, tmp_path, docker_client, request, workers, slow) as cluster,
        Client(Settings(amqp_url=vhost, request_timeout=20)) as kube,
    ):
        script = (
            'echo "first words"; [ $(( $(date +%s) - START )) -gt 10 ] && exec sleep 600;'
            ' echo "last words" >&2; exit 3'
        )
        restart = {"policy": "on-failure", "max_restarts": 1, "backoff_seconds": 12}
        spec = TaskSpec(
            name="kept",
            image=busybox_image,
            command=("sh", "-c", script),
            restart=restart,
            env={"START": str(int(time.time()))},
            pull_policy="never",
        )
        task_id = kube.submit(spec)
        kept_attempts(kube, task_id, 1)
        wait_for(
            lambda: kube.get(task_id).attempt == 2 and kube.get(task_id).state == TaskState.RUNNING,
            timeout=60,
            what="its second attempt running",
        )
        # when its node dies: the worker killed, its containers removed
        cluster.kill(cluster.nodes[0])
        remove_node_containers(docker_client, cluster.nodes[0])
        # then kube logs shows the first attempt's kept output, saying the node does not answer
        shown = cluster.kube("logs", task_id, timeout=30)
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout == "first words\n"
        header, last_words = shown.stderr.splitlines()
        assert last_words == "last words"
        assert header.startswith("(kept output of attempt 1, which exited with code 3 at ")
        assert f"worker {cluster.nodes[0]} did not answer" in header


def output(node: str, task_id: str, attempt: int, **fields: object) -> bytes:
    body = {
        "kind": "output",
        "node": node,
        "at": datetime.now(UTC).isoformat(),
        "task_id": task_id,
        "attempt": attempt,
        "exit_code": 3,
        "stdout": "kept words\n",
        "stderr": "",
        **fields,
    }
    return json.dumps(body).encode()


def test_forged_and_oversized_outputs_cost_only_themselves(
    vhost: str,
    tmp_path: Path,
    docker_client: docker.DockerClient,
    request: pytest.FixtureRequest,
) -> None:
    # given a task running on the first of two mock workers
    workers = {"node-1": ("--runtime", "mock"), "node-2": ("--runtime", "mock")}
    with (
        running_cluster(vhost, tmp_path, docker_client, request, workers) as cluster,
        Client(Settings(amqp_url=vhost, request_timeout=10)) as kube,
    ):
        task_id = kube.submit(TaskSpec(name="served", image="mock/img", command=("serve",)))
        task = kube.wait(task_id, {TaskState.RUNNING}, timeout=30)
        assert task.node is not None
        other = next(n for n in cluster.nodes if n != task.node)
        # when outputs no worker of it could have sent are published, one over the size
        # limit, one about a task that is gone, and between them a good one
        bad = [
            (other, output(other, task_id, 1)),  # its attempt from a node not running it
            (task.node, output(task.node, task_id, 9)),  # an attempt it never had
            (task.node, output(task.node, task_id, 1, stdout="x" * (64 * 1024 + 1))),
        ]
        for node, body in bad[:2]:
            publish_raw(cluster, "kube.results", f"result.output.{node}", body)
        publish_raw(
            cluster, "kube.results", f"result.output.{task.node}", output(task.node, task_id, 1)
        )
        publish_raw(cluster, "kube.results", f"result.output.{task.node}", bad[2][1])
        gone = output(task.node, "removed-1234", 1)
        publish_raw(cluster, "kube.results", f"result.output.{task.node}", gone)
        # then each bad one is dead-lettered once, with its reason
        letters: list[dict[str, object]] = []
        while len(letters) < len(bad):
            letters += wait_for(lambda: dead_letters(cluster.url), what="dead letters")
        reasons = sorted(str(h["x-kube-reason"]) for h in letters)
        assert len(reasons) == len(bad), reasons
        assert any("does not run it" in r for r in reasons), reasons
        assert any("has had only 1 attempts" in r for r in reasons), reasons
        assert any("invalid result" in r and "stdout" in r for r in reasons), reasons
        # and the good one is kept, and shown when asked for, the task still running
        shown = cluster.kube("logs", task_id, "--attempt", "1")
        assert (shown.returncode, shown.stdout) == (0, "kept words\n"), shown.stderr
        assert kube.get(task_id).state == TaskState.RUNNING
        assert "mock: mock/img serve" in kube.logs(task_id)  # the live output, by default


def test_a_restarted_worker_keeps_the_output_of_a_container_that_ended_while_it_was_down(
    vhost: str,
    tmp_path: Path,
    docker_client: docker.DockerClient,
    busybox_image: str,
    request: pytest.FixtureRequest,
) -> None:
    # given a task running on a node the manager is slow to call down
    slow = ("--node-down-after", "60")
    with (
        running_cluster(vhost, tmp_path, docker_client, request, {"node-1": ()}, slow) as cluster,
        Client(Settings(amqp_url=vhost, request_timeout=10)) as kube,
    ):
        (node,) = cluster.nodes
        script = "echo hi; while [ ! -e /tmp/go ]; do sleep 0.2; done; echo bye >&2; exit 4"
        spec = TaskSpec(
            name="kept",
            image=busybox_image,
            command=("sh", "-c", script),
            restart={"policy": "never"},
            pull_policy="never",
        )
        task_id = kube.submit(spec)
        kube.wait(task_id, {TaskState.RUNNING}, timeout=60)
        # when its worker dies, and the container ends while no worker watches it
        cluster.kill(node)
        (container,) = docker_client.containers.list(filters={"label": f"kube.task-id={task_id}"})
        assert container.exec_run(["touch", "/tmp/go"]).exit_code == 0
        wait_for(lambda: container.wait(timeout=30) is not None, timeout=40, what="its exit")
        # and the worker starts again
        cluster.start_worker(node)
        # then it reports the end, and reads the output for the manager to keep
        assert kube.wait(task_id, {TaskState.FAILED}, timeout=60).exit_code == 4
        (attempt,) = kept_attempts(kube, task_id, 1)
        assert attempt.exit_code == 4
        # so that once the container is gone, kube logs still shows how it ended
        remove_node_containers(docker_client, node)
        shown = cluster.kube("logs", task_id)
        assert (shown.returncode, shown.stdout) == (0, "hi\n"), shown.stderr
        assert shown.stderr.startswith(
            f"(kept output of attempt 1, which exited with code {attempt.exit_code}"
        )


def test_a_stopped_tasks_last_words_on_its_way_out_are_kept(
    cluster: Cluster, busybox_image: str
) -> None:
    # given a task that says something when it is told to stop
    script = 'trap "echo told to stop; exit 0" TERM; echo serving; while :; do sleep 0.2; done'
    with Client(Settings(amqp_url=cluster.url, request_timeout=10)) as kube:
        spec = TaskSpec(
            name="kept", image=busybox_image, command=("sh", "-c", script), pull_policy="never"
        )
        task_id = kube.submit(spec)
        kube.wait(task_id, {TaskState.RUNNING}, timeout=60)
        # when it is stopped (its container stopped, then removed)
        kube.stop(task_id)
        kube.wait(task_id, {TaskState.COMPLETED}, timeout=60)
        kept_attempts(kube, task_id, 1)
        # then kube logs shows its output to the end, its words on the way out included
        shown = cluster.kube("logs", task_id)
    assert (shown.returncode, shown.stdout) == (0, "serving\ntold to stop\n"), shown.stderr
    assert shown.stderr.startswith("(kept output of attempt 1, which ended at ")
