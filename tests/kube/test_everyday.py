"""The everyday commands through the real CLI against a real broker and manager, on a
worker with the mock runtime (no containers): `kube ps` filters, tasks by name or id
start, `kube restart`, `kube update` of single fields, `kube run` restart, health and
environment flags, and the global flags after the command."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from kube.cli import REFUSED
from tests.conftest import Cluster, running_cluster
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

MOCK = ("--runtime", "mock")


@pytest.fixture
def mock_cluster(
    vhost: str, tmp_path: Path, docker_client: docker.DockerClient, request: pytest.FixtureRequest
) -> Iterator[Cluster]:
    """A manager and one worker that simulates its containers."""
    with running_cluster(vhost, tmp_path, docker_client, request, {"n1": MOCK}) as cluster:
        yield cluster


def ok(cluster: Cluster, *args: str) -> str:
    done = cluster.kube(*args)
    assert done.returncode == 0, f"kube {' '.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout


def listed(cluster: Cluster, *flags: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(ok(cluster, "ps", "--json", *flags))
    return rows


def ids(cluster: Cluster, *flags: str) -> set[str]:
    return set(ok(cluster, "ps", "-q", *flags).split())


def state(cluster: Cluster, task_id: str) -> str:
    return str(json.loads(ok(cluster, "inspect", task_id, "--json"))["state"])


def test_ps_filters_and_tasks_named_by_name_or_id_start(mock_cluster: Cluster) -> None:
    cluster = mock_cluster
    # given a running task, a task that has ended, and a service of two tasks
    hello = ok(cluster, "run", "--name", "hello", "--image", "busybox").strip()
    quick = ("--env", "MOCK_RUN_SECONDS=0.1", "--restart", "no")
    job = ok(cluster, "run", "--name", "job", "--image", "busybox", *quick).strip()
    ok(cluster, "run", "--name", "web", "--image", "busybox", "--replicas", "2", "--wait")
    wait_for(lambda: state(cluster, job) == "completed", what="the job completed")
    wait_for(lambda: state(cluster, hello) == "running", what="hello running")
    web = {row["id"] for row in listed(cluster, "--service", "web")}
    assert len(web) == 2
    # then ps shows what has not ended, -a everything, and the filters narrow both
    assert ids(cluster) == {hello, *web}
    assert ids(cluster, "-a") == {hello, job, *web}
    assert ids(cluster, "--state", "completed") == {job}
    assert ids(cluster, "--service", "web", "--node", cluster.nodes[0]) == web
    assert ids(cluster, "--node", "elsewhere") == set()
    assert {row["id"] for row in listed(cluster, "-a", "--service", "web")} == web
    table = ok(cluster, "ps")
    assert hello in table and job not in table
    # and a task is meant by its name or the start of its id, wherever an id is taken
    assert json.loads(ok(cluster, "inspect", "hello", "--json"))["id"] == hello
    assert json.loads(ok(cluster, "inspect", hello[:-3], "--json"))["id"] == hello
    assert "mock: busybox" in ok(cluster, "logs", "hello")
    # and a service's logs are every task's lines, each prefixed with its task
    both = ok(cluster, "logs", "web").splitlines()
    assert {line.split(" | ")[0] for line in both} == web and len(both) == 2
    # and the global flags are taken after the command too
    assert hello in ok(cluster, "ps", "--timeout", "10", "--amqp-url", cluster.url)
    # when a task is stopped and an ended one removed, by their names
    assert ok(cluster, "stop", "hello").strip() == hello
    wait_for(lambda: state(cluster, hello) == "completed", what="hello stopped")
    assert "removed task " + job in ok(cluster, "rm", "job")
    assert ids(cluster, "-a") == {hello, *web}


def test_run_flags_restart_and_update_of_single_fields(
    mock_cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = mock_cluster
    monkeypatch.setenv("KUBE_TEST_TOKEN", "from-here")
    # when a task is run with a restart policy, a health check and an env var from here
    flags = ("--restart", "always", "--max-restarts", "7", "--env", "KUBE_TEST_TOKEN")
    health = ("--health-cmd", "true", "--health-interval", "1", "--health-retries", "2")
    api = ok(cluster, "run", "--name", "api", "--image", "busybox", *flags, *health).strip()
    # then its spec holds them
    spec = json.loads(ok(cluster, "inspect", "api", "--json"))["spec"]
    assert spec["restart"]["policy"] == "always" and spec["restart"]["max_restarts"] == 7
    assert spec["health_check"]["exec"] == ["sh", "-c", "true"]
    assert spec["health_check"]["interval_seconds"] == 1 and spec["health_check"]["failures"] == 2
    assert spec["env"] == {"KUBE_TEST_TOKEN": "from-here"}
    wait_for(lambda: state(cluster, api) == "running", what="api running")
    # when it is restarted: it is stopped, and its spec runs again as a new task
    again = ok(cluster, "restart", "api").strip()
    assert again != api and state(cluster, api) == "completed"
    assert json.loads(ok(cluster, "inspect", again, "--json"))["spec"] == {**spec, "id": again}
    wait_for(lambda: state(cluster, again) == "running", what="api running again")
    # when it is restarted with -d, which cannot return before it stopped: refused, said
    detached = cluster.kube("restart", "-d", again)
    assert detached.returncode == REFUSED and "drop -d" in detached.stderr, detached.stderr
    assert state(cluster, again) == "running"
    # when a service's image is changed alone, it rolls onto a spec otherwise the same
    ok(cluster, "run", "--name", "web", "--image", "busybox", "--replicas", "2", "--wait")
    first = listed(cluster, "--service", "web")
    ok(cluster, "scale", "web", "3")
    ok(cluster, "update", "web", "--image", "busybox:2", "--env", "MODE=new")
    rolled = wait_for(lambda: version_running(cluster, 2, 3), what="3 tasks of version 2")
    assert {row["spec"]["image"] for row in rolled} == {"busybox:2"}
    assert {json.dumps(row["spec"]["env"]) for row in rolled} == {'{"MODE": "new"}'}
    assert {row["spec"]["command"] == first[0]["spec"]["command"] for row in rolled} == {True}
    # when the service is restarted, its tasks are replaced by a new version of that spec
    ok(cluster, "restart", "web")
    restarted = wait_for(lambda: version_running(cluster, 3, 3), what="3 tasks of version 3")
    assert {row["spec"]["image"] for row in restarted} == {"busybox:2"}
    # when one task of it is restarted by its id's start, the service replaces it
    one = restarted[0]["id"]
    assert ok(cluster, "restart", one[:-2]).startswith(one)
    wait_for(lambda: state(cluster, one) == "completed", what="the task stopped")
    wait_for(
        lambda: one not in (i := {r["id"] for r in version_running(cluster, 3, 3)}) and len(i) == 3,
        what="a replacement",
    )


def version_running(cluster: Cluster, version: int, count: int) -> list[dict[str, Any]]:
    """The running tasks of web, once `count` of them run `version` and no other runs."""
    rows = [r for r in listed(cluster, "--service", "web") if r["state"] == "running"]
    if len(rows) == count and all(r["version"] == version for r in rows):
        return rows
    return []
