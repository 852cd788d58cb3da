"""What each node holds, kept in memory: reserved cpu, memory, disk and tasks per node,
and tasks per (name, node) for spread.

The store builds it from the tasks table when it opens and moves it with every recorded
decision, so a placement costs no scan of the tasks (a sum over 10,000 running tasks per
message was the manager's main cost). The tasks table stays the truth: a restart
rebuilds this from it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from shared.states import TaskState

HOLDING = frozenset({TaskState.SCHEDULED, TaskState.RUNNING})
"""States in which a task holds resources on its node."""


@dataclass(frozen=True)
class Hold:
    """One task's claim on a node."""

    name: str
    node: str
    cpu: float
    memory: int
    disk: int
    ports: tuple[int, ...] = ()  # fixed host ports


@dataclass
class Reserved:
    cpu: float = 0.0
    memory: int = 0
    disk: int = 0
    tasks: int = 0
    ports: Counter[int] = field(default_factory=Counter)  # fixed host port -> tasks holding it


@dataclass
class Holdings:
    """Sums of the claims of scheduled and running tasks."""

    nodes: dict[str, Reserved] = field(default_factory=lambda: defaultdict(Reserved))
    peers: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, hold: Hold) -> None:
        reserved = self.nodes[hold.node]
        reserved.cpu += hold.cpu
        reserved.memory += hold.memory
        reserved.disk += hold.disk
        reserved.tasks += 1
        reserved.ports.update(hold.ports)
        by_node = self.peers.setdefault(hold.name, {})
        by_node[hold.node] = by_node.get(hold.node, 0) + 1

    def remove(self, hold: Hold) -> None:
        reserved = self.nodes[hold.node]
        reserved.cpu = max(0.0, reserved.cpu - hold.cpu) if reserved.tasks > 1 else 0.0
        reserved.memory = max(0, reserved.memory - hold.memory)
        reserved.disk = max(0, reserved.disk - hold.disk)
        reserved.tasks = max(0, reserved.tasks - 1)
        reserved.ports.subtract(hold.ports)
        for port in hold.ports:
            if reserved.ports[port] <= 0:
                del reserved.ports[port]
        by_node = self.peers.get(hold.name, {})
        left = by_node.get(hold.node, 0) - 1
        if left > 0:
            by_node[hold.node] = left
        else:
            by_node.pop(hold.node, None)
            if not by_node:
                self.peers.pop(hold.name, None)
