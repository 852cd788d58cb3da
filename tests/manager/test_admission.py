"""The manager's admission of workers' results beyond the wire checks (issue 12)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from manager import admission, nodes
from manager.nodes import Where
from shared.messages import Heartbeat, HeldTask
from shared.states import TaskState

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def beat(node: str = "n1", held: tuple[HeldTask, ...] = ()) -> Heartbeat:
    return Heartbeat(node=node, at=NOW, cpus=1, memory=1, disk=1, tasks=held)


def test_a_new_node_past_the_bound_is_refused_naming_the_bound() -> None:
    assert admission.new_node(beat(), nodes=99, max_nodes=100) is None
    reason = admission.new_node(beat("n101"), nodes=100, max_nodes=100)
    assert reason is not None and "maximum of 100 nodes" in reason and "--max-nodes" in reason


def test_a_result_dated_far_ahead_is_refused_but_a_minute_of_skew_is_not() -> None:
    assert admission.dated_ahead(NOW + timedelta(seconds=60), NOW) is None
    assert admission.dated_ahead(NOW - timedelta(days=2), NOW) is None
    reason = admission.dated_ahead(NOW + timedelta(hours=1), NOW)
    assert reason is not None and "3600s ahead" in reason


def test_one_heartbeat_part_causes_a_bounded_number_of_stops() -> None:
    # given a worker listing 2,000 containers of tasks the manager placed, which ended
    invented = tuple(
        HeldTask(task_id=f"ghost-{i}", attempt=1, state=TaskState.RUNNING, container_id="c")
        for i in range(2000)
    )
    ended = {held.task_id: 1 for held in invented}
    # when the manager reconciles the part
    decision = nodes.superseded(beat(held=invented), {}, ended)
    # then it sends at most the bound, and the next heartbeat sends the next ones
    assert len(decision.outgoing) == admission.MAX_STOPS_PER_PART


def test_a_current_attempt_is_not_stopped() -> None:
    held = (HeldTask(task_id="t1", attempt=2, state=TaskState.RUNNING, container_id="c"),)
    where = {"t1": Where("n1", 2, TaskState.RUNNING)}
    assert nodes.superseded(beat(held=held), where, {}).outgoing == []


def test_a_node_is_sent_a_bounded_number_of_stops_per_window_however_many_parts() -> None:
    budget = admission.StopBudget(window=2.0, per_window=250)
    assert budget.left("n1", 100.0) == 250
    budget.spend("n1", 200, 100.0)
    budget.spend("n1", 50, 101.0)
    assert budget.left("n1", 101.0) == 0
    assert budget.left("n2", 100.0) == 250  # per node
    assert budget.left("n1", 102.0) == 250  # a new window
    assert nodes.superseded(beat(held=()), {}, {}, stops=0).outgoing == []
