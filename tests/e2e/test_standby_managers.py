"""Several managers on one PostgreSQL store: one leads, the others wait; a standby takes
over from a leader killed or paused, a deposed leader writes nothing, and a manager whose
store connection is cut reconnects and carries on (manager/leadership.py, issue 14)."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import amqp
import docker
import psycopg
import pytest

from kube.client import Client
from shared.codec import encode
from shared.messages import RunTask
from shared.models import ManagerInfo, ManagerRole, TaskSpec
from shared.settings import Settings
from shared.states import TaskState
from shared.topology import DISPATCH
from tests.conftest import Cluster, running_cluster
from tests.support.relay import relay
from tests.support.stores import Stores
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

MANAGER_FLAGS = ("--heartbeat-interval", "1", "--node-down-after", "4", "--metrics-port", "0")


def spec(name: str) -> TaskSpec:
    return TaskSpec(name=name, image="busybox")


@contextmanager
def two_managers(
    vhost: str,
    tmp_path: Path,
    docker_client: docker.DockerClient,
    request: pytest.FixtureRequest,
    postgres_database: str,
) -> Iterator[tuple[Cluster, Client, str]]:
    """Manager m1 leading and m2 a standby, one worker on the mock runtime. Each manager's
    connections carry its name as PostgreSQL's application_name (see `audit_writes`)."""
    store = Stores("postgresql", postgres_database, tmp_path).new()
    workers = {"node-1": ("--runtime", "mock")}
    m1, m2 = f"{store}&application_name=m1", f"{store}&application_name=m2"
    with (
        running_cluster(
            vhost, tmp_path, docker_client, request, workers, ("--name", "m1"), store=m1
        ) as cluster,
        Client(Settings(amqp_url=vhost, request_timeout=10)) as client,
    ):
        cluster.start("m2", "manager", "--store", m2, "--name", "m2", *MANAGER_FLAGS)
        wait_for(lambda: roles(client) == {"m1": "leader", "m2": "standby"}, what="a standby")
        yield cluster, client, store


STATE_TABLES = ("tasks", "task_events", "nodes", "services", "jobs", "quarantine", "outbox")
"""What a leader writes; a standby writes only `managers` (it is seen) and tries `leader`."""


def audit_writes(store: str) -> None:
    """Record every committed write to the state tables: by which application_name (the
    manager's name: `two_managers`), at what time on the database's clock. A write rolled
    back (a fenced commit) leaves no row, as its audit row is rolled back with it."""
    with psycopg.connect(store, autocommit=True) as db:
        db.execute("CREATE TABLE audit (app text NOT NULL, at double precision NOT NULL)")
        db.execute(
            "CREATE FUNCTION audit_write() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            " INSERT INTO audit VALUES (current_setting('application_name'),"
            " extract(epoch FROM clock_timestamp())); RETURN NULL; END $$"
        )
        for table in STATE_TABLES:
            db.execute(
                f"CREATE TRIGGER audit_{table} AFTER INSERT OR UPDATE OR DELETE ON {table}"
                " FOR EACH STATEMENT EXECUTE FUNCTION audit_write()"
            )


def writes_by(store: str, app: str, since: float) -> int:
    """Committed writes to the state tables by `app` at or after `since` (database clock)."""
    with psycopg.connect(store) as db:
        row = db.execute("SELECT count(*) FROM audit WHERE app = %s AND at >= %s", (app, since))
        return int(row.fetchone()[0])  # type: ignore[index]


def roles(client: Client) -> dict[str, str]:
    return {m.name: m.role.value for m in client.managers() if m.seen_ago < 3}


def leader(client: Client) -> ManagerInfo | None:
    found = [m for m in client.managers() if m.role == ManagerRole.LEADER]
    return found[0] if found else None


def placed_at(client: Client, task_id: str) -> datetime | None:
    """When the task was first placed on a node (its scheduled event), if it was."""
    _, events = client.inspect(task_id)
    return next((e.at for e in events if e.state == TaskState.SCHEDULED), None)


def test_a_standby_takes_over_from_a_killed_leader_and_places_a_new_task(
    vhost: str,
    tmp_path: Path,
    docker_client: docker.DockerClient,
    request: pytest.FixtureRequest,
    postgres_database: str,
) -> None:
    with two_managers(vhost, tmp_path, docker_client, request, postgres_database) as (
        cluster,
        client,
        _,
    ):
        # given tasks flowing through m1
        before = [client.submit(spec(f"b{i}")) for i in range(10)]
        for task_id in before:
            client.wait(task_id, {TaskState.RUNNING}, timeout=30)
        first = leader(client)
        assert first is not None and first.name == "m1"
        # when m1 is killed while more tasks come, and one more is submitted after
        more = [client.submit(spec(f"m{i}")) for i in range(5)]
        killed_at = datetime.now(UTC)
        cluster.kill("manager")
        with Client(Settings(amqp_url=vhost, request_timeout=30)) as patient:
            after = patient.submit(spec("after"))
            # then m2 takes over at a newer epoch, and places the new task
            patient.wait(after, {TaskState.RUNNING}, timeout=30)
        at = placed_at(client, after)
        assert at is not None
        took = (at - killed_at).total_seconds()
        print(f"kill -> placement: {took:.2f}s")
        assert took < 10
        now = leader(client)
        assert now is not None and now.name == "m2" and now.epoch > first.epoch
        # and nothing was lost or run twice: every task runs its first attempt
        for task_id in [*before, *more]:
            task = client.wait(task_id, {TaskState.RUNNING}, timeout=30)
            assert task.attempt == 1, task
        (node,) = client.nodes()
        assert node.status.value == "ready"


def test_a_paused_leader_is_deposed_writes_nothing_and_becomes_a_standby(
    vhost: str,
    tmp_path: Path,
    docker_client: docker.DockerClient,
    request: pytest.FixtureRequest,
    postgres_database: str,
) -> None:
    with two_managers(vhost, tmp_path, docker_client, request, postgres_database) as (
        cluster,
        client,
        store,
    ):
        audit_writes(store)
        running = client.submit(spec("running"))
        client.wait(running, {TaskState.RUNNING}, timeout=30)
        first = leader(client)
        assert first is not None
        assert writes_by(store, "m1", 0) > 0  # the audit sees m1's writes as m1's
        # when m1 is stopped (SIGSTOP) for longer than its lease, while a task is submitted
        m1 = cluster.procs["manager"]
        m1.send_signal(signal.SIGSTOP)
        submitted: list[str] = []
        asking = threading.Thread(
            target=lambda: submitted.append(
                Client(Settings(amqp_url=vhost, request_timeout=60)).submit(spec("paused"))
            )
        )
        asking.start()
        try:
            # then m2 takes the lease
            def m2_holds() -> bool:
                with psycopg.connect(store) as db:
                    row = db.execute("SELECT holder, epoch FROM leader").fetchone()
                return row is not None and row[0] == "m2"

            wait_for(m2_holds, what="m2 to take the lease", timeout=30)
        finally:
            # and m1 is let go on
            m1.send_signal(signal.SIGCONT)
        asking.join(timeout=60)
        assert submitted, "the submission was not answered"
        # then the task submitted meanwhile is placed once, by m2
        task = client.wait(submitted[0], {TaskState.RUNNING}, timeout=30)
        _, events = client.inspect(task.id)
        assert [e.state for e in events].count(TaskState.SCHEDULED) == 1
        assert task.attempt == 1 and client.get(running).attempt == 1
        # and m1 stopped acting (its lease ran out) and is a standby again
        wait_for(lambda: roles(client) == {"m1": "standby", "m2": "leader"}, what="m1 standby")
        log = (tmp_path / "manager.log").read_text()
        assert "no longer the leader" in log or "stopped acting" in log
        now = leader(client)
        assert now is not None and now.epoch > first.epoch
        # and m1 committed nothing to the state tables once m2 held the lease (m2's since,
        # on the database's clock), while m2 did
        with psycopg.connect(store) as db:
            took = db.execute("SELECT holder, since FROM leader").fetchone()
        assert took is not None and took[0] == "m2"
        assert writes_by(store, "m1", took[1]) == 0
        assert writes_by(store, "m2", took[1]) > 0
        # and no dispatch of m1's reached the worker after the takeover: the worker
        # refused none (m1 sent none) before the stale one below
        node = cluster.nodes[0]
        worker_log = tmp_path / f"{node}.log"
        assert "from a deposed manager" not in worker_log.read_text()
        # and a dispatch of m1's epoch reaching the worker now is refused (acked, dropped)
        stale = RunTask(task_id="stale-1", attempt=1, spec=spec("stale"), epoch=first.epoch)
        with amqp.Connection(host="127.0.0.1:5672", virtual_host=vhost.rsplit("/", 1)[1]) as c:
            c.channel().basic_publish(amqp.Message(encode(stale)), DISPATCH, node)
        wait_for(
            lambda: "refusing a run dispatch from a deposed manager" in worker_log.read_text(),
            what="the worker to refuse the stale dispatch",
        )
        assert "stale-1: starting" not in worker_log.read_text()


def test_a_manager_whose_store_connection_is_cut_reconnects_and_carries_on(
    vhost: str,
    tmp_path: Path,
    docker_client: docker.DockerClient,
    request: pytest.FixtureRequest,
    postgres_database: str,
) -> None:
    store = Stores("postgresql", postgres_database, tmp_path).new()
    workers = {"node-1": ("--runtime", "mock")}
    with (
        running_cluster(
            vhost, tmp_path, docker_client, request, workers, ("--name", "m1"), store=store
        ) as cluster,
        Client(Settings(amqp_url=vhost, request_timeout=30)) as client,
    ):
        before = [client.submit(spec(f"b{i}")) for i in range(5)]
        for task_id in before:
            client.wait(task_id, {TaskState.RUNNING}, timeout=30)
        first = leader(client)
        assert first is not None
        # when every connection of the manager to PostgreSQL is cut
        pid = cluster.procs["manager"].pid
        cut = cut_connections(postgres_database)
        assert cut >= 2  # the store's and the lease's
        # then it waits, reconnects, and carries on: a new task is placed and runs
        after = client.submit(spec("after"))
        client.wait(after, {TaskState.RUNNING}, timeout=30)
        now = leader(client)
        assert now is not None and now.name == "m1" and now.epoch == first.epoch + 1
        assert cluster.procs["manager"].pid == pid and cluster.procs["manager"].poll() is None
        # and nothing was lost or restarted
        for task_id in before:
            assert client.get(task_id).attempt == 1
        log = (tmp_path / "manager.log").read_text()
        assert "connection is lost" in log


def cut_connections(database_url: str) -> int:
    """Terminate every backend on the test database but this one (pg_terminate_backend)."""
    name = database_url.rsplit("/", 1)[1]
    with psycopg.connect(database_url, autocommit=True) as db:
        rows = db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        ).fetchall()
    return len(rows)


def test_kube_managers_lists_each_manager_with_its_role_and_epoch(
    vhost: str,
    tmp_path: Path,
    docker_client: docker.DockerClient,
    request: pytest.FixtureRequest,
    postgres_database: str,
) -> None:
    with two_managers(vhost, tmp_path, docker_client, request, postgres_database) as (
        cluster,
        client,
        _,
    ):
        shown = cluster.kube("managers")
        assert shown.returncode == 0, shown.stderr
        lines = shown.stdout.splitlines()
        assert lines[0].split()[:3] == ["NAME", "ROLE", "EPOCH"]
        assert lines[1].split()[:2] == ["m1", "leader"] and lines[2].split()[:3] == [
            "m2",
            "standby",
            "-",
        ]
        listed = json.loads(cluster.kube("managers", "--json").stdout)
        assert [(m["name"], m["role"]) for m in listed] == [("m1", "leader"), ("m2", "standby")]
        assert listed[0]["epoch"] >= 1 and listed[0]["since"] is not None


def test_a_manager_waits_out_a_store_outage_longer_than_its_lease_and_leads_again(
    vhost: str,
    tmp_path: Path,
    docker_client: docker.DockerClient,
    request: pytest.FixtureRequest,
    postgres_database: str,
) -> None:
    store = Stores("postgresql", postgres_database, tmp_path).new()
    host, port = "127.0.0.1", 5432
    assert f"@{host}:{port}/" in store
    workers = {"node-1": ("--runtime", "mock")}
    with relay(host, port) as link:
        through = store.replace(f"@{host}:{port}/", f"@{host}:{link.port}/")
        with (
            running_cluster(
                vhost, tmp_path, docker_client, request, workers, ("--name", "m1"), store=through
            ) as cluster,
            Client(Settings(amqp_url=vhost, request_timeout=10)) as client,
        ):
            before = [client.submit(spec(f"b{i}")) for i in range(5)]
            for task_id in before:
                client.wait(task_id, {TaskState.RUNNING}, timeout=30)
            first = leader(client)
            assert first is not None
            log = tmp_path / "manager.log"
            # when the link to PostgreSQL is cut for longer than the lease (5 s)
            link.cut()
            cut_at = time.monotonic()
            # then the manager stops acting, and waits for the store
            wait_for(lambda: "stopped acting" in log.read_text(), what="the manager to stop")
            wait_for(lambda: "waiting for the store" in log.read_text(), what="it to wait")
            submitted: list[str] = []
            asking = threading.Thread(
                target=lambda: submitted.append(
                    Client(Settings(amqp_url=vhost, request_timeout=60)).submit(spec("during"))
                )
            )
            asking.start()
            wait_for(lambda: time.monotonic() - cut_at > 8, what="an outage past the lease")
            # when the link is back
            link.mend()
            asking.join(timeout=60)
            assert submitted, "the submission made during the outage was not answered"
            # then it leads again at a newer epoch, and the task submitted meanwhile runs
            client.wait(submitted[0], {TaskState.RUNNING}, timeout=30)
            now = leader(client)
            assert now is not None and now.name == "m1" and now.epoch > first.epoch
            assert cluster.procs["manager"].poll() is None
            # and nothing was lost or restarted
            for task_id in before:
                assert client.get(task_id).attempt == 1
            (node,) = client.nodes()
            assert node.status.value == "ready"


def test_a_frozen_leader_is_replaced_within_a_few_leases(
    vhost: str,
    tmp_path: Path,
    docker_client: docker.DockerClient,
    request: pytest.FixtureRequest,
    postgres_database: str,
) -> None:
    with two_managers(vhost, tmp_path, docker_client, request, postgres_database) as (
        cluster,
        client,
        _,
    ):
        # given m1 leading
        first = leader(client)
        assert first is not None and first.name == "m1"
        # when m1 is frozen (SIGSTOP) and stays so, and a task is submitted
        m1 = cluster.procs["manager"]
        stopped_at = datetime.now(UTC)
        m1.send_signal(signal.SIGSTOP)
        try:
            with Client(Settings(amqp_url=vhost, request_timeout=60)) as patient:
                after = patient.submit(spec("frozen"))
                # then m2 places it once the broker dropped m1's connection (its lock):
                # the manager's heartbeat is 15 s (three leases), not the usual 30 s (~75 s)
                patient.wait(after, {TaskState.RUNNING}, timeout=90)
            at = placed_at(client, after)
            assert at is not None
            took = (at - stopped_at).total_seconds()
            print(f"SIGSTOP -> placement: {took:.2f}s")
            assert took < 60
        finally:
            m1.send_signal(signal.SIGCONT)
