"""Ended tasks are purged past a count or an age, as `kube rm` would (issue 12: a store
and lists that grow for ever)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from manager import core
from manager.retention import Retention
from manager.server import Manager
from manager.store import Store
from shared import topology
from shared.models import TaskSpec
from shared.states import TaskState
from tests.support.commands import bus_of, report, send, sleeper, stand_in_manager
from tests.support.manager import NOW


@pytest.fixture
def manager(store_url: str) -> Iterator[Manager]:
    yield from stand_in_manager(store_url)


def finish(manager: Manager, count: int) -> list[str]:
    """Run `count` tasks on n1 to completion, one after another; their ids."""
    ids = []
    for i in range(count):
        task_id = send(manager, topology.SUBMIT_KEY, sleeper(f"job{i}"), tag=10 + i)["id"]
        task = manager.store.task(task_id)
        assert task is not None
        report(manager, task, TaskState.RUNNING, tag=100 + 2 * i)
        report(manager, task, TaskState.COMPLETED, tag=101 + 2 * i)
        ids.append(task_id)
    return ids


def test_past_the_count_the_tasks_that_ended_first_are_purged(manager: Manager) -> None:
    # given five ended tasks and one still running, and a manager that keeps two ended
    ended = finish(manager, 5)
    running = send(manager, topology.SUBMIT_KEY, sleeper("web"), tag=50)["id"]
    manager.config = replace(manager.config, retention=Retention(keep=2))
    bus_of(manager).published.clear()
    # when it purges
    manager.purge_ended()
    manager.finish_batch()
    # then the three that ended first are gone, as if removed, and nothing else
    assert [t.id for t in manager.store.tasks()] == [*ended[3:], running]
    assert bus_of(manager).routing_keys().count("task.removed") == 3
    assert bus_of(manager).routing_keys().count("n1") == 3  # their kept containers


def test_past_the_age_ended_tasks_are_purged_however_few(manager: Manager) -> None:
    ended = finish(manager, 2)
    manager.config = replace(manager.config, retention=Retention(keep_for=timedelta(hours=1)))
    manager.clock = lambda: NOW + timedelta(hours=2)
    manager.purge_ended()
    manager.finish_batch()
    assert all(manager.store.task(i) is None for i in ended)


def test_within_the_bounds_nothing_is_purged(manager: Manager) -> None:
    ended = finish(manager, 2)
    manager.purge_ended()
    manager.finish_batch()
    assert [t.id for t in manager.store.tasks()] == ended


def test_a_store_made_before_purging_learns_when_its_tasks_ended(tmp_path: Path) -> None:
    # given a database of a kube before `ended_at`: its tasks table lacks the column
    path = tmp_path / "old.db"
    store = Store(path)
    decision = core.accept(TaskSpec(name="a", image="b"), "t1", NOW)
    ended = NOW + timedelta(days=1)
    decision.extend(core.move(decision.tasks[-1], TaskState.COMPLETED, ended))
    store.record(decision)
    store.close()
    with sqlite3.connect(path) as db:  # as a kube before versions and ended_at wrote it
        db.execute("DROP INDEX tasks_by_end")
        first = {"id", "name", "state", "node", "cpu", "memory", "disk", "created_at", "record"}
        for row in db.execute("PRAGMA table_info(tasks)").fetchall():
            if row[1] not in first:  # ended_at, and what versions added since
                db.execute(f"ALTER TABLE tasks DROP COLUMN {row[1]}")
        db.execute("PRAGMA user_version = 0")
    # when today's kube opens it
    store = Store(path)
    # then the ended task is found, with the time it ended
    count, oldest = store.ended(10)
    assert count == 1 and [t.id for t in oldest] == ["t1"]
    with sqlite3.connect(path) as db:
        ((ended_at,),) = db.execute("SELECT ended_at FROM tasks").fetchall()
    assert ended_at == ended.isoformat()
    store.close()
