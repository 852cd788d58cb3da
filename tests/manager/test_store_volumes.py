"""The store's volumes (docs/volumes.md), on each engine (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from manager import core
from manager.effects import Decision, Removal
from manager.scheduler import RoundRobin
from manager.store import Store
from shared.models import NodeRecord, NodeStatus, TaskSpec
from shared.states import TaskState
from shared.volumes import VolumeRecord

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def _node(name: str) -> NodeRecord:
    return NodeRecord(
        name=name, status=NodeStatus.READY, cpus=4, memory=1024**3, disk=1024**3, last_heartbeat=NOW
    )


def _db(task_id: str) -> Decision:
    spec = TaskSpec.model_validate(
        {"name": "db", "image": "busybox", "volumes": [{"name": "pgdata", "target": "/d"}]}
    )
    return core.accept(spec, task_id, NOW)


def test_a_volume_is_recorded_with_its_first_placement_and_kept(store_url: str) -> None:
    # given a store with two nodes, and a task naming a new volume placed on one
    store = Store(store_url)
    store.record(Decision(nodes=[_node("node-1"), _node("node-2")]))
    accepted = _db("t1")
    placed = core.schedule(accepted.tasks, store.nodes(), RoundRobin(), NOW)
    store.record(accepted.extend(placed))
    node = placed.tasks[-1].node
    assert node is not None
    # when a second decision records the same volume elsewhere (a stale view), and the
    # store is opened again
    late = VolumeRecord(name="pgdata", node="other", created_at=NOW + timedelta(hours=1))
    store.record(Decision(volumes=[late]))
    store.close()
    store = Store(store_url)
    # then the first record stands, with the task that uses it
    assert store.volume_holders(["pgdata", "unknown"]) == {"pgdata": node}
    assert store.volumes() == [
        VolumeRecord(name="pgdata", node=node, created_at=NOW, used_by=("t1",))
    ]
    store.close()


def test_an_ended_task_does_not_use_its_volume_and_a_removal_forgets_it(store_url: str) -> None:
    # given a volume whose only task has ended
    store = Store(store_url)
    store.record(Decision(nodes=[_node("node-1")]))
    accepted = _db("t1")
    placed = core.schedule(accepted.tasks, store.nodes(), RoundRobin(), NOW)
    store.record(accepted.extend(placed))
    task = placed.tasks[-1]
    store.record(core.move(task, TaskState.FAILED, NOW))
    # then it is listed as used by none
    assert store.volumes()[0].used_by == ()
    # when it is removed
    store.record(Decision(removed=Removal(volumes=["pgdata"])))
    # then it is gone
    assert store.volumes() == [] and store.volume_holders(["pgdata"]) == {}
    store.close()
