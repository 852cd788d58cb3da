"""Containers this manager never placed (orphans), pure: which to leave running, and the
latest list of them each node reported, for people to adopt or remove.

A manager never stops what it never placed (issue 14): its store lost, or replaced by an
older copy, it would otherwise tell the workers to kill every workload it does not know.
A container is an orphan when its task is unknown to the store, or known only at older
attempts (the store never recorded this one), or when it carries another cluster's id
(the worker lists those itself: worker/service.py). What the store knows it placed and
should not run (stopped, failed, superseded, replaced) is still stopped
(manager/nodes.py `superseded`). See docs/orphans.md.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from manager.core import task_event
from manager.effects import Decision, Outgoing
from manager.nodes import PLACED, Where, never_placed
from shared import topology
from shared.codec import encode
from shared.messages import AdoptOrphan, Heartbeat, Held, Orphan, RemoveOrphan
from shared.models import OrphanList, OrphanRecord, TaskEvent, TaskRecord
from shared.states import TaskState
from shared.wire import endpoints


def strays(beat: Heartbeat, where: Mapping[str, Where], latest: Mapping[str, int]) -> list[Held]:
    """The containers a heartbeat part lists as held that this manager never placed."""
    return [
        Held(task_id=h.task_id, attempt=h.attempt)
        for h in beat.tasks
        if never_placed(h.attempt, where.get(h.task_id), latest.get(h.task_id))
    ]


def maybe_ours(orphan: Orphan, node: str, where: Mapping[str, Where]) -> bool:
    """Whether an orphan a node lists is where this manager has an attempt placed: the same
    task, attempt and node (then its record says whether it is that container)."""
    task = where.get(orphan.task_id)
    return (
        task is not None
        and task.node == node
        and task.attempt == orphan.attempt
        and task.state in PLACED
    )


def ours(
    orphan: Orphan, node: str, where: Mapping[str, Where], containers: Mapping[str, str | None]
) -> bool:
    """Whether an orphan a node lists is an attempt this manager placed there, in that very
    container: adopted (`kube orphans adopt`), and listed again by a worker that forgot
    (restarted). `containers` has the container id each such task's record holds: another
    cluster's container under a task id and attempt this one reuses is not its own."""
    return maybe_ours(orphan, node, where) and containers.get(orphan.task_id) == orphan.container_id


def readopt(
    beat: Heartbeat, where: Mapping[str, Where], containers: Mapping[str, str | None]
) -> Decision:
    """Tell the worker again of the orphans it lists that are adopted tasks of this cluster."""
    decision = Decision()
    for orphan in beat.orphans:
        if ours(orphan, beat.node, where, containers):
            told = AdoptOrphan(
                task_id=orphan.task_id, attempt=orphan.attempt, container_id=orphan.container_id
            )
            decision.outgoing.append(Outgoing(topology.DISPATCH, beat.node, encode(told)))
    return decision


@dataclass(frozen=True)
class NodeOrphans:
    """The orphans a node listed in its latest heartbeat, and how many it left out."""

    node: str
    listed: tuple[Orphan, ...] = ()
    left_out: int = 0

    @property
    def count(self) -> int:
        return len(self.listed) + self.left_out


@dataclass
class Book:
    """The latest orphans each node reported; in memory only: the workers report them
    again every heartbeat, so a manager restarted knows them again within one."""

    nodes: dict[str, NodeOrphans] = field(default_factory=dict)
    adopted: dict[str, set[tuple[str, int]]] = field(default_factory=dict)
    """Per node, the adopted attempts it lists as orphans (a restarted worker), until it is
    told again: held all the same, not vanished (manager/nodes.py `missing`)."""

    def heard(
        self,
        beat: Heartbeat,
        where: Mapping[str, Where],
        containers: Mapping[str, str | None],
    ) -> NodeOrphans:
        """Keep what part 0 of a heartbeat lists, less the adopted ones it lists again
        (see `ours` for `containers`)."""
        mine = {
            (o.task_id, o.attempt) for o in beat.orphans if ours(o, beat.node, where, containers)
        }
        if mine:
            self.adopted[beat.node] = mine
        else:
            self.adopted.pop(beat.node, None)
        listed = tuple(o for o in beat.orphans if (o.task_id, o.attempt) not in mine)
        found = NodeOrphans(beat.node, listed, beat.orphans_left_out)
        if found.count:
            self.nodes[beat.node] = found
        else:
            self.nodes.pop(beat.node, None)
        return found

    def adopting(self, node: str, orphan: Orphan) -> None:
        """An orphan adopted: no longer listed, as the worker's next heartbeat will say."""
        known = self.nodes.get(node)
        if known is not None:
            listed = tuple(o for o in known.listed if o.container_id != orphan.container_id)
            self.nodes[node] = NodeOrphans(node, listed, known.left_out)

    def forget(self, node: str) -> None:
        self.nodes.pop(node, None)
        self.adopted.pop(node, None)

    def all(self) -> list[tuple[str, Orphan]]:
        return [(n.node, o) for _, n in sorted(self.nodes.items()) for o in n.listed]

    def left_out(self) -> int:
        return sum(n.left_out for n in self.nodes.values())

    def find(
        self, ident: str | None, node: str | None = None, cluster: str | None = None
    ) -> list[tuple[str, Orphan]]:
        """The orphans an id names (a container id or a prefix of at least 6 characters,
        a task id, or a container name), on `node` and of `cluster` if given; every one
        when `ident` is None."""
        found = [
            (n, o) for n, o in self.all() if node in (None, n) and cluster in (None, o.cluster)
        ]
        if ident is None:
            return found
        return [(n, o) for n, o in found if names(o, ident)]


MIN_ID_PREFIX = 6
"""Characters of a container id that name it, at least (docker shows 12)."""


def names(orphan: Orphan, ident: str) -> bool:
    """Whether a person's `ident` names this orphan."""
    by_id = len(ident) >= MIN_ID_PREFIX and orphan.container_id.startswith(ident)
    return by_id or ident in (orphan.task_id, orphan.name)


class Refusal(enum.StrEnum):
    """Why an orphan cannot be adopted."""

    NO_SPEC = "no-spec"  # nothing readable from the container: `unrecoverable` says why
    TASK_EXISTS = "task-exists"  # the store has a task of that id (another attempt)
    AMBIGUOUS = "ambiguous"  # the id names several orphans
    UNKNOWN = "unknown"  # no orphan of that id is reported


@dataclass(frozen=True)
class Refused:
    """An adoption refused, as data; `sentence()` says it to a person."""

    why: Refusal
    ident: str
    detail: str = ""

    def sentence(self) -> str:
        if self.why is Refusal.NO_SPEC:
            return f"cannot adopt {self.ident}: {self.detail}; remove it or run it anew"
        if self.why is Refusal.TASK_EXISTS:
            return (
                f"cannot adopt {self.ident}: this cluster already has task {self.detail}"
                " (another attempt of it); remove the container or the task"
            )
        if self.why is Refusal.AMBIGUOUS:
            return f"{self.ident!r} names several orphans ({self.detail}): use a container id"
        return f"no orphan container {self.ident!r} is reported (kube ps --orphans)"


def choose(found: Sequence[tuple[str, Orphan]], ident: str) -> tuple[str, Orphan] | Refused:
    """The one orphan `ident` names, or why not."""
    if not found:
        return Refused(Refusal.UNKNOWN, ident)
    if len(found) > 1:
        ids = ", ".join(o.container_id[:12] for _, o in found[:5])
        return Refused(Refusal.AMBIGUOUS, ident, ids)
    return found[0]


def adopt(
    node: str,
    orphan: Orphan,
    known: TaskRecord | None,
    cluster: str,
    now: datetime,
    address: str | None = None,
) -> Decision | Refused:
    """Make an orphan a running task of this cluster: its id, attempt and node kept (the
    container's name derives from them), its spec as the container says; the worker is
    told (`AdoptOrphan`) and from then on reports on it, and the manager restarts it per
    its restart policy like any other task."""
    if orphan.spec is None:
        return Refused(Refusal.NO_SPEC, orphan.container_id[:12], orphan.unrecoverable or "")
    if known is not None:
        return Refused(Refusal.TASK_EXISTS, orphan.container_id[:12], known.id)
    detail = f"adopted on {node} from " + (
        f"cluster {orphan.cluster}" if orphan.cluster != cluster else "a store that lost it"
    )
    task = TaskRecord(
        id=orphan.task_id,
        name=orphan.spec.name,
        state=TaskState.RUNNING,
        node=node,
        image=orphan.spec.image,
        container_id=orphan.container_id,
        host_ports=dict(orphan.host_ports),
        endpoints=endpoints(address, orphan.host_ports),
        attempt=orphan.attempt,
        created_at=orphan.since or now,
        updated_at=now,
        spec=orphan.spec,
    )
    event = TaskEvent(
        state=TaskState.RUNNING, at=now, attempt=task.attempt, node=node, detail=detail
    )
    told = AdoptOrphan(
        task_id=orphan.task_id, attempt=orphan.attempt, container_id=orphan.container_id
    )
    return Decision(
        tasks=[task],
        events=[(task.id, event)],
        outgoing=[task_event(task), Outgoing(topology.DISPATCH, node, encode(told))],
    )


def removal(found: Iterable[tuple[str, Orphan]]) -> Decision:
    """Ask each orphan's worker to stop and remove it."""
    return Decision(
        outgoing=[
            Outgoing(topology.DISPATCH, node, encode(RemoveOrphan(container_id=o.container_id)))
            for node, o in found
        ]
    )


def record(node: str, orphan: Orphan) -> OrphanRecord:
    """An orphan as people see it (its spec left out: it may be large)."""
    return OrphanRecord(
        node=node,
        task_id=orphan.task_id,
        attempt=orphan.attempt,
        container_id=orphan.container_id,
        name=orphan.name,
        image=orphan.image,
        cluster=orphan.cluster,
        since=orphan.since,
        host_ports=dict(orphan.host_ports),
        adoptable=orphan.spec is not None,
        unrecoverable=orphan.unrecoverable,
    )


MAX_LISTED = 1000
"""Orphans one `query.orphans` reply lists (at most 50 a node); it counts the rest."""


def listing(found: Sequence[tuple[str, Orphan]], left_out: int = 0) -> OrphanList:
    """The reply to `query.orphans`, or what `orphans.remove` asked the nodes to remove."""
    shown = found[:MAX_LISTED]
    return OrphanList(
        orphans=tuple(record(n, o) for n, o in shown),
        left_out=left_out + len(found) - len(shown),
    )


def held_ports(found: NodeOrphans) -> list[int]:
    """The host ports a node's orphans publish: held there until they are gone, so that
    no task asking for one is placed there (manager/holdings.py `Leftovers`)."""
    return [port for orphan in found.listed for port in orphan.host_ports.values()]
