"""The manager's pure decisions, without a broker or a database."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from manager import core
from manager.scheduler import RoundRobin
from shared import topology
from shared.images import ImageProblem
from shared.messages import TaskUpdate
from shared.models import Health, NodeRecord, NodeStatus, TaskRecord, TaskSpec
from shared.specs import RestartPolicy
from shared.states import TaskState

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
SPEC = TaskSpec(
    name="web", image="busybox", cpu=1.0, memory=64 * 1024**2, restart={"policy": "never"}
)


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
    decision = core.schedule([pending()], [node("n1")], RoundRobin(), NOW, cluster="c0ffee00")
    task = decision.tasks[-1]
    assert (task.state, task.node, task.attempt) == (TaskState.SCHEDULED, "n1", 1)
    dispatch = next(o for o in decision.outgoing if o.exchange == topology.DISPATCH)
    assert dispatch.routing_key == "n1"
    assert json.loads(dispatch.body) | {"spec": None} == {
        "kind": "run",
        "epoch": 0,  # stamped when published (manager/epochs.py)
        "task_id": "t1",
        "attempt": 1,
        "spec": None,
        "cluster": "c0ffee00",  # the container is labelled with it (manager/cluster.py)
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
    assert not decision.tasks and "attempt 1 already ended" in (decision.refused or "")


def test_a_stale_attempt_is_refused_and_its_live_container_stopped() -> None:
    task = placed().model_copy(update={"attempt": 2})
    decision = core.apply_update(task, update(TaskState.RUNNING, attempt=1), NOW)
    assert not decision.tasks and "stale" in (decision.refused or "")
    assert json.loads(decision.outgoing[0].body) == {
        "kind": "stop",
        "epoch": 0,
        "task_id": "t1",
        "attempt": 1,
    }


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


def restartable(policy: str = "on-failure", max_restarts: int | None = 2) -> TaskRecord:
    spec = SPEC.model_copy(
        update={
            "restart": RestartPolicy(
                policy=policy,
                max_restarts=max_restarts,  # type: ignore[arg-type]
                backoff_seconds=2,
            )
        }
    )
    return placed().model_copy(update={"spec": spec})


def test_a_failure_under_on_failure_restarts_after_the_backoff() -> None:
    # given a running task with on-failure, two restarts allowed, 2 s backoff
    task = restartable()
    # when its container exits 3
    decision = core.apply_update(
        task, update(TaskState.FAILED, exit_code=3, error="exited with code 3"), NOW
    )
    # then it goes back to pending, counted, not before the backoff, its container removed
    again = decision.tasks[-1]
    assert (again.state, again.restart_count, again.error) == (
        TaskState.PENDING,
        1,
        "exited with code 3",
    )
    assert again.not_before == NOW + timedelta(seconds=2)
    assert "restart 1/2 in 2s" in (decision.events[-1][1].detail or "")
    assert json.loads(decision.outgoing[-1].body) == {
        "kind": "stop",
        "epoch": 0,
        "task_id": "t1",
        "attempt": 1,
    }
    # and the scheduler leaves it alone until the backoff passed, then gives it attempt 2
    assert not core.schedule([again], [node("n1")], RoundRobin(), NOW).tasks
    later = core.schedule([again], [node("n1")], RoundRobin(), NOW + timedelta(seconds=2))
    assert (later.tasks[-1].state, later.tasks[-1].attempt) == (TaskState.SCHEDULED, 2)


def test_backoff_doubles_and_past_max_restarts_the_task_fails_with_the_reason() -> None:
    task = restartable().model_copy(update={"restart_count": 1})
    second = core.apply_update(task, update(TaskState.FAILED, error="boom"), NOW).tasks[-1]
    assert second.not_before == NOW + timedelta(seconds=4)
    exhausted = restartable().model_copy(update={"restart_count": 2})
    final = core.apply_update(exhausted, update(TaskState.FAILED, error="boom"), NOW).tasks[-1]
    assert final.state == TaskState.FAILED
    assert final.error == "boom; gave up after 2 restarts"


def test_exit_zero_under_on_failure_completes() -> None:
    decision = core.apply_update(restartable(), update(TaskState.COMPLETED, exit_code=0), NOW)
    assert decision.tasks[-1].state == TaskState.COMPLETED


def test_always_restarts_even_a_clean_exit_but_never_a_requested_stop() -> None:
    task = restartable("always", None)
    restarted = core.apply_update(task, update(TaskState.COMPLETED, exit_code=0), NOW)
    assert restarted.tasks[-1].state == TaskState.PENDING
    stopping = task.model_copy(update={"desired_state": "stopped"})
    stopped = core.apply_update(stopping, update(TaskState.COMPLETED), NOW)
    assert stopped.tasks[-1].state == TaskState.COMPLETED


def test_a_task_asked_to_stop_that_reports_running_is_sent_its_stop_again() -> None:
    # given a task asked to stop while its dispatch was on its way (scheduled), and one
    # asked to stop while running
    for state in (TaskState.SCHEDULED, TaskState.RUNNING):
        stopping = core.request_stop(placed(state), NOW).tasks[0]
        assert stopping.desired_state == "stopped"
        # when its worker reports the attempt running
        decision = core.apply_update(stopping, update(TaskState.RUNNING), NOW)
        # then the report is taken and the node is told again to stop that attempt
        stops = [json.loads(o.body) for o in decision.outgoing if o.exchange == topology.DISPATCH]
        assert stops == [{"kind": "stop", "epoch": 0, "task_id": "t1", "attempt": 1}], state
        assert all(
            o.routing_key == "n1" for o in decision.outgoing if o.exchange == topology.DISPATCH
        )
        assert not decision.refused


def test_a_running_task_not_asked_to_stop_is_sent_no_stop() -> None:
    # given a scheduled task, when its worker reports it running, then no stop is sent
    decision = core.apply_update(placed(TaskState.SCHEDULED), update(TaskState.RUNNING), NOW)
    assert decision.tasks[-1].state == TaskState.RUNNING
    assert [o for o in decision.outgoing if o.exchange == topology.DISPATCH] == []


def test_never_makes_a_failure_final() -> None:
    decision = core.apply_update(placed(), update(TaskState.FAILED, error="boom"), NOW)
    assert decision.tasks[-1].state == TaskState.FAILED


def test_a_health_change_is_recorded_without_a_transition() -> None:
    decision = core.apply_update(
        placed(), update(TaskState.RUNNING, health=Health.HEALTHY, last_check="http 200"), NOW
    )
    assert decision.tasks[0].health == Health.HEALTHY and not decision.events
    # and announced on kube.events, as any change of the record (kube deploy waits on it)
    [event] = decision.outgoing
    assert event.routing_key == "task.running" and b'"health":"healthy"' in event.body


def test_a_second_report_of_an_ended_attempt_changes_nothing() -> None:
    # given a task whose attempt 1 failed and which waits to restart
    first = core.apply_update(restartable(), update(TaskState.FAILED, error="boom"), NOW)
    waiting = first.tasks[-1]
    # when the same end is reported again (the start reply and the exit event both saw it)
    again = core.apply_update(waiting, update(TaskState.FAILED, error="boom"), NOW)
    # then it is not counted twice
    assert again.empty
    # and a running report of that ended attempt gets its container stopped
    alive = core.apply_update(waiting, update(TaskState.RUNNING), NOW)
    assert json.loads(alive.outgoing[0].body)["kind"] == "stop" and not alive.tasks


def test_a_worker_cannot_report_a_managers_state() -> None:
    decision = core.apply_update(placed(), update(TaskState.PENDING), NOW)
    assert decision.empty and "cannot report pending" in (decision.refused or "")


def test_every_move_is_checked_against_the_table() -> None:
    decision = core.move(placed(TaskState.RUNNING), TaskState.SCHEDULED, NOW)
    assert decision.empty and "running -> scheduled is not allowed" in (decision.refused or "")


def test_a_start_whose_image_cannot_be_had_fails_the_task_without_a_restart() -> None:
    # given a task allowed restarts, whose attempt could not start: no registry for its image
    task = placed(TaskState.SCHEDULED)
    task = task.model_copy(update={"spec": SPEC.model_copy(update={"restart": RestartPolicy()})})
    failed = update(TaskState.FAILED, error="image 'x' ...", image_problem=ImageProblem.NO_REGISTRY)
    # when the worker reports it
    decision = core.apply_update(task, failed, NOW)
    # then the task ends failed at once, with the worker's reason, and is not restarted
    ended = decision.tasks[-1]
    assert (ended.state, ended.restart_count, ended.error) == (TaskState.FAILED, 0, "image 'x' ...")


def test_a_start_that_failed_otherwise_is_restarted_per_the_policy() -> None:
    task = placed(TaskState.SCHEDULED)
    task = task.model_copy(update={"spec": SPEC.model_copy(update={"restart": RestartPolicy()})})
    decision = core.apply_update(task, update(TaskState.FAILED, error="i/o timeout"), NOW)
    assert (decision.tasks[-1].state, decision.tasks[-1].restart_count) == (TaskState.PENDING, 1)


def test_a_services_task_whose_image_cannot_be_had_tries_again_after_a_growing_backoff() -> None:
    # given a service's task (restart policy "never" even) whose attempts meet no registry
    spec = SPEC.model_copy(update={"restart": RestartPolicy(policy="never", max_restarts=None)})
    task = placed(TaskState.SCHEDULED).model_copy(update={"spec": spec, "service": "web"})
    failed = update(TaskState.FAILED, error="image 'x' ...", image_problem=ImageProblem.NO_REGISTRY)
    delays = []
    for restarts in range(1, 8):
        # when the worker reports the failure again
        decision = core.apply_update(task, failed, NOW)
        # then the task is not ended (its service would replace it at once, without end)
        # but waits, the delay doubling from 10 s up to 5 min, the reason kept as data
        again = decision.tasks[-1]
        assert (again.state, again.restart_count) == (TaskState.PENDING, restarts)
        assert again.image_problem is ImageProblem.NO_REGISTRY and again.error == "image 'x' ..."
        assert again.not_before is not None
        delays.append((again.not_before - NOW).total_seconds())
        task = again.model_copy(update={"state": TaskState.SCHEDULED})
    assert delays == [10, 20, 40, 80, 160, 300, 300]


def test_an_attempt_that_runs_clears_the_image_problem() -> None:
    task = placed(TaskState.SCHEDULED).model_copy(
        update={"image_problem": ImageProblem.NO_SUCH_IMAGE}
    )
    decision = core.apply_update(task, update(TaskState.RUNNING), NOW)
    assert decision.tasks[-1].image_problem is None
