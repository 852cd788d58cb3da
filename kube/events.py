"""`kube events`: what kube announces on `kube.events`, as lines for people or JSON.

    kube events                   the leader, the latest state of every node and task, then exit
    kube events --follow          every change from now on, until Ctrl-C
    kube events --task ID         one task's latest state (--follow: until it ends)
    kube events --json            JSON lines: {"key": ..., "task"|"node"|"endpoints"|"job": ...}

Following reads the stream `kube.events.stream`, which holds what `kube.events` carries,
from its end on; nothing is declared or bound. Node heartbeats (`node.heartbeat`, every
2 s per node) are left out.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from datetime import datetime
from typing import IO, Any

from kube.client import Client, Event
from kube.jobs_cli import skipped
from kube.render import ports, state
from shared.execs import exec_line
from shared.models import JobRecord, ManagerInfo, ManagerRole, NodeRecord, TaskRecord
from shared.states import TaskState
from shared.units import format_bytes

HIDDEN = frozenset({"node.heartbeat"})
LEADER = "manager.leader"
"""A manager took the lead (manager/server.py's LEADER_EVENT, a ManagerInfo)."""
EVERYTHING = ["task.*", "node.*", "service.endpoints", LEADER, "job.*"]
"""What `kube events --follow` shows, as routing keys."""


def add_parser(sub: Any) -> None:
    """The `events` subcommand's flags."""
    events = sub.add_parser("events", help="show task and node changes as they happen")
    events.add_argument("--follow", "-f", action="store_true", help="keep printing changes")
    events.add_argument("--task", metavar="ID", help="only this task")
    events.add_argument("--json", action="store_true", help="JSON lines instead of text")


def clock(moment: datetime) -> str:
    """HH:MM:SS in local time."""
    return moment.astimezone().strftime("%H:%M:%S")


def task_line(task: TaskRecord) -> str:
    """`12:00:01 task web-1a2b running on node-1 ports 8080->32768`."""
    text = f"{clock(task.updated_at)} task {task.id} {state(task)}"
    if task.node and task.state != TaskState.PENDING:
        text += f" on {task.node}"
    if task.state == TaskState.SCHEDULED:
        text += f" (attempt {task.attempt})"
    if task.host_ports:
        text += f" ports {ports(task)}"
    if task.health is not None and task.state == TaskState.RUNNING:
        text += f", {task.health.value}"
    if task.exit_code is not None and task.state.terminal:
        text += f" (exit {task.exit_code})"
    if task.state == TaskState.PENDING and task.not_before is not None:
        text += f" (restart {task.restart_count}, not before {clock(task.not_before)})"
    if task.error:
        text += f": {task.error}"
    return text


def node_line(what: str, node: NodeRecord, at: datetime | None = None) -> str:
    """`12:00:00 node node-1 ready (2 cpus, 1.9Gi memory)`."""
    text = f"{clock(at or node.last_heartbeat)} node {node.name} {what}"
    if what == "ready":
        text += f" ({node.cpus:g} cpus, {format_bytes(node.memory)} memory)"
    return text


def event_line(event: Event, now: datetime | None = None) -> str | None:
    """The line for one event, or None for what is not shown (heartbeats, unknown keys)."""
    if event.key in HIDDEN:
        return None
    if event.key == "task.removed" and event.task is not None:  # `kube rm`: no new state
        return f"{clock(now or event.task.updated_at)} task {event.task.id} removed"
    if event.task is not None:
        return task_line(event.task)
    if event.node is not None:
        what = event.key.partition(".")[2]
        return node_line(what, event.node, now)
    if event.endpoints is not None:
        found = event.endpoints
        return (
            f"{clock(found.at)} service {found.name} endpoints {' '.join(found.endpoints) or '-'}"
        )
    if event.manager is not None:
        return manager_line(event.manager, now)
    if event.exec is not None:
        done = event.exec
        return f"{clock(done.at)} task {done.task_id} {exec_line(done.exec, done.task_id)}"
    if event.job is not None:
        return job_line(event.key.partition(".")[2], event.job)
    return None


def job_line(what: str, job: JobRecord) -> str:
    """`12:00:02 job backup skipped: ...`, `12:00:00 job backup created`."""
    if what == "skipped" and job.last_skip is not None:
        return f"{clock(job.last_skip.tick)} job {job.name} skipped: {skipped(job.last_skip)}"
    return f"{clock(job.updated_at)} job {job.name} {what}"


def manager_line(info: ManagerInfo, at: datetime | None = None) -> str:
    """`12:00:00 manager m2 leads (epoch 7, pid 4242 on host-a)`."""
    moment = at or info.since or datetime.now().astimezone()
    where = f"pid {info.pid} on {info.host}"
    return f"{clock(moment)} manager {info.name} leads (epoch {info.epoch}, {where})"


def event_json(event: Event) -> str:
    """One JSON line: the routing key and the record it carried."""
    data: dict[str, Any] = {"key": event.key}
    if event.task is not None:
        data["task"] = event.task.model_dump(mode="json")
    if event.node is not None:
        data["node"] = event.node.model_dump(mode="json")
    if event.endpoints is not None:
        data["endpoints"] = event.endpoints.model_dump(mode="json")
    if event.manager is not None:
        data["manager"] = event.manager.model_dump(mode="json")
    if event.exec is not None:
        data["exec"] = event.exec.model_dump(mode="json")
    if event.job is not None:
        data["job"] = event.job.model_dump(mode="json")
    return json.dumps(data)


def snapshot(client: Client, task_id: str | None) -> list[Event]:
    """The leader, each node's and task's latest state as events: the leading manager
    first, then nodes, then tasks oldest change first."""
    if task_id is not None:
        task = client.get(task_id)
        return [Event(f"task.{task.state.value}", task=task)]
    leaders = [Event(LEADER, manager=m) for m in client.managers() if m.role == ManagerRole.LEADER]
    nodes = [Event(f"node.{n.status.value}", node=n) for n in client.nodes()]
    tasks = sorted(client.list(), key=lambda t: t.updated_at)
    return leaders + nodes + [Event(f"task.{t.state.value}", task=t) for t in tasks]


def run(
    client: Client,
    *,
    follow: bool = False,
    task_id: str | None = None,
    as_json: bool = False,
    out: IO[str] | None = None,
) -> None:
    """Print the snapshot (without follow) or the live feed (with follow) until Ctrl-C,
    which reaches the caller (`kube` exits 130, interrupted, as docs/cli.md says)."""
    feed = Feed(out or sys.stdout, as_json, task_id)
    if not follow:
        feed.show(snapshot(client, task_id))
        return
    # Bound before the first look, so nothing slips between the look and the feed.
    keys = (
        ["task.*"]
        if task_id is not None
        else ["task.*", "node.*", "service.endpoints", LEADER, "job.*"]
    )
    live = client.watch(keys)
    if task_id is not None:
        current = client.get(task_id)
        if feed.show([Event(f"task.{current.state.value}", task=current)]):
            return
        live = (e for e in live if e.task is None or e.task.updated_at > current.updated_at)
    feed.show(live, live=True)


class Feed:
    """Where and how events are printed, and which are."""

    def __init__(self, out: IO[str], as_json: bool, task_id: str | None) -> None:
        self.out = out
        self.as_json = as_json
        self.task_id = task_id

    def show(self, events: Iterable[Event], live: bool = False) -> bool:
        """Print events; True once the followed task (with --task) has ended."""
        for event in events:
            if self.task_id is not None and self.task_id not in (
                event.task and event.task.id,
                event.exec and event.exec.task_id,
            ):
                continue
            now = datetime.now().astimezone() if live else None
            line = event_json(event) if self.as_json else event_line(event, now)
            if line is not None:
                print(line, file=self.out, flush=True)
            if self.task_id is not None and event.task is not None and event.task.state.terminal:
                return True
        return False
