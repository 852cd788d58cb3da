"""`kube exec` as the manager records it: a history entry of the task and a `task.exec`
event, for its start, its end (with the exit code) and its refusal, each naming who asked.

Pure: the relay (manager/sessions.py) decides when, and commits the Decision."""

from __future__ import annotations

from datetime import datetime

from manager.effects import Decision, Outgoing
from shared import topology
from shared.codec import encode
from shared.execs import EXEC_EVENT_KEY, ExecEvent, ExecRecord
from shared.models import TaskEvent, TaskRecord


def recorded(task: TaskRecord, attempt: int, record: ExecRecord, now: datetime) -> Decision:
    """The task's history entry and the event for one moment of an exec in it."""
    entry = TaskEvent(
        state=task.state, at=now, attempt=attempt, node=record.node or task.node, exec=record
    )
    event = ExecEvent(task_id=task.id, attempt=attempt, at=now, exec=record)
    return Decision(
        events=[(task.id, entry)],
        outgoing=[Outgoing(topology.EVENTS, EXEC_EVENT_KEY, encode(event))],
    )
