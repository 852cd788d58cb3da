"""A drain never brings back a task that was asked to stop (found by tests/fuzz)."""

from __future__ import annotations

from manager import core, nodes
from shared.states import TaskState
from tests.manager.test_nodes import NOW, node, running


def test_a_drain_leaves_a_task_that_is_stopping_to_stop() -> None:
    # given a task running on n1 that was asked to stop, its container not stopped yet
    stopping = core.request_stop(running(), NOW).tasks[-1]
    assert stopping.desired_state == "stopped" and stopping.state == TaskState.RUNNING
    # when n1 is drained before the worker reports the exit
    decision = nodes.drain(node("n1"), [stopping], NOW)
    # then the node is cordoned, and the task gets no next attempt
    assert not decision.nodes[0].schedulable
    assert decision.tasks == []
