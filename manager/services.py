"""Services, pure: keep N tasks of a spec running, scale, and replace them one at a time.

A service is a spec with `replicas`. Its tasks bear its name, and the version of the spec
they run. `reconcile` compares the live tasks (not ended, not asked to stop) with what
the service wants and returns the decision that moves one step closer:

- no update under way: start the missing tasks, stop the surplus (newest first);
- a rolling update (some live tasks run an older version): start one task of the new
  version; once it runs (and is healthy, if the spec has a health check) stop one old
  task; repeat. A new-version task that fails pauses the update with the reason; the old
  tasks keep running until the next `kube update`.
- a rolling update of a service whose tasks publish fixed host ports goes stop-first:
  stop one old task (an unplaced one first), then start its replacement, which takes
  the port once the old task has let it go. Start-first would place the new task beside
  an old one holding the same port on every node, and wait forever.

Scaling down stops unplaced (pending) tasks first, then the newest. Stopping a service
ends its update: it is no longer rolling.

Unless the spec says otherwise, a service's tasks restart always, without limit, as
Swarm's do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from manager import core
from manager.effects import Decision
from shared.models import Health, ServiceRecord, TaskRecord, UpdateState
from shared.placement import NoFitKind
from shared.specs import RestartMode, RestartPolicy, TaskSpec
from shared.states import TaskState

NewId = Callable[[str], str]


def task_spec(service: ServiceRecord) -> TaskSpec:
    """The spec each task of the service runs."""
    spec = service.spec.model_copy(update={"id": None, "replicas": None})
    if "restart" not in service.spec.model_fields_set:
        spec = spec.model_copy(
            update={"restart": RestartPolicy(policy=RestartMode.ALWAYS, max_restarts=None)}
        )
    return spec


def create(spec: TaskSpec, now: datetime) -> ServiceRecord:
    """A new service from a spec with replicas."""
    return ServiceRecord(
        name=spec.name,
        spec=spec.model_copy(update={"id": None}),
        replicas=spec.replicas or 0,
        created_at=now,
        updated_at=now,
    )


def recreate(stopped: ServiceRecord, spec: TaskSpec, now: datetime) -> ServiceRecord:
    """A service submitted again under the name of a stopped one: a new service. Its
    versions go on from the old one's, so the old tasks, kept in history until removed,
    never count as the new service's."""
    return create(spec, now).model_copy(update={"version": stopped.version + 1})


def scale(service: ServiceRecord, replicas: int, now: datetime) -> ServiceRecord:
    return service.model_copy(
        update={"replicas": replicas, "desired_state": "running", "updated_at": now}
    )


def update(service: ServiceRecord, spec: TaskSpec, now: datetime) -> ServiceRecord:
    """A new version of the spec; the tasks are replaced by `reconcile`, one at a time."""
    replicas = spec.replicas if spec.replicas is not None else service.replicas
    return service.model_copy(
        update={
            "spec": spec.model_copy(update={"id": None, "replicas": replicas}),
            "replicas": replicas,
            "version": service.version + 1,
            "update_state": UpdateState.ROLLING,
            "update_error": None,
            "desired_state": "running",
            "updated_at": now,
        }
    )


def stop(service: ServiceRecord, now: datetime) -> ServiceRecord:
    """The service asked to stop; an update under way ends with it."""
    return service.model_copy(
        update={
            "desired_state": "stopped",
            "update_state": UpdateState.IDLE,
            "update_error": None,
            "updated_at": now,
        }
    )


def live(tasks: Sequence[TaskRecord]) -> list[TaskRecord]:
    """Tasks that count toward the replicas: not ended and not asked to stop."""
    return [t for t in tasks if not t.state.terminal and t.desired_state == "running"]


def ready(task: TaskRecord) -> bool:
    """Running, and healthy if the spec has a health check."""
    if task.state != TaskState.RUNNING:
        return False
    return task.spec.health_check is None or task.health == Health.HEALTHY


def reconcile(
    service: ServiceRecord, tasks: Sequence[TaskRecord], now: datetime, new_id: NewId
) -> Decision:
    """One step toward what the service wants; `tasks` are all the service's tasks."""
    current = live(tasks)
    if service.desired_state == "stopped":
        return _stop_all(current, now)
    stopping = (t for t in tasks if not t.state.terminal and t.desired_state == "stopped")
    if service.spec.volumes and any(stopping):
        # One container at a time writes a volume's data (a database's would be spoilt):
        # the next task starts once the one stopping has ended (docs/volumes.md).
        return Decision()
    new = [t for t in current if t.version == service.version]
    old = [t for t in current if t.version != service.version]
    if not old:
        decision = _scale(service, new, now, new_id)
        rolled = service.update_state == UpdateState.ROLLING and not decision.tasks
        if rolled and all(ready(t) or _port_bound(t) for t in new):
            done = service.model_copy(update={"update_state": UpdateState.IDLE})
            decision.services.append(done.model_copy(update={"updated_at": now}))
        return decision
    if service.update_state == UpdateState.PAUSED:
        return Decision()
    failed = [
        t
        for t in tasks
        if t.version == service.version and (t.state == TaskState.FAILED or t.restart_count > 0)
    ]
    if failed:
        reason = f"task {failed[0].id} of version {service.version} failed: {failed[0].error}"
        paused = service.model_copy(
            update={"update_state": UpdateState.PAUSED, "update_error": reason, "updated_at": now}
        )
        return Decision(
            services=[paused], refused=f"service {service.name}: update paused: {reason}"
        )
    if stop_first(service):
        return _stop_first(service, tasks, new, old, now, new_id)
    if not all(ready(t) for t in new):
        return Decision()  # wait for the newest task to run (and be healthy)
    if len(new) + len(old) <= service.replicas and len(new) < service.replicas:
        return _start(service, 1, now, new_id)  # one new task beside the old ones
    # The new ones run: retire the oldest old task (or the surplus while scaling down).
    return core.request_stop(_first_to_stop(old, newest=False), now)


def _stop_first(
    service: ServiceRecord,
    tasks: Sequence[TaskRecord],
    new: list[TaskRecord],
    old: list[TaskRecord],
    now: datetime,
    new_id: NewId,
) -> Decision:
    """One step of a stop-first update: start a new task into the room a stopped one left;
    once the new ones run, stop the next old one.

    A new task that waits only for a host port, found taken after the last old task
    stopped, and with no old task being stopped, waits for an old one to let the port go
    (there are more replicas than addresses with it free): stop one. Found taken before
    the last stop, it is about to be placed on the port that stop freed: wait."""
    if len(new) + len(old) < service.replicas:
        return _start(service, 1, now, new_id)
    waiting = [t for t in new if not ready(t)]
    if waiting:
        stopped = [t for t in tasks if t.desired_state == "stopped"]
        if any(not t.state.terminal for t in stopped):
            return Decision()  # an old task is letting its port go
        last = max((t.updated_at for t in stopped), default=None)
        if not all(_port_bound(t) and (last is None or t.updated_at >= last) for t in waiting):
            return Decision()  # wait for the newest task to run (and be healthy)
    return core.request_stop(_first_to_stop(old, newest=False), now)


def _port_bound(task: TaskRecord) -> bool:
    """Pending because no node has its fixed host ports free."""
    unplaced = task.unplaced
    return (
        task.state == TaskState.PENDING
        and unplaced is not None
        and unplaced.kind is NoFitKind.HOST_PORTS
    )


def stop_first(service: ServiceRecord) -> bool:
    """Whether the service's update stops an old task before starting its replacement:
    its tasks publish fixed host ports, which an old and a new task cannot share, or keep
    data on volumes, which one task at a time writes (docs/volumes.md)."""
    return bool(service.spec.fixed_host_ports() or service.spec.volumes)


def _unplaced(task: TaskRecord) -> bool:
    return task.state == TaskState.PENDING


def _first_to_stop(tasks: Sequence[TaskRecord], newest: bool) -> TaskRecord:
    """The task to stop first: an unplaced one, then the newest (or oldest) created."""
    return _stop_order(tasks, newest)[0]


def _stop_order(tasks: Sequence[TaskRecord], newest: bool) -> list[TaskRecord]:
    """Unplaced tasks first (stopping them frees nothing that runs), then by creation,
    the newest or the oldest first."""
    by_age = sorted(tasks, key=lambda t: (t.created_at, t.id), reverse=newest)
    return sorted(by_age, key=lambda t: not _unplaced(t))


def _scale(
    service: ServiceRecord, current: list[TaskRecord], now: datetime, new_id: NewId
) -> Decision:
    missing = service.replicas - len(current)
    if missing > 0:
        return _start(service, missing, now, new_id)
    decision = Decision()
    surplus = -missing
    for task in _stop_order(current, newest=True)[:surplus]:
        decision.extend(core.request_stop(task, now))
    return decision


def _start(service: ServiceRecord, count: int, now: datetime, new_id: NewId) -> Decision:
    decision = Decision()
    spec = task_spec(service)
    for _ in range(count):
        decision.extend(
            core.accept(
                spec, new_id(service.name), now, service=service.name, version=service.version
            )
        )
    return decision


def _stop_all(current: list[TaskRecord], now: datetime) -> Decision:
    decision = Decision()
    for task in current:
        decision.extend(core.request_stop(task, now))
    return decision
