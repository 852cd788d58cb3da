"""Scheduled jobs with a real manager and workers: kube run --schedule, kube jobs, runs at
each tick (a 6-field schedule ticks every 2 seconds), on the mock runtime and once on
Docker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import docker
import pytest

from kube.client import Client
from shared.models import TaskRecord
from shared.settings import Settings
from shared.states import TaskState
from tests.conftest import Cluster, running_cluster
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

EVERY_2S = "*/2 * * * * *"


@pytest.fixture
def mock_cluster(
    vhost: str, tmp_path: Path, docker_client: docker.DockerClient, request: pytest.FixtureRequest
) -> Iterator[Cluster]:
    """A manager and one worker on the mock runtime."""
    with running_cluster(
        vhost, tmp_path, docker_client, request, {"a": ("--runtime", "mock")}
    ) as cluster:
        yield cluster


def runs(client: Client, job: str) -> list[TaskRecord]:
    return sorted((t for t in client.list() if t.job == job), key=lambda t: t.id)


def tick_of(run: TaskRecord) -> datetime:
    return datetime.strptime(run.id.rsplit("-", 1)[1] + "+0000", "%Y%m%d%H%M%S%z")


def kube_ok(cluster: Cluster, *args: str) -> str:
    done = cluster.kube(*args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_job_runs_at_every_tick_and_kube_jobs_shows_it(mock_cluster: Cluster) -> None:
    # given a job that ticks every 2 seconds, each run lasting half a second
    name = kube_ok(
        mock_cluster,
        *("run", "--name", "tick", "--image", "busybox", "--schedule", EVERY_2S),
        *("--env", "MOCK_RUN_SECONDS=0.5", "--keep-runs", "100", "--", "true"),
    ).strip()
    assert name == "tick"
    with Client(Settings(amqp_url=mock_cluster.url, request_timeout=10)) as client:
        # when four runs have completed
        wait_for(
            lambda: sum(r.state == TaskState.COMPLETED for r in runs(client, "tick")) >= 4,
            timeout=60,
            what="4 completed runs",
        )
        # then they are one per tick, 2 seconds apart, none missing
        ticks = [tick_of(r) for r in runs(client, "tick")]
        assert all(b - a == timedelta(seconds=2) for a, b in zip(ticks, ticks[1:], strict=False))
        # and kube jobs lists it with its last run and its next tick
        table = kube_ok(mock_cluster, "jobs")
        assert "tick" in table and EVERY_2S in table and "UTC" in table
        (row,) = json.loads(kube_ok(mock_cluster, "jobs", "--json"))
        assert row["job"]["last_run"].startswith("tick-") and row["job"]["next_tick"]
        # when it is removed, no run starts any more: none of a tick after the removal,
        # two ticks later
        assert kube_ok(mock_cluster, "jobs", "rm", "tick").strip() == "tick"
        removed = datetime.now(UTC)
        assert json.loads(kube_ok(mock_cluster, "jobs", "--json")) == []
        again = mock_cluster.kube("jobs", "rm", "tick")
        assert again.returncode == 4 and "unknown job 'tick'" in again.stderr
        wait_for(lambda: datetime.now(UTC) > removed + timedelta(seconds=4.5), timeout=10)
        assert all(tick_of(r) <= removed for r in runs(client, "tick"))


def test_forbid_skips_ticks_while_a_run_lasts(mock_cluster: Cluster) -> None:
    kube_ok(
        mock_cluster,
        *("run", "--name", "slow", "--image", "busybox", "--schedule", EVERY_2S),
        *("--env", "MOCK_RUN_SECONDS=5", "--", "true"),
    )
    with Client(Settings(amqp_url=mock_cluster.url, request_timeout=10)) as client:
        wait_for(
            lambda: any(
                "still running" in line for line in kube_ok(mock_cluster, "jobs").splitlines()
            ),
            timeout=30,
            what="a skipped tick in kube jobs",
        )
        # never two runs at once
        live = [r for r in runs(client, "slow") if not r.state.terminal]
        assert len(live) == 1


@pytest.mark.docker
def test_a_run_of_a_job_runs_its_container_on_docker(cluster: Cluster, busybox_image: str) -> None:
    kube_ok(
        cluster,
        *("run", "--name", "hello", "--image", busybox_image, "--schedule", EVERY_2S),
        *("--", "echo", "hello from a job"),
    )
    with Client(Settings(amqp_url=cluster.url, request_timeout=10)) as client:
        wait_for(
            lambda: any(r.state == TaskState.COMPLETED for r in runs(client, "hello")),
            timeout=60,
            what="a completed run",
        )
        kube_ok(cluster, "jobs", "rm", "hello")
        done = next(r for r in runs(client, "hello") if r.state == TaskState.COMPLETED)
        assert done.exit_code == 0
        assert "hello from a job" in client.logs(done.id)
