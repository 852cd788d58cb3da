"""Results a faulty or hostile worker publishes as the quick start's one broker user:
each is dead-lettered with its reason, makes no node and no queue, and leaves a manager
that answers and restarts (issue 12, "state that can no longer be read" and "resources
taken for free")."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import docker
import pytest

from kube.client import Client
from shared.messages import MAX_PARTS
from shared.settings import Settings
from tests.conftest import Cluster, running_cluster
from tests.e2e.test_bad_input import publish_raw
from tests.support.broker import dead_letters, queues
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def small_cluster(
    vhost: str, tmp_path: Path, docker_client: docker.DockerClient, request: pytest.FixtureRequest
) -> Iterator[Cluster]:
    """A manager that admits two nodes, and two mock workers that take both places."""
    workers = {"node-1": ("--runtime", "mock"), "node-2": ("--runtime", "mock")}
    with running_cluster(
        vhost, tmp_path, docker_client, request, workers, manager_args=("--max-nodes", "2")
    ) as cluster:
        yield cluster


def heartbeat(node: str, **fields: Any) -> dict[str, Any]:
    at = datetime.now(UTC).isoformat()
    return {"kind": "heartbeat", "node": node, "at": at, "cpus": 1.0, "memory": 1, "disk": 1,
            **fields}  # fmt: skip


def node_queues(url: str) -> list[str]:
    return queues(url, "kube.node.")


def test_hostile_results_cost_only_themselves(small_cluster: Cluster) -> None:
    cluster = small_cluster
    node = cluster.nodes[0]
    before = node_queues(cluster.url)
    nan = json.dumps(heartbeat(node)).replace('"cpus": 1.0', '"cpus": NaN')
    future = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    held = {"task_id": "t", "attempt": 0, "state": "running", "container_id": "c"}
    bodies = [
        nan,
        json.dumps(heartbeat(node, memory=2**64)),
        json.dumps(heartbeat(node, at="2026-11-27T12:00:00")),
        json.dumps(heartbeat(node, tasks=[held])),
        json.dumps(heartbeat("has space")),
        json.dumps(heartbeat("a/b")),
        json.dumps(heartbeat("n" * 300)),
        json.dumps(heartbeat(node, parts=MAX_PARTS + 1)),
        json.dumps(heartbeat("intruder")),  # a third node: past --max-nodes 2
    ]
    # when a worker's broker user publishes each of them, and one dated two hours ahead
    for body in bodies:
        publish_raw(cluster, "kube.results", f"result.heartbeat.{node}", body.encode())
    ahead = json.dumps(heartbeat(node, at=future)).encode()
    publish_raw(cluster, "kube.results", f"result.heartbeat.{node}", ahead)
    # then each is dead-lettered once, with its reason
    letters: list[dict[str, object]] = []
    while len(letters) < len(bodies):
        letters += wait_for(lambda: dead_letters(cluster.url), what="dead letters")
    reasons = [str(h["x-kube-reason"]) for h in letters]
    assert len(reasons) == len(bodies), reasons
    for word in ("finite", "memory", "timezone", "attempt", "node", "parts", "maximum"):
        assert any(word in reason for reason in reasons), (word, reasons)
    # and the one ahead is dropped, not dead-lettered, and its worker is told why
    told = "the manager refuses this worker's results: its clock is"
    wait_for(lambda: told in cluster.logs(), what="the worker told its clock is ahead")
    # and no node and no queue was made for them
    assert node_queues(cluster.url) == before
    with Client(Settings(amqp_url=cluster.url, request_timeout=10)) as client:
        assert sorted(n.name for n in client.nodes()) == sorted(cluster.nodes)
    # and the manager restarts from its store and answers
    cluster.stop("manager")
    cluster.start_manager()
    listed = cluster.kube("nodes")
    assert listed.returncode == 0, listed.stderr
    assert all(name in listed.stdout for name in cluster.nodes)
    assert "intruder" not in listed.stdout


def test_a_reply_to_that_names_someone_elses_queue_is_refused(small_cluster: Cluster) -> None:
    import amqp

    cluster = small_cluster
    vhost = cluster.url.rsplit("/", 1)[1]
    victim = f"kube.node.{cluster.nodes[0]}"
    # when a client asks for the task list with reply_to naming a worker's queue
    with amqp.Connection(host="127.0.0.1:5672", virtual_host=vhost) as connection:
        channel = connection.channel()
        for key, body in [("query.tasks", b"{}"), ("task.submit", b"{}")]:
            message = amqp.Message(body, reply_to=victim, correlation_id="x")
            channel.basic_publish(message, exchange="kube.commands", routing_key=key)
    # then both are dead-lettered with the reason, and nothing was written to that queue
    letters: list[dict[str, object]] = []
    while len(letters) < 2:
        letters += wait_for(lambda: dead_letters(cluster.url), what="dead letters")
    assert all("is not a reply queue" in str(h["x-kube-reason"]) for h in letters), letters
    with amqp.Connection(host="127.0.0.1:5672", virtual_host=vhost) as connection:
        _, depth, _ = connection.channel().queue_declare(victim, passive=True)
    assert depth == 0


def test_the_largest_spec_accepted_is_dispatched_and_runs(small_cluster: Cluster) -> None:
    from shared.codec import encode
    from shared.models import MAX_SPEC_BYTES, TaskSpec
    from shared.states import TaskState

    spec = TaskSpec(name="big", image="localhost/kube-busybox:latest", env={"BIG": ""})
    spec = spec.model_copy(update={"env": {"BIG": "x" * (MAX_SPEC_BYTES - len(encode(spec)))}})
    with Client(Settings(amqp_url=small_cluster.url, request_timeout=10)) as client:
        # when the largest spec a submit may carry is sent, and one a byte larger
        reply = json.loads(client._rpc.request("kube.commands", "task.submit", encode(spec)))
        assert reply["ok"] is True, reply
        over = encode(spec.model_copy(update={"env": {"BIG": spec.env["BIG"] + "x"}}))
        refusal = json.loads(client._rpc.request("kube.commands", "task.submit", over))
        # then the first runs (its dispatch fit), and the second is refused naming the limit
        assert client.wait(reply["id"], {TaskState.RUNNING}, timeout=30).state == "running"
        assert refusal["ok"] is False and f"{MAX_SPEC_BYTES}-byte limit" in refusal["error"]


def test_kube_ps_lists_tasks_past_what_one_message_holds(small_cluster: Cluster) -> None:
    from shared.models import TaskSpec

    # given a service of 1,200 tasks (one reply held about 1,150 before paging)
    spec = TaskSpec(
        name="many", image="localhost/kube-busybox:latest", command=("sleep", "3600"),
        replicas=600, env={"PADDING": "p" * 200},
    )  # type: ignore[arg-type]  # fmt: skip
    with Client(Settings(amqp_url=small_cluster.url, request_timeout=30)) as client:
        client.submit(spec)  # two services: one may have 1,000 replicas at most
        client.submit(spec.model_copy(update={"name": "more"}))
        wait_for(
            lambda: sum(t.state == "running" for t in client.list()) == 1200,
            timeout=180,
            what="1,200 running tasks",
        )
    # when a user lists them
    listed = small_cluster.kube("--timeout", "60", "ps", timeout=180)
    as_json = small_cluster.kube("--timeout", "60", "ps", "--json", timeout=180)
    # then both answer, with every task
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert sum(line.startswith(("many ", "more ")) for line in lines) == 1200
    assert as_json.returncode == 0, as_json.stderr
    assert len({row["id"] for row in json.loads(as_json.stdout)}) == 1200


def test_a_routing_key_nothing_handles_is_refused_not_dropped(small_cluster: Cluster) -> None:
    # when a client publishes with keys no handler knows, on both exchanges
    publish_raw(small_cluster, "kube.commands", "tasks.submit", b"{}")
    publish_raw(small_cluster, "kube.commands", "submit", b"{}")
    publish_raw(small_cluster, "kube.results", "results.update.x", b"{}")
    # then each is dead-lettered saying why, not dropped by the broker without a word
    letters: list[dict[str, object]] = []
    while len(letters) < 3:
        letters += wait_for(lambda: dead_letters(small_cluster.url), what="dead letters")
    reasons = sorted(str(h["x-kube-reason"]) for h in letters)
    assert sum("unknown routing key" in r for r in reasons) == 2, reasons
    assert sum("invalid result" in r for r in reasons) == 1, reasons
    # and queries, which the commands queue now sees too, are still answered once
    listed = small_cluster.kube("ps")
    assert listed.returncode == 0, listed.stderr
    assert dead_letters(small_cluster.url) == []
