"""Which attempt each task holds on which node, kept in memory for heartbeats.

A heartbeat names every container of its node, and the manager looks up where each of
those tasks is: read from SQLite (a json_extract a row) that was 5 ms for a node of 1,100
containers, and ten nodes' heartbeats arriving together held up every other message for
tens of milliseconds. The store builds this when it opens and moves it with every
recorded decision, as it does the holdings; the tasks table stays the truth.
"""

from __future__ import annotations

from collections.abc import Iterable

from manager.nodes import PLACED, Where
from shared.states import TaskState


def holds_attempt(where: Where) -> bool:
    """Whether a task holds an attempt: placed on a node, or draining from one."""
    return (where.node is not None and where.state in PLACED) or where.draining is not None


class Attempts:
    """The tasks that hold an attempt, and per node the running ones."""

    def __init__(self) -> None:
        self._where: dict[str, Where] = {}
        self._running: dict[str, dict[str, int]] = {}  # node -> task id -> attempt

    def put(self, task_id: str, where: Where) -> Where | None:
        """Where a task is now, as just recorded; returns what was kept before (to undo)."""
        old = self._where.pop(task_id, None)
        if old is not None and old.state == TaskState.RUNNING and old.node is not None:
            running = self._running.get(old.node, {})
            running.pop(task_id, None)
            if not running:
                self._running.pop(old.node, None)
        if holds_attempt(where):
            self._where[task_id] = where
            if where.state == TaskState.RUNNING and where.node is not None:
                self._running.setdefault(where.node, {})[task_id] = where.attempt
        return old

    def restore(self, task_id: str, old: Where | None) -> None:
        """Undo a `put`: keep what was kept before it (nothing, if `old` is None)."""
        self.put(task_id, old if old is not None else Where(None, 0, TaskState.PENDING))

    def forget(self, task_id: str) -> None:
        """A task removed from the store holds nothing any more."""
        self.put(task_id, Where(None, 0, TaskState.COMPLETED))

    def where(self, ids: Iterable[str]) -> dict[str, Where]:
        """Where each of these tasks holds an attempt; one that holds none is left out."""
        return {i: self._where[i] for i in ids if i in self._where}

    def running_on(self, node: str) -> dict[str, int]:
        """The tasks running on a node, id -> attempt."""
        return dict(self._running.get(node, {}))
