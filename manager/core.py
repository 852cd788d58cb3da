"""The manager's decisions as pure functions: (state, message, now) -> Decision.

Nothing here does I/O. The service loads what a decision needs from the store, calls one
of these, records the Decision in one transaction and then publishes its outgoing
messages. Every state change goes through `shared.states.can_transition`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from manager.blocked import Shape, shape
from manager.effects import Decision, Outgoing
from manager.fit import PlacementContext
from manager.restarts import Final, after_attempt, describe
from manager.scheduler import NoFit, Placement, Scheduler, allocate_at, place
from shared import topology
from shared.codec import encode
from shared.messages import RunTask, StopTask, TaskUpdate
from shared.models import AttemptEnd, NodeRecord, Restarted, TaskEvent, TaskRecord, TaskSpec
from shared.placement import sentence
from shared.states import TaskState, can_transition
from shared.volumes import VolumeRecord
from shared.wire import endpoints

REPORTED = frozenset({TaskState.RUNNING, TaskState.COMPLETED, TaskState.FAILED})
"""The states a worker may report; the others are the manager's to decide."""

ENDS = frozenset({TaskState.COMPLETED, TaskState.FAILED, TaskState.LOST})
"""The states that end an attempt: its container is gone (or cut off with its node), so
its host ports and endpoints say nothing any more and are dropped."""


def task_event(task: TaskRecord) -> Outgoing:
    """The `kube.events` message announcing a task's current state."""
    return Outgoing(topology.EVENTS, f"task.{task.state.value}", encode(task))


def node_event(node: NodeRecord, what: str) -> Outgoing:
    """The `kube.events` message `node.<what>` about a node."""
    return Outgoing(topology.EVENTS, f"node.{what}", encode(node))


def move(
    task: TaskRecord,
    state: TaskState,
    now: datetime,
    detail: str | None = None,
    restart: Restarted | None = None,
    **changes: object,
) -> Decision:
    """A transition: new record, history entry, event; refused if the table forbids it."""
    if not can_transition(task.state, state):
        return Decision(
            refused=f"task {task.id}: {task.state.value} -> {state.value} is not allowed"
        )
    # A transition ends whatever the last placement attempt found: `unplaced` is about
    # a pending task that no node could take, and only `schedule` sets it.
    update = {"state": state, "updated_at": now, "unplaced": None, **changes}
    if state in ENDS:
        update = {"host_ports": {}, "endpoints": (), **update}
    moved = task.model_copy(update=update)
    history = TaskEvent(
        state=state, at=now, attempt=moved.attempt, node=moved.node, detail=detail, restart=restart
    )
    return Decision(tasks=[moved], events=[(moved.id, history)], outgoing=[task_event(moved)])


def accept(
    spec: TaskSpec,
    task_id: str,
    now: datetime,
    service: str | None = None,
    version: int | None = None,
    job: str | None = None,
) -> Decision:
    """A new task, pending until `schedule` places it."""
    task = TaskRecord(
        id=task_id,
        name=spec.name,
        state=TaskState.PENDING,
        image=spec.image,
        created_at=now,
        updated_at=now,
        spec=spec.model_copy(update={"id": task_id}),
        service=service,
        version=version,
        job=job,
    )
    detail = f"created by service {service} (version {version})" if service else "submitted"
    detail = f"started by job {job}" if job else detail
    history = TaskEvent(state=TaskState.PENDING, at=now, attempt=0, detail=detail)
    return Decision(tasks=[task], events=[(task.id, history)], outgoing=[task_event(task)])


def schedule(
    pending: Sequence[TaskRecord],
    nodes: Sequence[NodeRecord],
    scheduler: Scheduler,
    now: datetime,
    max_tasks_per_node: int | None = None,
    peers: Mapping[str, Mapping[str, int]] | None = None,
    cluster: str | None = None,
    holds: Mapping[str, float] | None = None,
    ticks: float = 0.0,
    volumes: Mapping[str, str] | None = None,
) -> Decision:
    """Place pending tasks, oldest first, each onto the nodes as the previous left them.

    `peers` maps a task name to how many tasks of that name each node holds (for spread);
    `cluster` is the manager's cluster id, sent with each dispatch (manager/cluster.py).
    `holds` maps a held task to the monotonic time (`ticks` is now) before which it may not
    be placed (manager/holds.py): for it, that time decides, never the wall clock's
    `not_before`. `volumes` maps each volume the tasks name that a node holds to that node
    (manager/volumes.py); a volume first placed here is recorded on the decision.
    """
    decision = Decision()
    free = {node.name: node for node in nodes}
    placed = {name: dict(counts) for name, counts in (peers or {}).items()}
    # Nodes only fill up during a pass, so a shape that fit nowhere fits nowhere for the
    # rest of it: one failed fit answers for every task of that shape.
    failed: dict[Shape, NoFit] = {}
    holders = dict(volumes or {})
    for task in pending:
        hold = holds.get(task.id) if holds else None
        if hold is not None:
            if hold > ticks:
                continue  # its cut-off copy may still run
        elif task.not_before is not None and task.not_before > now:
            continue  # restarting: its backoff has not passed
        key = shape(task.spec)
        outcome: Placement | NoFit | None = failed.get(key)
        if outcome is None:
            context = PlacementContext(max_tasks_per_node, placed.get(task.name, {}), holders)
            outcome = place(scheduler, task.spec, list(free.values()), context)
        if isinstance(outcome, NoFit):
            failed[key] = outcome
            if task.unplaced != outcome.unplaced:
                why = {
                    "error": sentence(outcome.unplaced, task.spec),
                    "unplaced": outcome.unplaced,
                    "updated_at": now,
                }
                decision.tasks.append(task.model_copy(update=why))
            continue
        allocate_at(free, outcome.node, task.spec)
        for volume in task.spec.volumes:
            if volume.name not in holders:
                holders[volume.name] = outcome.node
                made = VolumeRecord(name=volume.name, node=outcome.node, created_at=now)
                decision.volumes.append(made)
        counts = placed.setdefault(task.name, {})
        counts[outcome.node] = counts.get(outcome.node, 0) + 1
        attempt = task.attempt + 1
        decision.extend(
            move(
                task,
                TaskState.SCHEDULED,
                now,
                node=outcome.node,
                attempt=attempt,
                error=None,
                not_before=None,
            )
        )
        dispatch = RunTask(task_id=task.id, attempt=attempt, spec=task.spec, cluster=cluster)
        decision.outgoing.append(Outgoing(topology.DISPATCH, outcome.node, encode(dispatch)))
    return decision


def apply_update(
    task: TaskRecord, update: TaskUpdate, now: datetime, address: str | None = None
) -> Decision:
    """A worker's report about one attempt; stale attempts and bad transitions are refused.

    `address` is the reporting node's advertised address: with the host ports it makes
    the task's endpoints (kept as they were found while the attempt runs).

    A task asked to stop whose current attempt reports running is sent its stop again:
    the stop was lost, or overtook the start on a worker that did not hold it.
    """
    decision = _apply_update(task, update, now, address)
    current = (update.node, update.attempt) == (task.node, task.attempt)
    if (
        current
        and update.state == TaskState.RUNNING
        and task.desired_state == "stopped"
        and task.state in (TaskState.SCHEDULED, TaskState.RUNNING)
    ):
        decision.outgoing.append(stop_attempt(task.id, update.attempt, update.node))
    return decision


def _apply_update(
    task: TaskRecord, update: TaskUpdate, now: datetime, address: str | None
) -> Decision:
    draining = task.draining
    if draining is not None and (update.node, update.attempt) == (draining.node, draining.attempt):
        if update.state.terminal:  # the old attempt ended on its own: nothing left to stop
            return Decision(tasks=[task.model_copy(update={"draining": None})])
        return Decision()  # still running where it drains from, until its successor runs
    if update.disconnected is not None and update.state.terminal:
        return _cut_off(task, update, update.disconnected, now)
    if update.attempt != task.attempt or update.node != task.node:
        decision = Decision(
            refused=f"task {task.id}: update from attempt {update.attempt} on {update.node}"
            f" is stale (current attempt {task.attempt} on {task.node})"
        )
        if update.state == TaskState.RUNNING:
            # A container of a superseded attempt is alive: tell its node to remove it.
            decision.outgoing.append(stop_attempt(task.id, update.attempt, update.node))
        return decision
    if task.state not in (TaskState.SCHEDULED, TaskState.RUNNING):
        # This attempt already ended (a duplicate report, or the task restarted or was lost
        # while the report travelled). A container still running for it must go.
        decision = Decision()
        if update.state == TaskState.RUNNING:
            decision.refused = f"task {task.id}: attempt {update.attempt} already ended"
            decision.outgoing.append(stop_attempt(task.id, update.attempt, update.node))
        return decision
    if update.state == task.state:
        if (update.health, update.last_check) != (task.health, task.last_check):
            # announced like any change of the record: `kube deploy` waits on it
            # (depends_on service_healthy), `kube events` shows it
            checked = task.model_copy(
                update={"health": update.health, "last_check": update.last_check}
            )
            return Decision(tasks=[checked], outgoing=[task_event(checked)])
        return Decision()  # a redelivered report: already applied
    if update.state not in REPORTED:
        return Decision(refused=f"task {task.id}: a worker cannot report {update.state.value}")
    changes: dict[str, Any] = {
        "exit_code": update.exit_code,
        "health": update.health,
        "last_check": update.last_check,
    }
    if update.container_id is not None:
        changes["container_id"] = update.container_id
    changes["image_problem"] = update.image_problem if update.state.terminal else None
    if update.state.terminal:
        ended = task.model_copy(update=changes)
        final = update.image_problem is not None  # no restart can help (shared/images.py)
        return end_attempt(ended, update.state, update.error, now, final=final)
    changes["error"] = update.error
    changes["host_ports"] = dict(update.host_ports)
    changes["endpoints"] = endpoints(address, update.host_ports)
    decision = move(task, update.state, now, detail=update.error, **changes)
    if update.state == TaskState.RUNNING and draining is not None:
        # The successor runs: now the attempt on the draining node may stop.
        decision.tasks[-1] = decision.tasks[-1].model_copy(update={"draining": None})
        decision.outgoing.append(stop_attempt(task.id, draining.attempt, draining.node))
    return decision


def _cut_off(task: TaskRecord, update: TaskUpdate, after: float, now: datetime) -> Decision:
    """A worker stopped an attempt's container itself, `after` seconds out of touch with
    the broker (the task's `on_disconnect`). The current attempt is lost, as with its node,
    and placed again at once: its container is gone. A superseded one (its node was found
    down meanwhile) only enters the task's history."""
    reason = f"stopped by {update.node} after {after:.1f}s out of touch with the broker"
    current = (update.node, update.attempt) == (task.node, task.attempt)
    if current and task.state in (TaskState.SCHEDULED, TaskState.RUNNING):
        decision = move(task, TaskState.LOST, now, detail=reason)
        return decision.extend(end_attempt(decision.tasks[-1], TaskState.LOST, reason, now, True))
    if update.attempt > task.attempt:
        why = f"task {task.id}: attempt {update.attempt} cannot have been cut off"
        return Decision(refused=why)
    entry = TaskEvent(
        state=TaskState.LOST,
        at=now,
        attempt=update.attempt,
        node=update.node,
        detail=reason,
        superseded=True,
    )
    return Decision(events=[(task.id, entry)])


def end_attempt(
    task: TaskRecord,
    outcome: TaskState,
    reason: str | None,
    now: datetime,
    lost: bool = False,
    hold: float = 0.0,
    final: bool = False,
) -> Decision:
    """An attempt ended (completed, failed or lost): restart per the policy, or end the task.

    A lost attempt's replacement waits `hold` seconds (see `manager.nodes.hold_back`),
    asked of the service as data: it keeps the hold on its monotonic clock
    (manager/holds.py), and `not_before` says it for people. A `final` failure (its image
    cannot be had) ends the task whatever the policy.
    """
    step = after_attempt(task, outcome, reason, lost, hold, final)
    if isinstance(step, Final):
        return move(task, step.state, now, detail=step.reason, error=step.reason)
    restart = Restarted(
        cause=AttemptEnd(outcome.value),
        number=step.number,
        limit=task.spec.restart.max_restarts if step.counted else None,
        counted=step.counted,
        delay=step.delay,
        reason=reason,
    )
    count = {"restart_count": step.number} if step.counted else {"lost_count": step.number}
    decision = move(
        task,
        TaskState.PENDING,
        now,
        detail=describe(restart, task.attempt),
        restart=restart,
        error=reason,
        not_before=now + timedelta(seconds=step.delay),
        container_id=None,
        host_ports={},
        endpoints=(),
        health=None,
        **count,
    )
    if lost and hold > 0:
        decision.holds[task.id] = step.delay
    if task.node is not None and not lost:
        # Remove the finished container; a lost node's containers are stopped when it returns.
        decision.outgoing.append(stop_attempt(task.id, task.attempt, task.node))
    return decision


def stop_attempt(task_id: str, attempt: int, node: str) -> Outgoing:
    """The dispatch that makes a node stop and remove one attempt's container."""
    message = StopTask(task_id=task_id, attempt=attempt)
    return Outgoing(topology.DISPATCH, node, encode(message))


def request_stop(task: TaskRecord, now: datetime) -> Decision:
    """Stop a task: a pending one completes at once; a placed one is stopped by its node.

    Stopping a task that already ended removes its container, if any, and changes nothing.
    """
    stop = Decision()
    if task.node is not None and task.attempt > 0:
        stop.outgoing.append(stop_attempt(task.id, task.attempt, task.node))
    if task.draining is not None:
        stop.outgoing.append(stop_attempt(task.id, task.draining.attempt, task.draining.node))
    if task.state.terminal:
        return stop
    if task.state in (TaskState.PENDING, TaskState.LOST):
        return move(
            task,
            TaskState.COMPLETED,
            now,
            detail="stopped before placement",
            desired_state="stopped",
            error=None,
        )
    if task.desired_state == "stopped":
        return stop  # already asked; send the stop again in case it was lost
    stopping = task.model_copy(update={"desired_state": "stopped", "updated_at": now})
    return Decision(tasks=[stopping]).extend(stop)
