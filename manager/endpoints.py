"""A service's endpoints, pure: where its serving tasks answer, and the event that
announces a change (`service.endpoints` on kube.events), so that a load balancer or DNS
can follow the service without polling.

A task serves when it runs, is not being stopped, and, if its spec has a health check,
is healthy. Its endpoints are its node's address and each host port, made when its
attempt started running (manager/core.py): a node whose address changes later keeps its
running tasks' endpoints until their next attempt.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from manager.effects import Decision, Outgoing
from shared import topology
from shared.codec import encode
from shared.models import Health, ServiceEndpoints, ServiceRecord, TaskRecord
from shared.states import TaskState

EVENT_KEY = "service.endpoints"


def serving(task: TaskRecord) -> bool:
    """Whether the task takes traffic: running, not asked to stop, healthy if checked."""
    return (
        task.state == TaskState.RUNNING
        and task.desired_state == "running"
        and (task.spec.health_check is None or task.health == Health.HEALTHY)
    )


def of_tasks(tasks: Iterable[TaskRecord]) -> tuple[str, ...]:
    """The endpoints of the serving tasks, each once, sorted."""
    return tuple(sorted({e for task in tasks if serving(task) for e in task.endpoints}))


def may_change(task: TaskRecord) -> bool:
    """Whether this new record of a service's task may change the service's endpoints:
    a placement, or a new task, never does (neither ran before nor runs now)."""
    return task.service is not None and not (
        task.state == TaskState.SCHEDULED or (task.state == TaskState.PENDING and task.attempt == 0)
    )


def follow(service: ServiceRecord, tasks: Iterable[TaskRecord], now: datetime) -> Decision:
    """The service with its endpoints as its tasks now say, and the event, if they changed."""
    found = of_tasks(tasks)
    if found == service.endpoints:
        return Decision()
    changed = service.model_copy(update={"endpoints": found})
    body = ServiceEndpoints(name=service.name, endpoints=found, at=now)
    return Decision(
        services=[changed], outgoing=[Outgoing(topology.EVENTS, EVENT_KEY, encode(body))]
    )
