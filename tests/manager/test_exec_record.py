"""How the manager records a `kube exec`: a history entry and a `task.exec` event, each
naming who asked; and how people read them (kube inspect, kube events)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from pydantic import TypeAdapter

from kube.client import Event
from kube.events import event_json, event_line
from kube.render import task as render_task
from manager.execs import recorded
from shared import topology
from shared.codec import decode, encode
from shared.execs import (
    EXEC_EVENT_KEY,
    ExecEvent,
    ExecPhase,
    ExecRecord,
    ExecRefusal,
    exec_line,
)
from shared.models import TaskEvent, TaskRecord, TaskSpec
from shared.states import TaskState

NOW = datetime(2026, 11, 28, 6, 0, 0, tzinfo=UTC)


def running_task() -> TaskRecord:
    spec = TaskSpec(name="web", image="busybox")
    return TaskRecord.model_validate(
        {
            "id": "web-1a2b",
            "name": "web",
            "image": "busybox",
            "spec": spec,
            "state": TaskState.RUNNING,
            "node": "node-1",
            "attempt": 2,
            "created_at": NOW,
            "updated_at": NOW,
        }
    )


def moment(phase: ExecPhase, **fields: object) -> ExecRecord:
    base = {"session": "s1", "user": "kube-operator", "command": ("sh",), "tty": True}
    return ExecRecord.model_validate({**base, "phase": phase, "node": "node-1", **fields})


def test_a_start_is_a_history_entry_and_an_event_naming_who_asked() -> None:
    task = running_task()
    decision = recorded(task, 2, moment(ExecPhase.STARTED), NOW)

    [(task_id, entry)] = decision.events
    assert task_id == task.id
    assert entry.state is TaskState.RUNNING  # the task's state does not change
    assert entry.exec is not None and entry.exec.user == "kube-operator"
    assert decision.tasks == []  # the record of the task itself is untouched
    [out] = decision.outgoing
    assert (out.exchange, out.routing_key) == (topology.EVENTS, EXEC_EVENT_KEY)
    event = decode(TypeAdapter(ExecEvent), out.body)
    assert (event.task_id, event.attempt, event.exec.command) == (task.id, 2, ("sh",))


def test_the_end_carries_the_exit_code_and_a_refusal_its_reason() -> None:
    ended = moment(ExecPhase.ENDED, exit_code=3)
    assert exec_line(ended, "web-1a2b") == "exec by kube-operator ended, exit code 3: sh"
    refused = moment(ExecPhase.REFUSED, refusal=ExecRefusal.NODE_DISALLOWS, user="ops")
    line = exec_line(refused, "web-1a2b")
    assert "node-1" in line and "--allow-exec" in line and line.endswith("(asked: sh)")
    not_operator = moment(ExecPhase.REFUSED, refusal=ExecRefusal.NOT_PERMITTED, user="kube-client")
    assert "'kube-client' may not exec" in exec_line(not_operator, "web-1a2b")


def test_an_older_history_entry_without_exec_still_reads() -> None:
    entry = TaskEvent.model_validate_json(
        json.dumps({"state": "running", "at": NOW.isoformat(), "attempt": 1})
    )
    assert entry.exec is None


def test_inspect_shows_the_exec_in_the_history() -> None:
    task = running_task()
    [(_, started)] = recorded(task, 2, moment(ExecPhase.STARTED), NOW).events
    text = render_task(task, [started])
    assert "exec by kube-operator with a terminal: sh" in text
    row = next(line for line in text.splitlines() if "exec by" in line)
    assert row.split()[1] == "exec"  # in the STATE column: no state change


def test_events_read_the_exec_event_as_a_line_and_as_json() -> None:
    [out] = recorded(running_task(), 2, moment(ExecPhase.ENDED, exit_code=0), NOW).outgoing
    event = Event.decode(out.routing_key, out.body)
    assert event.task is None and event.exec is not None
    line = event_line(event)
    assert line is not None and "task web-1a2b exec by kube-operator ended, exit code 0" in line
    data = json.loads(event_json(event))
    assert data["key"] == "task.exec" and data["exec"]["exec"]["exit_code"] == 0
    assert encode(event.exec) == out.body
