"""Pending tasks that fit nowhere, set aside until something changes that could let them in.

After a failed placement a task is blocked under its shape (what it asks for, its
constraints and its spread): tasks of one shape fit the same nodes, so one check answers
for all of them. A blocked task is tried again only when a node improves in a way that
could let its shape in (it joins, comes back, its engine returns, it is uncordoned, its
labels change, or it has more cpu, memory or disk free, fewer tasks or a host port
freed) and the shape
fits on that node as it is now, as Nomad's blocked evaluations are (nomad/blocked_evals.go).
A task waiting out a restart backoff is tried when its time comes; a fresh one at once.
A replacement held until its cut-off copy has surely stopped is tried when its hold ends,
on the monotonic clock (manager/holds.py), whatever its `not_before` says.

Why nothing can be missed: a shape fits nowhere in the node views this index last saw
(the views are taken after the decisions that blocked it, and nodes only fill up within
a decision), so it can only come to fit on a node whose view improves, and every
recorded decision shows the index the nodes it touched.

This is a cache of what the store holds: `stale` makes the service rebuild it from the
pending tasks (when the manager starts, and after a delivery's writes are rolled back);
so does a count of pending tasks that differs from the store's (a rollback nobody
reported, say: the placement it undid left a pending task this index had forgotten).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from manager.effects import Decision
from manager.fit import CPU_EPSILON, PlacementContext, fits, over_cap
from manager.holds import Holds
from shared.models import NodeRecord, NodeStatus, TaskRecord, TaskSpec
from shared.specs import Constraint
from shared.states import TaskState

DUE_PER_PASS = 1000
"""Tasks one scheduling pass tries at most: a pass holds up every other message (a first
try of a thousand tasks that fit nowhere, read, explained and written, took 0.1 to 0.2 s
on the 2-core test machine), and what is left is tried on the next one (a tick away)."""

Shape = tuple[float, int, int, tuple[Constraint, ...], str | None, tuple[int, ...], tuple[str, ...]]
"""What decides which nodes a task fits: cpu, memory, disk, constraints, spread label,
fixed host ports, volumes (a task with volumes fits only the node holding them: it is
woken by any node it fits, and placed only on that one, manager/volumes.py)."""


def shape(spec: TaskSpec) -> Shape:
    """The shape of a task: tasks of one shape fit exactly the same nodes."""
    volumes = tuple(sorted(v.name for v in spec.volumes))
    return (
        spec.cpu,
        spec.memory,
        spec.disk,
        spec.rules(),
        spec.spread,
        spec.fixed_host_ports(),
        volumes,
    )


@dataclass(frozen=True)
class NodeView:
    """What of a node decides whether a task fits on it."""

    open: bool  # ready, engine up, not cordoned
    labels: tuple[tuple[str, str], ...]
    free_cpu: float
    free_memory: int
    free_disk: int
    tasks: int
    ports: frozenset[int]  # fixed host ports held there

    @classmethod
    def of(cls, node: NodeRecord) -> NodeView:
        return cls(
            open=node.status is NodeStatus.READY and node.engine_ok and node.schedulable,
            labels=tuple(sorted(node.labels.items())),
            free_cpu=node.cpus - node.allocated_cpu,
            free_memory=node.memory - node.allocated_memory,
            free_disk=node.disk - node.allocated_disk,
            tasks=node.task_count,
            ports=frozenset(node.reserved_ports),
        )

    def better_than(self, old: NodeView) -> bool:
        """Whether a task that did not fit the old view might fit this one."""
        return self.open and (
            not old.open
            or self.labels != old.labels
            or self.free_cpu > old.free_cpu + CPU_EPSILON
            or self.free_memory > old.free_memory
            or self.free_disk > old.free_disk
            or self.tasks < old.tasks
            or not self.ports >= old.ports  # a host port was freed
        )


@dataclass
class Group:
    """Blocked tasks of one shape, and one of their specs to check the shape with."""

    spec: TaskSpec
    ids: set[str] = field(default_factory=set)


class Blocked:
    """Which pending tasks to try on the next scheduling pass, and which wait for a change."""

    def __init__(self, max_tasks_per_node: int | None = None, holds: Holds | None = None) -> None:
        self.context = PlacementContext(max_tasks_per_node)
        self.holds = holds or Holds()  # the service's, kept across rebuilds
        self.stale = True  # nothing known yet: rebuild from the store first
        self.checks = 0  # shape-on-node checks made by wakes (the unit tests count them)
        self._clear()

    def _clear(self) -> None:
        self._due: dict[str, None] = {}  # ordered: tried on the next pass
        self._timers: list[tuple[datetime, str]] = []  # (not_before, task id), a heap
        self._backoff: dict[str, datetime] = {}  # task id -> not_before, for the heap
        self._hold_timers: list[tuple[float, str]] = []  # (monotonic end, task id), a heap
        self._holding: dict[str, float] = {}  # task id -> monotonic end, for the heap
        self._groups: dict[Shape, Group] = {}
        self._shape_of: dict[str, Shape] = {}
        self._seen: dict[str, NodeView] = {}

    # -- what the service tells it ---------------------------------------------------------

    def rebuild(self, pending: Iterable[TaskRecord], nodes: Iterable[NodeRecord]) -> None:
        """Start over from the store. A task whose record says why it fit nowhere is
        blocked again, and every node counts as new, so each shape that fits a node now
        is woken at once; the other pending tasks are tried."""
        self._clear()
        self.stale = False
        for task in pending:
            if task.unplaced is not None and task.not_before is None:
                self._block(task)
            else:
                self._wait(task)
        for node in nodes:
            self.observe(node)

    def reset(self) -> None:
        """Forget everything (a delivery's writes were rolled back): rebuild before the
        next pass."""
        self.stale = True

    def record(self, decision: Decision, node: Callable[[str], NodeRecord | None]) -> None:
        """A decision was recorded: follow its tasks, and look at every node it touched as
        the store now has it (`node` reads one), waking the shapes that now fit there."""
        if self.stale:
            return
        final = {task.id: task for task in decision.tasks}
        touched = {n.name for n in decision.nodes}
        for task in decision.tasks:
            if task.node is not None:
                touched.add(task.node)
            if task.draining is not None:
                touched.add(task.draining.node)
        for task_id in decision.removed.tasks:  # ended, so known only if a rollback hid it
            self._forget(task_id)
        for name in decision.removed.nodes:
            self._seen.pop(name, None)
            touched.discard(name)
        for task in final.values():
            if task.state != TaskState.PENDING:
                self._forget(task.id)
            elif not (task.id in self._shape_of and task.unplaced is not None):
                self._wait(task)  # new, or pending anew: tried on the next pass
        for name in sorted(touched):
            record = node(name)
            if record is None:
                self._seen.pop(name, None)
            else:
                self.observe(record)

    def observe(self, node: NodeRecord) -> None:
        """A node as it is now: if it improved, wake every shape that fits on it."""
        view = NodeView.of(node)
        old = self._seen.get(node.name)
        self._seen[node.name] = view
        if old is not None and not view.better_than(old):
            return
        if not view.open:
            return
        for key, group in list(self._groups.items()):
            self.checks += 1
            if fits(group.spec, node) and over_cap(node, self.context) is None:
                del self._groups[key]
                for task_id in sorted(group.ids):
                    del self._shape_of[task_id]
                    self._due[task_id] = None

    def settle(
        self, tried: Sequence[TaskRecord], decision: Decision, now: datetime, ticks: float = 0.0
    ) -> None:
        """After a pass tried these tasks: the placed are gone, those still in backoff or
        held (`ticks` is the monotonic now) wait for their time, the rest are blocked under
        their shape."""
        placed = {task.id for task in decision.tasks if task.state != TaskState.PENDING}
        for task in tried:
            if task.id in placed:
                self._forget(task.id)
            elif task.id in self.holds.until:
                if self.holds.held(task.id, ticks):
                    self._wait(task)
                else:
                    self._block(task)
            elif task.not_before is not None and task.not_before > now:
                self._wait(task)
            else:
                self._block(task)

    # -- what the service asks -------------------------------------------------------------

    def due(self, now: datetime, limit: int = DUE_PER_PASS, ticks: float = 0.0) -> list[str]:
        """Up to `limit` tasks to try now (`ticks`: now on the monotonic clock), longest
        due first (taken: `settle` says what became of them; the rest stay due for the next
        pass)."""
        while self._timers and self._timers[0][0] <= now:
            at, task_id = heapq.heappop(self._timers)
            if self._backoff.get(task_id) == at:
                del self._backoff[task_id]
                self._due[task_id] = None
        while self._hold_timers and self._hold_timers[0][0] <= ticks:
            end, task_id = heapq.heappop(self._hold_timers)
            if self._holding.get(task_id) == end:
                del self._holding[task_id]
                self._due[task_id] = None
        due = list(itertools.islice(self._due, limit))
        for task_id in due:
            del self._due[task_id]
        return due

    @property
    def pending(self) -> int:
        """How many pending tasks it knows (the store must have as many, between passes)."""
        return len(self._due) + len(self._backoff) + len(self._holding) + len(self._shape_of)

    @property
    def blocked(self) -> int:
        """How many tasks wait for a change."""
        return len(self._shape_of)

    @property
    def groups(self) -> int:
        """How many shapes they fall into."""
        return len(self._groups)

    def is_blocked(self, task_id: str) -> bool:
        return task_id in self._shape_of

    # -- bookkeeping -----------------------------------------------------------------------

    def _forget(self, task_id: str) -> None:
        self._due.pop(task_id, None)
        self._backoff.pop(task_id, None)  # its heap entry is skipped when it comes up
        self._holding.pop(task_id, None)  # likewise
        key = self._shape_of.pop(task_id, None)
        if key is not None:
            group = self._groups[key]
            group.ids.discard(task_id)
            if not group.ids:
                del self._groups[key]

    def _wait(self, task: TaskRecord) -> None:
        """Try the task on the next pass, or once its hold or backoff ends."""
        self._forget(task.id)
        end = self.holds.until.get(task.id)
        if end is not None:
            self._holding[task.id] = end
            heapq.heappush(self._hold_timers, (end, task.id))
        elif task.not_before is None:
            self._due[task.id] = None
        else:
            self._backoff[task.id] = task.not_before
            heapq.heappush(self._timers, (task.not_before, task.id))

    def _block(self, task: TaskRecord) -> None:
        self._forget(task.id)
        key = shape(task.spec)
        self._groups.setdefault(key, Group(task.spec)).ids.add(task.id)
        self._shape_of[task.id] = key
