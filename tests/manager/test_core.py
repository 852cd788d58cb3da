"""The manager's pure decisions, without a broker or a database."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from manager import core
from manager.scheduler import RoundRobin
from shared import topology
from shared.messages import Heartbeat, TaskUpdate
from shared.models import NodeRecord, NodeStatus, TaskRecord, TaskSpec
from shared.states import TaskState

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
SPEC = TaskSpec(name="web", image="busybox", cpu=1.0, memory=64 * 1024**2)


def node(name: str, cpus: float = 2.0, status: NodeStatus = NodeStatus.READY) -> NodeRecord:
    return NodeRecord(
        name=name, status=status, cpus=cpus, memory=1024**3, disk=10 * 1024**3, last_heartbeat=NOW
    )


def pending() -> TaskRecord:
    return core.accept(SPEC, "t1", NOW).tasks[0]


def placed(state: TaskState = TaskState.RUNNING) -> TaskRecord:
    task = core.schedule([pending()], [node("n1")], RoundRobin(), NOW).tasks[-1]
    return task.model_copy(update={"state": state})


def update(
    state: TaskState, attempt: int = 1, node_name: str = "n1", **fields: object
) -> TaskUpdate:
    return TaskUpdate(node=node_name, task_id="t1", attempt=attempt, state=state, at=NOW, **fields)


def test_accept_makes_a_pending_task_and_announces_it() -> None:
    decision = core.accept(SPEC, "t1", NOW)
    assert decision.tasks[0].state == TaskState.PENDING and decision.tasks[0].spec.id == "t1"
    assert [o.routing_key for o in decision.outgoing] == ["task.pending"]


def test_schedule_places_dispatches_and_announces() -> None:
    decision = core.schedule([pending()], [node("n1")], RoundRobin(), NOW)
    task = decision.tasks[-1]
    assert (task.state, task.node, task.attempt) == (TaskState.SCHEDULED, "n1", 1)
    dispatch = next(o for o in decision.outgoing if o.exchange == topology.DISPATCH)
    assert dispatch.routing_key == "n1"
    assert json.loads(dispatch.body) | {"spec": None} == {
        "kind": "run",
        "task_id": "t1",
        "attempt": 1,
        "spec": None,
    }


def test_schedule_never_overcommits_within_one_batch() -> None:
    tasks = [pending().model_copy(update={"id": f"t{i}"}) for i in range(3)]
    decision = core.schedule(tasks, [node("n1", cpus=2.0)], RoundRobin(), NOW)
    states = {t.id: t.state for t in decision.tasks}
    assert list(states.values()).count(TaskState.SCHEDULED) == 2
    assert "no node can take" in (decision.tasks[-1].error or "")


def test_no_node_leaves_the_task_pending_with_a_reason() -> None:
    decision = core.schedule([pending()], [], RoundRobin(), NOW)
    assert decision.tasks[0].state == TaskState.PENDING
    assert decision.tasks[0].error == "no worker has joined yet"
    assert not decision.outgoing


def test_running_update_records_container_and_ports() -> None:
    task = placed(TaskState.SCHEDULED)
    decision = core.apply_update(
        task, update(TaskState.RUNNING, container_id="c1", host_ports={"8080": 32768}), NOW
    )
    moved = decision.tasks[0]
    assert (moved.state, moved.container_id, moved.host_ports) == (
        TaskState.RUNNING,
        "c1",
        {"8080": 32768},
    )
    assert decision.events[0][1].state == TaskState.RUNNING


def test_a_repeated_update_changes_nothing() -> None:
    assert core.apply_update(placed(), update(TaskState.RUNNING), NOW).empty


def test_an_update_that_breaks_the_table_is_refused() -> None:
    done = placed(TaskState.COMPLETED)
    decision = core.apply_update(done, update(TaskState.RUNNING), NOW)
    assert decision.empty and "completed -> running is not allowed" in (decision.refused or "")


def test_a_stale_attempt_is_refused_and_its_live_container_stopped() -> None:
    task = placed().model_copy(update={"attempt": 2})
    decision = core.apply_update(task, update(TaskState.RUNNING, attempt=1), NOW)
    assert not decision.tasks and "stale" in (decision.refused or "")
    assert json.loads(decision.outgoing[0].body) == {"kind": "stop", "task_id": "t1", "attempt": 1}


def test_stopping_a_pending_task_completes_it_at_once() -> None:
    decision = core.request_stop(pending(), NOW)
    assert decision.tasks[0].state == TaskState.COMPLETED
    assert decision.tasks[0].desired_state == "stopped"


def test_stopping_a_running_task_asks_its_node() -> None:
    decision = core.request_stop(placed(), NOW)
    assert decision.tasks[0].state == TaskState.RUNNING
    assert decision.tasks[0].desired_state == "stopped"
    assert decision.outgoing[0].routing_key == "n1"
    assert json.loads(decision.outgoing[0].body)["kind"] == "stop"


def test_stopping_an_ended_task_only_removes_its_container() -> None:
    decision = core.request_stop(placed(TaskState.FAILED), NOW)
    assert not decision.tasks and len(decision.outgoing) == 1


def test_a_new_node_is_announced_ready() -> None:
    beat = Heartbeat(node="n1", at=NOW, cpus=2, memory=1024, disk=1024)
    decision = core.apply_heartbeat(None, beat, NOW)
    assert decision.nodes[0].status == NodeStatus.READY
    assert [o.routing_key for o in decision.outgoing] == ["node.ready", "node.heartbeat"]
    again = core.apply_heartbeat(decision.nodes[0], beat, NOW)
    assert [o.routing_key for o in again.outgoing] == ["node.heartbeat"]


def test_silent_nodes_go_down_counting_from_the_managers_start() -> None:
    old = node("n1").model_copy(update={"last_heartbeat": NOW - timedelta(seconds=60)})
    assert core.mark_down([old], NOW, 6).nodes[0].status == NodeStatus.DOWN
    started = NOW - timedelta(seconds=2)
    assert core.mark_down([old], NOW, 6, not_before=started).empty
