"""Dispatches that never reached a worker: the broker dead-lettered them (a worker that
died while starting the task as many times as the delivery limit, or a message that
expired), or the worker refused them unread. Their tasks would stay scheduled for ever;
instead their attempt ends failed with the reason, and the restart policy decides.

The manager reads its own copy of the dead-letter exchange (`kube.manager.dead-dispatches`),
which also carries everything else that was dead-lettered: what did not come from a
node's queue is passed over.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from manager.core import end_attempt
from manager.effects import Decision
from shared.messages import RunTask
from shared.models import TaskRecord
from shared.states import TaskState
from shared.topology import REASON_HEADER, node_queue

NODE_QUEUE_PREFIX = node_queue("")


@dataclass(frozen=True)
class DeadDispatch:
    """Where a dead letter came from and why, as its headers say."""

    queue: str
    reason: str

    @property
    def node(self) -> str | None:
        """The node whose queue it left, or None if it left another queue."""
        if not self.queue.startswith(NODE_QUEUE_PREFIX):
            return None
        return self.queue[len(NODE_QUEUE_PREFIX) :] or None


def origin(headers: Mapping[str, object]) -> DeadDispatch:
    """Read a dead letter's origin: kube's own copy says x-kube-queue and x-kube-reason;
    the broker's says x-first-death-queue and x-first-death-reason (e.g. delivery_limit)."""
    if "x-kube-queue" in headers:
        return DeadDispatch(str(headers["x-kube-queue"]), str(headers.get(REASON_HEADER, "")))
    queue = str(headers.get("x-first-death-queue", ""))
    why = str(headers.get("x-first-death-reason", "unknown"))
    reasons = {
        "delivery_limit": "the worker did not finish it in as many deliveries as allowed",
        "expired": "it expired in the queue",
        "maxlen": "the queue was full",
        "rejected": "the worker rejected it",
    }
    return DeadDispatch(queue, reasons.get(why, why))


def lost_dispatch(
    task: TaskRecord | None, run: RunTask, dead: DeadDispatch, now: datetime
) -> Decision:
    """End the attempt a dead-lettered RunTask was for, if the task still waits for it."""
    if (
        task is None
        or task.state != TaskState.SCHEDULED
        or task.attempt != run.attempt
        or task.node != dead.node
    ):
        return Decision()  # it moved on since (or never existed): nothing waits for it
    reason = (
        f"the dispatch of attempt {run.attempt} to {dead.node} was dead-lettered: {dead.reason}"
    )
    return end_attempt(task, TaskState.FAILED, reason, now)
