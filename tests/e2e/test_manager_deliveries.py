"""The manager against the real broker: a poison message costs only itself, a broker that
blocks publishers ends nothing, and workers' clocks decide nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import amqp
import docker
import pytest

from kube.client import Client
from shared.models import NodeStatus, TaskSpec
from shared.settings import Settings
from shared.states import TaskState
from tests.conftest import Cluster, running_cluster
from tests.support.broker import dead_letters
from tests.support.clocks import skewed_by
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

MOCK = ("--runtime", "mock")
DOWN_AFTER = 4.0  # running_cluster's manager: --node-down-after 4, heartbeats every 1 s


def client_for(cluster: Cluster) -> Client:
    return Client(Settings(amqp_url=cluster.url, request_timeout=10))


def publish_raw(cluster: Cluster, messages: list[tuple[str, bytes, dict[str, object]]]) -> None:
    """Publish (routing key, body, headers) to kube.commands, in order, on one channel."""
    vhost = cluster.url.rsplit("/", 1)[1]
    with amqp.Connection(host="127.0.0.1:5672", virtual_host=vhost) as connection:
        channel = connection.channel()
        channel.confirm_select()
        for key, body, headers in messages:
            message = amqp.Message(body, delivery_mode=2, application_headers=headers)
            channel.basic_publish(message, exchange="kube.commands", routing_key=key)


def statuses(client: Client, cluster: Cluster) -> dict[str, NodeStatus]:
    return {node.name: node.status for node in client.nodes() if node.name in cluster.nodes}


@pytest.fixture
def mock_cluster(
    vhost: str, tmp_path: Path, docker_client: docker.DockerClient, request: pytest.FixtureRequest
) -> Iterator[Cluster]:
    """A manager and two workers on the mock runtime."""
    with running_cluster(
        vhost, tmp_path, docker_client, request, {"a": MOCK, "b": MOCK}
    ) as cluster:
        yield cluster


def test_a_poison_message_is_dead_lettered_once_and_the_valid_ones_behind_it_run(
    mock_cluster: Cluster,
) -> None:
    # given a refused submit (memory past SQLite's integers: before the checks at the edge,
    # its handler raised and it was requeued until the delivery limit) among 50 valid ones
    good = [
        ("task.submit", json.dumps({"id": f"ok-{i}", "name": f"ok-{i}", "image": "x"}).encode(), {})
        for i in range(50)
    ]
    poison = {"id": "poison", "name": "poison", "image": "x", "memory": 10**20}
    # when they are published in one go, the poison first
    publish_raw(mock_cluster, [("task.submit", json.dumps(poison).encode(), {}), *good])
    # then every valid task runs
    with client_for(mock_cluster) as client:
        wait_for(
            lambda: sum(t.state == TaskState.RUNNING for t in client.list()) == 50,
            timeout=60,
            what="50 valid tasks running",
        )
        assert "poison" not in {task.id for task in client.list()}
    # and the poison was dead-lettered by the manager, once, with its reason
    dead = wait_for(lambda: dead_letters(mock_cluster.url), what="a dead letter")
    assert len(dead) == 1, dead
    assert "memory" in str(dead[0]["x-kube-reason"])
    assert "x-death" not in dead[0]  # not the broker's delivery limit


def test_a_dead_letter_copy_of_big_headers_fits_the_frame_and_costs_nothing_else(
    mock_cluster: Cluster,
) -> None:
    # given a refused command whose headers nearly fill the broker's frame (128 KiB),
    # followed by 20 valid submits
    big = {"filler": "x" * 131_000}  # a header frame of 131,031 bytes: 33 short of the limit
    good = [
        ("task.submit", json.dumps({"id": f"ok-{i}", "name": f"ok-{i}", "image": "x"}).encode(), {})
        for i in range(20)
    ]
    # when they are published in one go
    publish_raw(mock_cluster, [("task.submit", b"{not json", big), *good])
    # then every valid task runs, and the refused one is dead-lettered once, without the
    # headers that would not fit
    with client_for(mock_cluster) as client:
        wait_for(
            lambda: sum(t.state == TaskState.RUNNING for t in client.list()) == 20,
            timeout=60,
            what="20 valid tasks running",
        )
    dead = wait_for(lambda: dead_letters(mock_cluster.url), what="a dead letter")
    assert len(dead) == 1 and "not JSON" in str(dead[0]["x-kube-reason"])
    assert "filler" not in dead[0] and dead[0]["x-kube-headers-dropped"] == "filler"
    # and the manager never lost its connection over it
    log = (mock_cluster.workdir / "manager.log").read_text()
    assert "lost the broker connection" not in log


def memory_watermark() -> str:
    out = subprocess.run(
        ["rabbitmqctl", "-q", "eval", "vm_memory_monitor:get_vm_memory_high_watermark()."],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    return out


def broker_alarmed() -> bool:
    out = subprocess.run(
        ["rabbitmqctl", "-q", "eval", "rabbit_alarm:get_alarms()."],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    return out not in ("", "[]")


def set_memory_watermark(value: str) -> None:
    subprocess.run(
        ["rabbitmqctl", "-q", "set_vm_memory_high_watermark", value],
        capture_output=True,
        check=True,
        timeout=60,
    )


@pytest.fixture
def memory_alarm() -> Iterator[None]:
    """Raises the broker's memory alarm (blocking every publisher on the broker: keep it
    short); the watermark is restored at teardown, also when the test fails."""
    before = memory_watermark()
    set_memory_watermark("0.0000001")
    try:
        yield
    finally:
        set_memory_watermark(before if before.replace(".", "", 1).isdigit() else "0.4")


def test_a_memory_alarm_marks_no_node_down_and_restarts_nothing(
    mock_cluster: Cluster, request: pytest.FixtureRequest
) -> None:
    with client_for(mock_cluster) as client:
        # given a running task
        task_id = client.submit(TaskSpec(name="steady", image="x"))
        before = client.wait(task_id, {TaskState.RUNNING}, timeout=60)
    manager = mock_cluster.procs["manager"]
    # when the broker blocks every publisher for well over node_down_after
    request.getfixturevalue("memory_alarm")
    log = mock_cluster.workdir / "manager.log"
    wait_for(broker_alarmed, timeout=30, what="the broker's memory alarm")
    deadline = time.monotonic() + 2 * DOWN_AFTER
    while time.monotonic() < deadline:  # a period, not a condition: the manager must live
        assert manager.poll() is None, "the manager ended while the broker blocked it"
        time.sleep(0.2)
    set_memory_watermark("0.4")
    # then once unblocked, the manager still runs, no node was down, the task never moved
    wait_for(lambda: not broker_alarmed(), timeout=30, what="the alarm cleared")
    with client_for(mock_cluster) as client:
        assert manager.poll() is None
        assert set(statuses(client, mock_cluster).values()) == {NodeStatus.READY}
        task, events = client.inspect(task_id)
        assert (task.state, task.attempt) == (TaskState.RUNNING, before.attempt)
        assert [e.state for e in events].count(TaskState.LOST) == 0
    assert "down (no heartbeat" not in log.read_text()


@pytest.mark.parametrize("stopped", ["slow", "fast"])
def test_workers_clocks_60s_off_change_nothing(
    vhost: str,
    tmp_path: Path,
    docker_client: docker.DockerClient,
    request: pytest.FixtureRequest,
    stopped: str,
) -> None:
    # given two workers, one whose clock is 60 s behind and one 60 s ahead
    prefixes = {"slow": skewed_by("-60s"), "fast": skewed_by("+60s")}
    workers = {"slow": MOCK, "fast": MOCK}
    with (
        running_cluster(vhost, tmp_path, docker_client, request, workers, prefixes=prefixes) as c,
        client_for(c) as client,
    ):
        slow, fast = c.nodes
        names = {"slow": slow, "fast": fast}
        # when several node_down_after intervals pass, no node is called down
        first = {n.name: n.last_heartbeat for n in client.nodes()}
        wait_for(
            lambda: all(
                (n.last_heartbeat - first[n.name]).total_seconds() > 2 * DOWN_AFTER
                for n in client.nodes()
            ),
            timeout=60,
            what="two down intervals of heartbeats",
        )
        assert statuses(client, c) == {slow: NodeStatus.READY, fast: NodeStatus.READY}
        # and when one of them stops answering (SIGSTOP), it is down in time
        proc = c.procs[names[stopped]]
        proc.send_signal(signal.SIGSTOP)
        try:
            stopped_at = time.monotonic()
            wait_for(
                lambda: statuses(client, c)[names[stopped]] == NodeStatus.DOWN,
                timeout=DOWN_AFTER + 6,
                what=f"{stopped} worker down",
            )
            assert time.monotonic() - stopped_at < DOWN_AFTER + 6
            # then the other stays ready
            other = fast if stopped == "slow" else slow
            assert statuses(client, c)[other] == NodeStatus.READY
        finally:
            os.kill(proc.pid, signal.SIGCONT)
