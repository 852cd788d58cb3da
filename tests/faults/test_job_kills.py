"""A job's ticks across a manager SIGKILLed around them, again and again, on each store
engine: every tick from the first to the last has exactly one run (created once, its
history says so), none is lost within the catch-up window and none runs twice.

Marked `faults` (run alone); it restarts only its own manager, no shared service."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import docker
import pytest

from kube.client import Client
from shared.models import TaskRecord, TaskSpec
from shared.settings import Settings
from shared.states import TaskState
from tests.conftest import Cluster, running_cluster
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


def test_a_killed_manager_runs_each_tick_once(mock_cluster: Cluster) -> None:
    spec = TaskSpec(
        name="tick",
        image="busybox",
        command=("true",),
        env={"MOCK_RUN_SECONDS": "0.3"},
        schedule=EVERY_2S,
        concurrency="allow",  # type: ignore[arg-type]
        catch_up=30,  # a minute of ticks: more than a restart takes
        keep_runs=1000,
    )
    with Client(Settings(amqp_url=mock_cluster.url, request_timeout=10)) as client:
        client.submit(spec)
        wait_for(lambda: runs(client), timeout=30, what="a first run")
        # when the manager is SIGKILLed around ticks, and started again, six times
        for offset in OFFSETS:
            at = next_tick_plus(offset)
            wait_for(lambda at=at: time.time() >= at, timeout=10, interval=0.005)
            mock_cluster.kill("manager")
            mock_cluster.start_manager()
            wait_for(lambda: client.jobs(), timeout=60, what="the manager back")
        # and the job is removed once two more ticks ran
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
        gaps = [
            (a, b) for a, b in zip(ticks, ticks[1:], strict=False) if b - a != timedelta(seconds=2)
        ]
        assert gaps == [], f"ticks lost or doubled: {gaps}"
        assert ticks[-1] <= removed
        # and each run was created once and placed once
        for run in found:
            _, history = client.inspect(run.id)
            created = [e for e in history if e.state == TaskState.PENDING]
            assert len(created) == 1, f"{run.id}: created {len(created)} times"
            assert run.attempt <= 1 and run.restart_count == 0
