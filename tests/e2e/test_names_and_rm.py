"""Names up to 63 characters, re-created services and `kube rm`, through the CLI against a
real cluster (Docker runtime): the "Removing what ended" example of docs/tasks.md, step by
step."""

from __future__ import annotations

import json
import subprocess

import docker
import pytest

from kube.client import Client
from shared.settings import Settings
from shared.states import TaskState
from tests.conftest import Cluster
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

LONG_TASK = "t" * 63
LONG_SERVICE = "s" * 63


def ok(run: subprocess.CompletedProcess[str], cluster: Cluster) -> str:
    assert run.returncode == 0, run.stdout + run.stderr + cluster.logs()
    return run.stdout


def tasks(cluster: Cluster) -> dict[str, dict[str, object]]:
    listing = json.loads(ok(cluster.kube("ps", "-a", "--json"), cluster))
    return {row["id"]: row for row in listing}


def ended(cluster: Cluster, *ids: str) -> bool:
    with Client(Settings(amqp_url=cluster.url)) as client:
        return all(client.get(i).state.terminal for i in ids)


def containers_of(client: docker.DockerClient, cluster: Cluster, task_id: str) -> list[str]:
    return [
        c.name
        for node in cluster.nodes
        for c in client.containers.list(all=True, filters={"label": f"kube.node={node}"})
        if c.labels.get("kube.task-id") == task_id
    ]


def test_long_names_run_and_ended_things_are_removed_with_kube_rm(
    cluster: Cluster, busybox_image: str, docker_client: docker.DockerClient
) -> None:
    run = ("--image", busybox_image, "--pull-policy", "never", "--wait")
    # given a task and a service whose names have 63 characters, running
    task_id = ok(cluster.kube("run", "--name", LONG_TASK, *run, "--", "sleep", "300"), cluster)
    task_id = task_id.split()[0]
    service = ("run", "--name", LONG_SERVICE, "--replicas", "2", *run, "--", "sleep", "300")
    assert ok(cluster.kube(*service), cluster).splitlines()[-1] == f"{LONG_SERVICE}: 2/2 running"
    listed = tasks(cluster)
    assert listed[task_id]["state"] == "running" and len(task_id) <= 63
    first_tasks = [i for i, t in listed.items() if t["service"] == LONG_SERVICE]
    assert len(first_tasks) == 2
    # and their containers run on the engine, labelled with their ids
    labelled = {
        c.labels["kube.task-id"]
        for node in cluster.nodes
        for c in docker_client.containers.list(filters={"label": f"kube.node={node}"})
    }
    assert {task_id, *first_tasks} <= labelled

    # when a running task is to be removed, it is refused, naming it (exit 4)
    refused = cluster.kube("rm", task_id)
    assert refused.returncode == 4, refused.stderr
    assert refused.stderr == (
        f"kube: nothing removed: task {task_id} is running, not ended: stop it first (kube stop)\n"
    )
    # and without a name or --all-ended, it is a usage error (exit 2)
    assert cluster.kube("rm").returncode == 2

    # when the task and the service are stopped, the same name makes the service again
    ok(cluster.kube("stop", task_id), cluster)
    ok(cluster.kube("stop", LONG_SERVICE), cluster)
    wait_for(lambda: ended(cluster, task_id, *first_tasks), timeout=60, what="tasks ended")
    again = ok(cluster.kube(*service), cluster)
    assert again.splitlines()[-1] == f"{LONG_SERVICE}: 2/2 running"
    services = json.loads(ok(cluster.kube("services", "--json"), cluster))
    assert [(s["name"], s["desired_state"], s["version"]) for s in services] == [
        (LONG_SERVICE, "running", 2)
    ]

    # and a task that exited by itself ended, its container kept (for kube logs)
    done_id = ok(cluster.kube("run", "--name", "done", *run, "--", "true"), cluster).split()[0]
    wait_for(lambda: ended(cluster, done_id), what=f"{done_id} ended")
    assert containers_of(docker_client, cluster, done_id)

    # when ended tasks are removed by id, they are gone from the list, containers too
    removed = ok(cluster.kube("rm", task_id, first_tasks[0], done_id), cluster)
    assert removed.splitlines() == [f"removed task {i}" for i in (task_id, first_tasks[0], done_id)]
    assert not {task_id, first_tasks[0], done_id} & set(tasks(cluster))
    wait_for(lambda: not containers_of(docker_client, cluster, done_id), what="no container")

    # when every ended thing is removed, the first service's last task goes, the new stay
    removed = ok(cluster.kube("rm", "--all-ended"), cluster)
    assert removed == f"removed task {first_tasks[1]}\n"
    left = tasks(cluster)
    assert [t["state"] for t in left.values()] == ["running", "running"]

    # when a worker stops, its node is down, and then it can be removed from the list
    node = cluster.nodes[1]
    assert cluster.kube("rm", "--node", node).returncode == 4  # ready: refused
    cluster.stop(node)

    def down() -> bool:
        nodes = json.loads(ok(cluster.kube("nodes", "--json"), cluster))
        return any(n["name"] == node and n["status"] == "down" for n in nodes)

    wait_for(down, timeout=30, what=f"{node} down")
    assert ok(cluster.kube("rm", "--node", node), cluster) == f"removed node {node}\n"
    nodes = json.loads(ok(cluster.kube("nodes", "--json"), cluster))
    assert [n["name"] for n in nodes] == [cluster.nodes[0]]
    # and the service's tasks are all running on the node left
    with Client(Settings(amqp_url=cluster.url)) as client:
        wait_for(
            lambda: (
                sorted(
                    (t.node, t.state)
                    for t in client.list()
                    if t.service == LONG_SERVICE and not t.state.terminal
                )
                == [(cluster.nodes[0], TaskState.RUNNING)] * 2
            ),
            timeout=60,
            what="the service's tasks running on the node left",
        )
        second_tasks = [t.id for t in client.list() if t.service == LONG_SERVICE]

    # when the service is stopped and its tasks ended, it is removed with them
    ok(cluster.kube("stop", LONG_SERVICE), cluster)
    wait_for(lambda: ended(cluster, *second_tasks), timeout=60, what="the service's tasks ended")
    removed = ok(cluster.kube("rm", LONG_SERVICE), cluster)
    assert removed.splitlines() == [
        *(f"removed task {i}" for i in second_tasks),
        f"removed service {LONG_SERVICE}",
    ]
    assert json.loads(ok(cluster.kube("services", "--json"), cluster)) == []
    assert tasks(cluster) == {}
