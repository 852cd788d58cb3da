"""The manager's handling of heartbeats sent in parts."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from manager import core, nodes
from manager.effects import Decision
from manager.scheduler import RoundRobin
from shared import messages
from shared.codec import encode
from shared.messages import Heartbeat, HeldTask
from shared.models import NodeStatus, TaskSpec
from shared.states import TaskState
from tests.support.manager import NOW, events, manager_with_a_node, result


def test_a_heartbeat_in_parts_keeps_the_node_and_ends_only_what_no_part_lists(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a manager with t1, t2 and t3 running on n1
    manager, bus = manager_with_a_node(store_url)
    for task_id in ("t1", "t2", "t3"):
        accepted = core.accept(TaskSpec(name=task_id, image="b"), task_id, NOW)
        placed = core.schedule(accepted.tasks, manager.store.nodes(), RoundRobin(), NOW)
        running = core.move(placed.tasks[-1], TaskState.RUNNING, NOW)
        manager.commit(accepted.extend(placed).extend(running))
    # when n1's heartbeat, two seconds later, lists t1 and t2, one container a part
    monkeypatch.setattr(messages, "HELD_PER_PART", 1)
    later = NOW + timedelta(seconds=2)
    manager.clock = lambda: later
    beat = Heartbeat(node="n1", at=later, cpus=4, memory=1024**3, disk=1024**3, inventory=True)
    held = [
        HeldTask(task_id=t, attempt=1, state=TaskState.RUNNING, container_id="c")
        for t in ("t1", "t2")
    ]
    first, second = beat.in_parts(held)
    manager.on_result(result(1, encode(first)))
    # then the first part says the node is alive, and ends nothing: the list is not whole
    node = manager.store.node("n1")
    assert node is not None and node.status == NodeStatus.READY and node.last_heartbeat == later
    assert [t.id for t in manager.store.tasks([TaskState.RUNNING])] == ["t1", "t2", "t3"]
    # and once the second is in, t3, which no part lists, has its attempt ended
    manager.on_result(result(2, encode(second)))
    assert [t.id for t in manager.store.tasks([TaskState.RUNNING])] == ["t1", "t2"]
    ended = manager.store.task("t3")
    assert ended is not None and "disappeared" in (ended.error or "")
    # and the node's heartbeat was announced once, not once a part
    manager.finish_batch()
    assert [key for kind, key in events(bus) if kind == "publish"].count("node.heartbeat") == 1
    assert [tag for kind, tag in events(bus) if kind == "ack"] == [1, 2]
    manager.store.close()


def test_a_redelivered_heartbeat_ends_no_attempt_it_does_not_list(store_url: str) -> None:
    # given t1 running on n1, its `running` report committed by a manager killed before
    # it acked the heartbeat n1 sent before starting t1
    manager, _ = manager_with_a_node(store_url)
    accepted = core.accept(TaskSpec(name="t1", image="b"), "t1", NOW)
    placed = core.schedule(accepted.tasks, manager.store.nodes(), RoundRobin(), NOW)
    manager.commit(
        accepted.extend(placed).extend(core.move(placed.tasks[-1], TaskState.RUNNING, NOW))
    )
    later = NOW + timedelta(seconds=1)
    manager.clock = lambda: later
    stale = Heartbeat(node="n1", at=later, cpus=4, memory=1024**3, disk=1024**3, inventory=True)
    # when that heartbeat, listing nothing, is redelivered to the next leader
    manager.on_result(replace(result(1, encode(stale)), redelivered=True))
    # then t1 still runs its first attempt, while the node is heard
    task = manager.store.task("t1")
    assert task is not None and task.state == TaskState.RUNNING and task.attempt == 1
    node = manager.store.node("n1")
    assert node is not None and node.last_heartbeat == later
    # and a newer list delivered fresh does end it
    newer = stale.model_copy(update={"at": later + timedelta(seconds=1)})
    manager.on_result(result(2, encode(newer)))
    ended = manager.store.task("t1")
    assert ended is not None and "disappeared" in (ended.error or "")


def test_a_heartbeat_older_than_one_already_heard_ends_nothing(store_url: str) -> None:
    # given t1 placed on n1, and n1's heartbeat from before t1 started (it lists nothing)
    manager, _ = manager_with_a_node(store_url)
    accepted = core.accept(TaskSpec(name="t1", image="b"), "t1", NOW)
    placed = core.schedule(accepted.tasks, manager.store.nodes(), RoundRobin(), NOW)
    manager.commit(accepted.extend(placed))
    later = NOW + timedelta(seconds=2)
    manager.clock = lambda: later
    old = Heartbeat(node="n1", at=later, cpus=4, memory=1024**3, disk=1024**3, inventory=True)
    manager.on_result(result(1, encode(old)))
    # and then t1's start reported
    manager.commit(core.move(manager.store.task("t1"), TaskState.RUNNING, later))  # type: ignore[arg-type]
    # when that heartbeat comes again (redelivered after a lost ack, or published again
    # after a lost confirm), behind the report it preceded
    manager.on_result(result(2, encode(old)))
    # then t1 runs on: a heartbeat older than the start it did not list proves nothing
    assert [t.id for t in manager.store.tasks([TaskState.RUNNING])] == ["t1"]
    # and a newer heartbeat that does not list it still ends its attempt
    newer = old.model_copy(update={"at": later + timedelta(seconds=1)})
    manager.on_result(result(3, encode(newer)))
    ended = manager.store.task("t1")
    assert ended is not None and "disappeared" in (ended.error or "")
    manager.store.close()


def test_a_node_that_comes_back_has_its_stale_copies_stopped_and_written_once_to_history(
    store_url: str,
) -> None:
    # given t1 placed again on n2 after n1, which ran its attempt 1, was found down
    manager, _ = manager_with_a_node(store_url)
    accepted = core.accept(TaskSpec(name="t1", image="b"), "t1", NOW)
    placed = core.schedule(accepted.tasks, manager.store.nodes(), RoundRobin(), NOW)
    running = core.move(placed.tasks[-1], TaskState.RUNNING, NOW)
    manager.commit(accepted.extend(placed).extend(running))
    n1 = manager.store.node("n1")
    assert n1 is not None
    lost = nodes.node_lost("n1", [running.tasks[-1]], NOW)
    manager.commit(lost.extend(Decision(nodes=[n1.model_copy(update={"status": NodeStatus.DOWN})])))
    moved = lost.tasks[-1].model_copy(
        update={"state": TaskState.RUNNING, "node": "n2", "attempt": 2}
    )
    manager.commit(Decision(tasks=[moved]))
    before = len(manager.store.events("t1"))
    # when n1 comes back, still running attempt 1, and beats twice
    for tag, seconds in ((1, 30), (2, 32)):
        later = NOW + timedelta(seconds=seconds)
        manager.clock = lambda later=later: later  # type: ignore[misc]
        held = (HeldTask(task_id="t1", attempt=1, state=TaskState.RUNNING, container_id="c"),)
        beat = Heartbeat(
            node="n1", at=later, cpus=4, memory=1024**3, disk=1024**3, inventory=True, tasks=held
        )
        manager.on_result(result(tag, encode(beat)))
    # then the task's history says once that the stale copy was stopped when n1 came back
    added = manager.store.events("t1")[before:]
    assert [(e.state, e.attempt, e.node, e.superseded) for e in added] == [
        (TaskState.LOST, 1, "n1", True)
    ]
    assert added[0].at == NOW + timedelta(seconds=30)
    # and the task itself did not change
    task = manager.store.task("t1")
    assert task is not None and (task.node, task.attempt) == ("n2", 2)
    manager.store.close()
