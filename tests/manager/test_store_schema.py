"""The store's schema has a version: an older database is upgraded in place, whole or
not at all, and a newer one is refused (manager/store/schema.py)."""

from __future__ import annotations

import shutil
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from manager import core
from manager.effects import Decision
from manager.scheduler import RoundRobin
from manager.store import Store, connect, schema
from manager.store.base import Database
from shared.errors import StoreError
from shared.models import TaskRecord, TaskSpec
from shared.states import TaskState
from tests.support.manager import ready_node

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
FIXTURE = Path(__file__).parent / "fixtures" / "store-5aa63bf.db"
"""A database written by kube at commit 5aa63bf, before versions were recorded: nodes n1
and n2, a service, tasks t1 (running on n1), t2 (completed) and t3 (pending), their
events, and four unconfirmed outbox messages (the last one's body is bytes 00 ff)."""


def set_version(url: str, version: int) -> None:
    db = connect(url)
    db.begin()
    db.set_schema_version(version)
    db.execute("COMMIT")
    db.close()


def test_a_database_written_by_kube_5aa63bf_is_upgraded_in_place_and_reads_back(
    tmp_path: Path,
) -> None:
    # given the file kube 5aa63bf wrote, which records no version
    path = tmp_path / "manager.db"
    shutil.copy(FIXTURE, path)
    with sqlite3.connect(path) as old:
        assert old.execute("PRAGMA user_version").fetchone() == (0,)
    # when today's kube opens it
    store = Store(path)
    # then it is at today's version, and every row reads back
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (schema.VERSION,)
    tasks = {t.id: t for t in store.tasks()}
    assert {i: t.state for i, t in tasks.items()} == {
        "t1": TaskState.RUNNING,
        "t2": TaskState.COMPLETED,
        "t3": TaskState.PENDING,
    }
    assert [e.state for e in store.events("t2")] == [
        TaskState.PENDING,
        TaskState.SCHEDULED,
        TaskState.RUNNING,
        TaskState.COMPLETED,
    ]
    assert [s.name for s in store.services()] == ["web"]
    n1, n2 = store.nodes()
    assert (n1.name, n1.allocated_cpu, n1.allocated_memory, n1.task_count) == (
        "n1",
        0.5,
        64 << 20,
        1,
    )
    assert (n2.name, n2.task_count) == ("n2", 0)
    outbox = [o for _, o in store.outbox()]
    assert [o.routing_key for o in outbox] == [
        "task.running",
        "task.completed",
        "task.pending",
        "x.binary",
    ]
    assert outbox[-1].body == b"\x00\xff"
    # and what the upgrade filled in from the records is what they say
    assert store.where(["t1", "t2", "t3"]) == {"t1": store.where(["t1"])["t1"]}
    assert store.where(["t1"])["t1"].attempt == 1 and store.running_on("n1") == {"t1": 1}
    assert store.ended(10) == (1, [tasks["t2"]])
    assert store.count(TaskState.PENDING) == 1
    made = store.cluster_id
    store.close()
    # and it opens again as it is, with nothing quarantined and its cluster id kept
    store = Store(path)
    assert len(store.tasks()) == 3 and store.quarantined() == []
    assert store.cluster_id == made
    store.close()


def test_a_database_newer_than_this_kube_is_refused_and_left_alone(store_url: str) -> None:
    # given a database a newer kube wrote
    Store(store_url).close()
    set_version(store_url, schema.VERSION + 1)
    # when this kube opens it, then it is refused, saying why
    with pytest.raises(StoreError, match="newer than this kube's") as refused:
        Store(store_url)
    assert f"schema version {schema.VERSION + 1}" in str(refused.value)
    # and the database is as it was
    assert connect(store_url).schema_version() == schema.VERSION + 1


def test_an_upgrade_that_fails_leaves_the_database_as_it_was(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a database at today's version, holding a task
    store = Store(store_url)
    store.record(core.accept(TaskSpec(name="a", image="b"), "t1", NOW))
    store.close()

    # when a later kube's upgrade fails half-way through its step
    def half_way(db: Database) -> None:
        db.execute("ALTER TABLE tasks ADD COLUMN later TEXT")
        db.execute("DELETE FROM tasks")
        raise StoreError("the step failed")

    monkeypatch.setattr(schema, "STEPS", [*schema.STEPS, half_way])
    monkeypatch.setattr(schema, "VERSION", schema.VERSION + 1)
    with pytest.raises(StoreError, match="the step failed"):
        Store(store_url)
    # then none of it happened
    db = connect(store_url)
    assert db.schema_version() == schema.VERSION - 1
    assert "later" not in db.columns("tasks")
    assert db.query("SELECT id FROM tasks") == [("t1",)]
    db.close()


def test_a_record_spoiled_by_hand_is_quarantined_on_either_engine(store_url: str) -> None:
    # given two tasks, one of whose records is then rewritten by hand to a bad one
    store = Store(store_url)
    decision = core.accept(TaskSpec(name="a", image="b"), "t1", NOW)
    store.record(decision.extend(core.accept(TaskSpec(name="a", image="b"), "t2", NOW)))
    store.close()
    bad = (
        TaskRecord.model_validate(decision.tasks[-1])
        .model_dump_json()
        .replace('"cpu":0.0', '"cpu":-1')
    )
    db = connect(store_url)
    db.execute("UPDATE tasks SET record = ? WHERE id = 't2'", (bad,))
    db.close()
    # when the manager opens it and reads its tasks
    store = Store(store_url)
    # then the spoiled one is set aside, saying why, and the other reads
    assert [t.id for _, t in store.tasks_page(None, 10)] == ["t1"]
    ((table, key, why),) = store.quarantined()
    assert (table, key) == ("tasks", "t2") and "cpu" in why
    store.close()


def test_a_task_whose_command_holds_nul_is_kept_as_it_was_given(store_url: str) -> None:
    store = Store(store_url)
    store.record(core.accept(TaskSpec(name="a", image="b", command=["a\x00b"]), "t1", NOW))
    store.close()
    store = Store(store_url)
    task = store.task("t1")
    assert task is not None and task.spec.command == ("a\x00b",)
    store.close()


def test_managers_opening_a_new_database_at_once_make_it_once(store_url: str) -> None:
    # given an empty database, when four managers open it at the same moment
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def open_it() -> None:
        start.wait()
        try:
            Store(store_url).close()
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    # then each opened it, and it is made once, at today's version
    assert errors == []
    db = connect(store_url)
    assert db.schema_version() == schema.VERSION
    assert "not_before" in db.columns("tasks")
    db.close()


def test_a_database_at_version_2_learns_the_host_ports_its_tasks_hold(tmp_path: Path) -> None:
    # given a version 2 database (before host ports were a column) with a task on n1
    # holding host ports 8080 and 9090
    path = tmp_path / "m.db"
    store = Store(path)
    store.record(Decision(nodes=[ready_node("n1")]))
    ports = [{"container": 80, "host": 9090}, 81, {"container": 82, "host": 8080}]
    spec = TaskSpec.model_validate({"name": "web", "image": "b", "ports": ports})
    accepted = core.accept(spec, "t1", NOW).tasks
    store.record(core.schedule(accepted, store.nodes(), RoundRobin(), NOW))
    store.close()
    with sqlite3.connect(path) as db:
        db.execute("ALTER TABLE tasks DROP COLUMN host_ports")
        db.execute("PRAGMA user_version = 2")
    # when today's kube opens it, then n1 holds both ports, as the task's record says
    store = Store(path)
    assert store.nodes()[0].reserved_ports == (8080, 9090)
    store.close()
