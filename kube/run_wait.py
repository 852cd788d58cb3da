"""`kube run --wait` of one task: wait until it runs or ends, showing where it is; a task
that ends at once is shown with its output, as `docker run` shows it."""

from __future__ import annotations

import contextlib
import time

from kube.client import Client, WaitTimeout
from kube.events import task_line
from kube.progress import Progress, Work, interruptible
from shared.errors import KubeError
from shared.models import TaskRecord
from shared.states import TaskState

SETTLE = 1.0
"""Seconds the wait follows a task past its start: one that ends within them (a one-shot
command such as `echo hello`) is shown ended, with its output; one still running then is
shown running, and the wait ends. One that stopped and is being restarted (its restart
policy) is followed on, until it runs for SETTLE seconds or ends (a command that crashes
at once ends `failed` after its restarts, not `running`)."""

OUTPUT_LINES = 1000
"""The end of the output shown of a task that ended; `kube logs` reads all of it."""


def run_work(task_id: str) -> Work:
    return Work(f"task {task_id}", check=f"kube inspect {task_id}", stop=f"kube stop {task_id}")


def until_running(
    client: Client, task_id: str, timeout: float, attach: bool
) -> tuple[TaskRecord, str | None]:
    """The task once it runs (and SETTLE more seconds) or has ended, and, with `attach`,
    the end of its output if it ended (None when it has none to show)."""
    work = run_work(task_id)
    with interruptible(work), Progress() as progress:

        def show(task: TaskRecord) -> None:
            progress.show(task_line(task))

        show(client.get(task_id))
        deadline = time.monotonic() + timeout
        while True:
            try:
                task = client.wait(task_id, {TaskState.RUNNING}, left(deadline), on_change=show)
            except WaitTimeout as exc:
                raise WaitTimeout(f"{exc}; {work.carries_on()}") from None
            if task.state != TaskState.RUNNING:
                break  # it ended
            with contextlib.suppress(WaitTimeout):
                task = client.wait(task_id, (), SETTLE, on_change=show)
            if task.state.terminal:
                break
            task = client.get(task_id)
            if task.state == TaskState.RUNNING or time.monotonic() >= deadline:
                break  # running for SETTLE, or out of time while it restarts
            # it stopped and is being restarted (its policy): follow it to a steady state
    return task, output(client, task) if attach and task.state.terminal else None


def left(deadline: float) -> float:
    """Seconds until the deadline, and a little even past it (one last look)."""
    return max(deadline - time.monotonic(), 0.1)


def output(client: Client, task: TaskRecord) -> str | None:
    """The end of an ended task's output; None if its container never started or its
    node cannot tell (the line `kube run` ends with says how the task ended anyway)."""
    if task.container_id is None:
        return None
    try:
        return client.logs(task.id, OUTPUT_LINES)
    except KubeError:
        return None
