"""Losing the store must not kill the workloads (issue 14): a manager never stops what it
never placed. With a real broker, a real Docker engine and real processes: the manager's
store deleted, or replaced by an older copy, leaves every container running, reported as
an orphan, for a person to adopt or remove; what the store knows should stop still stops."""

from __future__ import annotations

import json
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from kube.client import Client
from manager.store import read_cluster_id
from shared.models import TaskSpec
from shared.settings import Settings
from shared.specs import RestartPolicy
from shared.states import TaskState
from tests.conftest import Cluster, running_cluster
from tests.support.ports import free_port
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


SLEEP = ("sh", "-c", "trap 'exit 0' TERM; sleep 600 & wait")
"""Runs until stopped, and stops at SIGTERM (a bare sleep as PID 1 waits out the grace)."""


IGNORES_TERM = ("sh", "-c", "trap '' TERM; sleep 600 & wait")
"""Runs until killed: a stop waits out its grace period."""


def sleeper(name: str, image: str, port: int | None = None) -> TaskSpec:
    return TaskSpec(
        name=name,
        image=image,
        command=SLEEP,
        ports=((port,) if port else ()),
        labels={"team": "orphans-test"},
    )


def containers(client: docker.DockerClient, node: str) -> dict[str, str]:
    """Task id -> container id of the node's running containers."""
    found = client.containers.list(filters={"label": f"kube.node={node}", "status": "running"})
    return {c.labels["kube.task-id"]: c.id for c in found}


def orphans(cluster: Cluster) -> dict[str, Any]:
    listed = cluster.kube("ps", "--orphans", "--json")
    assert listed.returncode == 0, listed.stderr
    return dict(json.loads(listed.stdout))


def orphan_tasks(cluster: Cluster) -> set[str]:
    return {o["task_id"] for o in orphans(cluster)["orphans"]}


def metric(port: int, node: str) -> float | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as page:
        text = page.read().decode()
    for line in text.splitlines():
        if line.startswith(f'kube_orphan_containers{{node="{node}"}}'):
            return float(line.split()[-1])
    return None


def restart_manager(cluster: Cluster, database: Path, replace: Path | None) -> None:
    """Stop the manager; delete its database, or put `replace` in its place; start it."""
    cluster.stop("manager")
    database.unlink()
    if replace is not None:
        shutil.copy(replace, database)
    cluster.start_manager()


@pytest.fixture
def one_node(
    vhost: str,
    tmp_path: Path,
    docker_client: docker.DockerClient,
    busybox_image: str,
    request: pytest.FixtureRequest,
) -> Iterator[tuple[Cluster, int]]:
    """A manager (metrics on a port of its own) and one Docker worker, torn down after,
    with every container of the node removed (running_cluster does it, also on failure)."""
    port = free_port()
    with running_cluster(
        vhost, tmp_path, docker_client, request, {"node-1": ()}, ("--metrics-port", str(port))
    ) as cluster:
        yield cluster, port


def test_a_manager_restarted_on_an_empty_store_leaves_every_container_running(
    one_node: tuple[Cluster, int],
    docker_client: docker.DockerClient,
    busybox_image: str,
    vhost: str,
    tmp_path: Path,
) -> None:
    cluster, port = one_node
    node = cluster.nodes[0]
    with Client(Settings(amqp_url=vhost, request_timeout=10)) as client:
        # given three tasks running on a Docker worker
        ids = [client.submit(sleeper(f"w{i}", busybox_image)) for i in range(2)]
        ids.append(client.submit(sleeper("web", busybox_image, port=free_port())))
        for task_id in ids:
            client.wait(task_id, {TaskState.RUNNING}, timeout=60)
        before = containers(docker_client, node)
        assert set(before) == set(ids)
        # when the manager's database is deleted and it starts on an empty one
        restart_manager(cluster, tmp_path / "manager.db", None)
        # then every container is reported as an orphan, and the metric says how many
        wait_for(lambda: orphan_tasks(cluster) == set(ids), timeout=60, what="three orphans")
        wait_for(lambda: metric(port, node) == 3, timeout=30, what="kube_orphan_containers 3")
        listed = {o["task_id"]: o for o in orphans(cluster)["orphans"]}
        web = listed[ids[2]]
        assert web["node"] == node and web["image"] == busybox_image
        assert web["host_ports"] and web["adoptable"] and web["since"]
        old_cluster = docker_client.containers.get(before[ids[2]]).labels["kube.cluster"]
        assert web["cluster"] == old_cluster != read_cluster_id(tmp_path / "manager.db")
        # and none was stopped: the same containers run
        assert containers(docker_client, node) == before
        table = cluster.kube("ps", "--orphans")
        assert table.returncode == 0 and ids[2] in table.stdout and "ADOPTABLE" in table.stdout

        # when a person adopts one (by a container id prefix)
        adopted = cluster.kube("orphans", "adopt", before[ids[2]][:12])
        assert adopted.returncode == 0, adopted.stderr
        assert adopted.stdout.strip() == ids[2]
        # then it is a running task of this cluster, its container untouched
        task = client.wait(ids[2], {TaskState.RUNNING}, timeout=30)
        assert task.node == node and task.container_id == before[ids[2]]
        assert task.spec.command == SLEEP and task.spec.labels == {"team": "orphans-test"}
        wait_for(lambda: ids[2] not in orphan_tasks(cluster), timeout=30, what="no longer listed")
        # and a person removes another: its worker removes the container
        removed = cluster.kube("orphans", "remove", ids[0])
        assert removed.returncode == 0, removed.stderr
        wait_for(lambda: ids[0] not in containers(docker_client, node), timeout=30, what="removed")
        wait_for(lambda: orphan_tasks(cluster) == {ids[1]}, timeout=30, what="one orphan left")
        wait_for(lambda: metric(port, node) == 1, timeout=30, what="kube_orphan_containers 1")
        assert containers(docker_client, node) == {i: before[i] for i in (ids[1], ids[2])}
        # and a restarted worker, which forgot the adoption, is told again: the task runs on
        cluster.stop(node)
        cluster.start_worker(node)
        pid = cluster.procs[node].pid
        wait_for(lambda: client.nodes()[0].pid == pid, timeout=60, what="the new worker heard")
        worker_log = tmp_path / f"{node}.log"
        wait_for(
            lambda: worker_log.read_text().count(f"task {ids[2]}: attempt 1 adopted") == 2,
            timeout=30,
            what="the adoption told again",
        )
        settled = {e.state for e in client.inspect(ids[2])[1]}
        assert settled == {TaskState.RUNNING}, settled  # never failed, lost or restarted
        # and the old cluster's last orphan is no longer adoptable: the restarted worker was
        # never in that cluster, and cannot tell it from another one live on the engine;
        # it is left running, untouched
        wait_for(lambda: orphan_tasks(cluster) == {ids[1]}, timeout=30, what="one orphan")
        last = orphans(cluster)["orphans"][0]
        assert not last["adoptable"] and "was never in" in last["unrecoverable"], last
        assert containers(docker_client, node) == {i: before[i] for i in (ids[1], ids[2])}
        # and the adopted one is watched like any other: stopped, its container goes
        client.stop(ids[2])
        client.wait(ids[2], {TaskState.COMPLETED}, timeout=60)
        wait_for(lambda: ids[2] not in containers(docker_client, node), timeout=30, what="stopped")
        assert containers(docker_client, node) == {ids[1]: before[ids[1]]}


def test_an_older_copy_of_the_store_leaves_the_newer_tasks_running(
    one_node: tuple[Cluster, int],
    docker_client: docker.DockerClient,
    busybox_image: str,
    vhost: str,
    tmp_path: Path,
) -> None:
    cluster, port = one_node
    node = cluster.nodes[0]
    database = tmp_path / "manager.db"
    with Client(Settings(amqp_url=vhost, request_timeout=10)) as client:
        # given a task running when a copy of the store was taken, and one started after
        first = client.submit(sleeper("first", busybox_image))
        client.wait(first, {TaskState.RUNNING}, timeout=60)
        cluster.stop("manager")
        shutil.copy(database, tmp_path / "older.db")
        cluster.start_manager()
        late = client.submit(sleeper("late", busybox_image))
        client.wait(late, {TaskState.RUNNING}, timeout=60)
        before = containers(docker_client, node)
        # when the manager is restarted on the older copy (the same cluster id)
        restart_manager(cluster, database, tmp_path / "older.db")
        # then the task it does not know keeps running, reported as an orphan
        wait_for(lambda: orphan_tasks(cluster) == {late}, timeout=60, what="late an orphan")
        wait_for(lambda: metric(port, node) == 1, timeout=30, what="kube_orphan_containers 1")
        assert orphans(cluster)["orphans"][0]["cluster"] == docker_client.containers.get(
            before[first]
        ).labels.get("kube.cluster")
        assert containers(docker_client, node) == before
        assert client.get(first).state == TaskState.RUNNING
        assert [t.id for t in client.list()] == [first]
        # when a plain client submits a task under the orphan's id, another spec
        evil = cluster.kube(
            *("run", "--id", late, "--name", "evil", "--env", "EVIL=1", "--image"),
            *(busybox_image, "--", "sh", "-c", "sleep 2; exit 1"),
        )
        # then it is refused, naming the orphan, and the orphan runs on, untouched
        assert evil.returncode == 4, (evil.stdout, evil.stderr)
        assert f"task id '{late}' is an orphan container's on node {node}" in evil.stderr
        assert "Traceback" not in evil.stderr
        assert [t.id for t in client.list()] == [first]
        assert orphan_tasks(cluster) == {late}
        assert containers(docker_client, node) == before
        # and adopting it is what ADOPTABLE says: yes
        assert orphans(cluster)["orphans"][0]["adoptable"] is True


def test_an_older_store_restarting_a_task_never_takes_over_nor_removes_its_orphan(
    one_node: tuple[Cluster, int],
    docker_client: docker.DockerClient,
    busybox_image: str,
    vhost: str,
    tmp_path: Path,
) -> None:
    cluster, _ = one_node
    node = cluster.nodes[0]
    database = tmp_path / "manager.db"
    with Client(Settings(amqp_url=vhost, request_timeout=10)) as client:
        # given a task running at attempt 1 when a copy of the store was taken
        spec = sleeper("again", busybox_image).model_copy(
            update={"restart": RestartPolicy(max_restarts=2, backoff_seconds=0.5)}
        )
        task_id = client.submit(spec)
        client.wait(task_id, {TaskState.RUNNING}, timeout=60)
        cluster.stop("manager")
        shutil.copy(database, tmp_path / "older.db")
        cluster.start_manager()
        # and restarted since as attempt 2 on the same node (its container killed)
        docker_client.containers.get(containers(docker_client, node)[task_id]).kill()
        wait_for(
            lambda: (
                client.get(task_id).attempt == 2 and client.get(task_id).state == TaskState.RUNNING
            ),
            timeout=60,
            what="attempt 2 running",
        )
        orphan_id = containers(docker_client, node)[task_id]
        # when the manager is restarted on the older copy (attempt 1, gone, is restarted
        # as attempt 2 on the node where attempt 2 runs, which it does not know)
        restart_manager(cluster, database, tmp_path / "older.db")
        # then the attempt the older store places fails, naming the orphan, and so do
        # the next ones, never started beside it nor in its stead
        wait_for(lambda: client.get(task_id).state == TaskState.FAILED, timeout=90, what="failed")
        errors = [e.detail or "" for e in client.inspect(task_id)[1]]
        assert any("as an orphan" in e for e in errors), errors
        # and the orphan runs on: the same container, listed, its spec unchanged
        assert containers(docker_client, node) == {task_id: orphan_id}
        wait_for(lambda: orphan_tasks(cluster) == {task_id}, timeout=30, what="listed")
        running = docker_client.containers.get(orphan_id)
        assert running.status == "running" and running.labels["kube.attempt"] == "2"


def test_what_the_store_knows_should_not_run_is_still_stopped(
    one_node: tuple[Cluster, int],
    docker_client: docker.DockerClient,
    busybox_image: str,
    vhost: str,
) -> None:
    cluster, _ = one_node
    node = cluster.nodes[0]
    with Client(Settings(amqp_url=vhost, request_timeout=10)) as client:
        # given a task that ran and was stopped, so that the store knows it ended
        ended = client.submit(sleeper("ended", busybox_image))
        client.wait(ended, {TaskState.RUNNING}, timeout=60)
        labels = docker_client.containers.get(containers(docker_client, node)[ended]).labels
        client.stop(ended)
        client.wait(ended, {TaskState.COMPLETED}, timeout=60)
        wait_for(lambda: ended not in containers(docker_client, node), what="ended removed")
        # and, behind kube's back, its container again and one of a task it never knew,
        # both labelled as this cluster's (a stop lost, a store that forgot)
        for task_id in (ended, "ghost-0badf00d"):
            docker_client.containers.run(
                busybox_image,
                # The ghost waits out the stop's grace (10 s): its removal takes that long.
                list(SLEEP if task_id == ended else IGNORES_TERM),
                name=f"kube.{node}.{task_id}.1",
                labels={**labels, "kube.task-id": task_id, "kube.attempt": "1"},
                detach=True,
            )
        # when the worker restarts and finds them
        cluster.stop(node)
        cluster.start_worker(node)
        # then the ended task's container is stopped, and the unknown one is reported
        wait_for(
            lambda: ended not in containers(docker_client, node), timeout=60, what="stopped again"
        )
        wait_for(
            lambda: orphan_tasks(cluster) == {"ghost-0badf00d"}, timeout=60, what="ghost reported"
        )
        assert "ghost-0badf00d" in containers(docker_client, node)
        ghost = containers(docker_client, node)["ghost-0badf00d"]
        # and a prefix too short, an unknown node or cluster are said so (exit 4)
        short = cluster.kube("orphans", "adopt", ghost[:5])
        assert short.returncode == 4 and "needs at least 6 characters" in short.stderr
        nowhere = cluster.kube("orphans", "remove", "--all", "--node", "nowhere")
        assert nowhere.returncode == 4 and "unknown node 'nowhere'" in nowhere.stderr
        garbage = cluster.kube("orphans", "remove", "--all", "--cluster", "garbage")
        assert garbage.returncode == 4
        assert "no orphan container of cluster 'garbage'" in garbage.stderr
        assert "ghost-0badf00d" in containers(docker_client, node)
        # and removing every orphan of the node removes it
        removed = cluster.kube("orphans", "remove", "--all", "--node", node)
        assert removed.returncode == 0, removed.stderr
        assert "ghost-0badf00d" in removed.stdout
        # and adopting it while it is being removed is refused (never both)
        late = cluster.kube("orphans", "adopt", ghost)
        assert late.returncode == 4 and "its removal was asked" in late.stderr, late.stderr
        wait_for(
            lambda: "ghost-0badf00d" not in containers(docker_client, node),
            timeout=30,
            what="ghost removed",
        )
        wait_for(lambda: not orphan_tasks(cluster), timeout=30, what="no orphans")
        bad = cluster.kube("orphans", "adopt", "nothing-here")
        assert bad.returncode != 0 and "Traceback" not in bad.stderr
        assert "no orphan container 'nothing-here'" in bad.stderr
        neither = cluster.kube("orphans", "remove")
        assert neither.returncode == 2 and "Traceback" not in neither.stderr
        assert "give an orphan's id, or --all" in neither.stderr
        both = cluster.kube("orphans", "remove", "x", "--all")
        assert both.returncode == 2 and "give an orphan's id, or --all" in both.stderr
