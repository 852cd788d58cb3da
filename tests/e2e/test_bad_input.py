"""Malformed messages of every kind: each is dead-lettered or refused with its reason, and
the manager and workers keep working."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import amqp
import pytest

from kube.client import Client
from shared.messages import TaskUpdate
from shared.models import MAX_BODY_BYTES, TaskSpec
from shared.settings import Settings
from shared.states import TaskState
from tests.conftest import Cluster
from tests.support.broker import dead_letters
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

GOOD = {"name": "ok", "image": "localhost/kube-busybox:latest", "command": ["sleep", "300"]}

# (routing key on kube.commands, body, a word the reason must contain)
COMMANDS: list[tuple[str, bytes, str]] = [
    ("task.submit", b"{not json", "not JSON"),
    ("task.submit", b"\xff\xfe\xfd", "not UTF-8"),
    ("task.submit", json.dumps(GOOD).encode("utf-16"), "not UTF-8"),
    ("task.submit", b"[]", "body"),
    ("task.submit", b"", "not JSON"),
    ("task.submit", b"null", "body"),
    ("task.submit", b" " * (2 * MAX_BODY_BYTES), "over the"),
    ("task.submit", json.dumps({**GOOD, "image": 5}).encode(), "image"),
    ("task.submit", json.dumps({**GOOD, "volumes": ["/"]}).encode(), "volumes"),
    ("task.submit", json.dumps({**GOOD, "memory": "lots"}).encode(), "memory"),
    ("task.submit", json.dumps({**GOOD, "cpu": -1}).encode(), "cpu"),
    ("task.submit", json.dumps({**GOOD, "ports": [70000]}).encode(), "ports"),
    ("task.submit", json.dumps({**GOOD, "ports": list(range(1, 258))}).encode(), "at most 256"),
    ("task.submit", json.dumps({**GOOD, "ports": [{"container": 0}]}).encode(), "ports.0.con"),
    ("task.submit", json.dumps({**GOOD, "id": "../etc"}).encode(), "id"),
    (
        "task.submit",
        json.dumps({**GOOD, "health_check": {"tcp": {"port": 1}, "exec": ["true"]}}).encode(),
        "exactly one",
    ),
    ("task.submit", json.dumps({**GOOD, "restart": {"policy": "sometimes"}}).encode(), "policy"),
    ("task.submit", json.dumps({**GOOD, "env": {"1BAD": "x"}}).encode(), "env"),
    ("task.submit", json.dumps({**GOOD, "labels": {"kube.node": "x"}}).encode(), "reserved"),
    ("task.submit", json.dumps({**GOOD, "labels": {"a": {"b": "c"}}}).encode(), "labels"),
    ("task.submit", json.dumps({**GOOD, "command": "sleep 300"}).encode(), "command"),
    ("task.stop", json.dumps({"id": "no-such-task"}).encode(), "unknown task"),
    ("task.stop", json.dumps({"identifier": 1}).encode(), "identifier"),
    ("task.explode", b"{}", "unknown routing key"),
]


def client_for(cluster: Cluster) -> Client:
    return Client(Settings(amqp_url=cluster.url, request_timeout=10))


def publish_raw(
    cluster: Cluster, exchange: str, key: str, body: bytes, user_id: str | None = "guest"
) -> None:
    """Publish as the broker user guest, stating it in user_id as a worker does."""
    vhost = cluster.url.rsplit("/", 1)[1]
    with amqp.Connection(host="127.0.0.1:5672", virtual_host=vhost) as connection:
        channel = connection.channel()
        properties = {"user_id": user_id} if user_id else {}
        message = amqp.Message(body, delivery_mode=2, **properties)
        channel.basic_publish(message, exchange=exchange, routing_key=key)


def test_every_kind_of_bad_message_is_refused_with_its_reason(
    cluster: Cluster, busybox_image: str
) -> None:
    with client_for(cluster) as client:
        # given a task that runs, to aim forged results at
        running = client.submit(
            TaskSpec(
                name="victim", image=busybox_image, command=("sleep", "300"), pull_policy="never"
            )
        )  # type: ignore[arg-type]
        task = client.wait(running, {TaskState.RUNNING}, timeout=60)
        assert task.node is not None

        # when each bad command is sent with a reply_to, the reply names the problem
        for key, body, word in COMMANDS:
            reply = json.loads(client._rpc.request("kube.commands", key, body))
            assert reply["ok"] is False and word in reply["error"], (key, body[:40], reply)

        # and bad queries get an error reply, and are dead-lettered with it
        for key, body, word in [
            ("query.everything", b"{}", "unknown query"),
            ("query.task", b'{"task": 1}', "id"),
        ]:
            reply = json.loads(client._rpc.request("kube.commands", key, body))
            assert reply["ok"] is False and word in reply["error"]

        # and forged or broken results arrive as if from a worker
        def forged(**fields: object) -> bytes:
            update = {
                "node": task.node,
                "task_id": task.id,
                "attempt": task.attempt,
                "state": "failed",
                "at": datetime.now(UTC).isoformat(),
                **fields,
            }
            return TaskUpdate.model_validate(update).model_dump_json().encode()

        publish_raw(cluster, "kube.results", "result.update.x", b'{"kind": "update"}')
        publish_raw(cluster, "kube.results", "result.update.x", forged(task_id="ghost"))
        publish_raw(cluster, "kube.results", "result.update.x", forged(attempt=99))
        publish_raw(cluster, "kube.results", "result.update.x", forged(state="pending"))
        # and a result that does not say which broker user sent it
        publish_raw(cluster, "kube.results", "result.update.x", forged(), user_id=None)
        # and a broken dispatch lands in a worker's own queue
        publish_raw(cluster, "kube.dispatch", task.node, b'{"kind": "run", "task_id": 7}')
        # and a spec asks for what no worker allows
        privileged = client.submit(
            TaskSpec(name="p", image=busybox_image, privileged=True, restart={"policy": "never"})
        )  # type: ignore[arg-type]
        refused = client.wait(privileged, {TaskState.FAILED}, timeout=60)
        assert "privileged mode is not allowed" in (refused.error or "")

        # then the dead-letter queue holds each dead-lettered message with its reason
        expected = len(COMMANDS) + 4 + 2  # and the two bad queries
        letters = wait_for(lambda: (d := dead_letters(cluster.url)) and d, what="dead letters")
        while len(letters) < expected:
            letters += wait_for(lambda: dead_letters(cluster.url), what="more dead letters")
        assert len(letters) == expected
        assert all(str(h["x-kube-reason"]) for h in letters)
        queues = {str(h["x-kube-queue"]) for h in letters}
        assert queues == {
            "kube.manager.commands",
            "kube.manager.queries.quorum",
            "kube.manager.results",
            f"kube.node.{task.node}",
        }
        # and the forged stale and impossible reports changed nothing
        assert client.get(running).state == TaskState.RUNNING
        manager_log = (cluster.workdir / "manager.log").read_text()
        assert "is stale" in manager_log and "cannot report pending" in manager_log

        # and everything still works: every process is alive and a new task runs
        assert all(proc.poll() is None for proc in cluster.procs.values())
        fresh = client.submit(
            TaskSpec(
                name="after", image=busybox_image, command=("sleep", "300"), pull_policy="never"
            )
        )  # type: ignore[arg-type]
        assert client.wait(fresh, {TaskState.RUNNING}, timeout=60).state == TaskState.RUNNING
