"""The manager's decisions about nodes, pure: heartbeats, liveness, lost nodes, reconciling.

A heartbeat carries the truth about a node: the (task, attempt) pairs it runs. Expected
but missing means the container vanished without an exit event; present but unexpected
means a superseded attempt is still alive, and the node is told to remove it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from manager.admission import MAX_STOPS_PER_PART
from manager.core import end_attempt, move, node_event, stop_attempt
from manager.effects import Decision
from shared.messages import Heartbeat
from shared.models import (
    DrainingAttempt,
    NodeOverrides,
    NodeRecord,
    NodeSettings,
    NodeStatus,
    TaskEvent,
    TaskRecord,
)
from shared.states import TaskState

N = TypeVar("N", int, float)

PLACED = (TaskState.SCHEDULED, TaskState.RUNNING)


HOLDINGS = frozenset(
    {"allocated_cpu", "allocated_memory", "allocated_disk", "task_count", "reserved_ports"}
)
"""What a node record says its placed tasks hold. The store adds it as it reads a node;
a record made of a heartbeat carries the known one's, so that its events say it too."""


def apply_heartbeat(known: NodeRecord | None, beat: Heartbeat, now: datetime) -> Decision:
    """Record a worker's heartbeat; announce it, and announce a node that (re)joined.

    `known` is the node as the store reads it, with what its tasks hold."""
    operator = known.operator if known is not None else NodeOverrides()
    held = known.model_dump(include=set(HOLDINGS)) if known is not None else {}
    joined = known is None or known.status != NodeStatus.READY
    # Since when this worker process has held the node: reset by a new process too.
    held_since = (
        known.ready_since
        if known is not None
        and not joined
        and (known.hostname, known.pid) == (beat.hostname, beat.pid)
        else now
    )
    node = NodeRecord(
        name=beat.node,
        status=NodeStatus.READY,
        cpus=_capped(beat.cpus, operator.cpus),
        memory=_capped(beat.memory, operator.memory),
        disk=_capped(beat.disk, operator.disk),
        labels={**beat.labels, **operator.labels},
        last_heartbeat=now,
        hostname=beat.hostname,
        pid=beat.pid,
        ready_since=held_since,
        engine_ok=beat.engine_ok,
        address=beat.address,
        schedulable=known.schedulable if known is not None else True,
        stats=beat.stats,
        operator=operator,
        **held,
    )
    decision = Decision(nodes=[node])
    if known is None or joined:
        decision.outgoing.append(node_event(node, "ready"))
    elif known.engine_ok != beat.engine_ok:
        decision.outgoing.append(node_event(node, "engine-up" if beat.engine_ok else "engine-down"))
    decision.outgoing.append(node_event(node, "heartbeat"))
    return decision


def _capped(claimed: N, cap: N | None) -> N:
    return claimed if cap is None else min(claimed, cap)


def configure(node: NodeRecord, settings: NodeSettings) -> Decision:
    """An operator's labels and capacity caps (`node.set`): kept on the node, applied
    now and over every heartbeat after, whatever the worker reports."""
    labels = {**node.operator.labels, **settings.labels}
    caps = {
        key: None if settings.clear_caps else getattr(node.operator, key)
        for key in ("cpus", "memory", "disk")
    }
    caps.update({k: v for k in caps if (v := getattr(settings, k)) is not None})
    operator = NodeOverrides(labels={k: v for k, v in labels.items() if v is not None}, **caps)
    removed = [key for key, value in settings.labels.items() if value is None]
    changed = node.model_copy(
        update={
            "operator": operator,
            "labels": {
                **{k: v for k, v in node.labels.items() if k not in removed},
                **operator.labels,
            },
            "cpus": _capped(node.cpus, operator.cpus),
            "memory": _capped(node.memory, operator.memory),
            "disk": _capped(node.disk, operator.disk),
        }
    )
    if changed == node:
        return Decision()
    return Decision(nodes=[changed], outgoing=[node_event(changed, "configured")])


@dataclass(frozen=True)
class Where:
    """Where the manager has a task: enough of its record to reconcile a heartbeat."""

    node: str | None
    attempt: int
    state: TaskState
    draining: DrainingAttempt | None = None

    @classmethod
    def of(cls, task: TaskRecord) -> Where:
        return cls(task.node, task.attempt, task.state, task.draining)


def superseded(
    beat: Heartbeat,
    where: Mapping[str, Where],
    latest: Mapping[str, int],
    stops: int = MAX_STOPS_PER_PART,
    came_back: datetime | None = None,
    stops_itself: Collection[str] = (),
) -> Decision:
    """Stop every container the node holds that this manager placed and that is not its
    task's current attempt; one it never placed is left running (manager/orphans.py).

    `where` maps the task ids the heartbeat names to the attempts they hold; a task that
    holds none (ended, or pending with nothing left running) is absent, and `latest` then
    has its latest attempt if the store knows it. At most `stops` are sent for one part.
    `came_back` is when the node came back, if this heartbeat is its return: each stale
    copy it lists then enters its task's history (`fenced`), also one whose stop waits
    for the next heartbeats; but not one of the tasks that `stops_itself` once cut off
    (`on_disconnect`): its worker reports that stop, which is its history, and a heartbeat
    the worker queued while cut off, sent after the heal, lists a copy it stopped since.
    """
    decision = Decision()
    for held in beat.tasks:
        task = where.get(held.task_id)
        if never_placed(held.attempt, task, latest.get(held.task_id)):
            continue  # an orphan: reported, never stopped
        current = task is not None and (
            (task.node == beat.node and task.attempt == held.attempt and task.state in PLACED)
            or task.draining == DrainingAttempt(node=beat.node, attempt=held.attempt)
        )
        if current:
            continue
        if came_back is not None and held.task_id not in stops_itself:
            decision.events.append((held.task_id, fenced(held.attempt, beat.node, came_back)))
        if len(decision.outgoing) < stops:  # the rest on the next heartbeats (admission.py)
            decision.outgoing.append(stop_attempt(held.task_id, held.attempt, beat.node))
        elif came_back is None:
            break
    return decision


def fenced(attempt: int, node: str, now: datetime) -> TaskEvent:
    """The history entry of a stale copy a node lists when it comes back after it was
    found down: the task moved on without it, and it is stopped (fenced)."""
    return TaskEvent(
        state=TaskState.LOST,
        at=now,
        attempt=attempt,
        node=node,
        detail=f"stale copy of attempt {attempt} listed by {node} when it came back: stopped",
        superseded=True,
    )


def never_placed(attempt: int, where: Where | None, latest: int | None) -> bool:
    """Whether this manager never placed an attempt of a task: its store has no such task
    (`where` and `latest` both None), or only older attempts of it (a task's attempt is
    recorded before its dispatch is sent, so the store always knows the newest one it
    placed). `where` is where the task holds an attempt; `latest`, for a task that holds
    none (ended, pending), its latest attempt. See manager/orphans.py."""
    if where is not None:
        return attempt > where.attempt
    return latest is None or attempt > latest


def uncounted(beat: Heartbeat, where: Mapping[str, Where]) -> list[str]:
    """The tasks whose containers the node lists that its holdings do not count: an attempt
    superseded, lost or draining, or of an ended task. Such a container still holds its
    host ports until it is gone (manager/holdings.py `Leftovers`)."""
    found = []
    for held in beat.tasks:
        task = where.get(held.task_id)
        counted = task is not None and (
            task.node == beat.node and task.attempt == held.attempt and task.state in PLACED
        )
        if not counted:
            found.append(held.task_id)
    return found


def gather(parts: Sequence[Heartbeat], beat: Heartbeat) -> tuple[list[Heartbeat], Heartbeat | None]:
    """Add a part to the parts of its heartbeat gathered so far (the worker sends them in
    order, sharing `at`): the parts still open, and the whole heartbeat once its last part
    is in, listing every part's containers. A part that does not follow the ones in hand
    drops them: with a part lost, that heartbeat does not list every container."""
    last = parts[-1] if parts else None
    follows = last is not None and (last.at, last.parts, last.part + 1) == (
        beat.at,
        beat.parts,
        beat.part,
    )
    gathered = [beat] if beat.part == 0 else [*parts, beat] if follows else []
    if not gathered or beat.part < beat.parts - 1:
        return gathered, None
    held = tuple(task for part in gathered for task in part.tasks)
    return [], gathered[0].model_copy(update={"tasks": held, "part": 0, "parts": 1})


BeatMark = tuple[datetime, int]
"""Where a heartbeat part stands in its worker's sequence: its `at`, then its part."""


def newer(beat: Heartbeat, newest: BeatMark | None) -> bool:
    """Whether a heartbeat part comes after the newest one heard from its node.

    One that does not is a copy: redelivered after the manager's ack was lost, or
    published again after the worker's confirm was lost, behind the task updates it
    preceded. It would prove missing a task whose start those updates report (seen with
    quorum lost: attempts ended as vanished while they ran), so only a newer one is
    checked against what runs on the node. A worker's clock stepped back makes its
    heartbeats prove nothing until it passes the newest heard again; exits are reported
    by updates meanwhile.
    """
    return newest is None or (beat.at, beat.part) > newest


def missing(
    beat: Heartbeat, running_here: Mapping[str, int], also: Collection[tuple[str, int]] = ()
) -> list[str]:
    """Tasks the manager has running on the node (id -> attempt) that it does not hold.

    Only a whole heartbeat (see `gather`) with a full inventory from a node with a working
    engine proves anything, and only if it left no orphan out: an adopted attempt a
    restarted worker lists among its orphans until it is told again (`also`) is held.
    """
    if not (beat.inventory and beat.engine_ok) or beat.orphans_left_out:
        return []
    held = {(h.task_id, h.attempt) for h in beat.tasks} | set(also)
    return [i for i, attempt in running_here.items() if (i, attempt) not in held]


def vanished(tasks: Sequence[TaskRecord], node: str, now: datetime) -> Decision:
    """End the attempts of running tasks whose containers are gone from the node."""
    decision = Decision()
    for task in tasks:
        reason = f"container of attempt {task.attempt} disappeared from {node}"
        decision.extend(end_attempt(task, TaskState.FAILED, reason, now))
    return decision


def mark_down(
    nodes: Sequence[NodeRecord], silent: Mapping[str, float], down_after: float
) -> Decision:
    """Nodes silent for more than down_after seconds become down.

    `silent` is how long each node has not been heard, measured by the manager on its
    monotonic clock (manager/liveness.py): neither its wall clock nor a worker's counts.
    """
    decision = Decision()
    for node in nodes:
        if node.status == NodeStatus.READY and silent.get(node.name, 0.0) > down_after:
            down = node.model_copy(update={"status": NodeStatus.DOWN})
            decision.nodes.append(down)
            decision.outgoing.append(node_event(down, "down"))
    return decision


DISCONNECT_MARGIN = 5.0
"""Seconds a lost task with `on_disconnect.stop_after_seconds` S waits beyond S, counted
from the manager's last heartbeat of its node, before its replacement is placed. The
worker counts S from the start of its last heartbeat publish the broker confirmed, which
is never later than the manager's receipt of it; the margin covers the worker's kill
grace once S is reached (worker/disconnect.py, 2 s), the engine's stop and the polling
on both sides, so that the task never has two live copies."""


def hold_back(task: TaskRecord, silent_for: float, least: float = 0.0) -> float:
    """Seconds before a task lost with its node may be placed again: none, unless it asked
    its worker to stop it once cut off; then until that worker has surely stopped it. A
    worker honours no stop_after below `least` (shared/specs.py `least_stop_after`: a
    heartbeat interval and a second)."""
    asked = task.spec.on_disconnect
    if asked is None:
        return 0.0
    stop_after = max(asked.stop_after_seconds, least)
    return max(stop_after + DISCONNECT_MARGIN - silent_for, 0.0)


def node_lost(
    node: str,
    placed_here: Sequence[TaskRecord],
    now: datetime,
    silent_for: float = 0.0,
    least_stop_after: float = 0.0,
) -> Decision:
    """A node went down, silent for `silent_for` seconds: its placed tasks are lost, then
    restarted per policy or failed (see `hold_back` for when)."""
    decision = Decision()
    for task in placed_here:
        if task.state not in PLACED:
            continue
        reason = f"node {node} lost"
        decision.extend(move(task, TaskState.LOST, now, detail=reason))
        lost = decision.tasks[-1]
        hold = hold_back(task, silent_for, least_stop_after)
        decision.extend(end_attempt(lost, TaskState.LOST, reason, now, lost=True, hold=hold))
    return decision


def cordon(node: NodeRecord, schedulable: bool) -> Decision:
    """Open or close a node to new placements; what runs there stays."""
    if node.schedulable == schedulable:
        return Decision()
    changed = node.model_copy(update={"schedulable": schedulable})
    return Decision(
        nodes=[changed], outgoing=[node_event(changed, "uncordoned" if schedulable else "cordoned")]
    )


def drain(node: NodeRecord, placed_here: Sequence[TaskRecord], now: datetime) -> Decision:
    """Cordon the node and move each of its tasks: the next attempt is placed elsewhere
    while this one keeps running, and this one stops once the next runs. A task no other
    node can take stays where it is, pending with the reason, until capacity frees."""
    decision = cordon(node, schedulable=False)
    for task in placed_here:
        if task.state not in PLACED or task.draining is not None:
            continue
        if task.desired_state == "stopped":  # its stop is under way: no next attempt
            continue
        old = DrainingAttempt(node=node.name, attempt=task.attempt)
        decision.extend(
            move(task, TaskState.PENDING, now, detail=f"draining {node.name}", draining=old)
        )
    return decision
