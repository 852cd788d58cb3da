"""Blocked tasks wait for a change that could let them in; nothing else re-fits them."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from typing import Any

import pytest

from manager import core
from manager.blocked import Blocked
from manager.effects import Decision, Removal
from shared.bus import Delivery
from shared.models import NodeRecord, NodeStatus, TaskRecord, TaskSpec
from shared.placement import NoFitKind, Unplaced
from shared.states import TaskState
from tests.support.manager import NOW, manager_with_a_node, ready_node, submit

GI = 1024**3


def node(name: str = "n1", **fields: Any) -> NodeRecord:
    return ready_node(name, **fields)


def pending(task_id: str, **spec: Any) -> TaskRecord:
    made = TaskSpec.model_validate({"name": task_id, "image": "busybox", **spec})
    return core.accept(made, task_id, NOW).tasks[0]


def blocked_on(nodes: list[NodeRecord], tasks: list[TaskRecord]) -> Blocked:
    """An index that tried the tasks on the nodes (as a scheduling pass does) and found
    that none fits."""
    index = Blocked()
    index.rebuild(tasks, nodes)
    assert sorted(index.due(NOW)) == sorted(task.id for task in tasks)
    index.settle(tasks, Decision(), NOW)
    assert index.blocked == len(tasks)
    return index


def test_a_tick_with_nothing_changed_refits_nothing() -> None:
    # given 100 tasks of two shapes blocked on a full node
    full = node(allocated_cpu=4.0)
    tasks = [pending(f"t{i}", cpu=1 + i % 2) for i in range(100)]
    index = blocked_on([full], tasks)
    assert index.groups == 2
    # when the node is seen again as it was (a heartbeat: new time, new stats)
    index.observe(full.model_copy(update={"last_heartbeat": NOW + timedelta(seconds=2)}))
    # then no shape was checked and nothing is due
    assert index.checks == 0
    assert index.due(NOW + timedelta(seconds=2)) == []


def test_a_node_joining_wakes_exactly_the_shapes_it_can_take() -> None:
    # given tasks for 8 cpus and for 64 cpus, blocked on a 4-cpu node
    small = [pending(f"s{i}", cpu=8) for i in range(3)]
    huge = [pending(f"h{i}", cpu=64) for i in range(3)]
    index = blocked_on([node()], small + huge)
    # when a 16-cpu node joins
    index.observe(node("n2", cpus=16.0))
    # then the 8-cpu tasks are due, after one check per shape, and the others still wait
    assert sorted(index.due(NOW)) == ["s0", "s1", "s2"]
    assert index.checks == 2
    assert all(index.is_blocked(task.id) for task in huge)


def test_uncordoning_a_node_wakes_what_fits_there() -> None:
    cordoned = node(schedulable=False)
    index = blocked_on([cordoned], [pending("a", cpu=1)])
    index.observe(cordoned)  # unchanged: still cordoned
    assert index.due(NOW) == []
    index.observe(cordoned.model_copy(update={"schedulable": True}))
    assert index.due(NOW) == ["a"]


def test_a_node_coming_back_or_its_engine_returning_wakes_what_fits() -> None:
    down = node("n1", status=NodeStatus.DOWN)
    no_engine = node("n2", engine_ok=False)
    index = blocked_on([down, no_engine], [pending("a", cpu=1)])
    index.observe(no_engine.model_copy(update={"engine_ok": True}))
    assert index.due(NOW) == ["a"]
    index.settle([pending("a", cpu=1)], Decision(), NOW)  # say it did not fit after all
    index.observe(down.model_copy(update={"status": NodeStatus.READY}))
    assert index.due(NOW) == ["a"]


def test_capacity_freeing_wakes_only_the_shapes_that_now_fit() -> None:
    # given a node with 1 of 4 cpus free, tasks for 2 cpus and for 8 cpus blocked
    busy = node(allocated_cpu=3.0, task_count=3)
    index = blocked_on([busy], [pending("two", cpu=2), pending("eight", cpu=8)])
    # when a task there ends and frees 2 cpus
    index.observe(busy.model_copy(update={"allocated_cpu": 1.0, "task_count": 2}))
    # then only the 2-cpu task is due
    assert index.due(NOW) == ["two"]
    assert index.is_blocked("eight")


def test_capacity_shrinking_checks_nothing() -> None:
    free = node(allocated_cpu=1.0)
    index = blocked_on([free], [pending("eight", cpu=8)])
    index.observe(free.model_copy(update={"allocated_cpu": 3.0, "task_count": 1}))
    assert index.checks == 0


def test_a_label_change_wakes_the_shapes_whose_constraints_now_hold() -> None:
    # given tasks constrained to zone b and to zone c, blocked on a node in zone a
    zone_a = node(labels={"zone": "a"})
    b = [pending(f"b{i}", constraints={"zone": "b"}) for i in range(2)]
    c = [pending("c0", constraints={"zone": "c"})]
    index = blocked_on([zone_a], b + c)
    # when the node's labels change to zone b
    index.observe(zone_a.model_copy(update={"labels": {"zone": "b"}}))
    # then the zone-b tasks are due and the zone-c one still waits
    assert sorted(index.due(NOW)) == ["b0", "b1"]
    assert index.is_blocked("c0")


def test_a_backoff_is_tried_when_its_time_comes_and_not_before() -> None:
    later = NOW + timedelta(seconds=5)
    restarting = pending("r").model_copy(update={"not_before": later})
    index = Blocked()
    index.rebuild([restarting], [node()])
    assert index.due(NOW) == []
    assert index.due(later) == ["r"]
    assert index.due(later) == []  # taken


def test_a_task_that_stops_waiting_is_forgotten() -> None:
    task = pending("gone", cpu=64)
    index = blocked_on([node()], [task])
    stopped = task.model_copy(update={"state": TaskState.COMPLETED})
    index.record(Decision(tasks=[stopped]), lambda name: None)
    assert index.blocked == 0 and index.groups == 0
    index.observe(node("n9", cpus=128.0))
    assert index.due(NOW) == []


def test_a_reset_index_is_rebuilt_from_what_is_pending() -> None:
    # given an index that blocked a task, then was reset
    index = blocked_on([node()], [pending("a", cpu=64)])
    index.reset()
    assert index.stale
    # when it is rebuilt: "a" and "b" were found to fit nowhere, "c" and "d" were not tried
    why = Unplaced(kind=NoFitKind.INSUFFICIENT_CPU)
    tried = [
        pending(i, cpu=cpu).model_copy(update={"unplaced": why}) for i, cpu in [("a", 64), ("b", 8)]
    ]
    untried = [pending("c", cpu=64), pending("d", cpu=1)]
    index.rebuild(tried + untried, [node(), node("n2", cpus=16.0)])
    # then the untried are due, and of the others the one that fits a node now
    assert sorted(index.due(NOW)) == ["b", "c", "d"]
    assert index.is_blocked("a")


# -- in the manager ----------------------------------------------------------------------


def big(tag: int, task_id: str, cpu: float) -> Delivery:
    """The submit of a task for `cpu` cores."""
    spec = {"id": task_id, "name": task_id, "image": "busybox", "cpu": cpu}
    return dataclasses.replace(submit(tag, task_id), body=json.dumps(spec).encode())


@pytest.fixture
def refits(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ids of the tasks every scheduling pass is given, in order."""
    given: list[str] = []
    schedule = core.schedule

    def counting(tasks: list[TaskRecord], *args: Any, **kwargs: Any) -> Decision:
        given.extend(task.id for task in tasks)
        return schedule(tasks, *args, **kwargs)

    monkeypatch.setattr(core, "schedule", counting)
    return given


def test_ticks_do_not_refit_tasks_that_fit_nowhere(store_url: str, refits: list[str]) -> None:
    # given a manager with one 4-cpu node and 50 tasks for 64 cpus, each tried on submit
    manager, _ = manager_with_a_node(store_url)
    manager.schedule_pending()  # the index learns what is pending
    for i in range(50):
        manager.commands.on_command(big(i, f"big{i}", 64))
    manager.finish_batch()
    assert len(refits) == 50
    assert {t.state for t in manager.store.tasks()} == {TaskState.PENDING}
    # when the manager ticks, again and again
    for _ in range(5):
        manager.tick()
    # then none of them was fitted again
    assert len(refits) == 50


def test_a_node_that_can_take_them_places_the_blocked_tasks(
    store_url: str, refits: list[str]
) -> None:
    # given two tasks for 8 cpus blocked on a 4-cpu node
    manager, _ = manager_with_a_node(store_url)
    manager.schedule_pending()
    for i in range(2):
        manager.commands.on_command(big(i, f"b{i}", 8))
    manager.finish_batch()
    # when a 16-cpu node joins, and the manager ticks
    manager.commit(Decision(nodes=[node("n2", cpus=16.0)]))
    manager.tick()
    # then both run there, each fitted once more
    placed = {t.id: t.node for t in manager.store.tasks()}
    assert placed == {"b0": "n2", "b1": "n2"}
    assert refits == ["b0", "b1", "b0", "b1"]


def test_after_a_reset_the_index_is_rebuilt_from_the_store(
    store_url: str, refits: list[str]
) -> None:
    # given two tasks for 64 cpus and one for 8, blocked on a 4-cpu node
    manager, _ = manager_with_a_node(store_url)
    manager.schedule_pending()
    for i, cpu in enumerate((64, 64, 8)):
        manager.commands.on_command(big(i, f"r{i}", cpu))
    manager.finish_batch()
    assert refits == ["r0", "r1", "r2"]
    # when the index is reset (a delivery's writes were rolled back) while a 16-cpu node
    # joins, and the manager ticks twice
    manager.blocked.reset()
    manager.commit(Decision(nodes=[node("n2", cpus=16.0)]))
    manager.tick()
    manager.tick()
    # then the index was rebuilt from the store: the 8-cpu task was woken by the node and
    # placed there, and the others were left alone, not fitted again
    assert refits == ["r0", "r1", "r2", "r2"]
    placed = manager.store.task("r2")
    assert placed is not None and placed.node == "n2"
    assert manager.blocked.blocked == 2


def test_a_pending_task_the_index_missed_makes_it_rebuild(
    store_url: str, refits: list[str]
) -> None:
    # given a task blocked on a 4-cpu node
    manager, _ = manager_with_a_node(store_url)
    manager.schedule_pending()
    manager.commands.on_command(big(0, "known", 64))
    manager.finish_batch()
    # when the store holds a pending task the index never heard of (as when a placement
    # is rolled back and nobody says so)
    missed = pending("missed", cpu=1)
    manager.store.record(Decision(tasks=[missed]))
    manager.tick()
    # then the index was rebuilt from the store and the missed task placed
    placed = manager.store.task("missed")
    assert placed is not None and placed.state == TaskState.SCHEDULED
    assert refits == ["known", "missed"]


def test_a_removed_node_is_forgotten_and_counts_as_new_if_it_joins_again() -> None:
    # given a task blocked on a down node
    down = node(status=NodeStatus.DOWN)
    index = blocked_on([down], [pending("a", cpu=1)])
    # when the node is removed (kube rm) and a node of that name joins again
    index.record(Decision(removed=Removal(nodes=["n1"])), lambda name: None)
    index.observe(node())
    # then the task is due
    assert index.due(NOW) == ["a"]
