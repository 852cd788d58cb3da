"""What `kube stop`, `scale`, `drain` and `update` wait for: each a look at the tasks (and
services) that says whether the work is done and where it is. The waiting itself, its
display and its ends are kube/progress.py's."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from kube.client import Client
from kube.progress import Look, Work
from shared.errors import KubeError
from shared.models import ServiceRecord, TaskRecord, UpdateState
from shared.states import TaskState

PLACED = (TaskState.SCHEDULED, TaskState.RUNNING)


class ServiceCannotRun(KubeError):
    """A service's tasks cannot run until someone acts: their image cannot be pulled."""


class UpdatePaused(KubeError):
    """A service's update stopped rolling: a task of the new version failed."""


class TargetChanged(KubeError):
    """What a wait waits for will not come: another request (another client's) changed
    the target, e.g. scaled the service to another count. The CLI exits 7 (CHANGED)."""


def leaving(tasks: Sequence[TaskRecord]) -> list[TaskRecord]:
    """Tasks asked to stop whose container is still stopping."""
    return [t for t in tasks if t.desired_state == "stopped" and not t.state.terminal]


def live(tasks: Sequence[TaskRecord], service: str) -> list[TaskRecord]:
    """The service's tasks that count toward its replicas (manager/services.py's `live`);
    a task whose image cannot be pulled ends the wait (ServiceCannotRun): it tries again
    only after a backoff of minutes, with the same answer until someone acts."""
    found = [
        t
        for t in tasks
        if t.service == service and t.desired_state == "running" and not t.state.terminal
    ]
    stuck = next((t for t in found if t.image_problem is not None), None)
    if stuck is not None:
        raise ServiceCannotRun(
            f"service {service} cannot run: {stuck.error}; its tasks try again after a"
            f" backoff (see `kube inspect {stuck.id}`, `kube services`)"
        )
    return found


def _stopping(count: int) -> str:
    return f", {count} stopping" if count else ""


def _why_pending(tasks: Sequence[TaskRecord]) -> str:
    """Why a task waits for a node (`; web-1: no node can take host port 80...`), if one
    does: what a wait that times out is waiting for."""
    unplaced = next((t for t in tasks if t.state == TaskState.PENDING and t.error), None)
    return "" if unplaced is None else f"; {unplaced.id}: {unplaced.error}"


def stop_work(name: str) -> Work:
    return Work(f"the stop of {name}", check="kube ps")


def stopped(client: Client, name: str) -> Callable[[], Look]:
    """`kube stop ID|SERVICE`: the task (or every task of the service) has ended, its
    container stopped."""

    def look() -> Look:
        mine = [t for t in client.list() if t.id == name or t.service == name]
        left = [t for t in mine if not t.state.terminal]
        if len(mine) == 1 and mine[0].id == name:
            where = f" on {left[0].node}" if left and left[0].node else ""
            return Look(not left, f"{name}: stopping{where}")
        return Look(not left, f"{name}: {len(left)} task(s) stopping")

    return look


def scale_work(name: str, replicas: int) -> Work:
    return Work(f"scaling {name} to {replicas}", check="kube services")


def scaled(client: Client, name: str, replicas: int) -> Callable[[], Look]:
    """`kube scale NAME N`: N tasks of the service run, and the ones beyond have ended;
    the service set to another count meanwhile ends the wait (TargetChanged)."""

    def look() -> Look:
        service = _service(client, name)
        if service.replicas != replicas:
            raise TargetChanged(
                f"stopped waiting: service {name} is now to keep {service.replicas}"
                f" replica(s), not {replicas}: another request changed it (check: `kube"
                " services`)"
            )
        tasks = [t for t in client.list() if t.service == name]
        running = sum(1 for t in live(tasks, name) if t.state == TaskState.RUNNING)
        going = len(leaving(tasks))
        return Look(
            running == replicas == len(live(tasks, name)) and not going,
            f"{name}: {scale_text(running, replicas)}{_stopping(going)}{_why_pending(tasks)}",
        )

    return look


def scale_text(running: int, replicas: int) -> str:
    """`2/3 running` on the way up; `3 running, scaling down to 1` on the way down (not
    `3/1`)."""
    if running > replicas:
        return f"{running} running, scaling down to {replicas}"
    return f"{running}/{replicas} running"


def drain_work(node: str) -> Work:
    return Work(f"the drain of {node}", check="kube ps")


def holding(node: str, tasks: Sequence[TaskRecord]) -> list[TaskRecord]:
    """Tasks that still have an attempt on the node."""
    return [
        t
        for t in tasks
        if (t.node == node and t.state in PLACED)
        or (t.draining is not None and t.draining.node == node and not t.state.terminal)
    ]


def drained(client: Client, node: str) -> Callable[[], Look]:
    """`kube drain NODE`: no task left running on the node."""

    def look() -> Look:
        left = holding(node, client.list())
        named = ", ".join(f"{t.id} {t.error or t.state.value}" for t in left[:3])
        return Look(
            not left, f"{node}: {len(left)} task(s) to move" + (f" ({named})" if named else "")
        )

    return look


def update_work(name: str) -> Work:
    return Work(f"the update of {name}", check="kube services")


def _service(client: Client, name: str) -> ServiceRecord:
    found = next((s for s in client.services() if s.name == name), None)
    if found is None:  # removed while we waited
        raise KubeError(f"service {name} is gone")
    return found


def updated(client: Client, name: str) -> Callable[[], Look]:
    """`kube update NAME`: every task of the service runs the new version, the old ones
    have ended; a paused update ends the wait (UpdatePaused)."""

    def look() -> Look:
        service = _service(client, name)
        if service.update_state == UpdateState.PAUSED:
            raise UpdatePaused(f"service {name}: update paused: {service.update_error}")
        tasks = [t for t in client.list() if t.service == name]
        current = live(tasks, name)
        new = [t for t in current if t.version == service.version]
        running = sum(1 for t in new if t.state == TaskState.RUNNING)
        old = len(current) - len(new)
        going = len(leaving(tasks))
        text = f"{name}: {running}/{service.replicas} on version {service.version} running"
        text += (f", {old} old" if old else "") + _stopping(going) + _why_pending(new)
        # The manager ends the update (idle) once every new task runs, and is healthy if
        # checked, or waits only for a host port that no node has free.
        done = service.update_state == UpdateState.IDLE and not old and not going
        return Look(done, text)

    return look
