"""What each node holds, kept in memory: reserved cpu, memory, disk and tasks per node,
and tasks per (name, node) for spread; and the host ports that containers of attempts
no longer counted (superseded, lost, draining) still hold there, until a heartbeat shows
them gone.

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
    ports: tuple[int, ...] = ()  # fixed host ports, and the host ports it was given


@dataclass
class Reserved:
    cpu: float = 0.0
    memory: int = 0
    disk: int = 0
    tasks: int = 0
    ports: Counter[int] = field(default_factory=Counter)  # host port -> tasks holding it


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


@dataclass
class Leftovers:
    """Host ports held on each node by containers of attempts the holdings do not count:
    a superseded or lost attempt still being stopped, an attempt draining from its node.

    A heartbeat lists a node's containers, in parts: each part adds the ports of the
    uncounted ones it lists; the last part of a whole heartbeat (manager/nodes.py
    `gather`) sets them to what the whole listed, which frees the ports of the gone.
    """

    held: dict[str, frozenset[int]] = field(default_factory=dict)
    gathering: dict[str, frozenset[int]] = field(default_factory=dict)

    def heard(self, node: str, ports: frozenset[int], first: bool, whole: bool) -> bool:
        """Note one heartbeat part's uncounted ports; whether a port was freed."""
        gathered = ports if first else self.gathering.get(node, frozenset()) | ports
        before = self.held.get(node, frozenset())
        after = gathered if whole else before | gathered
        if whole or not gathered:
            self.gathering.pop(node, None)
        else:
            self.gathering[node] = gathered
        if after:
            self.held[node] = after
        else:
            self.held.pop(node, None)
        return not after >= before

    def forget(self, node: str) -> None:
        self.held.pop(node, None)
        self.gathering.pop(node, None)
