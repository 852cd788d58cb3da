"""The manager's pure decisions about nodes: heartbeats, liveness, lost nodes, reconciling."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from manager import core, nodes
from manager.scheduler import RoundRobin
from shared import messages
from shared.messages import Heartbeat, HeldTask, TaskUpdate
from shared.models import NodeRecord, NodeStatus, TaskRecord, TaskSpec
from shared.specs import OnDisconnect, RestartPolicy, least_stop_after
from shared.states import TaskState

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def node(name: str) -> NodeRecord:
    return NodeRecord(
        name=name, status=NodeStatus.READY, cpus=2, memory=1024**3, disk=1024**3, last_heartbeat=NOW
    )


def running(task_id: str = "t1", policy: str = "on-failure") -> TaskRecord:
    spec = TaskSpec(name="a", image="b", restart={"policy": policy})  # type: ignore[arg-type]
    accepted = core.accept(spec, task_id, NOW).tasks[0]
    scheduled = core.schedule([accepted], [node("n1")], RoundRobin(), NOW).tasks[-1]
    return scheduled.model_copy(update={"state": TaskState.RUNNING, "container_id": "c1"})


def beat(*held: tuple[str, int], inventory: bool = True) -> Heartbeat:
    return Heartbeat(
        node="n1",
        at=NOW,
        cpus=2,
        memory=1024,
        disk=1024,
        inventory=inventory,
        tasks=tuple(
            HeldTask(task_id=t, attempt=a, state=TaskState.RUNNING, container_id="c")
            for t, a in held
        ),
    )


def test_a_new_node_is_announced_ready() -> None:
    decision = nodes.apply_heartbeat(None, beat(), NOW)
    assert decision.nodes[0].status == NodeStatus.READY
    assert [o.routing_key for o in decision.outgoing] == ["node.ready", "node.heartbeat"]
    again = nodes.apply_heartbeat(decision.nodes[0], beat(), NOW)
    assert [o.routing_key for o in again.outgoing] == ["node.heartbeat"]


def test_node_events_of_a_heartbeat_say_what_the_nodes_tasks_hold() -> None:
    # given a node as the store reads it, with what its placed tasks hold
    holdings = {
        "allocated_cpu": 1.5,
        "allocated_memory": 2**20,
        "allocated_disk": 2**21,
        "task_count": 3,
        "reserved_ports": (8080, 8443),
    }
    known = node("n1").model_copy(update=holdings)

    # when its worker's heartbeat arrives
    decision = nodes.apply_heartbeat(known, beat(), NOW)

    # then the node.heartbeat event carries the holdings, as `kube nodes --json` shows them
    [event] = decision.outgoing
    assert event.routing_key == "node.heartbeat"
    body = json.loads(event.body)
    assert {key: body[key] for key in holdings} == {**holdings, "reserved_ports": [8080, 8443]}


def test_a_node_records_its_workers_host_and_pid_and_since_when_that_process_holds_it() -> None:
    first = beat().model_copy(update={"hostname": "alpha", "pid": 10})
    joined = nodes.apply_heartbeat(None, first, NOW).nodes[0]
    assert (joined.hostname, joined.pid, joined.ready_since) == ("alpha", 10, NOW)
    later = NOW + timedelta(seconds=5)
    assert nodes.apply_heartbeat(joined, first, later).nodes[0].ready_since == NOW
    restarted = first.model_copy(update={"pid": 11})
    assert nodes.apply_heartbeat(joined, restarted, later).nodes[0].ready_since == later


def test_a_node_silent_for_longer_than_the_interval_goes_down() -> None:
    ready, gone = node("n1"), node("n2").model_copy(update={"status": NodeStatus.DOWN})
    decision = nodes.mark_down([ready, gone], {"n1": 6.5, "n2": 60.0}, 6)
    assert [(n.name, n.status) for n in decision.nodes] == [("n1", NodeStatus.DOWN)]
    assert [o.routing_key for o in decision.outgoing] == ["node.down"]
    assert nodes.mark_down([ready], {"n1": 6.0}, 6).empty  # not longer than the interval


def test_a_node_records_wall_time_plays_no_part_in_its_silence() -> None:
    # given a node whose last heartbeat the wall clock dates an hour ago (a step ahead)
    old = node("n1").model_copy(update={"last_heartbeat": NOW - timedelta(hours=1)})
    # then only the silence measured on the monotonic clock counts
    assert nodes.mark_down([old], {"n1": 1.0}, 6).empty


def test_a_lost_nodes_tasks_are_marked_lost_then_placed_again_at_once() -> None:
    decision = nodes.node_lost("n1", [running()], NOW)
    assert [t.state for t in decision.tasks] == [TaskState.LOST, TaskState.PENDING]
    again = decision.tasks[-1]
    assert again.not_before == NOW
    assert not [o for o in decision.outgoing if o.routing_key == "n1"]  # the node is gone


def test_a_node_loss_does_not_use_up_the_restart_budget() -> None:
    # given a task allowed one restart, which has used it
    task = running().model_copy(update={"restart_count": 1})
    spent = task.model_copy(
        update={"spec": task.spec.model_copy(update={"restart": RestartPolicy(max_restarts=1)})}
    )
    # when its node is lost, twice
    first = nodes.node_lost("n1", [spent], NOW).tasks[-1]
    again = first.model_copy(update={"state": TaskState.RUNNING, "attempt": 3, "node": "n1"})
    second = nodes.node_lost("n1", [again], NOW)
    # then it is placed again each time, its own restarts untouched and its losses counted
    last = second.tasks[-1]
    assert (last.state, last.restart_count, last.lost_count) == (TaskState.PENDING, 1, 2)
    assert second.events[-1][1].restart is not None
    assert not second.events[-1][1].restart.counted
    assert second.events[-1][1].detail == (
        "attempt 3 lost (node n1 lost); placed again (node loss 2, not counted against"
        " max_restarts)"
    )


def stops_after(seconds: float) -> TaskRecord:
    task = running()
    spec = task.spec.model_copy(update={"on_disconnect": OnDisconnect(stop_after_seconds=seconds)})
    return task.model_copy(update={"spec": spec})


def test_a_task_that_stops_when_cut_off_is_placed_again_only_after_its_copy_stopped() -> None:
    # given a task whose worker stops it after 10 s out of touch, on a node silent for 6 s
    decision = nodes.node_lost("n1", [stops_after(10)], NOW, silent_for=6.0)
    # then its replacement waits until 10 s plus the margin after the node was last heard
    again = decision.tasks[-1]
    wait = 10 + nodes.DISCONNECT_MARGIN - 6
    assert again.state == TaskState.PENDING
    assert again.not_before == NOW + timedelta(seconds=wait)
    assert decision.events[-1][1].detail == (
        f"attempt 1 lost (node n1 lost); placed again in {wait:g}s (node loss 1, not counted"
        " against max_restarts)"
    )
    # and it is not placed before then, even with a node free
    free = [node("n2")]
    assert not core.schedule([again], free, RoundRobin(), NOW + timedelta(seconds=wait - 1)).tasks
    placed = core.schedule([again], free, RoundRobin(), NOW + timedelta(seconds=wait)).tasks
    assert placed[-1].state == TaskState.SCHEDULED


def test_a_node_silent_past_the_stop_and_margin_has_its_tasks_placed_at_once() -> None:
    assert nodes.hold_back(stops_after(1), silent_for=60.0) == 0.0
    assert nodes.hold_back(running(), silent_for=0.0) == 0.0


def test_a_lost_task_that_may_not_restart_fails() -> None:
    decision = nodes.node_lost("n1", [running(policy="never")], NOW)
    assert decision.tasks[-1].state == TaskState.FAILED
    assert decision.tasks[-1].error == "node n1 lost"


def test_a_returning_node_is_told_to_remove_superseded_containers() -> None:
    moved = running().model_copy(update={"node": "n2", "attempt": 2})
    where = {"t1": nodes.Where.of(moved)}
    decision = nodes.superseded(beat(("t1", 1), ("ghost", 1)), where, {"ghost": 1})
    stops = [json.loads(o.body) for o in decision.outgoing]
    assert stops == [
        {"kind": "stop", "epoch": 0, "task_id": "t1", "attempt": 1},
        {"kind": "stop", "epoch": 0, "task_id": "ghost", "attempt": 1},
    ]


def test_a_stale_copy_on_a_node_that_came_back_enters_its_tasks_history() -> None:
    # given t1 moved on to attempt 2 on n2 while n1 was down
    moved = running().model_copy(update={"node": "n2", "attempt": 2})
    where = {"t1": nodes.Where.of(moved)}
    back = NOW + timedelta(seconds=30)
    # when n1's heartbeat, the one it came back with, lists attempt 1 still running
    decision = nodes.superseded(beat(("t1", 1)), where, {}, came_back=back)
    # then its copy is stopped, and the task's history says so, about attempt 1 on n1
    assert [json.loads(o.body)["attempt"] for o in decision.outgoing] == [1]
    [(task_id, entry)] = decision.events
    assert (task_id, entry.state, entry.attempt, entry.node, entry.at) == (
        "t1",
        TaskState.LOST,
        1,
        "n1",
        back,
    )
    assert entry.superseded
    assert entry.detail == "stale copy of attempt 1 listed by n1 when it came back: stopped"
    # and the heartbeats after it send the stop again until it is gone, writing nothing
    again = nodes.superseded(beat(("t1", 1)), where, {})
    assert (len(again.outgoing), again.events) == (1, [])


def test_a_copy_its_worker_stops_when_cut_off_is_stopped_on_return_but_not_written_again() -> None:
    # given t1, which asked its worker to stop it once cut off, moved on to attempt 2
    moved = stops_after(5).model_copy(update={"node": "n2", "attempt": 2})
    where = {"t1": nodes.Where.of(moved)}
    # when n1 comes back with a heartbeat it queued while cut off, listing attempt 1
    decision = nodes.superseded(beat(("t1", 1)), where, {}, came_back=NOW, stops_itself={"t1"})
    # then attempt 1 is stopped, in case, and the history is left to the worker's report
    assert [json.loads(o.body)["attempt"] for o in decision.outgoing] == [1]
    assert decision.events == []


def test_a_stale_copy_whose_stop_waits_for_the_budget_enters_the_history_at_the_return() -> None:
    moved = running().model_copy(update={"node": "n2", "attempt": 2})
    decision = nodes.superseded(beat(("t1", 1)), {"t1": nodes.Where.of(moved)}, {}, 0, NOW)
    assert decision.outgoing == []
    assert [(task_id, e.attempt) for task_id, e in decision.events] == [("t1", 1)]


def test_a_current_container_is_left_alone() -> None:
    task = running()
    assert nodes.superseded(beat(("t1", 1)), {"t1": nodes.Where.of(task)}, {}).empty
    assert nodes.missing(beat(("t1", 1)), {"t1": 1}) == []


def test_a_running_task_missing_from_a_full_inventory_ends_its_attempt() -> None:
    task = running()
    assert nodes.missing(beat(), {"t1": 1}) == ["t1"]
    decision = nodes.vanished([task], "n1", NOW)
    assert decision.tasks[-1].state == TaskState.PENDING
    assert "disappeared" in (decision.tasks[-1].error or "")
    # but an inventory the node has not finished taking proves nothing
    assert nodes.missing(beat(inventory=False), {"t1": 1}) == []


def gather_all(parts: list[Heartbeat]) -> list[Heartbeat]:
    """Feed parts to `gather` in turn; the whole heartbeats it made."""
    open_parts: list[Heartbeat] = []
    wholes = []
    for part in parts:
        open_parts, whole = nodes.gather(open_parts, part)
        if whole is not None:
            wholes.append(whole)
    return wholes


def test_a_heartbeat_in_parts_is_whole_once_its_last_part_is_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a node holding t1, t2 and t3, one container a part
    monkeypatch.setattr(messages, "HELD_PER_PART", 1)
    full = beat(("t1", 1), ("t2", 1), ("t3", 1))
    parts = full.in_parts(full.tasks)
    assert [p.part for p in parts] == [0, 1, 2]
    # when the first two parts are in, nothing is whole yet
    first, whole = nodes.gather([], parts[0])
    second, whole = nodes.gather(first, parts[1])
    assert whole is None
    # then the last part makes it whole, listing every container: t4 is the one missing
    _, whole = nodes.gather(second, parts[2])
    assert whole is not None and (whole.part, whole.parts) == (0, 1)
    assert nodes.missing(whole, {"t1": 1, "t2": 1, "t3": 1, "t4": 1}) == ["t4"]


def test_a_heartbeat_with_a_part_lost_proves_nothing_and_the_next_one_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(messages, "HELD_PER_PART", 1)
    held = beat(("t1", 1), ("t2", 1), ("t3", 1)).tasks
    lost_middle = beat().in_parts(held)
    lost_middle.pop(1)
    later = beat().model_copy(update={"at": NOW + timedelta(seconds=2)}).in_parts(held)
    # a round missing a part is never whole, nor does a later round's part finish it
    assert gather_all(lost_middle) == []
    assert gather_all([*lost_middle[:2], *later[1:]]) == []
    # the next round, all in, is
    (whole,) = gather_all([*lost_middle, *later])
    assert [t.task_id for t in whole.tasks] == ["t1", "t2", "t3"] and whole.at == later[0].at


def test_a_cordon_survives_heartbeats() -> None:
    closed = nodes.cordon(node("n1"), schedulable=False).nodes[0]
    assert not closed.schedulable
    after = nodes.apply_heartbeat(closed, beat(), NOW).nodes[0]
    assert not after.schedulable


def test_drain_cordons_and_keeps_the_old_attempt_until_the_next_one_runs() -> None:
    # given a task running on n1
    task = running()
    # when n1 is drained
    decision = nodes.drain(node("n1"), [task], NOW)
    assert not decision.nodes[0].schedulable
    moving = decision.tasks[-1]
    assert moving.state == TaskState.PENDING and moving.draining is not None
    # and the next attempt is placed on n2 and runs
    placed = core.schedule([moving], [decision.nodes[0], node("n2")], RoundRobin(), NOW).tasks[-1]
    assert (placed.node, placed.attempt) == ("n2", 2)
    # then n1's heartbeat still holding attempt 1 is not told to stop it yet
    assert nodes.superseded(beat(("t1", 1)), {"t1": nodes.Where.of(placed)}, {}).empty
    ran = core.apply_update(
        placed, TaskUpdate(node="n2", task_id="t1", attempt=2, state=TaskState.RUNNING, at=NOW), NOW
    )
    # and once attempt 2 runs, attempt 1 on n1 is stopped
    assert ran.tasks[-1].draining is None
    assert json.loads(ran.outgoing[-1].body) == {
        "kind": "stop",
        "epoch": 0,
        "task_id": "t1",
        "attempt": 1,
    }
    assert ran.outgoing[-1].routing_key == "n1"


def cut_off(task: TaskRecord, attempt: int, node_name: str = "n1") -> TaskUpdate:
    return TaskUpdate(
        node=node_name,
        task_id=task.id,
        attempt=attempt,
        state=TaskState.FAILED,
        at=NOW,
        disconnected=10.2,
    )


def test_a_worker_that_stopped_the_current_attempt_when_cut_off_has_it_placed_again() -> None:
    # given a running task its worker stopped after 10.2 s out of touch (the node not yet down)
    task = stops_after(10)
    decision = core.apply_update(task, cut_off(task, 1), NOW)
    # then the attempt is lost, not failed, and placed again at once, not counted
    assert [t.state for t in decision.tasks] == [TaskState.LOST, TaskState.PENDING]
    again = decision.tasks[-1]
    assert (again.not_before, again.restart_count, again.lost_count) == (NOW, 0, 1)
    assert decision.events[0][1].detail == (
        "stopped by n1 after 10.2s out of touch with the broker"
    )


def test_a_cut_off_report_of_a_superseded_attempt_enters_the_history_only() -> None:
    # given a task already moved to n2 after its node n1 went down
    task = stops_after(10).model_copy(update={"node": "n2", "attempt": 2})
    # when n1's worker returns and reports it stopped attempt 1 while cut off
    decision = core.apply_update(task, cut_off(task, 1), NOW)
    # then the task is unchanged and its history says what happened on n1
    assert not decision.tasks and not decision.outgoing and decision.refused is None
    [(task_id, entry)] = decision.events
    assert (task_id, entry.attempt, entry.node, entry.state) == ("t1", 1, "n1", TaskState.LOST)
    assert entry.superseded
    assert entry.detail == "stopped by n1 after 10.2s out of touch with the broker"


def test_a_cut_off_report_of_an_attempt_never_placed_is_refused() -> None:
    task = stops_after(10)
    decision = core.apply_update(task, cut_off(task, 2), NOW)
    assert decision.refused == "task t1: attempt 2 cannot have been cut off"
    assert not decision.events


def test_a_cut_off_report_while_the_replacement_waits_enters_the_history() -> None:
    # given a task lost with its node, waiting out its hold before its next attempt
    waiting = nodes.node_lost("n1", [stops_after(10)], NOW, silent_for=6.0).tasks[-1]
    assert (waiting.state, waiting.node, waiting.attempt) == (TaskState.PENDING, "n1", 1)
    # when the worker returns meanwhile and reports it stopped attempt 1
    decision = core.apply_update(waiting, cut_off(waiting, 1), NOW)
    # then the history says so, and the task still waits
    assert not decision.tasks and decision.refused is None
    assert [e.superseded for _, e in decision.events] == [True]


def test_a_stop_after_shorter_than_a_worker_honours_is_held_back_as_long_as_it_does() -> None:
    # a worker with 2 s heartbeats stops a task asking for 1 s only after 3 s
    least = least_stop_after(2.0)
    assert nodes.hold_back(stops_after(1), silent_for=0.0, least=least) == 3 + 5
    assert nodes.hold_back(stops_after(10), silent_for=0.0, least=least) == 10 + 5


def test_the_wait_before_placing_again_is_said_to_a_tenth_of_a_second() -> None:
    # given a node last heard an odd fraction of a second ago (issue 13: "in 2.25278s")
    decision = nodes.node_lost("n1", [stops_after(10)], NOW, silent_for=6.0 + 1 / 3)
    # then the history says the wait rounded to a tenth
    detail = decision.events[-1][1].detail
    wait = 10 + nodes.DISCONNECT_MARGIN - 6 - 1 / 3
    assert f"placed again in {round(wait, 1):g}s (" in detail
