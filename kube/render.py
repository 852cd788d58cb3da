"""Text rendering of tasks and nodes for people at a terminal."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from datetime import UTC, datetime

from shared.execs import exec_line
from shared.models import (
    ManagerInfo,
    NodeRecord,
    OrphanList,
    ServiceEndpoints,
    ServiceRecord,
    TaskEvent,
    TaskRecord,
)
from shared.states import TaskState
from shared.units import format_bytes
from shared.wire import by_container_port

STOPPING = "stopping"
"""Shown for a task asked to stop whose container is still stopping: the manager records
it as desired `stopped` and still `scheduled` or `running` until its node reports the end.
Derived here, for people; `--json` keeps both fields as recorded."""


STOPPED = "stopped"
"""Shown for a task that ended because it was asked to stop (`kube stop`): the manager
records it `completed`, desired `stopped`. Derived here, as STOPPING."""

SHOWN_STATES = (*(s.value for s in TaskState), STOPPING, STOPPED)
"""Every state a task can show (`kube ps --state`)."""


def state(task: TaskRecord) -> str:
    """The state shown to people: the recorded one, `stopping` (see STOPPING) or
    `stopped` (see STOPPED)."""
    if task.desired_state == "stopped":
        if task.state in (TaskState.SCHEDULED, TaskState.RUNNING):
            return STOPPING
        if task.state == TaskState.COMPLETED:
            return STOPPED
    return task.state.value


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns, two spaces apart."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in [list(headers), *rows]
    ]
    return "\n".join(lines)


def age(moment: datetime, now: datetime | None = None) -> str:
    """'42s', '5m', '3h', '2d'."""
    seconds = int(((now or datetime.now(UTC)) - moment).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


PS_PORTS = 3
"""Ports one `kube ps` row shows; the rest are counted (`+253 more`), so that a task with
many keeps its row readable. `kube inspect` and `--json` show them all."""


def ports(task: TaskRecord, limit: int | None = None) -> str:
    """`80->10.0.0.2:32768,81->10.0.0.2:8081`: each container port and where it answers
    (`80->32768`, the host port alone, while the node's address is unknown); past `limit`
    ports, how many more."""
    published = by_container_port(task.host_ports)
    if published and len(task.endpoints) == len(published):
        shown = [f"{c}->{e}" for (c, _), e in zip(published, task.endpoints, strict=True)]
    else:
        shown = [f"{c}->{h}" for c, h in published]
    if limit is not None and len(shown) > limit:
        shown = [*shown[:limit], f"+{len(shown) - limit} more"]
    return ",".join(shown) or "-"


def tasks(records: Sequence[TaskRecord]) -> str:
    """One row per task, a service's tasks together under its name."""
    ordered = sorted(records, key=lambda t: (t.service or "", t.created_at, t.id))
    rows = [
        [
            t.service or "-",
            t.id,
            t.name,
            state(t),
            t.node or "-",
            t.image,
            ports(t, PS_PORTS),
            age(t.created_at),
        ]
        for t in ordered
    ]
    return table(["SERVICE", "ID", "NAME", "STATE", "NODE", "IMAGE", "PORTS", "AGE"], rows)


def services(records: Sequence[ServiceRecord], all_tasks: Sequence[TaskRecord]) -> str:
    rows = []
    for s in records:
        running = sum(
            1
            for t in all_tasks
            if t.service == s.name and t.state.value == "running" and t.desired_state == "running"
        )
        update = s.update_state.value + (f": {s.update_error}" if s.update_error else "")
        stuck = next(
            (
                t
                for t in all_tasks
                if t.service == s.name and t.image_problem is not None and not t.state.terminal
            ),
            None,
        )
        if stuck is not None:  # why the service has fewer running than it wants
            update += f"; image cannot be pulled ({stuck.image_problem}): kube inspect {stuck.id}"
        rows.append(
            [
                s.name,
                f"{running}/{s.replicas}",
                str(s.version),
                s.desired_state,
                update,
                s.spec.image,
            ]
        )
    return table(["NAME", "RUNNING", "VERSION", "DESIRED", "UPDATE", "IMAGE"], rows)


def endpoints(found: ServiceEndpoints) -> str:
    """`kube endpoints`: one host:port a line, for scripts; a sentence when there is none."""
    return "\n".join(found.endpoints) or f"{found.name}: no task serves now"


def health(record: TaskRecord) -> str:
    """`healthy (http 200 from ...)`: what the task's health check says, and its last result;
    `-` with no check, `not checked yet` before the worker has checked."""
    if record.spec.health_check is None:
        return "-"
    if record.health is None:
        return "not checked yet"
    return record.health.value + (f" ({record.last_check})" if record.last_check else "")


def task(record: TaskRecord, events: Sequence[TaskEvent]) -> str:
    fields = [
        ("id", record.id),
        ("name", record.name),
        ("state", state(record)),
        # an ended task wants nothing more: "running" would read as if it should be
        ("desired", "-" if record.state.terminal else record.desired_state),
        ("node", record.node or "-"),
        ("image", record.image),
        ("command", shlex.join(record.spec.command) or "(image default)"),
        ("container", record.container_id or "-"),
        ("ports", ports(record)),
        ("endpoints", " ".join(record.endpoints) or "-"),
        ("health", health(record)),
        ("attempt", str(record.attempt)),
        ("restarts", str(record.restart_count)),
        ("node losses", str(record.lost_count)),
        ("exit code", "-" if record.exit_code is None else str(record.exit_code)),
        ("error", record.error or "-"),
        ("created", record.created_at.isoformat()),
        ("updated", record.updated_at.isoformat()),
    ]
    head = "\n".join(f"{key + ':':<12} {value}" for key, value in fields)
    history = table(
        ["AT", "STATE", "ATTEMPT", "NODE", "DETAIL"],
        [
            [
                e.at.isoformat(timespec="seconds"),
                "exec" if e.exec is not None else e.state.value,
                str(e.attempt),
                e.node or "-",
                exec_line(e.exec, record.id) if e.exec is not None else e.detail or "",
            ]
            for e in events
        ],
    )
    return f"{head}\n\nhistory:\n{history}"


def nodes(records: Sequence[NodeRecord]) -> str:
    rows = [
        [
            n.name,
            n.status.value + ("" if n.schedulable else ",cordoned"),
            n.address or "-",
            f"{n.allocated_cpu:g}/{n.cpus:g}",
            f"{format_bytes(n.allocated_memory)}/{format_bytes(n.memory)}",
            str(n.task_count),
            ",".join(f"{k}={v}" for k, v in sorted(n.labels.items())) or "-",
            age(n.last_heartbeat) + " ago",
        ]
        for n in records
    ]
    return table(
        ["NAME", "STATUS", "ADDRESS", "CPU", "MEMORY", "TASKS", "LABELS", "HEARTBEAT"], rows
    )


def managers(records: Sequence[ManagerInfo]) -> str:
    rows = [
        [
            m.name,
            m.role.value,
            str(m.epoch) if m.epoch else "-",
            age(m.since) + " ago" if m.since is not None else "-",
            f"{m.seen_ago:.1f}s ago",
            f"{m.host}:{m.pid}",
        ]
        for m in records
    ]
    return table(["NAME", "ROLE", "EPOCH", "LEADER SINCE", "LAST SEEN", "PROCESS"], rows)


def placement(record: TaskRecord) -> str:
    """The line `kube run --wait` ends with."""
    where = f" on {record.node}" if record.node else ""
    text = f"{record.id} {state(record)}{where}"
    if record.host_ports:
        text += " ports " + ports(record)
    if record.error:
        text += f": {record.error}"
    return text


def orphans(found: OrphanList) -> str:
    """One row per orphan container: what runs, where, since when, and whether it can be
    adopted; a line says how many were left out."""
    rows = [
        [
            o.container_id[:12],
            o.task_id,
            o.node,
            o.image,
            o.cluster or "-",
            age(o.since) if o.since else "-",
            ",".join(f"{c}->{h}" for c, h in by_container_port(o.host_ports)) or "-",
            "yes" if o.adoptable else f"no: {o.unrecoverable or 'unknown'}",
        ]
        for o in found.orphans
    ]
    headers = ["CONTAINER", "TASK", "NODE", "IMAGE", "CLUSTER", "SINCE", "PORTS", "ADOPTABLE"]
    text = table(headers, rows)
    if found.left_out:
        text += f"\n({found.left_out} more not listed)"
    return text
