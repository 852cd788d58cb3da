"""kube on a three-node RabbitMQ cluster (issue 14): its queues are replicated on every
node, and stopping the node the manager is on, under load, then starting it again, loses
nothing and marks no node down."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from bench import broker_failover
from kube.client import Client, Event
from shared import topology
from shared.models import TaskSpec
from shared.settings import Settings, redact
from tests.conftest import running_cluster
from tests.support.rabbit_cluster import RabbitCluster, missing_members
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def cluster_vhost(rabbit_cluster: RabbitCluster) -> Iterator[str]:
    """A vhost of the test's own on the three nodes; deleted, with its queues, after."""
    name = f"kube-test-{uuid.uuid4().hex[:8]}"
    rabbit_cluster.add_vhost(name)
    try:
        yield name
    finally:
        rabbit_cluster.delete_vhost(name)


def test_three_nodes_of_its_own_run_clustered(rabbit_cluster: RabbitCluster) -> None:
    names = {node.name for node in rabbit_cluster.nodes}
    assert len(names) == 3
    assert "rabbit@localhost" not in names  # the system node is not one of them
    for node in rabbit_cluster.nodes:
        assert rabbit_cluster.running_nodes(via=node) == names
    assert rabbit_cluster.started_in is not None and rabbit_cluster.started_in < 60


def test_kube_queues_have_a_member_on_every_node(
    rabbit_cluster: RabbitCluster,
    cluster_vhost: str,
    tmp_path: Path,
    docker_client: docker.DockerClient,
    request: pytest.FixtureRequest,
) -> None:
    # given a manager and a worker on the three nodes
    url = rabbit_cluster.url(cluster_vhost)
    workers = {"node-1": ("--runtime", "mock")}
    with running_cluster(url, tmp_path, docker_client, request, workers) as cluster:
        queues = rabbit_cluster.queues(cluster_vhost)
    # then every queue that holds work is a quorum queue with a member on each node
    replicated = {name for name, (kind, _) in queues.items() if kind == "quorum"}
    assert {
        topology.COMMANDS_QUEUE,
        topology.QUERIES_QUEUE,
        topology.RESULTS_QUEUE,
        topology.DEAD_DISPATCHES_QUEUE,
        topology.node_queue(cluster.nodes[0]),
    } <= replicated
    assert missing_members(queues, rabbit_cluster.nodes) == {}
    # and so is the events stream
    everywhere = {node.name for node in rabbit_cluster.nodes}
    assert queues[topology.EVENTS_STREAM] == ("stream", everywhere)
    # and the only queues on one node are the exclusive locks, which die with their holder
    single = {name for name, (kind, _) in queues.items() if kind == "classic"}
    assert single <= {topology.MANAGER_LOCK, topology.node_lock_queue(cluster.nodes[0])}


def test_stopping_the_managers_node_under_load_loses_nothing(
    rabbit_cluster: RabbitCluster,
) -> None:
    # given a manager on node 1 and three workers, one on each node, with tasks submitted
    # at 10 a second; when node 1 is stopped 5 s in and started 5 s later
    args = broker_failover.parser().parse_args(
        ["--rate", "10", "--duration", "16", "--stop-at", "5", "--down-for", "5"]
    )
    result = broker_failover.one_round(rabbit_cluster, args)
    print(result)  # the figures, for the log of the run
    # then every task ran, once, and no node was marked down
    assert result["all_ran"], result
    assert result["not_running"] == 0
    assert result["ran_twice"] == 0
    assert result["lost_events"] == 0
    assert result["nodes_marked_down"] == []
    # and placements went on through the stop: 0.3 s measured, against 7.9 s while the
    # queries queue was a classic one that waited for its node to come back
    assert result["pause_seconds"] < 5.0, result
    # and the stopped node is back in the cluster
    everywhere = {node.name for node in rabbit_cluster.nodes}
    assert rabbit_cluster.running_nodes() == everywhere


@pytest.mark.parametrize("how", ["stop_app", "kill"])
def test_a_client_following_events_goes_on_from_another_node_missing_nothing(
    how: str,
    rabbit_cluster: RabbitCluster,
    cluster_vhost: str,
    tmp_path: Path,
    docker_client: docker.DockerClient,
    request: pytest.FixtureRequest,
) -> None:
    # given a manager and a worker on node 2, and a client following events on node 1
    services = rabbit_cluster.url(cluster_vhost, first=1)
    workers = {"node-1": ("--runtime", "mock")}
    victim = rabbit_cluster.nodes[0]
    with (
        running_cluster(services, tmp_path, docker_client, request, workers),
        Client(Settings(amqp_url=rabbit_cluster.url(cluster_vhost), request_timeout=10)) as kube,
        Client(Settings(amqp_url=services, request_timeout=10)) as other,
    ):
        events = kube.watch(["task.*"], timeout=60)
        before = kube.submit(TaskSpec(name="before", image="mock/app"))
        assert running_event_of(events, before)
        try:
            # when node 1 stops (or its VM is killed: the stream's member there is gone
            # while the others may refuse to serve it for a moment), and a task is
            # submitted while the client is cut off
            if how == "kill":
                rabbit_cluster.kill(victim)
            else:
                rabbit_cluster.stop_app(victim)
            during = other.submit(TaskSpec(name="during", image="mock/app"))
            # then the client reads its events, from another node
            assert running_event_of(events, during)
        finally:
            if how == "kill":
                rabbit_cluster.restart(victim)
            else:
                rabbit_cluster.start_app(victim)


def running_event_of(events: Iterator[Event], task_id: str) -> bool:
    """Read events until the task's `task.running`; False if the watch ends first."""
    return any(
        e.key == "task.running" and e.task is not None and e.task.id == task_id for e in events
    )


def test_a_manager_leaves_a_frozen_node(
    rabbit_cluster: RabbitCluster,
    cluster_vhost: str,
    tmp_path: Path,
    docker_client: docker.DockerClient,
    request: pytest.FixtureRequest,
) -> None:
    # given a manager on node 1 (its first URL)
    victim = rabbit_cluster.nodes[0]
    assert victim.proc is not None
    log = tmp_path / "manager.log"
    on_victim = f"connected to {redact(victim.url(cluster_vhost))}"
    with running_cluster(rabbit_cluster.url(cluster_vhost), tmp_path, docker_client, request, {}):
        wait_for(lambda: on_victim in log.read_text(), what="the manager on node 1")
        # when node 1 freezes (SIGSTOP: its TCP connections stay open, nothing answers)
        os.killpg(victim.proc.pid, signal.SIGSTOP)
        try:
            # then the manager, its probe unconfirmed, drops that connection within a few
            # heartbeats, as a worker does, and goes on to another node
            wait_for(
                lambda: "the broker is silent; dropping the connection" in log.read_text(),
                what="the manager dropping the frozen node's connection",
                timeout=30,
            )
            others = [redact(node.url(cluster_vhost)) for node in rabbit_cluster.nodes[1:]]
            wait_for(
                lambda: any(f"connected to {url}" in log.read_text() for url in others),
                what="the manager on another node",
                timeout=90,
            )
        finally:
            os.killpg(victim.proc.pid, signal.SIGCONT)
