"""Stacks through the CLI against a real cluster (docs/stacks.md): the stack files of
docs/examples/ deployed, diffed, deployed again without a change, pruned and removed.
The mock runtime runs the plain lifecycle; the real engine and the local busybox image run
the health-checked dependency, the database's named volume across a redeploy, and the
scheduled job."""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from kube.client import Client
from shared.models import ServiceRecord, TaskRecord
from shared.settings import Settings
from shared.states import TaskState
from tests.conftest import ROOT, Cluster, remove_node_volumes, running_cluster
from tests.e2e.test_endpoints import get
from tests.support.docblocks import block
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

EXAMPLES = ROOT / "docs" / "examples"
WEB = EXAMPLES / "stack-web.yaml"
HEALTHY = EXAMPLES / "stack-healthy.yaml"
JOB = EXAMPLES / "stack-job.yaml"
EVERY_2S = "*/2 * * * * *"


def with_secrets(
    vhost: str,
    tmp_path: Path,
    docker_client: docker.DockerClient,
    request: pytest.FixtureRequest,
    worker: tuple[str, ...],
) -> Iterator[Cluster]:
    """A manager with a secrets key and one worker (`worker`: its flags), and the secret
    the web example names."""
    key = tmp_path / "secrets.key"
    key.write_text(secrets.token_hex(32) + "\n")
    key.chmod(0o600)
    workers = {"node-1": worker}
    manager = ("--secrets-key-file", str(key))
    with running_cluster(vhost, tmp_path, docker_client, request, workers, manager) as cluster:
        ok(cluster, "secret", "create", "shop_db_password", "-", stdin="s3cret")
        yield cluster


@pytest.fixture
def mock_cluster(
    vhost: str, tmp_path: Path, docker_client: docker.DockerClient, request: pytest.FixtureRequest
) -> Iterator[Cluster]:
    """A manager and one worker with the mock runtime."""
    yield from with_secrets(vhost, tmp_path, docker_client, request, ("--runtime", "mock"))


@pytest.fixture
def local(
    vhost: str,
    tmp_path: Path,
    docker_client: docker.DockerClient,
    busybox_image: str,
    request: pytest.FixtureRequest,
) -> Iterator[Cluster]:
    """A manager and one worker on the real engine, advertising 127.0.0.1; its node's
    engine volumes removed after it."""
    nodes: list[str] = []
    try:
        for cluster in with_secrets(
            vhost, tmp_path, docker_client, request, ("--advertise-address", "127.0.0.1")
        ):
            nodes = cluster.nodes
            yield cluster
    finally:
        for node in nodes:
            remove_node_volumes(docker_client, node)


def kube(
    cluster: Cluster, *args: str, stdin: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kube", *args],
        input=stdin,
        env={**cluster.env, **env},
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )


def ok(cluster: Cluster, *args: str, stdin: str | None = None, **env: str) -> str:
    done = kube(cluster, *args, stdin=stdin, **env)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def services(cluster: Cluster) -> dict[str, ServiceRecord]:
    with Client(Settings(amqp_url=cluster.url, request_timeout=5)) as client:
        return {s.name: s for s in client.services()}


def running(cluster: Cluster, counts: dict[str, int]) -> None:
    """Wait until each service named runs that many tasks."""

    def look() -> bool:
        with Client(Settings(amqp_url=cluster.url, request_timeout=5)) as client:
            tasks = [t for t in client.list() if t.state == TaskState.RUNNING]
        return all(sum(t.service == n for t in tasks) == c for n, c in counts.items())

    wait_for(look, what=f"running tasks {counts}", timeout=60)


def test_a_stack_is_deployed_diffed_redeployed_pruned_and_removed(
    mock_cluster: Cluster, tmp_path: Path
) -> None:
    # given the web + worker + db example, diffed before anything exists
    diff = ok(mock_cluster, "diff", "-f", str(WEB))
    assert [line.split()[:2] for line in diff.splitlines()[1:]] == [
        ["shop_db", "create"],
        ["shop_web", "create"],
        ["shop_worker", "create"],
    ]
    # when it is deployed
    out = ok(mock_cluster, "deploy", "-f", str(WEB))
    # then every service runs, labelled with its stack, db sent first
    assert out.index("shop_db: created") < out.index("shop_web: created")
    running(mock_cluster, {"shop_db": 1, "shop_web": 2, "shop_worker": 1})
    before = services(mock_cluster)
    assert {name: s.spec.labels["kube.stack"] for name, s in before.items()} == dict.fromkeys(
        ("shop_db", "shop_web", "shop_worker"), "shop"
    )
    assert before["shop_worker"].spec.env == {"QUEUE": "orders"}  # from its env_file

    # when the same file is deployed again: nothing is sent, no rollout happens
    assert ok(mock_cluster, "deploy", "-f", str(WEB)).strip() == "stack shop: no changes"
    assert ok(mock_cluster, "diff", "-f", str(WEB)).strip() == "no changes"
    again = services(mock_cluster)
    for name, service in before.items():
        assert (again[name].version, again[name].updated_at) == (
            service.version,
            service.updated_at,
        )

    # when a variable the file interpolates changes: only web's env differs, and is rolled
    table = ok(mock_cluster, "diff", "-f", str(WEB), GREETING="hi")
    assert table == block("docs/stacks.md", "diff-output")
    diff = ok(mock_cluster, "diff", "-f", str(WEB), "--json", GREETING="hi")
    assert '"field": "env.GREETING"' in diff and '"after": "hi"' in diff
    assert diff.count('"action": "update"') == 1
    ok(mock_cluster, "deploy", "-f", str(WEB), GREETING="hi")
    after = services(mock_cluster)
    assert after["shop_web"].version == before["shop_web"].version + 1
    assert after["shop_web"].spec.env["GREETING"] == "hi"
    assert after["shop_db"].updated_at == before["shop_db"].updated_at

    # when the worker leaves the file: reported and kept without --prune, removed with it
    smaller = tmp_path / "stack-web.yaml"
    text = WEB.read_text()
    head, _, rest = text.partition("  worker:")
    smaller.write_text(head + rest[rest.index("\nvolumes:") :])
    out = ok(mock_cluster, "deploy", "-f", str(smaller), GREETING="hi")
    assert "shop_worker: not in the file; kept" in out
    assert services(mock_cluster)["shop_worker"].desired_state == "running"
    out = ok(mock_cluster, "deploy", "-f", str(smaller), "--prune", GREETING="hi")
    assert "shop_worker: removed" in out
    assert "shop_worker" not in services(mock_cluster)

    # then the stack is listed, its tasks shown, and it is removed
    listed = ok(mock_cluster, "stack", "ls").split()
    assert listed == ["NAME", "SERVICES", "JOBS", "shop", "2", "0"]
    listed = ok(mock_cluster, "stack", "ps", "shop")
    assert "shop_web" in listed and "shop_db" in listed
    out = ok(mock_cluster, "stack", "rm", "shop")
    assert "removed service shop_web" in out
    assert services(mock_cluster) == {}
    assert kube(mock_cluster, "stack", "ps", "shop").returncode == 4


def test_a_service_of_another_owner_is_not_taken_over(mock_cluster: Cluster) -> None:
    # given a service named as the stack would name one, not made by a deploy
    ok(mock_cluster, "run", "--name", "shop_db", "--image", "busybox", "--replicas", "1")
    # when the stack is deployed: refused, naming it, and nothing else sent
    done = kube(mock_cluster, "deploy", "-f", str(WEB))
    assert done.returncode == 4, done.stderr
    assert "service shop_db exists and is not of stack shop" in done.stderr
    assert set(services(mock_cluster)) == {"shop_db"}


MISSING = """\
services:
  a: {image: busybox, command: sleep 600}
  b: {image: busybox, command: sleep 600, configs: [{source: nope, target: /etc/nope}]}
  c: {image: busybox, command: sleep 600, secrets: [shop_db_password, nosuch]}
secrets: {shop_db_password: {external: true}, nosuch: {external: true}}
configs: {nope: {external: true}}
"""


@pytest.mark.parametrize("verb", ["diff", "deploy"])
def test_a_missing_secret_or_config_is_said_before_anything_is_sent(
    mock_cluster: Cluster, tmp_path: Path, verb: str
) -> None:
    # given a stack whose third service names a secret the manager has not
    path = tmp_path / "stack.yaml"
    path.write_text(MISSING)
    # when it is diffed or deployed: refused, naming each service and key path
    done = kube(mock_cluster, verb, "-f", str(path), "--name", "pa")
    assert done.returncode == 4, done.stderr
    assert done.stderr.startswith(
        f"kube: {path}: services.b.configs[0]: no such config: nope;"
        " services.c.secrets[1]: no such secret: nosuch; nothing was sent"
    )
    # then no service of it was created, not even the first one
    assert set(services(mock_cluster)) == set()


def test_a_service_starts_once_its_dependency_is_healthy(
    cluster: Cluster, busybox_image: str
) -> None:
    # given the health-checked example on the real engine (db is ready after 3 s)
    out = ok(cluster, "deploy", "-f", str(HEALTHY), "--wait-timeout", "90")
    # then app was sent only once db's check passed
    assert out.index("ready_app: waiting until ready_db is healthy") < out.index(
        "ready_app: created"
    )
    with Client(Settings(amqp_url=cluster.url, request_timeout=5)) as client:
        db = next(t for t in client.list() if t.service == "ready_db")
        app = client.service("ready_app")
        assert db.health is not None and db.health.value == "healthy"
    assert (app.created_at - db.created_at).total_seconds() >= 3
    running(cluster, {"ready_db": 1, "ready_app": 1})
    ok(cluster, "stack", "rm", "ready")
    assert services(cluster) == {}


def test_the_web_example_serves_on_the_real_engine(
    local: Cluster, docker_client: docker.DockerClient
) -> None:
    # given the web + worker + db example, its greeting from the environment
    ok(local, "deploy", "-f", str(WEB), GREETING="hello from the test")
    running(local, {"shop_db": 1, "shop_web": 2, "shop_worker": 1})
    # then each web task answers on its endpoint with the interpolated greeting
    with Client(Settings(amqp_url=local.url, request_timeout=5)) as client:
        endpoints = wait_for(
            lambda: (found := client.endpoints("shop_web").endpoints) and len(found) == 2 and found,
            what="two endpoints of shop_web",
            timeout=60,
        )
        db = next(t for t in client.list() if t.service == "shop_db")
    for endpoint in endpoints:
        assert wait_for(lambda e=endpoint: get(e), what=endpoint) == "hello from the test"
    # and the database reads the password, the kube secret the file names, from its file
    assert db.container_id is not None
    read = docker_client.containers.get(db.container_id).exec_run(
        ["cat", "/run/secrets/shop_db_password"]
    )
    assert read.output.decode() == "s3cret"

    # and the database's start is on its volume; a redeploy that changes it keeps the data
    first = starts(local, docker_client, version=1)
    assert len(first) == 1
    out = ok(local, "deploy", "-f", str(WEB), GREETING="hello from the test", DB_NAME="shop2")
    assert "shop_db: updated" in out
    second = starts(local, docker_client, version=2)
    assert len(second) == 2 and second[0] == first[0]
    ok(local, "stack", "rm", "shop")
    assert services(local) == {}
    # the volume outlives the stack (as `docker stack rm` leaves volumes) until removed
    assert ok(local, "volume", "rm", "shop_dbdata").strip() == "removed volume shop_dbdata"


def starts(cluster: Cluster, docker_client: docker.DockerClient, version: int) -> list[str]:
    """The lines of /data/starts, read in the running db task of that service version."""

    def db() -> TaskRecord | None:
        with Client(Settings(amqp_url=cluster.url, request_timeout=5)) as client:
            found = [
                t
                for t in client.list()
                if t.service == "shop_db" and t.version == version and t.state == TaskState.RUNNING
            ]
        return found[0] if found else None

    task = wait_for(db, what=f"shop_db version {version} running", timeout=90)
    assert task.container_id is not None
    code, out = docker_client.containers.get(task.container_id).exec_run(["cat", "/data/starts"])
    assert code == 0, out
    return out.decode().splitlines()


def test_a_scheduled_job_of_a_stack_runs_at_its_ticks_and_goes_with_the_stack(
    local: Cluster,
) -> None:
    # given the job example on a schedule that ticks every 2 seconds
    out = ok(local, "deploy", "-f", str(JOB), SCHEDULE=EVERY_2S)
    assert out.strip() == "nightly_report: created"
    # then it is a job of the stack, listed with it, and its runs complete at the ticks
    assert ok(local, "stack", "ls").split() == ["NAME", "SERVICES", "JOBS", "nightly", "0", "1"]
    with Client(Settings(amqp_url=local.url, request_timeout=5)) as client:
        (row,) = client.jobs()
        assert (row.job.name, row.job.spec.schedule) == ("nightly_report", EVERY_2S)
        assert row.job.spec.labels["kube.stack"] == "nightly"

        def completed() -> list[TaskRecord]:
            return [
                t
                for t in client.list()
                if t.job == "nightly_report" and t.state == TaskState.COMPLETED
            ]

        done = wait_for(lambda: len(runs := completed()) >= 2 and runs, what="2 runs", timeout=60)
        assert "report of " in client.logs(done[0].id)
    assert "nightly_report-" in ok(local, "stack", "ps", "nightly", "-a")
    # when the same file is deployed again: nothing is sent
    assert ok(local, "diff", "-f", str(JOB), SCHEDULE=EVERY_2S).strip() == "no changes"
    # when the schedule changes: the job is updated, field by field
    diff = ok(local, "diff", "-f", str(JOB))
    assert diff.splitlines()[1].split() == ["nightly_report", "update"]
    assert diff.splitlines()[2].split() == ["schedule", *EVERY_2S.split(), "0", "3", "*", "*", "*"]
    # when the stack is removed: the job goes, and no run starts any more
    assert ok(local, "stack", "rm", "nightly").strip() == "removed job nightly_report"
    with Client(Settings(amqp_url=local.url, request_timeout=5)) as client:
        assert client.jobs() == []
    assert kube(local, "stack", "ps", "nightly").returncode == 4
