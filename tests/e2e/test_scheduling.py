"""Placement and scaling end to end, on three real workers with labels and capacities."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from kube.client import Client
from shared.models import TaskRecord, TaskSpec
from shared.placement import Dimension, NoFitKind
from shared.settings import Settings
from shared.states import TaskState
from tests.conftest import Cluster, running_cluster
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

WORKERS = {
    "a1": ("--label", "zone=a", "--cpus", "1", "--memory", "512m"),
    "b1": ("--label", "zone=b", "--cpus", "2", "--memory", "512m"),
    "b2": ("--label", "zone=b", "--label", "disk=ssd", "--cpus", "1", "--memory", "512m"),
}


@pytest.fixture
def three(
    vhost: str,
    tmp_path: Path,
    docker_client: docker.DockerClient,
    busybox_image: str,
    request: pytest.FixtureRequest,
) -> Iterator[Cluster]:
    with running_cluster(vhost, tmp_path, docker_client, request, WORKERS) as cluster:
        yield cluster


def node(cluster: Cluster, suffix: str) -> str:
    return next(name for name in cluster.nodes if name.endswith(f"-{suffix}"))


def client_for(cluster: Cluster) -> Client:
    return Client(Settings(amqp_url=cluster.url, request_timeout=10))


def spec(image: str, **fields: Any) -> TaskSpec:
    fields.setdefault("command", ("sleep", "600"))
    fields.setdefault("name", "job")
    return TaskSpec(image=image, pull_policy="never", **fields)


def service_tasks(client: Client, name: str) -> list[TaskRecord]:
    return [t for t in client.list() if t.service == name and t.desired_state == "running"]


def running_count(client: Client, name: str) -> int:
    return sum(1 for t in service_tasks(client, name) if t.state == TaskState.RUNNING)


def test_constraints_choose_the_nodes(three: Cluster, busybox_image: str) -> None:
    with client_for(three) as client:
        cases = {
            "zone-a": ({"zone": "a"}, {node(three, "a1")}),
            "ssd": ([{"key": "disk", "op": "exists"}], {node(three, "b2")}),
            "not-a": (
                [{"key": "zone", "op": "!=", "values": ["a"]}],
                {node(three, "b1"), node(three, "b2")},
            ),
            "a-or-b": ({"zone": ["a", "b"]}, set(three.nodes)),
        }
        for label, (constraints, allowed) in cases.items():
            for _ in range(3):
                task_id = client.submit(spec(busybox_image, constraints=constraints))
                task = client.wait(task_id, {TaskState.RUNNING}, timeout=60)
                assert task.node in allowed, (label, task.node)
        # and a constraint nothing meets waits with a reason naming each node
        task_id = client.submit(spec(busybox_image, constraints={"zone": "c"}))
        pending = wait_for(lambda: (t := client.get(task_id)).error and t, what="the reason")
        assert pending.state == TaskState.PENDING
        assert f"{node(three, 'a1')} fails zone == c (zone=a)" in (pending.error or "")
        assert pending.unplaced is not None
        assert pending.unplaced.kind == NoFitKind.CONSTRAINTS
        assert pending.unplaced.constraint_filtered == {"zone == c": 3}


def test_a_task_too_big_waits_with_its_reason_and_runs_when_capacity_frees(
    three: Cluster, busybox_image: str
) -> None:
    with client_for(three) as client:
        # given the 2-cpu node half taken
        first = client.submit(spec(busybox_image, cpu=1.0, constraints={"zone": "b"}, name="first"))
        placed = client.wait(first, {TaskState.RUNNING}, timeout=60)
        # when a task needs 1.5 cpus, more than any node has free
        big = client.submit(spec(busybox_image, cpu=1.5, name="big"))
        waiting = wait_for(lambda: (t := client.get(big)).error and t, what="a pending reason")
        # then it waits, saying what each node has
        assert waiting.state == TaskState.PENDING
        assert (waiting.error or "").startswith("no node can take 1.5 cpus: ")
        assert "1 cpu free" in (waiting.error or "")
        # and says it as data too: every node short of cpu
        assert waiting.unplaced is not None
        assert waiting.unplaced.kind == NoFitKind.INSUFFICIENT_CPU
        assert waiting.unplaced.dimension_exhausted == {Dimension.CPU: 3}
        # and once capacity frees it runs, with no resubmission
        client.stop(first)
        ran = client.wait(big, {TaskState.RUNNING}, timeout=60)
    assert ran.state == TaskState.RUNNING and ran.node == placed.node


def test_a_service_spreads_over_zones_and_keeps_its_replicas_through_a_worker_kill(
    three: Cluster, busybox_image: str
) -> None:
    with client_for(three) as client:
        # given a service of 4 replicas spread over zones
        client.submit(spec(busybox_image, name="web", replicas=4, spread="zone", memory="16m"))
        wait_for(lambda: running_count(client, "web") == 4, what="4 replicas", timeout=90)
        zones = [t.node.rsplit("-", 1)[1][0] for t in service_tasks(client, "web") if t.node]
        assert sorted(zones) == ["a", "a", "b", "b"]
        # when the worker of zone a is killed
        victim = node(three, "a1")
        three.procs[victim].send_signal(signal.SIGKILL)
        three.procs.pop(victim).wait(10)
        # then the service is back to 4 running replicas, on the other workers
        wait_for(
            lambda: (
                running_count(client, "web") == 4
                and all(t.node != victim for t in service_tasks(client, "web"))
            ),
            what="4 replicas elsewhere",
            timeout=90,
        )
        # and `kube ps` groups the service's tasks under its name
        ps = three.kube("ps")
        rows = [line for line in ps.stdout.splitlines() if line.startswith("web ")]
        assert len(rows) >= 4


def test_scale_up_and_down(three: Cluster, busybox_image: str) -> None:
    with client_for(three) as client:
        run = three.kube(
            "run",
            "--name",
            "api",
            "--image",
            busybox_image,
            "--replicas",
            "2",
            "--memory",
            "16m",
            "--pull-policy",
            "never",
            "--wait",
            "--",
            "sleep",
            "600",
        )
        assert run.returncode == 0, run.stderr
        assert "api: 2/2 running" in run.stdout
        assert three.kube("scale", "api", "5").returncode == 0
        wait_for(lambda: running_count(client, "api") == 5, what="5 replicas", timeout=90)
        assert three.kube("scale", "api", "1").returncode == 0
        wait_for(lambda: len(service_tasks(client, "api")) == 1, what="1 replica", timeout=90)
        services = json.loads(three.kube("services", "--json").stdout)
        assert [(s["name"], s["replicas"]) for s in services] == [("api", 1)]
        # and stopping the service by name stops its tasks
        assert three.kube("stop", "api").returncode == 0
        wait_for(lambda: not service_tasks(client, "api"), what="no replica", timeout=60)


def test_a_rolling_update_replaces_tasks_one_at_a_time(
    three: Cluster, busybox_image: str, tmp_path: Path
) -> None:
    with client_for(three) as client:
        client.submit(
            spec(busybox_image, name="app", replicas=3, memory="16m", env={"VERSION": "1"})
        )
        wait_for(lambda: running_count(client, "app") == 3, what="3 replicas", timeout=90)
        old = {t.id for t in service_tasks(client, "app")}
        events = client.watch(["task.*"], timeout=120)
        # when the service gets a new spec
        new_spec = tmp_path / "app-v2.json"
        new_spec.write_text(
            json.dumps(
                {
                    "image": busybox_image,
                    "command": ["sleep", "600"],
                    "memory": "16m",
                    "env": {"VERSION": "2"},
                    "pull_policy": "never",
                }
            )
        )
        update = three.kube("update", "app", "-f", str(new_spec))
        assert update.returncode == 0, update.stderr
        # then each old task stops only after one more new task runs than old ones stopped
        new_running: set[str] = set()
        old_stopped: set[str] = set()
        for event in events:
            record = event.task
            if record is None or record.service != "app":
                continue
            if record.version == 2 and record.state == TaskState.RUNNING:
                new_running.add(record.id)
            if record.id in old and record.state == TaskState.COMPLETED:
                old_stopped.add(record.id)
                assert len(new_running) >= len(old_stopped), (new_running, old_stopped)
            if len(old_stopped) == 3 and len(new_running) == 3:
                break
        assert old_stopped == old
        tasks = service_tasks(client, "app")
        assert {t.version for t in tasks} == {2} and len(tasks) == 3
        assert not old & {t.id for t in tasks}
        assert all(t.spec.env == {"VERSION": "2"} for t in tasks)
        (service,) = client.services()
        assert (service.version, service.update_state.value) == (2, "idle")


def test_drain_moves_every_task_off_a_node(three: Cluster, busybox_image: str) -> None:
    with client_for(three) as client:
        target = node(three, "b1")
        ids = [
            client.submit(spec(busybox_image, memory="16m", constraints={"zone": "b"}))
            for _ in range(4)
        ]
        tasks = [client.wait(i, {TaskState.RUNNING}, timeout=60) for i in ids]
        on_target = [t.id for t in tasks if t.node == target]
        assert on_target, "nothing was placed on the node to drain"
        # when the node is drained
        drain = three.kube("drain", target, timeout=180)
        assert drain.returncode == 0, drain.stdout + drain.stderr
        assert f"{target}: " in drain.stderr  # it showed progress
        # then it holds nothing, its tasks run elsewhere, and it takes no new work
        moved = {t.id: t for t in client.list()}
        assert all(
            moved[i].node != target and moved[i].state == TaskState.RUNNING for i in on_target
        )
        (node_record,) = [n for n in client.nodes() if n.name == target]
        assert not node_record.schedulable and node_record.task_count == 0
        fresh = client.submit(spec(busybox_image, constraints={"zone": "b"}))
        assert client.wait(fresh, {TaskState.RUNNING}, timeout=60).node != target
        # and uncordon opens it again
        assert three.kube("uncordon", target).returncode == 0
        assert [n for n in client.nodes() if n.name == target][0].schedulable
