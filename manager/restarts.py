"""The restart policy as a pure decision: after an attempt ends, restart or stop for good."""

from __future__ import annotations

from dataclasses import dataclass

from shared.models import Restarted, TaskRecord
from shared.specs import MAX_BACKOFF_SECONDS, RestartMode
from shared.states import TaskState

PORT_CONFLICT_DELAY = 15.0
"""Seconds at least between an attempt that could not bind its host port and the next:
longer than a container's stop grace (10 s), so that a container that held the port and
was being stopped is gone by then."""

IMAGE_BACKOFF_SECONDS = 10.0
"""The first delay before a service's task tries an image that could not be pulled
again; it doubles up to MAX_BACKOFF_SECONDS, as Kubernetes' ImagePullBackOff does
(10 s to 5 min)."""

PORT_CONFLICTS = ("port is already allocated", "address already in use")
"""What the engine says when a host port is bound already (lowercase)."""


def port_conflict(reason: str | None) -> bool:
    """Whether an attempt's failure says its host port was bound already."""
    said = (reason or "").lower()
    return any(words in said for words in PORT_CONFLICTS)


@dataclass(frozen=True)
class Restart:
    """Place another attempt after `delay` seconds; this is restart number `number`.

    A replacement for an attempt its node lost is not `counted`: `number` is then the
    task's node losses so far, and max_restarts does not limit them.
    """

    number: int
    delay: float
    counted: bool = True


@dataclass(frozen=True)
class Final:
    """The task ends in `state`, for `reason`."""

    state: TaskState
    reason: str | None


def after_attempt(
    task: TaskRecord,
    outcome: TaskState,
    reason: str | None,
    lost: bool = False,
    hold: float = 0.0,
    final: bool = False,
) -> Restart | Final:
    """What follows an attempt that ended in `outcome` (COMPLETED, FAILED or LOST).

    A requested stop is final. `on-failure` restarts what failed or was lost; `always`
    restarts any end. Restarts past `max_restarts` end the task failed. A lost attempt is
    placed again at once and does not count against `max_restarts`: the node failed, not
    the task (Kubernetes and Nomad do not count it either), unless it must wait `hold`
    seconds for its cut-off copy to stop (manager/nodes.py); a failed one waits its backoff,
    and one whose host port was bound already at least PORT_CONFLICT_DELAY. That one still
    counts: the scheduler counts the ports of kube's own containers, even those being
    stopped (manager/holdings.py), so what still holds the port is outside kube's sight,
    and an uncounted retry would go on forever without saying so. A `final` failure (the
    attempt's image cannot be had: shared/images.py) ends a task at once, but not a
    service's: its service would replace it at once, with the same image, without end
    (issue D1). It tries again after the image backoff (`image_delay`), whatever its
    policy, as a pod in ImagePullBackOff does, until max_restarts if it has one.
    """
    if task.desired_state == "stopped":
        return Final(TaskState.COMPLETED, None)
    policy = task.spec.restart
    if final and outcome == TaskState.FAILED:  # e.g. an image no pull can bring
        if task.service is None:
            return Final(TaskState.FAILED, reason)
        number = task.restart_count + 1
        if policy.max_restarts is not None and number > policy.max_restarts:
            gave_up = f"{reason}; gave up after {policy.max_restarts} restarts"
            return Final(TaskState.FAILED, gave_up)
        return Restart(number=number, delay=max(policy.delay(number), image_delay(number)))
    failed = outcome != TaskState.COMPLETED
    wanted = policy.policy == RestartMode.ALWAYS or (
        policy.policy == RestartMode.ON_FAILURE and failed
    )
    if not wanted:
        return Final(TaskState.FAILED if failed else TaskState.COMPLETED, reason)
    if lost:
        return Restart(number=task.lost_count + 1, delay=hold, counted=False)
    number = task.restart_count + 1
    if policy.max_restarts is not None and number > policy.max_restarts:
        last = reason or "exited with code 0"
        return Final(TaskState.FAILED, f"{last}; gave up after {policy.max_restarts} restarts")
    delay = policy.delay(number)
    if failed and port_conflict(reason):
        delay = max(delay, PORT_CONFLICT_DELAY)
    return Restart(number=number, delay=delay)


def image_delay(restarts: int) -> float:
    """Seconds before restart number `restarts` of a service's task whose image could not
    be pulled: IMAGE_BACKOFF_SECONDS, doubling, capped at MAX_BACKOFF_SECONDS."""
    return min(IMAGE_BACKOFF_SECONDS * 2.0 ** max(restarts - 1, 0), MAX_BACKOFF_SECONDS)


def describe(restart: Restarted, attempt: int) -> str:
    """The history's sentence for a restart: "attempt 2 failed (boom); restart 2/3 in 2s"."""
    cause = f" ({restart.reason})" if restart.reason else ""
    if not restart.counted:
        when = f" in {tenths(restart.delay)}s" if restart.delay else ""
        return (
            f"attempt {attempt} {restart.cause.value}{cause}; placed again{when}"
            f" (node loss {restart.number}, not counted against max_restarts)"
        )
    limit = "unlimited" if restart.limit is None else restart.limit
    return (
        f"attempt {attempt} {restart.cause.value}{cause};"
        f" restart {restart.number}/{limit} in {tenths(restart.delay)}s"
    )


def tenths(seconds: float) -> str:
    """Seconds for people, to a tenth: a delay measured from a heartbeat is 2.25278 s."""
    return f"{round(seconds, 1):g}"
