"""The restart policy as a pure decision: after an attempt ends, restart or stop for good."""

from __future__ import annotations

from dataclasses import dataclass

from shared.models import Restarted, TaskRecord
from shared.specs import RestartMode
from shared.states import TaskState


@dataclass(frozen=True)
class Restart:
    """Place another attempt after `delay` seconds; this is restart number `number`."""

    number: int
    delay: float


@dataclass(frozen=True)
class Final:
    """The task ends in `state`, for `reason`."""

    state: TaskState
    reason: str | None


def after_attempt(
    task: TaskRecord, outcome: TaskState, reason: str | None, lost: bool = False
) -> Restart | Final:
    """What follows an attempt that ended in `outcome` (COMPLETED, FAILED or LOST).

    A requested stop is final. `on-failure` restarts what failed or was lost; `always`
    restarts any end. Restarts past `max_restarts` end the task failed. A lost attempt is
    placed again at once (the node failed, not the task); a failed one waits its backoff.
    """
    if task.desired_state == "stopped":
        return Final(TaskState.COMPLETED, None)
    policy = task.spec.restart
    failed = outcome != TaskState.COMPLETED
    wanted = policy.policy == RestartMode.ALWAYS or (
        policy.policy == RestartMode.ON_FAILURE and failed
    )
    if not wanted:
        return Final(TaskState.FAILED if failed else TaskState.COMPLETED, reason)
    number = task.restart_count + 1
    if policy.max_restarts is not None and number > policy.max_restarts:
        last = reason or "exited with code 0"
        return Final(TaskState.FAILED, f"{last}; gave up after {policy.max_restarts} restarts")
    return Restart(number=number, delay=0.0 if lost else policy.delay(number))


def describe(restart: Restarted, attempt: int) -> str:
    """The history's sentence for a restart: "attempt 2 failed (boom); restart 2/3 in 2s"."""
    limit = "unlimited" if restart.limit is None else restart.limit
    cause = f" ({restart.reason})" if restart.reason else ""
    return (
        f"attempt {attempt} {restart.cause.value}{cause};"
        f" restart {restart.number}/{limit} in {restart.delay:g}s"
    )
