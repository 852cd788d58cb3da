"""Where a task with volumes may run: on the node that holds them (pure; docs/volumes.md).

A volume is a volume of one node's engine, so once a task that names it has been placed,
every task naming it (that one's next attempts, or another task sharing it, as Docker's
local driver shares a volume between containers of one engine) goes to that node or waits
for it; it never starts elsewhere with an empty volume. A volume not held yet goes where
the scheduler places the first task that names it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from manager.effects import Decision, Outgoing, Removal
from shared import topology
from shared.codec import encode
from shared.messages import RemoveVolume
from shared.models import NodeRecord, NodeStatus, TaskSpec
from shared.placement import NoFitKind, Unplaced
from shared.volumes import VolumeRecord


@dataclass(frozen=True)
class Pinned:
    """The nodes a task may go to, given where its volumes are: `held` maps each of its
    volumes that a node holds to that node (empty: any node); `unplaced`, when set, says
    that no node may take it whatever their resources."""

    nodes: Sequence[NodeRecord]
    held: dict[str, str]
    unplaced: Unplaced | None = None


def pin(spec: TaskSpec, nodes: Sequence[NodeRecord], holders: Mapping[str, str]) -> Pinned:
    """The nodes the task may be placed on: all, or only the one holding its volumes."""
    held = {v.name: holders[v.name] for v in spec.volumes if v.name in holders}
    if not held:
        return Pinned(nodes, held)
    if len(set(held.values())) > 1:
        return Pinned((), held, Unplaced(kind=NoFitKind.VOLUMES_APART, volumes=held))
    (node,) = set(held.values())
    there = [n for n in nodes if n.name == node]
    if not there:  # removed from the cluster (it may join again, volumes and all)
        return Pinned((), held, Unplaced(kind=NoFitKind.NODES_DOWN, volumes=held))
    return Pinned(there, held)


class VolumeRefusal(enum.Enum):
    """Why `kube volume rm` is refused."""

    UNKNOWN = "unknown"
    IN_USE = "in_use"  # a task that has not ended names it
    NODE_DOWN = "node_down"  # its node cannot remove it now
    NODE_GONE = "node_gone"  # its node was removed from the cluster


@dataclass(frozen=True)
class Refusal:
    """A refused removal, as data; `sentence()` renders it for people."""

    why: VolumeRefusal
    volume: str
    node: str = ""
    task: str = ""

    def sentence(self) -> str:
        name, node = self.volume, self.node
        if self.why is VolumeRefusal.UNKNOWN:
            return f"unknown volume {name!r} (kube volume ls lists them)"
        if self.why is VolumeRefusal.IN_USE:
            return (
                f"volume {name} is in use by task {self.task}: stop it first (kube stop),"
                " then remove the volume (--force also removes it from tasks waiting to start)"
            )
        if self.why is VolumeRefusal.NODE_DOWN:
            return (
                f"volume {name} is on {node}, which is down: remove it once {node} is back,"
                f" or forget it with --force (its data then stays on {node}'s engine)"
            )
        return (
            f"volume {name} was on {node}, which has left the cluster: its data went with"
            " the node; forget it with --force"
        )


def removal(
    volume: VolumeRecord | None,
    name: str,
    node: NodeRecord | None,
    force: bool,
    waiting: AbstractSet[str] = frozenset(),
) -> Decision | Refusal:
    """What `kube volume rm` does: forget the volume and ask its node to remove it from
    the engine, or say why not. In use, it is refused even with `force` (a task would
    run on without its data kept anywhere), unless with `force` by tasks `waiting` to be
    placed (pending: they start anew, on any node, with an empty volume); with `force`, a
    down or removed node's volume is forgotten, its engine left as it is."""
    if volume is None:
        return Refusal(VolumeRefusal.UNKNOWN, name)
    using = [task for task in volume.used_by if not (force and task in waiting)]
    if using:
        return Refusal(VolumeRefusal.IN_USE, name, volume.node, using[0])
    forget = Decision(removed=Removal(volumes=[name]))
    if node is None:
        return forget if force else Refusal(VolumeRefusal.NODE_GONE, name, volume.node)
    if node.status is not NodeStatus.READY or not node.engine_ok:
        return forget if force else Refusal(VolumeRefusal.NODE_DOWN, name, volume.node)
    forget.outgoing.append(Outgoing(topology.DISPATCH, node.name, encode(RemoveVolume(name=name))))
    return forget
