"""The core pipeline end to end: real manager and workers, real RabbitMQ, real Docker."""

from __future__ import annotations

import json
import urllib.request
import uuid

import amqp  # py-amqp: not pika, to prove any AMQP 0-9-1 client can use the contract
import docker
import docker.errors
import pytest

from kube.client import Client
from shared.settings import Settings
from shared.states import TaskState
from tests.conftest import Cluster
from tests.support.broker import dead_letters
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

HTTPD = [
    "sh",
    "-c",
    "mkdir -p /www && echo hello-from-web > /www/index.html && exec httpd -f -p 8080 -h /www",
]


def fetch(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=2) as response:
        return str(response.read().decode())


def client_for(cluster: Cluster) -> Client:
    return Client(Settings(amqp_url=cluster.url, request_timeout=10))


def test_http_task_runs_answers_on_its_port_and_stops(
    cluster: Cluster, busybox_image: str, docker_client: docker.DockerClient
) -> None:
    # given a running cluster
    # when a user runs a web server and waits for it
    run = cluster.kube(
        "run",
        "--name",
        "web",
        "--image",
        busybox_image,
        "--port",
        "8080",
        "--cpu",
        "0.5",
        "--memory",
        "64m",
        "--env",
        "GREETING=hi",
        "--pull-policy",
        "never",
        "--wait",
        "--",
        *HTTPD,
    )
    assert run.returncode == 0, run.stderr + cluster.logs()
    task_id = run.stdout.split()[0]
    # then it runs on one of the workers, and answers on the reported host port
    ps = json.loads(cluster.kube("ps", "--json").stdout)
    task = next(t for t in ps if t["id"] == task_id)
    assert task["state"] == "running"
    assert task["node"] in cluster.nodes
    assert task["node"] in run.stdout and "8080->" in run.stdout
    port = task["host_ports"]["8080"]
    assert wait_for(lambda: fetch(port), what="the web page").strip() == "hello-from-web"
    container = docker_client.containers.get(task["container_id"])
    assert container.labels["kube.task-id"] == task_id
    assert container.attrs["HostConfig"]["NanoCpus"] == 500_000_000
    assert container.attrs["HostConfig"]["Memory"] == 64 * 1024 * 1024
    # and the node accounts for it
    nodes = json.loads(cluster.kube("nodes", "--json").stdout)
    node = next(n for n in nodes if n["name"] == task["node"])
    assert node["allocated_cpu"] == 0.5 and node["task_count"] == 1
    assert node["status"] == "ready" and node["cpus"] > 0 and node["last_heartbeat"]

    # when the user stops it
    stop = cluster.kube("stop", task_id)
    assert stop.returncode == 0, stop.stderr
    # then the task completes and its container is gone
    with client_for(cluster) as client:
        done = client.wait(task_id, {TaskState.COMPLETED}, timeout=30)
    assert done.state == TaskState.COMPLETED
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(task["container_id"])
    inspect = json.loads(cluster.kube("inspect", task_id, "--json").stdout)
    assert [e["state"] for e in inspect["events"]] == [
        "pending",
        "scheduled",
        "running",
        "completed",
    ]


def test_logs_show_what_the_container_printed(cluster: Cluster, busybox_image: str) -> None:
    # given a task that prints three lines and keeps running
    run = cluster.kube(
        "run",
        "--name",
        "talker",
        "--image",
        busybox_image,
        "--wait",
        "--",
        "sh",
        "-c",
        "echo one; echo two; echo three-from-kube; exec sleep 300",
    )
    assert run.returncode == 0, run.stderr + cluster.logs()
    task_id = run.stdout.split()[0]
    # when the user reads its logs
    logs = wait_for(
        lambda: (
            (r := cluster.kube("logs", task_id)).returncode == 0
            and "three-from-kube" in r.stdout
            and r
        ),
        what="the logs",
    )
    # then they see the output, and --tail limits it
    assert logs.stdout.splitlines() == ["one", "two", "three-from-kube"]
    tail = cluster.kube("logs", task_id, "--tail", "1")
    assert tail.stdout.splitlines() == ["three-from-kube"]


def test_task_published_as_raw_json_by_another_amqp_client_runs(
    cluster: Cluster, busybox_image: str
) -> None:
    # given a plain AMQP client (py-amqp) and a TaskSpec written by hand
    task_id = f"raw-{uuid.uuid4().hex[:6]}"
    spec = {
        "id": task_id,
        "name": "raw",
        "image": busybox_image,
        "command": ["sleep", "300"],
        "memory": "16m",
        "pull_policy": "never",
    }
    vhost = cluster.url.rsplit("/", 1)[1]
    with amqp.Connection(
        host="127.0.0.1:5672", userid="guest", password="guest", virtual_host=vhost
    ) as connection:
        channel = connection.channel()
        reply_queue, _, _ = channel.queue_declare("", exclusive=True)
        replies: list[amqp.Message] = []
        channel.basic_consume(reply_queue, callback=replies.append, no_ack=True)
        # when it publishes the spec to kube.commands with a reply_to
        channel.basic_publish(
            amqp.Message(
                json.dumps(spec),
                content_type="application/json",
                reply_to=reply_queue,
                correlation_id="c-1",
                delivery_mode=2,
            ),
            exchange="kube.commands",
            routing_key="task.submit",
        )
        while not replies:
            connection.drain_events(timeout=10)
    # then the manager answers ok with the id, and the task runs
    assert json.loads(replies[0].body) == {
        "ok": True,
        "id": task_id,
        "error": None,
        "result": None,
        "next": None,
    }
    assert replies[0].properties["correlation_id"] == "c-1"
    with client_for(cluster) as client:
        task = client.wait(task_id, {TaskState.RUNNING}, timeout=60)
    assert task.state == TaskState.RUNNING, task.error


def test_publishing_the_same_id_twice_makes_one_task(cluster: Cluster, busybox_image: str) -> None:
    # given a spec with a client-chosen id
    task_id = f"once-{uuid.uuid4().hex[:6]}"
    args = (
        "run",
        "--id",
        task_id,
        "--name",
        "once",
        "--image",
        busybox_image,
        "--",
        "sleep",
        "300",
    )
    # when it is submitted twice
    first, second = cluster.kube(*args), cluster.kube(*args)
    # then both succeed with the same id, and there is one task
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert first.stdout.strip() == second.stdout.strip() == task_id
    with client_for(cluster) as client:
        client.wait(task_id, {TaskState.RUNNING}, timeout=60)
        assert [t.id for t in client.list()].count(task_id) == 1
        _, events = client.inspect(task_id)
    assert [e.state for e in events].count(TaskState.SCHEDULED) == 1


def test_bad_spec_gets_an_error_naming_each_field_and_is_dead_lettered(cluster: Cluster) -> None:
    # given a spec with a wrong type, an unknown field and a bad size
    bad = {"name": "bad", "image": 5, "bogus": True, "memory": "lots"}
    with client_for(cluster) as client:
        # when it is submitted with a reply_to
        raw = client._rpc.request("kube.commands", "task.submit", json.dumps(bad).encode())
        # then the error names each bad field
        reply = json.loads(raw)
        assert reply["ok"] is False
        for field in ("image", "bogus", "memory"):
            assert field in reply["error"]
        # and a body that is not JSON gets a reason too, and the manager still works
        raw = client._rpc.request("kube.commands", "task.submit", b"{not json")
        assert "not JSON" in json.loads(raw)["error"]
        assert client.list() is not None
    # and both messages wait in the dead-letter queue with their reason in a header
    reasons = [headers["x-kube-reason"] for headers in dead_letters(cluster.url)]
    assert len(reasons) == 2
    assert "bogus" in reasons[0] and "not JSON" in reasons[1]


def test_wait_exits_non_zero_when_the_task_fails(cluster: Cluster) -> None:
    # given an image that is not on the machine and a policy that forbids pulling
    run = cluster.kube(
        "run",
        "--name",
        "nope",
        "--image",
        "localhost/no-such-image:1",
        "--pull-policy",
        "never",
        "--wait",
    )
    # then --wait reports the failure and exits non-zero
    assert run.returncode == 1, run.stdout + run.stderr
    assert "failed" in run.stdout and "no-such-image" in run.stdout


def test_cli_says_clearly_when_no_manager_answers(vhost: str) -> None:
    # given a broker where the topology exists but no manager runs
    import subprocess
    import sys

    env = {"KUBE_AMQP_URL": vhost, "KUBE_TIMEOUT": "1", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "kube", "ps"], env=env, capture_output=True, text=True, timeout=30
    )
    # then the error says what is missing, without a traceback
    assert result.returncode != 0
    assert "manager" in result.stderr and "Traceback" not in result.stderr
