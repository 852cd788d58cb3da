"""`kube update NAME --image IMG ...` and `kube restart TASK|SERVICE`, made of the
requests the manager already serves: a service update (rolled out one task at a time),
a stop and a submit. No request of their own.

- `update` with field flags fetches the service's current spec, changes those fields and
  sends it as the new version; with `-f FILE`, the file's spec, the flags over it.
- `restart SERVICE` sends the current spec again as a new version: its tasks are
  replaced one after another, as by any update.
- `restart TASK` of a service stops that task; the service starts a replacement.
- `restart TASK` of no service stops it if it runs, waits until it has ended, and
  submits its spec again: a new task of the same name (its id is printed), the old one
  kept in the history until `kube rm`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from kube import task_flags, waits
from kube.client import Client, make_spec
from kube.progress import wait, waiting_flags
from kube.specfile import read_spec
from shared.errors import DecodeError, RequestError, SettingsError
from shared.models import ServiceRecord, TaskRecord, TaskSpec
from shared.units import parse_bytes

FIELDS = ("image", "replicas", "env", "cpu", "memory", "disk", "pull_policy", "label")


def add_update_flags(update: argparse.ArgumentParser) -> None:
    """The single fields `kube update` changes without a whole spec file."""
    task_flags.add_field_flags(update)
    update.add_argument(
        "--env-rm", action="append", metavar="KEY", help="remove an environment variable; repeat"
    )


def add_restart_parser(sub: Any) -> None:
    restart = sub.add_parser(
        "restart",
        help="restart a task (a fresh task of its spec) or a service (its tasks replaced"
        " one after another)",
        description="A service's tasks are replaced one after another, as by an update."
        " A task of a service is stopped, and the service starts a replacement. A task of"
        " no service is stopped if it runs, then its spec is submitted again: a new task"
        " of the same name, whose id is printed.",
    )
    restart.add_argument("name", metavar="TASK|SERVICE", help="a service, or a task's id or name")
    waiting_flags(restart, "until the service's tasks are replaced or the task stopped", 300.0)


def _given(args: argparse.Namespace, but: str | None = None) -> bool:
    """Whether a field flag (other than `but`) is given."""
    flags = (getattr(args, name) for name in (*FIELDS, "env_rm") if name != but)
    return any(value is not None for value in flags) or bool(task_flags.spec_fields(args, {}))


def replicas_only(args: argparse.Namespace) -> bool:
    """`kube update NAME --replicas N` and no other change: a scale, not a new version
    rolled over every task (as `kubectl scale` and `docker service update --replicas`)."""
    return args.file is None and args.replicas is not None and not _given(args, but="replicas")


def current_spec(service: ServiceRecord) -> dict[str, Any]:
    """The service's spec as JSON fields, with the replicas it keeps now (`kube scale`
    changes the service's count, not its spec's)."""
    data: dict[str, Any] = service.spec.model_dump(mode="json")
    return {**data, "replicas": service.replicas, "id": None}


def changed(args: argparse.Namespace, base: dict[str, Any]) -> dict[str, Any]:
    """`base` with the fields the flags give."""
    data = dict(base)
    for name in ("image", "replicas", "cpu", "pull_policy"):
        if getattr(args, name) is not None:
            data[name] = getattr(args, name)
    for name in ("memory", "disk"):
        if getattr(args, name) is not None:
            try:
                data[name] = parse_bytes(getattr(args, name))
            except ValueError as exc:
                raise SettingsError(f"--{name} {getattr(args, name)}: {exc}") from exc
    if args.env is not None or args.env_rm is not None:
        env = {**(data.get("env") or {}), **dict(args.env or ())}
        data["env"] = {k: v for k, v in env.items() if k not in (args.env_rm or ())}
    if args.label is not None:
        data["labels"] = {**(data.get("labels") or {}), **dict(args.label)}
    data.update(task_flags.spec_fields(args, data))
    return data


def update_spec(args: argparse.Namespace, client: Client) -> TaskSpec:
    """The spec `kube update` sends: the file's, or the service's current one, with the
    fields the flags give."""
    if args.file is None and not _given(args):
        args.usage_error("give -f FILE, or the fields to change (--image, --env, ...)")
    base = (
        {"name": args.name, **read_spec(args.file)}
        if args.file is not None
        else current_spec(service_named(client, args.name))
    )
    try:
        return make_spec(changed(args, base))
    except DecodeError as exc:  # checked before sending: a usage error (exit 2)
        raise SettingsError(f"not a valid spec: {exc.reason}") from exc


def service_named(client: Client, name: str) -> ServiceRecord:
    """The service so named; a task of that name or id is said to be a task, not a
    service, with what to do instead (RequestError, exit 4)."""
    try:
        return client.service(name)
    except RequestError:
        if any(name in (t.name, t.id) for t in client.list()):
            raise RequestError(
                f"{name!r} is a task, not a service: `kube update` changes a service. Run"
                f" the task again with the new fields (`kube run --name {name} ...`), or make"
                f" it a service (`kube run --name {name} --replicas 1 ...`)"
            ) from None
        raise


def restart(args: argparse.Namespace, client: Client) -> int:
    """Waits, as `kube update` does, unless -d: until the service's tasks are replaced,
    or the task of a service stopped (its service starts a replacement). A running task
    of no service is resubmitted once stopped: with -d, refused, since it cannot return
    before; an ended one is resubmitted at once."""
    target = client.task_id(args.name, services=True)
    service = next((s for s in client.services() if s.name == target), None)
    if service is not None:
        client.update(service.name, make_spec(current_spec(service)))
        if args.detach:
            print(f"{service.name} restarting: its tasks are replaced one after another")
        else:
            look = waits.updated(client, service.name)
            wait(client, waits.update_work(service.name), look, args.wait_timeout)
            print(f"{service.name} restarted")
        return 0
    task = client.get(target)
    if task.service is not None:
        client.stop(task.id)
        if not args.detach:
            stopped(client, task.id, args.wait_timeout)
        print(f"{task.id} stopping: service {task.service} starts a replacement")
        return 0
    if args.detach and not task.state.terminal:
        raise RequestError(
            f"{task.id} is a task of no service: its spec is submitted again only once it"
            f" has stopped, so -d cannot return at once; drop -d, or `kube stop -d {task.id}`"
            " now and `kube restart` it once it has ended"
        )
    print(resubmit(client, task, args.wait_timeout))
    return 0


def stopped(client: Client, task_id: str, timeout: float) -> None:
    """Wait until the task has ended (kube/waits.py, kube/progress.py)."""
    wait(client, waits.stop_work(task_id), waits.stopped(client, task_id), timeout)


def resubmit(client: Client, task: TaskRecord, timeout: float) -> str:
    """Stop the task if it has not ended, wait until it has, and submit its spec again;
    the new task's id."""
    if not task.state.terminal:
        client.stop(task.id)
        stopped(client, task.id, timeout)
        print(f"{task.id} stopped", file=sys.stderr)
    return client.submit(task.spec.model_copy(update={"id": None}))
