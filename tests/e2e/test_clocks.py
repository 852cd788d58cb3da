"""Clocks that disagree or jump: the manager measures every interval on its monotonic
clock, and judges nothing by a worker's clock (issue 13)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import docker
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from kube.client import Client
from shared.models import NodeStatus, TaskSpec
from shared.settings import Settings
from shared.states import TaskState
from tests.conftest import Cluster, running_cluster
from tests.support.broker import dead_letters
from tests.support.clocks import SteppedClock, skewed_by
from tests.support.ports import free_port
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

MOCK = ("--runtime", "mock")
DOWN_AFTER = 4.0  # running_cluster's manager: --node-down-after 4, heartbeats every 1 s
MARGIN = 4.0  # a tick (1 s), the probe that must be confirmed first (1 s), polling


def client_for(cluster: Cluster) -> Client:
    return Client(Settings(amqp_url=cluster.url, request_timeout=10))


def status(client: Client, node: str) -> NodeStatus:
    return next(n.status for n in client.nodes() if n.name == node)


@pytest.mark.parametrize("step", ["-60s", "+60s"])
def test_a_step_of_the_managers_clock_calls_no_node_down_and_a_dead_one_down_on_time(
    vhost: str,
    tmp_path: Path,
    docker_client: docker.DockerClient,
    request: pytest.FixtureRequest,
    step: str,
) -> None:
    # given a manager whose wall clock NTP may step, and two workers
    clock = SteppedClock(tmp_path / "manager-clock.rc")
    workers = {"dies": MOCK, "lives": MOCK}
    with (
        running_cluster(
            vhost, tmp_path, docker_client, request, workers, manager_prefix=clock.prefix
        ) as cluster,
        client_for(cluster) as client,
    ):
        dies, lives = cluster.nodes
        # when one worker is killed and, at once, the manager's clock is stepped a minute
        cluster.procs.pop(dies).kill()
        killed_at = time.monotonic()
        clock.step(step)
        # then the dead one is down within the interval, as without a step
        wait_for(
            lambda: status(client, dies) == NodeStatus.DOWN,
            timeout=DOWN_AFTER + MARGIN + 5,
            what=f"{dies} down",
        )
        assert time.monotonic() - killed_at < DOWN_AFTER + MARGIN
        # and the live one was never called down, through two intervals of heartbeats
        # stamped by the stepped clock
        first = next(n.last_heartbeat for n in client.nodes() if n.name == lives)
        wait_for(
            lambda: any(
                n.name == lives and (n.last_heartbeat - first).total_seconds() > 2 * DOWN_AFTER
                for n in client.nodes()
            ),
            timeout=30,
            what="two intervals of heartbeats",
        )
        assert status(client, lives) == NodeStatus.READY
        log = (cluster.workdir / "manager.log").read_text()
        assert f"node {lives}: down" not in log, log[-3000:]
        # and the manager's clock was indeed stepped: its records carry its wall time
        offset = (first - datetime.now(UTC)).total_seconds()
        assert offset < -50 if step.startswith("-") else offset > 50


def heartbeat_ages(port: int) -> dict[str, float]:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {
        sample.labels["node"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "kube_node_heartbeat_age_seconds"
        for sample in family.samples
    }


def test_workers_60s_ahead_and_behind_answer_logs_and_report_a_true_heartbeat_age(
    vhost: str, tmp_path: Path, docker_client: docker.DockerClient, request: pytest.FixtureRequest
) -> None:
    # given a worker whose clock is 60 s ahead and one 60 s behind, a task on each
    workers = {"fast": (*MOCK, "--label", "side=fast"), "slow": (*MOCK, "--label", "side=slow")}
    prefixes = {"fast": skewed_by("+60s"), "slow": skewed_by("-60s")}
    port = free_port()
    with (
        running_cluster(
            vhost,
            tmp_path,
            docker_client,
            request,
            workers,
            ("--metrics-port", str(port)),
            prefixes=prefixes,
        ) as cluster,
        client_for(cluster) as client,
    ):
        ids = {
            side: client.submit(
                TaskSpec(
                    name=side, image="mock/img", command=("serve",), constraints={"side": side}
                )
            )
            for side in ("fast", "slow")
        }
        for task_id in ids.values():
            client.wait(task_id, {TaskState.RUNNING}, timeout=30)
        # when their output is asked for (a logs request lives 8 s: no worker's clock
        # judges it)
        # then each answers
        for task_id in ids.values():
            assert "mock: mock/img serve" in client.logs(task_id)
        # and the manager's heartbeat age of each is what it is, a second or so
        ages = wait_for(lambda: heartbeat_ages(port), what="heartbeat ages")
        assert set(ages) == set(cluster.nodes)
        assert all(0 <= age < DOWN_AFTER for age in ages.values()), ages
        # and nothing either sent was refused for its time (admission takes 5 min ahead)
        assert dead_letters(cluster.url) == []


def test_a_worker_an_hour_ahead_is_told_why_its_results_are_refused_and_fills_nothing(
    vhost: str, tmp_path: Path, docker_client: docker.DockerClient, request: pytest.FixtureRequest
) -> None:
    # given a cluster, and a worker whose clock is an hour ahead (issue 13: it logged
    # nothing, never joined, and kube.dead-letters grew by a heartbeat a second)
    with running_cluster(vhost, tmp_path, docker_client, request, {}) as cluster:
        node = "pcfix-fast"
        cluster.start_worker(node, *MOCK, prefix=skewed_by("+3600s"))
        log = tmp_path / f"{node}.log"
        # then the worker logs an error naming the problem and the fix
        wait_for(
            lambda: (
                "the manager refuses this worker's results: its clock is 3600 s ahead"
                in log.read_text()
            ),
            timeout=30,
            what="the worker's error about its clock",
        )
        assert "fix the clock (NTP)" in log.read_text()
        # and its refused heartbeats (one a second) are not kept as dead letters
        with Client(Settings(amqp_url=vhost, request_timeout=10)) as client:
            wait_for(lambda: client.nodes() == [], timeout=5, what="no node")
        assert dead_letters(cluster.url) == []


@pytest.mark.parametrize("step", ["-60s", "+60s"])
def test_a_step_of_the_managers_clock_neither_shortens_nor_lengthens_a_disconnect_hold(
    vhost: str,
    tmp_path: Path,
    docker_client: docker.DockerClient,
    request: pytest.FixtureRequest,
    step: str,
) -> None:
    # given a manager whose wall clock NTP may step, and a task on a worker that dies,
    # which asked to be stopped 5 s cut off: its replacement waits 5 s and the 5 s margin
    # after the manager last heard the worker (manager/holds.py)
    clock = SteppedClock(tmp_path / "manager-clock.rc")
    workers = {"dies": MOCK, "lives": MOCK}
    hold = 5.0 + 5.0
    with (
        running_cluster(
            vhost, tmp_path, docker_client, request, workers, manager_prefix=clock.prefix
        ) as cluster,
        client_for(cluster) as client,
    ):
        dies, lives = cluster.nodes
        client.cordon(lives)
        spec = TaskSpec.model_validate(
            {
                "name": "careful",
                "image": "mock/img",
                "command": ["serve"],
                "on_disconnect": {"stop_after_seconds": 5},
            }
        )
        task_id = client.submit(spec)
        assert client.wait(task_id, {TaskState.RUNNING}, timeout=30).node == dies
        client.uncordon(lives)
        # when its worker is killed, and the manager's clock is stepped a minute once it
        # holds the replacement
        cluster.procs.pop(dies).kill()
        killed_at = time.monotonic()
        wait_for(
            lambda: client.get(task_id).state == TaskState.PENDING,
            timeout=DOWN_AFTER + MARGIN + 5,
            what="the task lost with its node",
        )
        clock.step(step)
        # then the replacement is placed after the hold, on the monotonic clock: not at
        # once, nor a minute late (the worker was last heard up to a heartbeat before)
        wait_for(
            lambda: client.get(task_id).attempt == 2,
            timeout=hold + MARGIN + 5,
            what="the replacement placed",
        )
        placed_after = time.monotonic() - killed_at
        assert hold - 1.5 < placed_after < hold + MARGIN, placed_after
        assert client.get(task_id).node == lives
