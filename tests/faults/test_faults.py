"""Fault injection with 50 tasks in flight, for real: SIGKILLed manager and worker, a
restarted broker (application and whole node), a restarted Docker engine.

The invariant after each fault: every accepted task reaches its expected state exactly
once, none is lost, and none has two live containers. A SIGKILLed worker's containers keep
running (only its agent died, as a partitioned Kubernetes node's pods do) while their
tasks start elsewhere; the worker removes them when it comes back, so for that fault
"two live containers" is checked once the worker is back, and continuously for the others.

These restart shared services (the broker, dockerd): they run last in CI, alone.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import docker
import pytest

from kube.client import Client
from shared.models import TaskSpec
from shared.settings import Settings
from tests.conftest import Cluster
from tests.support.faults import (
    DoubleWatch,
    all_running_once,
    kill,
    publish_all,
    restart_broker_app,
    restart_broker_node,
    restart_dockerd,
    tasks_now,
)
from tests.support.waiting import wait_for

pytestmark = pytest.mark.faults

TASKS = 50


def batch(image: str, count: int = TASKS) -> list[TaskSpec]:
    prefix = uuid.uuid4().hex[:6]
    return [
        TaskSpec(
            id=f"f{prefix}-{i}",
            name="fault",
            image=image,
            command=("sleep", "900"),
            memory="8m",
            pull_policy="never",  # type: ignore[arg-type]
            restart={"policy": "on-failure", "max_restarts": 5, "backoff_seconds": 0.2},  # type: ignore[arg-type]
        )
        for i in range(count)
    ]


def publishing(url: str, specs: list[TaskSpec], pause: float = 0.02) -> threading.Thread:
    thread = threading.Thread(target=publish_all, args=(url, specs, pause), daemon=True)
    thread.start()
    return thread


def known(url: str, at_least: int) -> bool:
    return len(tasks_now(url)) >= at_least


def test_manager_killed_mid_flow_loses_nothing_and_starts_nothing_twice(
    cluster: Cluster, busybox_image: str, docker_client: docker.DockerClient
) -> None:
    specs = batch(busybox_image)
    ids = [str(s.id) for s in specs]
    with DoubleWatch(docker_client, cluster.nodes) as watch:
        # given tasks flowing in
        publisher = publishing(cluster.url, specs)
        wait_for(lambda: known(cluster.url, 15), what="15 tasks accepted")
        # when the manager is SIGKILLed mid-flow and started again
        kill(cluster.procs.pop("manager"))
        cluster.start_manager()
        publisher.join(120)
        # then every task runs, once, in its first attempt
        tasks = all_running_once(cluster.url, ids, docker_client, cluster.nodes)
    assert not watch.doubles
    assert {tasks[i].attempt for i in ids} == {1}


def test_worker_killed_its_tasks_run_elsewhere_and_its_containers_go_when_it_returns(
    cluster: Cluster, busybox_image: str, docker_client: docker.DockerClient
) -> None:
    # given 50 tasks running across both workers
    specs = batch(busybox_image)
    ids = [str(s.id) for s in specs]
    publish_all(cluster.url, specs)
    before = all_running_once(cluster.url, ids, docker_client, cluster.nodes)
    victim, survivor = cluster.nodes
    moved = [i for i in ids if before[i].node == victim]
    assert moved, "the scheduler put nothing on the first worker"
    # when one worker is SIGKILLed
    killed_at = time.monotonic()
    kill(cluster.procs.pop(victim))

    # then its tasks are lost and run on the other worker
    def all_moved() -> bool:
        tasks = tasks_now(cluster.url)
        return all(tasks[i].node == survivor and tasks[i].state.value == "running" for i in moved)

    wait_for(all_moved, what="the lost tasks to run elsewhere", timeout=120, interval=0.2)
    print(f"{len(moved)} tasks ran elsewhere {time.monotonic() - killed_at:.1f}s after the kill")
    # and when the worker comes back, its superseded containers are removed
    cluster.start_worker(victim)
    tasks = all_running_once(cluster.url, ids, docker_client, cluster.nodes)
    assert {tasks[i].attempt for i in moved} == {2}
    with Client(Settings(amqp_url=cluster.url)) as client:
        _, events = client.inspect(moved[0])
    assert [e.state.value for e in events][-4:] == ["lost", "pending", "scheduled", "running"]


@pytest.mark.parametrize(
    "restart",
    [restart_broker_app, restart_broker_node],
    ids=["stop_app-start_app", "full-stop-start"],
)
def test_broker_restarted_while_tasks_flow(
    cluster: Cluster, busybox_image: str, docker_client: docker.DockerClient, restart: object
) -> None:
    specs = batch(busybox_image)
    ids = [str(s.id) for s in specs]
    with DoubleWatch(docker_client, cluster.nodes) as watch:
        # given tasks flowing in
        publisher = publishing(cluster.url, specs, pause=0.05)
        wait_for(lambda: known(cluster.url, 10), what="10 tasks accepted")
        # when the broker restarts under everyone
        restart()  # type: ignore[operator]
        publisher.join(180)
        # then every component reconnected by itself and every task runs, once
        tasks = all_running_once(cluster.url, ids, docker_client, cluster.nodes, timeout=180)
    assert not watch.doubles
    assert {tasks[i].attempt for i in ids} == {1}
    for name in cluster.procs:
        log = (cluster.workdir / f"{name}.log").read_text()
        assert "reconnecting" in log, f"{name} did not log its reconnection"
        assert "guest:guest" not in log, f"{name} logged the broker password"


def test_dockerd_restarted_under_the_workers(
    cluster: Cluster, busybox_image: str, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    # given 50 tasks running
    specs = batch(busybox_image)
    ids = [str(s.id) for s in specs]
    publish_all(cluster.url, specs)
    all_running_once(cluster.url, ids, docker_client, cluster.nodes)
    engine_down_seen = threading.Event()

    def watch_nodes() -> None:
        with Client(Settings(amqp_url=cluster.url, request_timeout=5)) as client:
            while not engine_down_seen.is_set():
                if any(not n.engine_ok for n in client.nodes()):
                    engine_down_seen.set()
                time.sleep(0.2)

    watcher = threading.Thread(target=watch_nodes, daemon=True)
    watcher.start()
    with DoubleWatch(docker_client, cluster.nodes) as watch:
        # when the Docker engine restarts (its containers die with it)
        restart_dockerd(tmp_path / "dockerd.log")
        # then the workers said the engine was down, recovered, and restarted every task
        assert engine_down_seen.wait(60), "no worker reported its engine down"
        tasks = all_running_once(cluster.url, ids, docker_client, cluster.nodes, timeout=180)
    assert not watch.doubles
    assert all(tasks[i].attempt >= 2 for i in ids)
