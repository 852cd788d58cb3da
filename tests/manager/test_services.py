"""Services, without a broker: keep N tasks, scale, roll an update a task at a time."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from kube.client import make_spec
from manager import commands, services
from shared.codec import decode, encode
from shared.models import Health, ServiceRecord, TaskRecord, UpdateState
from shared.placement import NoFitKind, Unplaced
from shared.specs import RestartMode, TaskSpec
from shared.states import TaskState
from shared.wire import MAX_SPEC_BYTES

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
counter = itertools.count()


def new_id(name: str) -> str:
    return f"{name}-{next(counter)}"


def service(replicas: int = 3, **spec: object) -> ServiceRecord:
    return services.create(TaskSpec(name="web", image="v1", replicas=replicas, **spec), NOW)  # type: ignore[arg-type]


def running(tasks: list[TaskRecord], **changes: object) -> list[TaskRecord]:
    return [
        t.model_copy(update={"state": TaskState.RUNNING, "attempt": 1, "node": "n1", **changes})
        for t in tasks
    ]


def test_a_new_service_starts_its_replicas_with_restart_always() -> None:
    decision = services.reconcile(service(), [], NOW, new_id)
    assert len(decision.tasks) == 3
    assert {t.service for t in decision.tasks} == {"web"} and {
        t.version for t in decision.tasks
    } == {1}
    assert all(t.spec.restart.policy == RestartMode.ALWAYS for t in decision.tasks)
    assert all(t.spec.replicas is None and t.name == "web" for t in decision.tasks)


def test_a_service_from_kube_run_restarts_on_failure_three_times() -> None:
    # given a service as `kube run --replicas` and the Python client send it: every field
    # is in the body, the default restart policy too (docs/services.md)
    body = encode(make_spec({"name": "web", "image": "v1", "replicas": 2}))
    spec = decode(commands.SPEC, body, max_bytes=MAX_SPEC_BYTES)
    # then its tasks restart as any task does, not always
    decision = services.reconcile(services.create(spec, NOW), [], NOW, new_id)
    assert {(t.spec.restart.policy, t.spec.restart.max_restarts) for t in decision.tasks} == {
        (RestartMode.ON_FAILURE, 3)
    }


def test_an_explicit_restart_policy_is_kept() -> None:
    svc = service(restart={"policy": "on-failure", "max_restarts": 1})
    decision = services.reconcile(svc, [], NOW, new_id)
    assert decision.tasks[0].spec.restart.policy == RestartMode.ON_FAILURE


def test_a_failed_task_is_replaced_and_a_full_service_left_alone() -> None:
    svc = service()
    tasks = running(services.reconcile(svc, [], NOW, new_id).tasks)
    assert services.reconcile(svc, tasks, NOW, new_id).empty
    tasks[0] = tasks[0].model_copy(update={"state": TaskState.FAILED})
    assert len(services.reconcile(svc, tasks, NOW, new_id).tasks) == 1


def test_scaling_down_stops_the_newest_tasks() -> None:
    svc = service()
    tasks = running(services.reconcile(svc, [], NOW, new_id).tasks)
    tasks = [
        t.model_copy(update={"created_at": NOW + timedelta(seconds=i)}) for i, t in enumerate(tasks)
    ]
    decision = services.reconcile(services.scale(svc, 1, NOW), tasks, NOW, new_id)
    stopped = {t.id for t in decision.tasks if t.desired_state == "stopped"}
    assert stopped == {tasks[1].id, tasks[2].id}


def test_stopping_a_service_stops_all_its_tasks() -> None:
    svc = service()
    tasks = running(services.reconcile(svc, [], NOW, new_id).tasks)
    decision = services.reconcile(services.stop(svc, NOW), tasks, NOW, new_id)
    assert {t.desired_state for t in decision.tasks} == {"stopped"} and len(decision.tasks) == 3


def roll(
    svc: ServiceRecord, tasks: list[TaskRecord]
) -> tuple[ServiceRecord, list[TaskRecord], list[str]]:
    """Drive a rolling update to its end, tasks starting and stopping at once; log the steps."""
    steps = []
    by_id = {t.id: t for t in tasks}
    for _ in range(50):
        decision = services.reconcile(svc, list(by_id.values()), NOW, new_id)
        if decision.services:
            svc = decision.services[-1]
        if not decision.tasks:
            break
        for task in decision.tasks:
            if task.desired_state == "stopped":
                steps.append(f"stop v{task.version}")
                task = task.model_copy(update={"state": TaskState.COMPLETED})
            else:
                steps.append(f"start v{task.version}")
                task = running([task])[0]
            by_id[task.id] = task
    return svc, list(by_id.values()), steps


def test_a_rolling_update_replaces_one_task_at_a_time_new_before_old() -> None:
    svc = service()
    tasks = running(services.reconcile(svc, [], NOW, new_id).tasks)
    updated = services.update(svc, TaskSpec(name="web", image="v2"), NOW)
    assert updated.version == 2 and updated.replicas == 3
    final, tasks, steps = roll(updated, tasks)
    assert steps == ["start v2", "stop v1"] * 3
    live = services.live(tasks)
    assert [t.version for t in live] == [2, 2, 2] and {t.image for t in live} == {"v2"}
    assert final.update_state == UpdateState.IDLE


def test_the_update_waits_for_the_new_task_to_be_healthy() -> None:
    check = {"exec": ["true"]}
    svc = service(health_check=check)
    tasks = running(services.reconcile(svc, [], NOW, new_id).tasks, health=Health.HEALTHY)
    updated = services.update(svc, TaskSpec(name="web", image="v2", health_check=check), NOW)  # type: ignore[arg-type]
    first = services.reconcile(updated, tasks, NOW, new_id).tasks
    assert len(first) == 1
    starting = running(first, health=Health.STARTING)
    assert services.reconcile(updated, tasks + starting, NOW, new_id).empty
    healthy = running(first, health=Health.HEALTHY)
    step = services.reconcile(updated, tasks + healthy, NOW, new_id)
    assert [t.desired_state for t in step.tasks] == ["stopped"]


def test_a_failing_new_task_pauses_the_update_and_keeps_the_old_ones() -> None:
    svc = service()
    tasks = running(services.reconcile(svc, [], NOW, new_id).tasks)
    updated = services.update(svc, TaskSpec(name="web", image="broken"), NOW)
    first = services.reconcile(updated, tasks, NOW, new_id).tasks
    failing = [
        first[0].model_copy(
            update={"state": TaskState.PENDING, "restart_count": 1, "error": "exited with code 1"}
        )
    ]
    decision = services.reconcile(updated, tasks + failing, NOW, new_id)
    paused = decision.services[-1]
    assert paused.update_state == UpdateState.PAUSED
    assert "exited with code 1" in (paused.update_error or "")
    assert not decision.tasks
    assert services.reconcile(paused, tasks + failing, NOW, new_id).empty


def test_scaling_down_stops_a_pending_replica_before_a_running_one() -> None:
    svc = service()
    tasks = running(services.reconcile(svc, [], NOW, new_id).tasks)  # created_at all equal
    tasks[0] = tasks[0].model_copy(update={"state": TaskState.PENDING, "node": None})
    decision = services.reconcile(services.scale(svc, 2, NOW), tasks, NOW, new_id)
    assert [t.id for t in decision.tasks if t.desired_state == "stopped"] == [tasks[0].id]


PORTS = ({"container": 80, "host": 18084},)


def test_a_service_with_fixed_host_ports_updates_stop_first() -> None:
    svc = service(ports=PORTS)
    tasks = running(services.reconcile(svc, [], NOW, new_id).tasks)
    updated = services.update(svc, TaskSpec(name="web", image="v2", ports=PORTS), NOW)  # type: ignore[arg-type]
    first = services.reconcile(updated, tasks, NOW, new_id)
    assert [(t.version, t.desired_state) for t in first.tasks] == [(1, "stopped")]
    final, tasks, steps = roll(updated, tasks)
    assert steps == ["stop v1", "start v2"] * 3
    assert [t.version for t in services.live(tasks)] == [2, 2, 2]
    assert final.update_state == UpdateState.IDLE


def test_rolling_back_a_stuck_port_update_stops_the_pending_task_first() -> None:
    svc = service(ports=PORTS)
    tasks = running(services.reconcile(svc, [], NOW, new_id).tasks)
    updated = services.update(svc, TaskSpec(name="web", image="v2", ports=PORTS), NOW)  # type: ignore[arg-type]
    stuck = services.reconcile(updated, tasks[:2], NOW, new_id).tasks  # one v1 stopped: one v2
    assert len(stuck) == 1 and stuck[0].state == TaskState.PENDING
    back = services.update(updated, TaskSpec(name="web", image="v1", ports=PORTS), NOW)  # type: ignore[arg-type]
    step = services.reconcile(back, tasks[:2] + stuck, NOW, new_id)
    assert [t.id for t in step.tasks] == [stuck[0].id]
    assert step.tasks[0].desired_state == "stopped"


def test_stopping_a_service_ends_its_update() -> None:
    svc = services.update(service(), TaskSpec(name="web", image="v2"), NOW)
    assert svc.update_state == UpdateState.ROLLING
    stopped = services.stop(svc, NOW)
    assert stopped.update_state == UpdateState.IDLE and stopped.update_error is None


def port_bound(task: TaskRecord, at: datetime) -> TaskRecord:
    """The task pending because no node has its host port free, found so at `at`."""
    why = Unplaced(kind=NoFitKind.HOST_PORTS, nodes_evaluated=1, nodes_exhausted=1)
    return task.model_copy(
        update={"state": TaskState.PENDING, "node": None, "unplaced": why, "updated_at": at}
    )


def test_a_port_update_with_more_replicas_than_addresses_still_goes_through() -> None:
    # given two replicas on one host port of one address: one runs, the other waits
    svc = service(replicas=2, ports=PORTS)
    first, second = services.reconcile(svc, [], NOW, new_id).tasks
    v1a, v1b = running([first])[0], port_bound(second, NOW)
    updated = services.update(svc, TaskSpec(name="web", image="v2", ports=PORTS), NOW)  # type: ignore[arg-type]

    # when the update starts, the waiting old task is stopped first; a new one is started
    step = services.reconcile(updated, [v1a, v1b], NOW, new_id)
    assert [(t.id, t.desired_state) for t in step.tasks] == [(v1b.id, "stopped")]
    v1b = step.tasks[-1].model_copy(update={"updated_at": NOW + timedelta(seconds=1)})
    (v2a,) = services.reconcile(updated, [v1a, v1b], NOW, new_id).tasks

    # then a new task found port-bound before the last stop ended waits: it is placed next
    early = port_bound(v2a, NOW)
    assert services.reconcile(updated, [v1a, v1b, early], NOW, new_id).empty

    # and one found port-bound after it has the running old task stopped, to free the port
    late = port_bound(v2a, NOW + timedelta(seconds=2))
    step = services.reconcile(updated, [v1a, v1b, late], NOW, new_id)
    assert [(t.id, t.desired_state) for t in step.tasks] == [(v1a.id, "stopped")]

    # and while that one stops, the second new task is started, to wait its turn
    (v2b,) = services.reconcile(updated, [step.tasks[-1], v1b, late], NOW, new_id).tasks
    assert v2b.version == 2

    # once no old task is left and the new ones run or wait for the port, the update is done
    v2a_running = running([v2a])[0]
    v2b = port_bound(v2b, NOW)
    ended = step.tasks[-1].model_copy(update={"state": TaskState.COMPLETED})
    done = services.reconcile(updated, [ended, v1b, v2a_running, v2b], NOW, new_id)
    assert done.services[-1].update_state == UpdateState.IDLE


VOLUMES = ({"name": "pgdata", "target": "/data"},)


def test_a_service_with_a_volume_updates_stop_first_once_the_old_task_ended() -> None:
    # given a one-replica service keeping its data on a volume, running
    svc = service(replicas=1, volumes=VOLUMES)
    tasks = running(services.reconcile(svc, [], NOW, new_id).tasks)
    updated = services.update(svc, TaskSpec(name="web", image="v2", volumes=VOLUMES), NOW)  # type: ignore[arg-type]
    # when it is updated: the old task is asked to stop, and nothing starts
    first = services.reconcile(updated, tasks, NOW, new_id)
    assert [(t.version, t.desired_state) for t in first.tasks] == [(1, "stopped")]
    # while it is stopping, the new task waits (one container at a time writes the data)
    stopping = first.tasks
    assert services.reconcile(updated, stopping, NOW, new_id).tasks == []
    # once it ended, the new one starts
    ended = [t.model_copy(update={"state": TaskState.COMPLETED}) for t in stopping]
    started = services.reconcile(updated, ended, NOW, new_id).tasks
    assert [(t.version, t.state) for t in started] == [(2, TaskState.PENDING)]
