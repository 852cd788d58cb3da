"""`kube exec` as data: what was run, by whom, how it ended, and why one was refused.

A task's history keeps an entry for each exec (its start, then its end with the exit
code), and the manager publishes the same on kube.events as `task.exec`. A refusal is
a reason (an enum) with the facts it needs; the sentence is made from them only where a
person reads it (`refusal_sentence`).
"""

from __future__ import annotations

import enum
import shlex
from typing import Annotated

from pydantic import Field

from shared.wire import Attempt, Int64, Name, TaskId, Text, Timestamp, WireModel

EXEC_EVENT_KEY = "task.exec"
"""Routing key on kube.events of every moment of an exec. Its body is an ExecEvent, not a
task record: no state is called exec, and a reader of `task.*` skips this key."""

MAX_EXEC_ARGS = 1024
"""Arguments of an exec's command at most; each is kept in the task's history."""

ExecCommand = Annotated[
    tuple[Annotated[str, Field(max_length=4096)], ...],
    Field(min_length=1, max_length=MAX_EXEC_ARGS),
]


class ExecRefusal(enum.StrEnum):
    """Why an exec did not run."""

    NOT_PERMITTED = "not-permitted"  # the asker's broker user is no operator (manager/auth.py)
    NODE_DISALLOWS = "node-disallows"  # the worker runs without --allow-exec
    NOT_RUNNING = "not-running"  # the task has no running container
    ENGINE_FAILED = "engine-failed"  # the engine refused or failed; `detail` says what


class ExecPhase(enum.StrEnum):
    """Which moment of an exec a record is about."""

    STARTED = "started"
    ENDED = "ended"  # exit_code is set, or detail says why there is none
    REFUSED = "refused"  # refusal is set


class ExecRecord(WireModel):
    """One moment of one exec: in the task's history and on kube.events (`task.exec`)."""

    session: Name
    phase: ExecPhase
    user: str | None = Field(
        default=None, max_length=255, description="the broker user that asked (AMQP user_id)"
    )
    command: ExecCommand
    tty: bool = False
    node: Name | None = None
    exit_code: Int64 | None = None
    refusal: ExecRefusal | None = None
    detail: Text | None = None


class ExecEvent(WireModel):
    """The body of a `task.exec` event."""

    task_id: TaskId
    attempt: Attempt
    at: Timestamp
    exec: ExecRecord


def refusal_sentence(
    refusal: ExecRefusal,
    *,
    task: str,
    node: str | None = None,
    user: str | None = None,
    detail: str | None = None,
) -> str:
    """What a refused exec means to a person, and what would allow it."""
    if refusal is ExecRefusal.NOT_PERMITTED:
        who = f"user {user!r}" if user else "a command without user_id"
        return (
            f"exec in {task} refused: {who} may not exec, an operator's privilege"
            " (log in as an operator user: KUBE_OPERATOR_USERS on the manager)"
        )
    if refusal is ExecRefusal.NODE_DISALLOWS:
        return (
            f"exec in {task} refused by the security policy of {node}: exec is not allowed"
            " (worker flag --allow-exec, policy key allow_exec)"
        )
    if refusal is ExecRefusal.NOT_RUNNING:
        return f"exec in {task} refused: it has no running container" + (
            f" ({detail})" if detail else ""
        )
    return f"exec in {task} failed on {node}: {detail or 'the engine failed'}"


def exec_line(record: ExecRecord, task: str) -> str:
    """One line for people about one moment of an exec (`kube inspect`'s history)."""
    who = record.user or "an unnamed user"
    command = shlex.join(record.command)
    if record.phase is ExecPhase.STARTED:
        return f"exec by {who}{' with a terminal' if record.tty else ''}: {command}"
    if record.phase is ExecPhase.REFUSED and record.refusal is not None:
        said = refusal_sentence(
            record.refusal, task=task, node=record.node, user=record.user, detail=record.detail
        )
        return f"{said} (asked: {command})"
    ended = "no exit code" if record.exit_code is None else f"exit code {record.exit_code}"
    return f"exec by {who} ended, {ended}: {command}" + (
        f" ({record.detail})" if record.detail else ""
    )
