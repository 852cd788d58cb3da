"""When each held replacement may be placed, on the manager's monotonic clock.

A task lost with its node that asked its worker to stop it once cut off
(`on_disconnect.stop_after_seconds`) is placed again only once that worker has surely
stopped it (manager/nodes.py `hold_back`): two live copies are what the hold is for. The
hold is an interval, so it is kept here on the monotonic clock of the running manager, as
silence is (manager/liveness.py): a step of the wall clock (NTP, an operator) neither
shortens nor lengthens it. The task record's `not_before` says the same time on the wall
clock, for people only.

In memory only. A manager that starts (again, or as a new leader) cannot know how much of
a hold passed, so it holds each task that may be waiting for one for its full length again,
from its own start (`rearm`): later than needed, never too early.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from manager.effects import Decision
from shared.models import TaskEvent, TaskRecord
from shared.states import TaskState


def may_be_held(task: TaskRecord, history: Iterable[TaskEvent]) -> bool:
    """Whether a task a starting manager finds may be waiting out a hold: it is pending,
    asked to be stopped once cut off, and its last restart was a node loss's that waited."""
    if task.state != TaskState.PENDING or task.spec.on_disconnect is None:
        return False
    restarts = [event.restart for event in history if event.restart is not None]
    return bool(restarts) and not restarts[-1].counted and restarts[-1].delay > 0


@dataclass
class Holds:
    """The monotonic time before which each held task may not be placed."""

    since: float = 0.0  # when the manager started, on its monotonic clock
    until: dict[str, float] = field(default_factory=dict)  # task id -> monotonic deadline
    armed: bool = False  # whether the holds a start may have missed were armed again

    def follow(self, decision: Decision, now: float) -> None:
        """A decision was recorded: arm the holds it asks for, and forget the tasks it
        placed, ended or removed."""
        for task_id, seconds in decision.holds.items():
            self.until[task_id] = now + seconds
        if not self.until:
            return
        for task in decision.tasks:
            if task.state != TaskState.PENDING and task.id not in decision.holds:
                self.until.pop(task.id, None)
        for task_id in decision.removed.tasks:
            self.until.pop(task_id, None)

    def rearm(self, seconds: Mapping[str, float]) -> None:
        """Once, after the start: hold these tasks for these full lengths from the start."""
        for task_id, length in seconds.items():
            self.until.setdefault(task_id, self.since + length)
        self.armed = True

    def held(self, task_id: str, now: float) -> bool:
        return self.until.get(task_id, now) > now
