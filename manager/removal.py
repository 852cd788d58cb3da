"""Removing what ended (`kube rm`), pure: what a removal forgets, or why it cannot.

Only what has ended may be removed: a task that completed or failed, a service that was
stopped and whose tasks have all ended, a node that is down and holds no task. Removing
forgets the record and its history, publishes `task.removed`, `service.removed` or
`node.removed`, and tells the node to remove a container the task may have left (an
exited container is kept for `kube logs` until then).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from manager.core import node_event, stop_attempt
from manager.effects import Decision, Outgoing
from shared import topology
from shared.codec import encode
from shared.models import NodeRecord, NodeStatus, ServiceRecord, TaskRecord


class Why(enum.StrEnum):
    """Why something named in a removal cannot be removed."""

    UNKNOWN = "unknown"  # no task, service or node has that name
    TASK_NOT_ENDED = "task-not-ended"  # the task is still pending, placed or lost
    SERVICE_RUNNING = "service-running"  # the service was not stopped
    SERVICE_TASKS_LEFT = "service-tasks-left"  # stopped, but some of its tasks still run
    NODE_READY = "node-ready"  # its worker sends heartbeats
    NODE_HOLDS_TASKS = "node-holds-tasks"  # tasks are still placed on it


@dataclass(frozen=True)
class Kept:
    """Something a removal named that stays, and why; `sentence` renders it for people."""

    kind: str  # "task", "service", "node", or "task or service" when unknown
    name: str
    why: Why
    state: str = ""  # the task's state, or how many tasks are left
    count: int = 0

    def sentence(self) -> str:
        if self.why == Why.UNKNOWN:
            return f"no {self.kind} named {self.name!r}"
        if self.why == Why.TASK_NOT_ENDED:
            return f"task {self.name} is {self.state}, not ended: stop it first (kube stop)"
        if self.why == Why.SERVICE_RUNNING:
            return f"service {self.name} is running: stop it first (kube stop {self.name})"
        if self.why == Why.SERVICE_TASKS_LEFT:
            return f"service {self.name} is stopping: {self.count} of its tasks have not ended"
        if self.why == Why.NODE_READY:
            return f"node {self.name} is ready: only a down node can be removed"
        return f"node {self.name} still holds {self.count} task(s)"


def refusal(kept: Sequence[Kept]) -> str:
    """The one sentence that refuses a removal, naming everything that stays."""
    return "nothing removed: " + "; ".join(k.sentence() for k in kept)


def task_kept(task: TaskRecord) -> Kept | None:
    if task.state.terminal:
        return None
    return Kept("task", task.id, Why.TASK_NOT_ENDED, state=task.state.value)


def service_kept(service: ServiceRecord, tasks: Sequence[TaskRecord]) -> Kept | None:
    """`tasks` are the service's tasks."""
    if service.desired_state != "stopped":
        return Kept("service", service.name, Why.SERVICE_RUNNING)
    left = sum(1 for task in tasks if not task.state.terminal)
    if left:
        return Kept("service", service.name, Why.SERVICE_TASKS_LEFT, count=left)
    return None


def node_kept(node: NodeRecord) -> Kept | None:
    if node.status == NodeStatus.READY:
        return Kept("node", node.name, Why.NODE_READY)
    if node.task_count:
        return Kept("node", node.name, Why.NODE_HOLDS_TASKS, count=node.task_count)
    return None


def remove_task(task: TaskRecord) -> Decision:
    """Forget an ended task and its history; remove a container it may have left."""
    decision = Decision(outgoing=[Outgoing(topology.EVENTS, "task.removed", encode(task))])
    if task.node is not None and task.attempt > 0:
        decision.outgoing.append(stop_attempt(task.id, task.attempt, task.node))
    if task.draining is not None:
        decision.outgoing.append(stop_attempt(task.id, task.draining.attempt, task.draining.node))
    decision.removed.tasks.append(task.id)
    return decision


def remove_service(service: ServiceRecord, tasks: Sequence[TaskRecord]) -> Decision:
    """Forget a stopped service and its tasks (all ended)."""
    decision = Decision(outgoing=[Outgoing(topology.EVENTS, "service.removed", encode(service))])
    decision.removed.services.append(service.name)
    for task in tasks:
        decision.extend(remove_task(task))
    return decision


def remove_node(node: NodeRecord) -> Decision:
    """Forget a down node; if its worker comes back, it joins again as a new node."""
    decision = Decision(outgoing=[node_event(node, "removed")])
    decision.removed.nodes.append(node.name)
    return decision
