"""The SQLite store's own guard: rows that are not JSON at all are set aside at start
(PostgreSQL's json columns never hold one: manager/store/postgres.py)."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from manager import core
from manager.effects import Decision
from manager.store import Store
from shared.models import NodeRecord, NodeStatus, TaskRecord, TaskSpec

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def test_an_unreadable_row_is_quarantined_and_the_manager_still_starts(tmp_path: Path) -> None:
    # given a store whose rows were written by a kube that checked less (a NaN, a naive time)
    store = Store(tmp_path / "m.db")
    good = NodeRecord(
        name="n1", status=NodeStatus.READY, cpus=4, memory=1024, disk=1024, last_heartbeat=NOW
    )
    decision = core.accept(TaskSpec(name="a", image="b"), "t1", NOW)
    decision.extend(core.accept(TaskSpec(name="a", image="b"), "t2", NOW))
    store.record(decision.extend(Decision(nodes=[good])))
    store.close()
    bad_node = good.model_dump(mode="json") | {"name": "n2", "cpus": float("nan")}
    bad_task = (store_task := TaskRecord.model_validate(decision.tasks[1])).model_dump(
        mode="json"
    ) | {"created_at": "2026-11-26T12:00:00"}
    with sqlite3.connect(tmp_path / "m.db") as db:
        db.execute(
            "INSERT INTO nodes (name, record) VALUES ('n2', ?)",
            (json.dumps(bad_node, allow_nan=True),),
        )
        db.execute(
            "UPDATE tasks SET record = ? WHERE id = ?", (json.dumps(bad_task), store_task.id)
        )
    # when the manager opens it and lists what it holds
    store = Store(tmp_path / "m.db")
    # then it starts, the bad rows are set aside with their reasons, and the rest reads
    assert [n.name for n in store.nodes()] == ["n1"]
    assert [t.id for t in store.tasks()] == ["t1"]
    assert store.task("t2") is None
    quarantined = store.quarantined()
    assert [(table, key) for table, key, _ in quarantined] == [("nodes", "n2"), ("tasks", "t2")]
    assert "not JSON" in quarantined[0][2] and "timezone" in quarantined[1][2]
    store.close()
    # and it opens again cleanly: nothing is quarantined twice
    store = Store(tmp_path / "m.db")
    assert len(store.quarantined()) == 2
    store.close()


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ("UPDATE tasks SET record = replace(record, '\"cpu\":0.0', '\"cpu\":NaN')", "not JSON"),
        ("UPDATE tasks SET record = '{not json'", "not JSON"),
        ("UPDATE tasks SET record = x'ff00'", "not JSON"),
        ("UPDATE tasks SET record = json_set(record, '$.spec.cpu', 9e999)", "not JSON"),
        ("UPDATE tasks SET record = json_set(record, '$.spec.cpu', -1)", "cpu"),
        ("UPDATE tasks SET record = json_set(record, '$.id', 'other')", "names id 'other'"),
    ],
)
def test_a_task_row_spoiled_by_hand_is_quarantined_at_start(
    tmp_path: Path, sql: str, why: str
) -> None:
    # given a store with two tasks, one of whose rows is then spoiled by hand
    store = Store(tmp_path / "m.db")
    decision = core.accept(TaskSpec(name="a", image="b"), "t1", NOW)
    store.record(decision.extend(core.accept(TaskSpec(name="a", image="b"), "t2", NOW)))
    store.close()
    with sqlite3.connect(tmp_path / "m.db") as db:
        db.execute(f"{sql} WHERE id = 't2'")
    # when the manager opens it and lists its tasks a page at a time
    store = Store(tmp_path / "m.db")
    page = store.tasks_page(None, 10)
    # then it starts, the spoiled row is set aside saying why, and the rest reads
    assert [task.id for _, task in page] == ["t1"]
    assert [key for _, key, _ in store.quarantined()] == ["t2"]
    assert why in store.quarantined()[0][2]
    store.close()
