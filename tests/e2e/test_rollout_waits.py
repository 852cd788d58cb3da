"""`kube update` and `kube restart` through the real CLI: a task is not a service, a
change of replicas alone scales, and a restart waits as an update does."""

from __future__ import annotations

import pytest

from kube.client import Client
from shared.models import ServiceRecord, TaskRecord
from shared.settings import Settings
from tests.conftest import Cluster

pytestmark = pytest.mark.e2e

QUICK_TO_STOP = ("--", "sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done")


def run(cluster: Cluster, image: str, name: str, *flags: str) -> str:
    done = cluster.kube(
        *("run", "--name", name, "--image", image, "--pull-policy", "never", "--wait"),
        *flags, *QUICK_TO_STOP,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr + cluster.logs()
    return done.stdout.split()[0]


def state(cluster: Cluster, name: str) -> tuple[ServiceRecord, list[TaskRecord]]:
    with Client(Settings(amqp_url=cluster.url, request_timeout=10)) as client:
        live = [t for t in client.list() if t.service == name and not t.state.terminal]
        return client.service(name), live


def test_update_of_a_task_says_it_is_a_task(cluster: Cluster, busybox_image: str) -> None:
    run(cluster, busybox_image, "hello")
    update = cluster.kube("update", "hello", "--image", busybox_image)
    assert update.returncode == 4, update.stderr
    assert update.stderr.startswith("kube: 'hello' is a task, not a service:"), update.stderr
    assert "--replicas 1" in update.stderr


def test_replicas_alone_scale_and_a_restart_waits_for_the_new_tasks(
    cluster: Cluster, busybox_image: str
) -> None:
    # given a service of one task
    run(cluster, busybox_image, "web", "--replicas", "1")
    # when only its replicas are updated, then it is scaled: no new version rolled
    update = cluster.kube("update", "web", "--replicas", "2")
    assert update.returncode == 0, update.stderr
    assert update.stdout.strip() == "web scaled to 2"
    service, live = state(cluster, "web")
    assert (service.version, service.replicas) == (1, 2)
    assert [t.state.value for t in live] == ["running"] * 2
    # when it is restarted, then the command returns once every task is a new one
    restart = cluster.kube("restart", "web")
    assert restart.returncode == 0, restart.stderr + cluster.logs()
    assert restart.stdout.strip() == "web restarted"
    service, live = state(cluster, "web")
    assert service.version == 2 and len(live) == 2
    assert all(t.version == 2 and t.state.value == "running" for t in live), live
