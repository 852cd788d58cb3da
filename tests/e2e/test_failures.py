"""Failure handling end to end: restart policies, health checks, the worker's security policy."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import docker
import pytest

from kube.client import Client
from shared.models import Health, TaskSpec
from shared.settings import Settings
from shared.specs import PullPolicy
from shared.states import TaskState
from tests.conftest import Cluster
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

HTTPD = ("sh", "-c", "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www")


def client_for(cluster: Cluster) -> Client:
    return Client(Settings(amqp_url=cluster.url, request_timeout=10))


def spec(image: str, *command: str, **fields: Any) -> TaskSpec:
    fields.setdefault("restart", {"policy": "never"})
    return TaskSpec(name="job", image=image, command=command, pull_policy="never", **fields)


def test_on_failure_restarts_with_backoff_then_gives_up_with_the_reason(
    cluster: Cluster, busybox_image: str, docker_client: docker.DockerClient
) -> None:
    # given a task that always exits 3, allowed two restarts
    restart = {"policy": "on-failure", "max_restarts": 2, "backoff_seconds": 0.2}
    with client_for(cluster) as client:
        task_id = client.submit(spec(busybox_image, "sh", "-c", "exit 3", restart=restart))
        # then it runs three attempts and ends failed, saying why
        task = client.wait(task_id, {TaskState.FAILED}, timeout=90)
        _, events = client.inspect(task_id)
    assert task.state == TaskState.FAILED
    assert (task.attempt, task.restart_count) == (3, 2)
    assert task.error == "exited with code 3; gave up after 2 restarts"
    restarts = [e.detail for e in events if e.state == TaskState.PENDING and e.attempt > 0]
    assert restarts == [
        "attempt 1 failed (exited with code 3); restart 1/2 in 0.2s",
        "attempt 2 failed (exited with code 3); restart 2/2 in 0.4s",
    ]
    # and the containers of the ended attempts were removed, the last one kept for its logs
    left = docker_client.containers.list(all=True, filters={"label": f"kube.task-id={task_id}"})
    assert [c.labels["kube.attempt"] for c in left] == ["3"]


def test_on_failure_completes_a_clean_exit(cluster: Cluster, busybox_image: str) -> None:
    restart = {"policy": "on-failure"}
    with client_for(cluster) as client:
        task_id = client.submit(spec(busybox_image, "true", restart=restart))
        task = client.wait(task_id, {TaskState.COMPLETED}, timeout=60)
    assert (task.state, task.restart_count) == (TaskState.COMPLETED, 0)


def test_http_and_exec_health_checks_report_healthy(cluster: Cluster, busybox_image: str) -> None:
    checks = {
        "http": {"http": {"port": 8080, "path": "/index.html"}, "interval_seconds": 0.5},
        "exec": {"exec": ["sh", "-c", "test -f /www/index.html"], "interval_seconds": 0.5},
    }
    with client_for(cluster) as client:
        ids = {
            kind: client.submit(spec(busybox_image, *HTTPD, health_check=check))
            for kind, check in checks.items()
        }
        for kind, task_id in ids.items():
            task = wait_for(
                lambda task_id=task_id: (t := client.get(task_id)).health == Health.HEALTHY and t,
                what=f"the {kind} check to pass",
            )
            assert task.state == TaskState.RUNNING
            assert task.last_check is not None
    assert "http 200" in (client_for(cluster).get(ids["http"]).last_check or "")


def test_an_unhealthy_task_is_restarted_per_its_policy_then_fails(
    cluster: Cluster, busybox_image: str
) -> None:
    # given a task whose tcp check can never pass, with one restart allowed
    check = {"tcp": {"port": 9}, "interval_seconds": 0.3, "timeout_seconds": 0.5, "failures": 2}
    restart = {"policy": "on-failure", "max_restarts": 1, "backoff_seconds": 0.1}
    with client_for(cluster) as client:
        task_id = client.submit(
            spec(busybox_image, "sleep", "300", health_check=check, restart=restart)
        )
        # then it is found unhealthy, restarted once, and ends failed with the check's result
        task = client.wait(task_id, {TaskState.FAILED}, timeout=90)
    assert task.restart_count == 1 and task.attempt == 2
    assert task.error is not None and task.error.startswith("unhealthy: ")
    assert task.error.endswith("gave up after 1 restarts")
    assert task.health == Health.UNHEALTHY


def test_the_worker_refuses_privileged_specs_and_images_off_its_list(
    cluster: Cluster, busybox_image: str
) -> None:
    with client_for(cluster) as client:
        privileged = client.submit(spec(busybox_image, "true", privileged=True))
        mounted = client.submit(
            spec(busybox_image, "true", mounts=[{"source": "/etc", "target": "/host-etc"}])
        )
        failed = client.wait(privileged, {TaskState.FAILED}, timeout=60)
        assert "privileged mode is not allowed" in (failed.error or "")
        failed = client.wait(mounted, {TaskState.FAILED}, timeout=60)
        assert "bind mount of /etc is not allowed" in (failed.error or "")
        # nor does it pull from a registry on a loopback address
        local = spec("127.0.0.1:5999/x", "true").model_copy(
            update={"pull_policy": PullPolicy.ALWAYS}
        )
        failed = client.wait(client.submit(local), {TaskState.FAILED}, timeout=60)
        assert "a loopback address (worker flag --allow-local-registry" in (failed.error or "")


def test_a_worker_that_allows_a_bind_mount_runs_it(
    cluster: Cluster, busybox_image: str, tmp_path: Path
) -> None:
    # given the only ready worker allows bind mounts under one directory, and local images
    # (privileged mode itself cannot start here: this sandbox's runc may not apply caps)
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "hello.txt").write_text("hello-from-the-host\n")
    for name in cluster.nodes:
        cluster.stop(name)
    node = f"{cluster.nodes[0].rsplit('-', 2)[0]}-node-3"
    cluster.nodes.append(node)
    cluster.start_worker(node, "--allow-mount", str(shared), "--allow-image", "localhost/*")
    with client_for(cluster) as client:
        wait_for(
            lambda: {n.name for n in client.nodes() if n.status.value == "ready"} == {node},
            what="only the third worker to be ready",
        )
        # when a task mounts a file from there and prints it
        mount = {"source": str(shared), "target": "/data", "read_only": True}
        task_id = client.submit(spec(busybox_image, "cat", "/data/hello.txt", mounts=[mount]))
        task = client.wait(task_id, {TaskState.COMPLETED}, timeout=60)
        # then it ran there and saw the host's file
        assert (task.state, task.node) == (TaskState.COMPLETED, node), task.error
        assert client.logs(task_id) == "hello-from-the-host\n"
        # and a mount outside the allowed directory, or an image off the list, is refused
        outside = client.submit(
            spec(busybox_image, "true", mounts=[{"source": "/etc", "target": "/x"}])
        )
        assert "bind mount of /etc" in (client.wait(outside, set(), timeout=60).error or "")
        other = client.submit(spec("docker.io/library/busybox:latest", "true"))
        failed = client.wait(other, {TaskState.FAILED}, timeout=60)
        assert "matches none of localhost/*" in (failed.error or "")

        # and when one task links `link` in there to / and another mounts DIR/link to write
        # on the host's root, the second is refused, naming where the link leads
        escaped = Path("/") / f"kube-escape-{uuid.uuid4().hex[:8]}"
        try:
            writable = {"source": str(shared), "target": "/data"}
            linker = client.submit(
                spec(busybox_image, "ln", "-s", "/", "/data/link", mounts=[writable])
            )
            assert (
                client.wait(linker, {TaskState.COMPLETED}, timeout=60).state == TaskState.COMPLETED
            )
            link = {"source": f"{shared}/link", "target": "/host"}
            escape = client.submit(
                spec(busybox_image, "touch", f"/host/{escaped.name}", mounts=[link])
            )
            failed = client.wait(escape, {TaskState.FAILED}, timeout=60)
            assert f"bind mount of {shared}/link resolves to /, which is under none" in (
                failed.error or ""
            )
            assert not escaped.exists()
        finally:
            escaped.unlink(missing_ok=True)
