"""Doing a stack's plan with the requests the manager already serves (submit, update,
scale, stop, remove): no request of its own. A service with `depends_on: {X: {condition:
service_healthy}}` is sent once X's tasks run and are healthy; the deploy waits for that,
up to a timeout, and says what it waited for when it gives up."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from kube import waits
from kube.client import Client
from kube.progress import Look, Work, wait
from kube.stack.compose import Stack
from kube.stack.plan import Action, Change
from shared.errors import KubeError
from shared.models import Health, UpdateState
from shared.states import TaskState


def apply(
    client: Client,
    stack: Stack,
    changes: Sequence[Change],
    timeout: float,
    say: Callable[[str], None],
) -> None:
    """Send each change in order; before a service that waits for others' health, wait."""
    by_name = {s.spec.name: s for s in stack.services}
    prefix = f"{stack.name}_"
    for change in changes:
        service = by_name.get(change.name)
        if change.action in (Action.UNCHANGED, Action.NOT_IN_FILE, Action.REMOVE):
            if change.action == Action.NOT_IN_FILE:
                say(f"{change.name}: not in the file; kept (kube deploy --prune removes it)")
            continue
        assert service is not None and change.spec is not None
        for need in service.depends_on:
            if need.healthy:
                say(f"{change.name}: waiting until {prefix}{need.service} is healthy")
                healthy_wait(client, f"{prefix}{need.service}", timeout)
        if change.job or change.action == Action.CREATE:
            client.submit(change.spec)  # a job submitted again takes the new spec
        elif change.action == Action.UPDATE:
            client.update(change.name, change.spec)
        else:
            client.scale(change.name, change.spec.replicas or 0)
        say(f"{change.name}: {change.action.value}d")
    gone = [c.name for c in changes if c.action == Action.REMOVE and not c.job]
    if gone:
        remove(client, gone, timeout)
    gone_jobs = [c.name for c in changes if c.action == Action.REMOVE and c.job]
    for name in gone_jobs:
        client.remove_job(name)
    for name in gone + gone_jobs:
        say(f"{name}: removed")


def healthy_wait(client: Client, name: str, timeout: float) -> None:
    work = Work(f"the start of {name}", check=f"kube ps --service {name}")
    wait(client, work, healthy(client, name), timeout)


def healthy(client: Client, name: str) -> Callable[[], Look]:
    """Every replica of the service's current version runs and, if checked, is healthy;
    a service that cannot get there without someone acting ends the wait (0 replicas, an
    update paused, an image that cannot be pulled)."""

    def look() -> Look:
        service = client.service(name)
        if service.replicas == 0:
            raise KubeError(f"{name} has 0 replicas: it never becomes healthy")
        if service.update_state == UpdateState.PAUSED:
            raise waits.UpdatePaused(f"service {name}: update paused: {service.update_error}")
        tasks = waits.live([t for t in client.list() if t.service == name], name)
        checked = service.spec.health_check is not None
        ready = [
            t
            for t in tasks
            if t.version == service.version
            and t.state == TaskState.RUNNING
            and (not checked or t.health == Health.HEALTHY)
        ]
        text = f"{name}: {len(ready)}/{service.replicas} {'healthy' if checked else 'running'}"
        return Look(len(ready) >= service.replicas, text)

    return look


def remove(client: Client, names: Sequence[str], timeout: float) -> None:
    """Stop the services, wait until their tasks ended, forget them (as kube stop, kube rm)."""
    for name in names:
        client.stop(name)
    for name in names:
        wait(client, waits.stop_work(name), waits.stopped(client, name), timeout)
    client.remove(list(names))
