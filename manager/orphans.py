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
from collections.abc import Callable, Iterable, Mapping, Sequence
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
    removing: dict[str, tuple[str, int]] = field(default_factory=dict)
    """The containers a person asked to remove, by id: (node, heartbeats of that node that
    still listed it since). Adopting one is refused until its worker says the outcome: a
    heartbeat no longer lists it (removed), or REMOVAL_BEATS of them still do (failed)."""

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
        self._removals_heard(beat.node, {o.container_id for o in listed})
        found = NodeOrphans(beat.node, listed, beat.orphans_left_out)
        if found.count:
            self.nodes[beat.node] = found
        else:
            self.nodes.pop(beat.node, None)
        return found

    def _removals_heard(self, node: str, listed: set[str]) -> None:
        for container, (at, beats) in list(self.removing.items()):
            if at != node:
                continue
            if container not in listed or beats + 1 >= REMOVAL_BEATS:
                del self.removing[container]
            else:
                self.removing[container] = (at, beats + 1)

    def asked_removal(self, found: Iterable[tuple[str, Orphan]]) -> None:
        """Orphans a person asked to remove: not adoptable until their workers answer."""
        for node, orphan in found:
            self.removing[orphan.container_id] = (node, 0)

    def being_removed(self, orphan: Orphan) -> bool:
        return orphan.container_id in self.removing

    def named(self, name: str) -> int:
        """How many orphans listed run a task of this name (a service or task created
        anew after its store was lost runs beside them)."""
        return sum(
            1
            for _, o in self.all()
            if (o.spec.name if o.spec is not None else o.task_id.rpartition("-")[0]) == name
        )

    def too_short(self, ident: str) -> bool:
        """Whether `ident` names no orphan but begins a container id: a prefix too short."""
        return len(ident) < MIN_ID_PREFIX and any(
            o.container_id.startswith(ident) for _, o in self.all()
        )

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

    def left_out(self, node: str | None = None) -> int:
        """How many orphans the nodes (or `node`) left out of their heartbeats."""
        return sum(n.left_out for n in self.nodes.values() if node in (None, n.node))

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

REMOVAL_BEATS = 12
"""Heartbeats of a node that may still list an orphan asked to be removed before the
removal is taken as failed and adopting it is allowed again: a stop waits 10 s for
SIGTERM, and a worker beats every 5 s by default (a minute, then)."""


def names(orphan: Orphan, ident: str) -> bool:
    """Whether a person's `ident` names this orphan."""
    by_id = len(ident) >= MIN_ID_PREFIX and orphan.container_id.startswith(ident)
    return by_id or ident in (orphan.task_id, orphan.name)


class Refusal(enum.StrEnum):
    """Why an orphan cannot be adopted."""

    NO_SPEC = "no-spec"  # nothing readable from the container: `unrecoverable` says why
    TASK_EXISTS = "task-exists"  # the store has a task of that id
    REMOVING = "removing"  # a person asked to remove it; its worker has not answered yet
    AMBIGUOUS = "ambiguous"  # the id names several orphans
    UNKNOWN = "unknown"  # no orphan of that id is reported
    TOO_SHORT = "too-short"  # a container id prefix shorter than MIN_ID_PREFIX
    TASK_ID_TAKEN = "task-id-taken"  # a task submitted under an orphan's task id


@dataclass(frozen=True)
class Refused:
    """An adoption (or a submit, or a removal) refused, as data; `sentence()` says it to
    a person. `known` is the store's task of that id (TASK_EXISTS); `node` where the
    orphan runs (TASK_ID_TAKEN)."""

    why: Refusal
    ident: str
    detail: str = ""
    attempt: int = 0
    known: Where | None = None
    node: str = ""

    def sentence(self) -> str:
        if self.why is Refusal.NO_SPEC:
            return f"cannot adopt {self.ident}: {self.detail}; remove it or run it anew"
        if self.why is Refusal.TASK_EXISTS:
            return f"cannot adopt {self.ident}: {self._known()}; remove the container or the task"
        if self.why is Refusal.REMOVING:
            return (
                f"cannot adopt {self.ident}: its removal was asked and its worker has not"
                " reported it yet (kube ps --orphans)"
            )
        if self.why is Refusal.AMBIGUOUS:
            return f"{self.ident!r} names several orphans ({self.detail}): use a container id"
        if self.why is Refusal.TOO_SHORT:
            return (
                f"{self.ident!r}: a container id prefix needs at least {MIN_ID_PREFIX} characters"
            )
        if self.why is Refusal.TASK_ID_TAKEN:
            return (
                f"task id {self.ident!r} is an orphan container's on node {self.node}"
                f" ({self.detail[:12]}, attempt {self.attempt}; kube ps --orphans): adopt or"
                " remove it first, or submit under another id"
            )
        return f"no orphan container {self.ident!r} is reported (kube ps --orphans)"

    def _known(self) -> str:
        task, known = self.detail, self.known
        if known is None:
            return f"this cluster already has task {task}"
        where = f"on {known.node}" if known.node else "placed nowhere"
        if known.attempt == self.attempt:
            return (
                f"this cluster already has task {task} at this attempt ({self.attempt},"
                f" {known.state.value} {where}): this container is another copy of it"
            )
        return (
            f"this cluster already has task {task} at attempt {known.attempt}"
            f" ({known.state.value} {where}), not this container's attempt {self.attempt}"
        )


def unknown(book: Book, ident: str) -> Refused:
    """Why `ident` names no orphan: a prefix too short, or none is reported."""
    return Refused(Refusal.TOO_SHORT if book.too_short(ident) else Refusal.UNKNOWN, ident)


def refusal(orphan: Orphan, known: TaskRecord | None, removing: bool = False) -> Refused | None:
    """Why an orphan cannot be adopted, or None: the one rule `adopt` applies and
    `kube ps --orphans` shows (ADOPTABLE)."""
    short = orphan.container_id[:12]
    if orphan.spec is None:
        return Refused(Refusal.NO_SPEC, short, orphan.unrecoverable or "")
    if known is not None:
        return Refused(Refusal.TASK_EXISTS, short, known.id, orphan.attempt, Where.of(known))
    if removing:
        return Refused(Refusal.REMOVING, short)
    return None


def clash(book: Book, task_id: str) -> Refused | None:
    """Why a task cannot be submitted under `task_id`: an orphan reported runs under it
    (a RunTask would meet its container: worker/service.py `_orphan_in_the_way`)."""
    for node, orphan in book.all():
        if orphan.task_id == task_id:
            return Refused(
                Refusal.TASK_ID_TAKEN, task_id, orphan.container_id, orphan.attempt, node=node
            )
    return None


def choose(
    found: Sequence[tuple[str, Orphan]], ident: str, book: Book | None = None
) -> tuple[str, Orphan] | Refused:
    """The one orphan `ident` names, or why not."""
    if not found:
        return unknown(book, ident) if book is not None else Refused(Refusal.UNKNOWN, ident)
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
    removing: bool = False,
) -> Decision | Refused:
    """Make an orphan a running task of this cluster: its id, attempt and node kept (the
    container's name derives from them), its spec as the container says; the worker is
    told (`AdoptOrphan`) and from then on reports on it, and the manager restarts it per
    its restart policy like any other task."""
    refused = refusal(orphan, known, removing)
    if refused is not None or orphan.spec is None:
        return refused or Refused(Refusal.NO_SPEC, orphan.container_id[:12])
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


def record(node: str, orphan: Orphan, refused: Refused | None = None) -> OrphanRecord:
    """An orphan as people see it (its spec left out: it may be large); `refused` is why
    it cannot be adopted (`refusal`), if it cannot."""
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
        adoptable=refused is None,
        unrecoverable=(
            orphan.unrecoverable if refused is None or orphan.spec is None else refused.sentence()
        ),
    )


MAX_LISTED = 1000
"""Orphans one `query.orphans` reply lists (at most 50 a node); it counts the rest."""


def listing(
    found: Sequence[tuple[str, Orphan]],
    left_out: int = 0,
    judge: Callable[[Orphan], Refused | None] = lambda o: refusal(o, None),
) -> OrphanList:
    """The reply to `query.orphans`, or what `orphans.remove` asked the nodes to remove;
    `judge` says why an orphan cannot be adopted (`refusal`, with the store's task)."""
    shown = found[:MAX_LISTED]
    return OrphanList(
        orphans=tuple(record(n, o, judge(o)) for n, o in shown),
        left_out=left_out + len(found) - len(shown),
    )


def held_ports(found: NodeOrphans) -> list[int]:
    """The host ports a node's orphans publish: held there until they are gone, so that
    no task asking for one is placed there (manager/holdings.py `Leftovers`)."""
    return [port for orphan in found.listed for port in orphan.host_ports.values()]
