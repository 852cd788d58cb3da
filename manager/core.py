"""The manager's decisions as pure functions: (state, message, now) -> Decision.

Nothing here does I/O. The service loads what a decision needs from the store, calls one
of these, records the Decision in one transaction and then publishes its outgoing
messages. Every state change goes through `shared.states.can_transition`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from manager.effects import Decision, Outgoing
from manager.scheduler import NoFit, Scheduler, allocate, place
from shared import topology
from shared.codec import encode
from shared.messages import Heartbeat, RunTask, StopTask, TaskUpdate
from shared.models import NodeRecord, NodeStatus, TaskEvent, TaskRecord, TaskSpec
from shared.states import TaskState, can_transition


def task_event(task: TaskRecord) -> Outgoing:
    """The `kube.events` message announcing a task's current state."""
    return Outgoing(topology.EVENTS, f"task.{task.state.value}", encode(task))


def node_event(node: NodeRecord, what: str) -> Outgoing:
    """The `kube.events` message `node.<what>` about a node."""
    return Outgoing(topology.EVENTS, f"node.{what}", encode(node))


def _move(
    task: TaskRecord, state: TaskState, now: datetime, detail: str | None = None, **changes: object
) -> Decision:
    """Record a transition the caller has checked: new record, history entry, event."""
    moved = task.model_copy(update={"state": state, "updated_at": now, **changes})
    history = TaskEvent(state=state, at=now, attempt=moved.attempt, node=moved.node, detail=detail)
    return Decision(tasks=[moved], events=[(moved.id, history)], outgoing=[task_event(moved)])


def accept(spec: TaskSpec, task_id: str, now: datetime) -> Decision:
    """A new task, pending until `schedule` places it."""
    task = TaskRecord(
        id=task_id,
        name=spec.name,
        state=TaskState.PENDING,
        image=spec.image,
        created_at=now,
        updated_at=now,
        spec=spec.model_copy(update={"id": task_id}),
    )
    history = TaskEvent(state=TaskState.PENDING, at=now, attempt=0, detail="submitted")
    return Decision(tasks=[task], events=[(task.id, history)], outgoing=[task_event(task)])


def schedule(
    pending: Sequence[TaskRecord],
    nodes: Sequence[NodeRecord],
    scheduler: Scheduler,
    now: datetime,
) -> Decision:
    """Place pending tasks, oldest first, each onto the nodes as the previous left them."""
    decision = Decision()
    free = {node.name: node for node in nodes}
    for task in pending:
        outcome = place(scheduler, task.spec, list(free.values()))
        if isinstance(outcome, NoFit):
            if task.error != outcome.reason:
                decision.tasks.append(
                    task.model_copy(update={"error": outcome.reason, "updated_at": now})
                )
            continue
        free[outcome.node] = allocate(free[outcome.node], task.spec)
        attempt = task.attempt + 1
        decision.extend(
            _move(task, TaskState.SCHEDULED, now, node=outcome.node, attempt=attempt, error=None)
        )
        dispatch = RunTask(task_id=task.id, attempt=attempt, spec=task.spec)
        decision.outgoing.append(Outgoing(topology.DISPATCH, outcome.node, encode(dispatch)))
    return decision


def apply_update(task: TaskRecord, update: TaskUpdate, now: datetime) -> Decision:
    """A worker's report about one attempt; stale attempts and bad transitions are refused."""
    if update.attempt != task.attempt or update.node != task.node:
        decision = Decision(
            refused=f"task {task.id}: update from attempt {update.attempt} on {update.node}"
            f" is stale (current attempt {task.attempt} on {task.node})"
        )
        if update.state == TaskState.RUNNING:
            # A container of a superseded attempt is alive: tell its node to remove it.
            stop = StopTask(task_id=task.id, attempt=update.attempt)
            decision.outgoing.append(Outgoing(topology.DISPATCH, update.node, encode(stop)))
        return decision
    if update.state == task.state:
        return Decision()  # a redelivered report: already applied
    if not can_transition(task.state, update.state):
        return Decision(
            refused=f"task {task.id}: {task.state.value} -> {update.state.value} is not allowed"
        )
    changes: dict[str, object] = {"error": update.error, "exit_code": update.exit_code}
    if update.container_id is not None:
        changes["container_id"] = update.container_id
    if update.host_ports or update.state == TaskState.RUNNING:
        changes["host_ports"] = dict(update.host_ports)
    return _move(task, update.state, now, detail=update.error, **changes)


def request_stop(task: TaskRecord, now: datetime) -> Decision:
    """Stop a task: a pending one completes at once; a placed one is stopped by its node.

    Stopping a task that already ended removes its container, if any, and changes nothing.
    """
    stop = Decision()
    if task.node is not None and task.attempt > 0:
        message = StopTask(task_id=task.id, attempt=task.attempt)
        stop.outgoing.append(Outgoing(topology.DISPATCH, task.node, encode(message)))
    if task.state.terminal:
        return stop
    if task.state == TaskState.PENDING:
        return _move(
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


def apply_heartbeat(known: NodeRecord | None, beat: Heartbeat, now: datetime) -> Decision:
    """Record a worker's heartbeat; announce it, and announce a node that (re)joined."""
    node = NodeRecord(
        name=beat.node,
        status=NodeStatus.READY,
        cpus=beat.cpus,
        memory=beat.memory,
        disk=beat.disk,
        labels=dict(beat.labels),
        last_heartbeat=now,
        stats=beat.stats,
    )
    decision = Decision(nodes=[node])
    if known is None or known.status != NodeStatus.READY:
        decision.outgoing.append(node_event(node, "ready"))
    decision.outgoing.append(node_event(node, "heartbeat"))
    return decision


def mark_down(
    nodes: Sequence[NodeRecord],
    now: datetime,
    down_after: float,
    not_before: datetime | None = None,
) -> Decision:
    """Nodes not heard from for down_after seconds become down.

    Silence is counted from not_before at the earliest (the manager's own start), so a
    restarted manager gives every node a full interval before calling it down.
    """
    decision = Decision()
    limit = timedelta(seconds=down_after)
    for node in nodes:
        seen = max(node.last_heartbeat, not_before) if not_before else node.last_heartbeat
        if node.status == NodeStatus.READY and now - seen > limit:
            down = node.model_copy(update={"status": NodeStatus.DOWN})
            decision.nodes.append(down)
            decision.outgoing.append(node_event(down, "down"))
    return decision
