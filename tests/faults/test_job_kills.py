"""A job's ticks across a manager SIGKILLed around them, again and again, on each store
engine, and across takeovers by a standby manager: every tick from the first to the last
has exactly one run (created once, its history says so), none is lost within the
catch-up window and none runs twice.

Marked `faults` (run alone); it restarts only its own manager, no shared service."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import docker
import pytest

from kube.client import Client
from shared.models import ManagerRole, TaskRecord, TaskSpec
from shared.settings import Settings
from shared.states import TaskState
from tests.conftest import Cluster, running_cluster
from tests.support.stores import Stores
from tests.support.waiting import wait_for

pytestmark = pytest.mark.faults

EVERY_2S = "*/2 * * * * *"
OFFSETS = (-0.3, -0.05, 0.0, 0.05, 0.3, 0.9)
"""When each kill comes, in seconds from a tick: just before it, at it, just after it."""


@pytest.fixture
def mock_cluster(
    vhost: str,
    tmp_path: Path,
    docker_client: docker.DockerClient,
    request: pytest.FixtureRequest,
    store_url: str,
) -> Iterator[Cluster]:
    with running_cluster(
        vhost, tmp_path, docker_client, request, {"a": ("--runtime", "mock")}, store=store_url
    ) as cluster:
        yield cluster


def runs(client: Client) -> list[TaskRecord]:
    return sorted((t for t in client.list() if t.job == "tick"), key=lambda t: t.id)


def tick_of(run: TaskRecord) -> datetime:
    return datetime.strptime(run.id.rsplit("-", 1)[1] + "+0000", "%Y%m%d%H%M%S%z")


def next_tick_plus(offset: float) -> float:
    """The wall time (seconds) `offset` from the next even second at least 1 s away."""
    now = time.time()
    tick = (int(now) // 2 + 1) * 2
    while tick + offset < now + 1:
        tick += 2
    return tick + offset


JOB = TaskSpec(
    name="tick",
    image="busybox",
    command=("true",),
    env={"MOCK_RUN_SECONDS": "0.3"},
    schedule=EVERY_2S,
    concurrency="allow",  # type: ignore[arg-type]
    catch_up=30,  # a minute of ticks: more than a restart or a takeover takes
    keep_runs=1000,
)


def kill_around_ticks(client: Client, kill: Callable[[], None]) -> None:
    """Submit the job, `kill` (and bring back) its manager around ticks, then remove the
    job once two more ticks ran; check each tick from the first to the last has one run,
    created once."""
    client.submit(JOB)
    wait_for(lambda: runs(client), timeout=30, what="a first run")
    for offset in OFFSETS:
        at = next_tick_plus(offset)
        wait_for(lambda at=at: time.time() >= at, timeout=10, interval=0.005)
        kill()
        wait_for(lambda: client.jobs(), timeout=60, what="a manager leading again")
    last = max(tick_of(r) for r in runs(client))
    wait_for(
        lambda: max(tick_of(r) for r in runs(client)) >= last + timedelta(seconds=4),
        timeout=30,
        what="two more ticks",
    )
    client.remove_job("tick")
    removed = datetime.now(UTC)
    found = runs(client)
    # then the ticks from the first to the last are all there, each once
    ticks = [tick_of(r) for r in found]
    pairs = zip(ticks, ticks[1:], strict=False)
    gaps = [(a, b) for a, b in pairs if b - a != timedelta(seconds=2)]
    assert gaps == [], f"ticks lost or doubled: {gaps}"
    assert ticks[-1] <= removed
    # and each run was created once and placed once
    for run in found:
        _, history = client.inspect(run.id)
        created = [e for e in history if e.state == TaskState.PENDING]
        assert len(created) == 1, f"{run.id}: created {len(created)} times"
        assert run.attempt <= 1 and run.restart_count == 0


def test_a_killed_manager_runs_each_tick_once(mock_cluster: Cluster) -> None:
    def restart() -> None:
        mock_cluster.kill("manager")
        mock_cluster.start_manager()

    with Client(Settings(amqp_url=mock_cluster.url, request_timeout=10)) as client:
        kill_around_ticks(client, restart)


@pytest.mark.postgres
def test_a_takeover_runs_each_tick_once(
    vhost: str,
    tmp_path: Path,
    docker_client: docker.DockerClient,
    request: pytest.FixtureRequest,
    postgres_database: str,
) -> None:
    # given two managers on one PostgreSQL store: m1 leads, m2 stands by
    store = Stores("postgresql", postgres_database, tmp_path).new()
    flags = ("--heartbeat-interval", "1", "--node-down-after", "4", "--metrics-port", "0")
    with (
        running_cluster(
            vhost,
            tmp_path,
            docker_client,
            request,
            {"a": ("--runtime", "mock")},
            ("--name", "m1"),
            store=store,
        ) as cluster,
        Client(Settings(amqp_url=vhost, request_timeout=10)) as client,
    ):
        cluster.start("m2", "manager", "--store", store, "--name", "m2", *flags)
        wait_for(lambda: standby(client) == {"m2"}, timeout=30, what="m2 standing by")

        def take_over() -> None:
            # the leader is SIGKILLed; the standby takes over, and it comes back to stand by
            (leading,) = [m.name for m in client.managers() if m.role == ManagerRole.LEADER]
            name = "manager" if leading == "m1" else leading
            cluster.kill(name)
            wait_for(lambda: leader_other_than(client, leading), timeout=60, what="a takeover")
            cluster.start(name, "manager", "--store", store, "--name", leading, *flags)

        kill_around_ticks(client, take_over)


def standby(client: Client) -> set[str]:
    return {m.name for m in client.managers() if m.role == ManagerRole.STANDBY}


def leader_other_than(client: Client, name: str) -> bool:
    return any(m.role == ManagerRole.LEADER and m.name != name for m in client.managers())
