"""What the manager keeps of a task's ended attempts: the end of their output, and the
attempts as `kube inspect` lists them (issue 16, "after the fact")."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from shared.states import TaskState
from shared.wire import Attempt, Int64, Name, TaskId, Text, Timestamp, WireModel

KEEP_ATTEMPTS = 5
"""Ended attempts whose output the manager keeps per task: the newest five, as Nomad keeps
a few dead allocations and Kubernetes one previous container per container."""


class KeptLogs(WireModel):
    """The kept end of one ended attempt's output: the result of `query.logs` when the
    output comes from the manager's store rather than from a live container."""

    task_id: TaskId
    attempt: Attempt
    node: Name
    exit_code: Int64 | None = None
    at: Timestamp = Field(description="when the worker read it, once the attempt had ended")
    cut: bool = Field(default=False, description="earlier output was not kept")
    stdout: str
    stderr: str = Field(default="", description="apart from stdout: not interleaved")
    why: Text | None = Field(
        default=None,
        description="why the kept output is shown rather than the live one (the node does not"
        " answer, the container is gone); none when it was asked for",
    )


class AttemptSummary(WireModel):
    """One attempt of a task, as `kube inspect` lists it (read from its history)."""

    attempt: Attempt
    node: Name | None = None
    started: Timestamp | None = Field(
        default=None,
        description="when it was reported running (placed, for one that ended before that)",
    )
    ended: Timestamp | None = Field(default=None, description="when it ended; none while it runs")
    state: TaskState = Field(description="the last state its history records for it")
    exit_code: Int64 | None = None
    reason: Text | None = Field(default=None, description="how it ended, for people")
    kept: bool = Field(default=False, description="the manager keeps the end of its output")


AttemptList = Annotated[list[AttemptSummary], Field(max_length=10_000)]
