"""Fixtures for the real broker, the real Docker engine and the locally built images.

Each broker-using test gets a RabbitMQ vhost of its own, deleted at teardown with every
queue and exchange in it. Tests that use the broker (the `vhost` fixture) are marked
`broker`, those that use the Docker engine (`docker_client`, the images) `docker`: without
rabbitmqctl or an engine they are skipped with the reason, and every other test runs. In
CI (CI=true) a missing broker or engine fails those tests instead, so nothing is hidden.

Each cluster's workers have unique node names, and every container labelled with one of
them is force-removed at teardown, even when a test fails.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors
import pytest
import requests.exceptions

from tests.support.images import build_kube_image, ensure_busybox_image
from tests.support.rabbit_cluster import ClusterError, RabbitCluster
from tests.support.reports import FAILED_KEY, call_failed
from tests.support.stores import ENGINES, Stores, run_database
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent
AMQP_HOST = os.environ.get("KUBE_TEST_AMQP_HOST", "127.0.0.1:5672")

BROKER_FIXTURES = frozenset({"vhost"})
DOCKER_FIXTURES = frozenset({"docker_client", "busybox_image", "kube_image"})
MULTIHOST_FIXTURES = frozenset({"bed"})  # tests/multihost/conftest.py
POSTGRES_FIXTURES = frozenset({"postgres_database"})  # the `stores` engines mark their own
RABBIT_CLUSTER_FIXTURES = frozenset({"rabbit_cluster"})


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(reason: str) -> None:
    """Skip the test that needs what is missing; in CI, fail it."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: a missing service fails the tests that need it)")
    pytest.skip(reason)


def require_broker() -> None:
    if shutil.which("rabbitmqctl") is None:
        unavailable(
            "needs RabbitMQ: rabbitmqctl is not on PATH (run .ci/run, which installs it;"
            " or select unit tests with -m 'not broker and not docker and not e2e')"
        )


def docker_engine() -> docker.DockerClient:
    """A client of the engine, once it answered; skips (fails in CI) when none does."""
    try:
        client = docker.from_env()
        client.ping()
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        unavailable(f"needs the Docker engine, which does not answer: {exc}")
    return client


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@contextlib.contextmanager
def fresh_vhost() -> Iterator[str]:
    """A fresh vhost; yields its AMQP URL. Deleting it removes every queue the test made."""
    require_broker()
    name = f"kube-test-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", name)
    rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    try:
        yield f"amqp://guest:guest@{AMQP_HOST}/{name}"
    finally:
        rabbitmqctl("delete_vhost", name)


@pytest.fixture
def vhost() -> Iterator[str]:
    """A fresh vhost (`fresh_vhost`)."""
    with fresh_vhost() as url:
        yield url


@pytest.fixture(scope="module")
def rabbit_cluster() -> Iterator[RabbitCluster]:
    """Three local RabbitMQ nodes of the module's own, clustered (tests/support/rabbit_cluster.py);
    about 16 s to start on two cores, so a module shares them. The system broker is untouched."""
    require_broker()
    try:
        cluster = RabbitCluster().start()
    except ClusterError as exc:
        unavailable(f"could not start three local RabbitMQ nodes: {exc}")
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A PostgreSQL database of this test run's own; its URL (tests/support/stores.py)."""
    yield from run_database(unavailable)


@pytest.fixture(scope="session", params=ENGINES)
def stores(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Stores:
    """Makes new, empty stores; a test that uses it runs on SQLite and on PostgreSQL."""
    engine = str(request.param)
    database = request.getfixturevalue("postgres_database") if engine == "postgresql" else None
    return Stores(engine, database, tmp_path_factory.mktemp("stores"))


@pytest.fixture
def store_url(stores: Stores) -> str:
    """The URL of a new, empty store, on each engine in turn."""
    return stores.new()


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    client = docker_engine()
    yield client
    client.close()


@pytest.fixture(scope="session")
def busybox_image(docker_client: docker.DockerClient) -> str:
    return ensure_busybox_image()


@pytest.fixture(scope="session")
def kube_image(docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory) -> str:
    """deploy/Dockerfile built on the local Python base (never pulled); the image's id."""
    return build_kube_image(tmp_path_factory.mktemp("kube-image") / "iid")


def remove_node_containers(client: docker.DockerClient, node: str) -> None:
    for container in client.containers.list(all=True, filters={"label": f"kube.node={node}"}):
        container.remove(force=True)


def remove_node_volumes(client: docker.DockerClient, node: str) -> None:
    """The engine volumes of a node (the cluster fixtures leave them)."""
    for volume in client.volumes.list(filters={"label": f"kube.node={node}"}):
        volume.remove(force=True)


@dataclass
class Cluster:
    """A manager and workers as real processes, on their own vhost."""

    url: str
    workdir: Path
    nodes: list[str]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    manager_args: tuple[str, ...] = ()
    store: str | None = None  # the manager's store URL; None: a SQLite file in workdir
    manager_prefix: tuple[str, ...] = ()  # a command the manager runs under (faketime)

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "KUBE_AMQP_URL": self.url,
            "KUBE_TIMEOUT": "10",
            "PYTHONPATH": str(ROOT),
        }

    def start(self, name: str, *args: str, prefix: tuple[str, ...] = ()) -> subprocess.Popen[bytes]:
        """Run `python -m kube ARGS`, under `prefix` if given (e.g. `faketime -f +60s`)."""
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        command = [*prefix, sys.executable, "-m", "kube", *args]
        proc = subprocess.Popen(command, env=self.env, stdout=log, stderr=log, cwd=ROOT)
        self.procs[name] = proc
        return proc

    def start_manager(self) -> None:
        self.start(
            "manager",
            "manager",
            "--metrics-port",  # 0: off, so clusters on one host never fight over a port
            "0",
            *(
                ("--store", self.store)
                if self.store
                else ("--db", str(self.workdir / "manager.db"))
            ),
            "--heartbeat-interval",
            "1",
            "--node-down-after",
            "4",
            *self.manager_args,
            prefix=self.manager_prefix,
        )

    def start_worker(self, node: str, *extra: str, prefix: tuple[str, ...] = ()) -> None:
        flags = ("--heartbeat-interval", "1", "--metrics-port", "0")
        self.start(node, "worker", "--name", node, *flags, *extra, prefix=prefix)

    def kube(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run the CLI as a user would."""
        return subprocess.run(
            [sys.executable, "-m", "kube", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
        )

    def kill(self, name: str) -> None:
        """SIGKILL a process, as a crash would, and forget it once it is gone."""
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def logs(self) -> str:
        return "\n".join(
            f"----- {path.name}\n{path.read_text(errors='replace')[-6000:]}"
            for path in sorted(self.workdir.glob("*.log"))
        )


@contextlib.contextmanager
def running_cluster(
    vhost: str,
    workdir: Path,
    client: docker.DockerClient,
    request: pytest.FixtureRequest,
    workers: dict[str, tuple[str, ...]],
    manager_args: tuple[str, ...] = (),
    prefixes: dict[str, tuple[str, ...]] | None = None,
    manager_prefix: tuple[str, ...] = (),
    store: str | None = None,
) -> Iterator[Cluster]:
    """A manager and the given workers (name suffix -> extra flags), ready; torn down after.

    `prefixes` (name suffix -> command) runs a worker under a command such as faketime,
    and `manager_prefix` the manager; `store` is the manager's store URL (default: a
    SQLite file in `workdir`)."""
    prefix = f"t{uuid.uuid4().hex[:6]}"
    names = [f"{prefix}-{suffix}" for suffix in workers]
    cluster = Cluster(
        vhost,
        workdir,
        names,
        manager_args=manager_args,
        manager_prefix=manager_prefix,
        store=store,
    )
    try:
        cluster.start_manager()
        for node, (suffix, extra) in zip(cluster.nodes, workers.items(), strict=True):
            cluster.start_worker(node, *extra, prefix=(prefixes or {}).get(suffix, ()))
        from kube.client import Client
        from shared.settings import Settings

        with Client(Settings(amqp_url=vhost, request_timeout=5)) as kube:
            wait_for(
                lambda: len([n for n in kube.nodes() if n.status.value == "ready"]) == len(workers),
                timeout=60,
                what=f"{len(workers)} ready workers",
            )
        yield cluster
    except BaseException:
        # used as a `with` inside a test, this runs before pytest records the failure
        failed = True
        raise
    else:
        failed = call_failed(request)
    finally:
        for name in list(cluster.procs):
            cluster.stop(name)
        for node in cluster.nodes:
            remove_node_containers(client, node)
        if failed:
            print(cluster.logs())


@pytest.fixture
def cluster(
    vhost: str,
    tmp_path: Path,
    docker_client: docker.DockerClient,
    busybox_image: str,
    request: pytest.FixtureRequest,
) -> Iterator[Cluster]:
    """A manager and two workers (`<prefix>-node-1`, `-node-2`) running for real."""
    workers: dict[str, tuple[str, ...]] = {"node-1": (), "node-2": ()}
    with running_cluster(vhost, tmp_path, docker_client, request, workers) as cluster:
        yield cluster


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    if report.when == "call" and report.failed:  # type: ignore[attr-defined]
        item.stash[FAILED_KEY] = True
    return report


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark what needs the broker, the engine or test hosts by the fixtures it uses."""
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        if used & BROKER_FIXTURES:
            item.add_marker(pytest.mark.broker)
        if used & DOCKER_FIXTURES:
            item.add_marker(pytest.mark.docker)
        if used & MULTIHOST_FIXTURES:
            item.add_marker(pytest.mark.multihost)
        if used & POSTGRES_FIXTURES:
            item.add_marker(pytest.mark.postgres)
        if used & RABBIT_CLUSTER_FIXTURES:
            item.add_marker(pytest.mark.rabbitcluster)
