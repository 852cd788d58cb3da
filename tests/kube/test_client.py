"""The Python client against a real cluster: every call the issue names, and its errors."""

from __future__ import annotations

import os
import uuid

import pytest

from kube.client import Client, Event, WaitTimeout, make_spec
from shared.errors import DecodeError, MessagingError, NoManagerError, RequestError
from shared.models import TaskSpec
from shared.settings import Settings
from shared.states import TaskState
from tests.conftest import Cluster
from tests.support.broker import watch_queues

pytestmark = pytest.mark.e2e


def sleeper(image: str, name: str = "client") -> TaskSpec:
    return make_spec(
        {"name": name, "image": image, "command": ["sleep", "300"], "pull_policy": "never"}
    )


def test_submit_get_list_nodes_wait_watch_stop(cluster: Cluster, busybox_image: str) -> None:
    with Client(Settings(amqp_url=cluster.url, request_timeout=10)) as kube:
        events = kube.watch(["task.*"], timeout=60)
        # submit returns the id; get, list and wait see the task
        task_id = kube.submit(sleeper(busybox_image))
        running = kube.wait(task_id, {TaskState.RUNNING}, timeout=60)
        assert running.state == TaskState.RUNNING and running.node in cluster.nodes
        assert kube.get(task_id).id == task_id
        assert task_id in [task.id for task in kube.list()]
        assert {node.name for node in kube.nodes()} == set(cluster.nodes)
        # watch yields typed events, in order
        seen: list[Event] = []
        for event in events:
            if event.task is not None and event.task.id == task_id:
                seen.append(event)
            if event.key == "task.running":
                break
        assert [event.key for event in seen] == ["task.pending", "task.scheduled", "task.running"]
        assert seen[-1].task is not None and seen[-1].task.node == running.node
        # stop ends it
        kube.stop(task_id)
        done = kube.wait(task_id, {TaskState.COMPLETED}, timeout=30)
        assert done.state == TaskState.COMPLETED


def test_watch_yields_node_events(cluster: Cluster) -> None:
    with Client(Settings(amqp_url=cluster.url)) as kube:
        event = next(kube.watch(["node.heartbeat"], timeout=30))
    assert event.node is not None and event.node.name in cluster.nodes and event.task is None


def test_the_clients_errors_say_what_is_wrong(cluster: Cluster, busybox_image: str) -> None:
    with Client(Settings(amqp_url=cluster.url, request_timeout=10)) as kube:
        # the manager refuses: an unknown task
        with pytest.raises(RequestError, match="unknown task"):
            kube.stop(f"nope-{uuid.uuid4().hex[:6]}")
        with pytest.raises(RequestError, match="unknown task"):
            kube.get("nope")
        # a wait that runs out
        task_id = kube.submit(
            make_spec({"name": "huge", "image": busybox_image, "cpu": 512.0, "command": ["true"]})
        )
        with pytest.raises(WaitTimeout, match="pending"):
            kube.wait(task_id, {TaskState.RUNNING}, timeout=1)
    # a spec that does not validate names each bad field, before anything is sent
    with pytest.raises(DecodeError) as caught:
        make_spec({"name": "bad", "image": 5, "bogus": 1})
    assert "image" in caught.value.reason and "bogus" in caught.value.reason


def test_no_manager_and_no_broker_are_told_apart(vhost: str) -> None:
    # no manager has ever run against this vhost
    with (
        Client(Settings(amqp_url=vhost, request_timeout=1)) as kube,
        pytest.raises(NoManagerError, match="kube manager"),
    ):
        kube.list()
    # nothing listens at all
    with pytest.raises(MessagingError, match="nothing answers at 127.0.0.1:1 "):
        Client(Settings(amqp_url="amqp://guest:guest@127.0.0.1:1/%2F"))


def test_from_env_reads_the_environment(vhost: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(os.environ, "KUBE_AMQP_URL", vhost)
    monkeypatch.setitem(os.environ, "KUBE_TIMEOUT", "3")
    with Client.from_env() as kube:
        assert kube.settings.amqp_url == vhost and kube.settings.request_timeout == 3


def test_wait_and_watch_leave_no_queue_behind(cluster: Cluster, busybox_image: str) -> None:
    with Client(Settings(amqp_url=cluster.url, request_timeout=10)) as kube:
        task_id = kube.submit(sleeper(busybox_image, "tidy"))
        # when a long-lived client waits many times (once already there, once not yet)
        kube.wait(task_id, {TaskState.RUNNING}, timeout=60)
        for _ in range(5):
            kube.wait(task_id, {TaskState.RUNNING}, timeout=60)
        # and reads one event of a watch, then drops it
        events = kube.watch(["node.heartbeat"], timeout=30)
        assert next(events).node is not None
        events.close()
        # then, with the client still connected, none of their queues is left
        assert watch_queues(cluster.url) == []
        # and a wait that times out cleans up too
        with pytest.raises(WaitTimeout):
            kube.wait(task_id, {TaskState.COMPLETED}, timeout=0.5)
        assert watch_queues(cluster.url) == []
        kube.stop(task_id)


def test_a_stopped_manager_is_no_manager_for_the_client_and_the_cli(cluster: Cluster) -> None:
    # given a cluster whose manager has stopped (its queues and exchanges are still there)
    cluster.stop("manager")
    # then the client says no manager answered, and the CLI exits with its code for that
    with (
        Client(Settings(amqp_url=cluster.url, request_timeout=1)) as kube,
        pytest.raises(NoManagerError, match="is `kube manager` running"),
    ):
        kube.list()
    ps = cluster.kube("--timeout", "1", "ps")
    assert ps.returncode == 3, ps.stderr
    assert "kube manager" in ps.stderr and "Traceback" not in ps.stderr
