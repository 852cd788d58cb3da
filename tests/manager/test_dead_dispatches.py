"""Dead-lettered dispatches end the attempt they were for, and only that one."""

from __future__ import annotations

from datetime import UTC, datetime

from manager import core
from manager.dead_dispatches import DeadDispatch, lost_dispatch, origin
from manager.scheduler import RoundRobin
from shared.messages import RunTask
from shared.models import NodeRecord, NodeStatus, TaskSpec
from shared.states import TaskState

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def scheduled(policy: str = "never") -> tuple[RunTask, object]:
    spec = TaskSpec(name="a", image="b", restart={"policy": policy})  # type: ignore[arg-type]
    node = NodeRecord(
        name="n1", status=NodeStatus.READY, cpus=1, memory=1, disk=1, last_heartbeat=NOW
    )
    decision = core.accept(spec, "t1", NOW)
    decision.extend(core.schedule(decision.tasks, [node], RoundRobin(), NOW))
    task = decision.tasks[-1]
    assert task.state == TaskState.SCHEDULED
    return RunTask(task_id=task.id, attempt=task.attempt, spec=spec), task


def test_the_origin_is_read_from_the_brokers_headers_and_from_kubes() -> None:
    broker = origin({"x-first-death-queue": "kube.node.n1", "x-first-death-reason": "expired"})
    assert broker == DeadDispatch("kube.node.n1", "it expired in the queue")
    assert broker.node == "n1"
    ours = origin({"x-kube-queue": "kube.node.n2", "x-kube-reason": "invalid dispatch: x"})
    assert (ours.node, ours.reason) == ("n2", "invalid dispatch: x")
    assert origin({"x-kube-queue": "kube.manager.commands"}).node is None
    assert origin({}).node is None


def test_a_scheduled_attempt_whose_dispatch_died_ends_failed_with_the_reason() -> None:
    run, task = scheduled()
    decision = lost_dispatch(task, run, DeadDispatch("kube.node.n1", "it expired"), NOW)  # type: ignore[arg-type]
    (ended,) = {t.id: t for t in decision.tasks}.values()
    assert ended.state == TaskState.FAILED
    assert ended.error is not None and "dead-lettered: it expired" in ended.error


def test_a_task_that_moved_on_is_left_alone() -> None:
    run, task = scheduled()
    stale = run.model_copy(update={"attempt": run.attempt + 1})
    dead = DeadDispatch("kube.node.n1", "x")
    assert lost_dispatch(task, stale, dead, NOW).empty  # type: ignore[arg-type]
    assert lost_dispatch(task, run, DeadDispatch("kube.node.n2", "x"), NOW).empty  # type: ignore[arg-type]
    assert lost_dispatch(None, run, dead, NOW).empty
