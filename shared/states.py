"""Task states and the one table of the transitions allowed between them."""

from __future__ import annotations

import enum


class TaskState(enum.StrEnum):
    """Where a task is in its life; the values are the wire strings."""

    PENDING = "pending"  # accepted, waiting for a node
    SCHEDULED = "scheduled"  # placed on a node, dispatch sent, container not yet started
    RUNNING = "running"  # its container runs
    COMPLETED = "completed"  # exited 0, or stopped on request
    FAILED = "failed"  # exited non-zero, could not be started, or gave up restarting
    LOST = "lost"  # its node went silent; the task is restarted per its policy or fails

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({TaskState.COMPLETED, TaskState.FAILED})

# The only place that says which state may follow which. Staying in the same state is
# not a transition: callers treat it as a duplicate (an at-least-once redelivery).
# A restart is a move back to PENDING: the attempt ended and another will be placed.
TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    TaskState.PENDING: frozenset({TaskState.SCHEDULED, TaskState.COMPLETED, TaskState.FAILED}),
    TaskState.SCHEDULED: frozenset(
        {
            TaskState.RUNNING,
            TaskState.COMPLETED,
            TaskState.FAILED,
            TaskState.PENDING,
            TaskState.LOST,
        }
    ),
    TaskState.RUNNING: frozenset(
        {TaskState.COMPLETED, TaskState.FAILED, TaskState.PENDING, TaskState.LOST}
    ),
    TaskState.LOST: frozenset({TaskState.PENDING, TaskState.FAILED, TaskState.COMPLETED}),
    TaskState.COMPLETED: frozenset(),
    TaskState.FAILED: frozenset(),
}


def can_transition(src: TaskState, dst: TaskState) -> bool:
    """True when a task in `src` may move to `dst`."""
    return dst in TRANSITIONS[src]
