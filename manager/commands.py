"""The manager's handlers for `kube.commands`: tasks, services and nodes.

| routing key      | body            | effect                                              |
| ---------------- | --------------- | --------------------------------------------------- |
| task.submit      | TaskSpec        | a task, or with `replicas` a service                |
| task.stop        | {"id"}          | stops a task, or every task of the service so named |
| task.remove      | {"ids"} or {"all_ended": true} | forgets ended tasks and stopped services |
| service.scale    | {"name", "replicas"} | changes how many tasks a service keeps         |
| service.update   | {"name", "spec"} | a new version, rolled out one task at a time       |
| node.cordon      | {"name"}        | no new placements on the node                       |
| node.uncordon    | {"name"}        | placements again                                    |
| node.drain       | {"name"}        | cordon, then move every task off the node           |
| node.remove      | {"name"}        | forgets a down node                                 |
| node.set         | NodeSettings    | an operator's labels and capacity caps for a node   |
| orphans.remove   | OrphansRequest  | asks the nodes to remove orphan containers          |
| orphans.adopt    | OrphansRequest  | makes an orphan container a task of this cluster    |
| job.remove       | {"name"}        | forgets a scheduled job, stops its running runs     |
| job.run          | {"name"}        | starts a run of a job now, beside its schedule      |
| secret.create    | FileWrite       | a secret, its value sealed for the manager          |
| secret.update    | FileWrite       | its next version; the services using it roll        |
| secret.remove    | FileNamed       | forgets it, unless a task or service uses it        |
| config.*         | as secret.*     | the same for configs                                |

Each answers `Reply` to a `reply_to`; a bad message is answered and dead-lettered. The
node.*, orphans.*, secret.* and config.* commands are an operator's: `manager/auth.py` checks
who sent them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import partial
from typing import Protocol, TypeVar

from pydantic import TypeAdapter

from manager import core, jobs, nodes, orphans, removal, secrets, services, volumes
from manager.auth import WorkerAuth, command_sender_allowed
from manager.effects import Decision
from manager.metrics import drop_orphans
from manager.orphans import Book as OrphanBook
from manager.quotas import Quotas
from manager.secret_key import SecretKey
from manager.store import Store
from shared import topology
from shared.bus import Delivery
from shared.codec import decode, encode
from shared.errors import DecodeError, SecretError
from shared.files import FileKind, FileNamed, FileWrite, context
from shared.ids import new_task_id
from shared.models import (
    ID_PATTERN,
    MAX_SPEC_BYTES,
    JobRecord,
    JobRequest,
    NodeRecord,
    NodeRequest,
    NodeSettings,
    OrphansRequest,
    Removed,
    RemoveRequest,
    Reply,
    ScaleRequest,
    ServiceRecord,
    StopRequest,
    TaskRecord,
    TaskSpec,
    UpdateRequest,
    VolumeRequest,
)
from shared.specs import one_replica_with_volumes
from shared.states import TERMINAL, TaskState


def _spec(spec: TaskSpec) -> TaskSpec:
    """A spec whose JSON, with every default filled in as kube stores and sends it, fits
    MAX_SPEC_BYTES: the body alone may be smaller (a list of bare rules grows)."""
    size = len(encode(spec))
    if size > MAX_SPEC_BYTES:
        raise DecodeError(
            f"the spec is {size} bytes with its defaults filled in, over the"
            f" {MAX_SPEC_BYTES}-byte limit"
        )
    return spec


class CommandContext(Protocol):
    """What the command handlers need of the manager, and nothing more of it."""

    store: Store
    auth: WorkerAuth
    quotas: Quotas
    clock: Callable[[], datetime]
    monotonic: Callable[[], float]

    orphans: OrphanBook

    secret_key: SecretKey | None

    def commit(self, decision: Decision) -> None: ...
    def settle(self, delivery: Delivery, reply: Reply | None = None) -> None: ...
    def refuse(self, delivery: Delivery, reason: str) -> None: ...
    def place(self, tasks: Sequence[TaskRecord], now: datetime) -> Decision: ...
    def after_change(self, decision: Decision) -> None: ...
    def schedule_pending(self) -> None: ...
    def volume_forgotten(self) -> None: ...
    def reconcile_service(self, service: ServiceRecord, follow: bool = True) -> Decision: ...
    def start_runs(self, decision: Decision) -> None: ...


log = logging.getLogger(__name__)

K = TypeVar("K")

SPEC = TypeAdapter(TaskSpec)
STOP = TypeAdapter(StopRequest)
SCALE = TypeAdapter(ScaleRequest)
UPDATE = TypeAdapter(UpdateRequest)
NODE = TypeAdapter(NodeRequest)
SETTINGS = TypeAdapter(NodeSettings)
REMOVE = TypeAdapter(RemoveRequest)
ORPHANS = TypeAdapter(OrphansRequest)
JOB = TypeAdapter(JobRequest)
FILE_WRITE = TypeAdapter(FileWrite)
FILE_NAMED = TypeAdapter(FileNamed)
VOLUME = TypeAdapter(VolumeRequest)


class Refused(Exception):
    """A command that cannot be carried out; the message says why."""


def _known(what: str, name: str, found: K | None) -> K:
    """What the store found by that name; Refused if nothing."""
    if found is None:
        raise Refused(f"unknown {what} {name!r}")
    return found


class Commands:
    """Routes each command to its handler; handlers return the id or name they acted on,
    or the whole reply."""

    def __init__(self, manager: CommandContext) -> None:
        self.manager = manager
        self.store = manager.store
        self.handlers: dict[str, Callable[[Delivery], str | Reply]] = {
            topology.SUBMIT_KEY: self.submit,
            topology.STOP_KEY: self.stop,
            topology.REMOVE_KEY: self.remove,
            topology.SCALE_KEY: self.scale,
            topology.UPDATE_KEY: self.update,
            topology.NODE_SET_KEY: self.configure,
            topology.CORDON_KEY: lambda d: self.cordon(d, schedulable=False),
            topology.UNCORDON_KEY: lambda d: self.cordon(d, schedulable=True),
            topology.DRAIN_KEY: self.drain,
            topology.NODE_REMOVE_KEY: self.remove_node,
            topology.ORPHANS_REMOVE_KEY: self.remove_orphans,
            topology.ORPHANS_ADOPT_KEY: self.adopt_orphan,
            topology.JOB_REMOVE_KEY: self.remove_job,
            topology.JOB_RUN_KEY: self.run_job,
            topology.VOLUME_REMOVE_KEY: self.remove_volume,
        }
        for kind in FileKind:
            self.handlers[f"{kind.value}.create"] = partial(self.write_file, kind, True)
            self.handlers[f"{kind.value}.update"] = partial(self.write_file, kind, False)
            self.handlers[f"{kind.value}.remove"] = partial(self.remove_file, kind)

    def on_command(self, delivery: Delivery) -> None:
        handler = self.handlers.get(delivery.routing_key)
        if handler is None:
            known = ", ".join(self.handlers)
            self.manager.refuse(
                delivery, f"unknown routing key {delivery.routing_key!r}: use one of {known}"
            )
            return
        refused = command_sender_allowed(delivery.routing_key, delivery.user_id, self.manager.auth)
        if refused is not None:
            self.manager.refuse(delivery, refused)
            return
        try:
            done = handler(delivery)
        except DecodeError as exc:
            self.manager.refuse(delivery, f"invalid {delivery.routing_key}: {exc.reason}")
            return
        except Refused as exc:
            self.manager.refuse(delivery, str(exc))
            return
        self.manager.settle(delivery, done if isinstance(done, Reply) else Reply(ok=True, id=done))

    def submit(self, delivery: Delivery) -> str:
        try:
            spec = _spec(decode(SPEC, delivery.body, max_bytes=MAX_SPEC_BYTES))
        except DecodeError as exc:
            raise Refused(f"invalid task spec: {exc.reason}") from exc
        self._mounted(spec)
        if spec.replicas is not None:
            return self._create_service(spec, delivery.user_id)
        if spec.schedule is not None:
            return self._create_job(spec)
        task_id = spec.id or _message_id(delivery) or new_task_id(spec.name)
        existing = self.store.task(task_id)
        if existing is None:
            clash = orphans.clash(self.manager.orphans, task_id)
            if clash is not None:  # its container would be met by the RunTask: never taken
                raise Refused(clash.sentence())
            now = self.manager.clock()
            self._charge(delivery.user_id, 1)
            decision = core.accept(spec, task_id, now)
            self.manager.commit(decision.extend(self.manager.place(decision.tasks, now)))
            self._orphans_named(spec.name)
        else:
            log.info("task %s: submitted again; already %s", task_id, existing.state.value)
        return task_id

    def _orphans_named(self, name: str) -> None:
        """Say when orphans run under the name just created (its store lost, a service
        made again runs its new replicas beside the old containers)."""
        count = self.manager.orphans.named(name)
        if count:
            log.warning(
                "%s: %d orphan containers have this name, running beside it (kube ps --orphans)",
                name,
                count,
            )

    def _charge(self, user: str | None, tasks: int, replicas: int | None = None) -> None:
        """Refuse what is over a bound (manager/quotas.py); else count it."""
        quotas = self.manager.quotas
        refused = quotas.replicas(replicas) if replicas is not None else None
        refused = refused or quotas.take(user, tasks, self.manager.monotonic())
        if refused is not None:
            raise Refused(refused)

    def _create_service(self, spec: TaskSpec, user: str | None) -> str:
        existing = self.store.service(spec.name)
        now = self.manager.clock()
        if existing is None or existing.desired_state == "stopped":
            replicas = spec.replicas or 0
            self._charge(user, replicas, replicas)
        if existing is None:
            self.manager.reconcile_service(services.create(spec, now))
            self._orphans_named(spec.name)
        elif existing.desired_state == "stopped":
            log.info("service %s: created again (version %d)", spec.name, existing.version + 1)
            self.manager.reconcile_service(services.recreate(existing, spec, now))
        else:
            log.info("service %s: submitted again; unchanged (use service.update)", spec.name)
        return spec.name

    def _create_job(self, spec: TaskSpec) -> str:
        """A job, or a job submitted again: it takes the new spec, keeps its decided ticks."""
        existing = self.store.job(spec.name)
        job = jobs.create(spec, self.manager.clock(), existing)
        what = "created" if existing is None else "updated"
        log.info("job %s: %s, %s in %s", job.name, what, job.spec.schedule, job.spec.timezone)
        self.manager.commit(Decision(jobs=[job], outgoing=[jobs.job_event(job, what)]))
        return job.name

    def _job(self, name: str) -> JobRecord:
        return _known("job", name, self.store.job(name))

    def remove_job(self, delivery: Delivery) -> Reply:
        """Forget a job; the reply names nothing that is left (its id is empty)."""
        job = self._job(decode(JOB, delivery.body).name)
        decision = jobs.remove(job, self.store.runs(job.name), self.manager.clock())
        self.manager.commit(decision)
        self.manager.after_change(decision)
        return Reply(ok=True)

    def run_job(self, delivery: Delivery) -> str:
        """A run now, named for this second (a tick at this second would be this run)."""
        job = self._job(decode(JOB, delivery.body).name)
        now = self.manager.clock()
        task_id = jobs.run_id(job.name, now)
        if self.store.task(task_id) is None:
            decision = core.accept(jobs.run_spec(job), task_id, now, job=job.name)
            decision.jobs.append(job.model_copy(update={"last_run": task_id, "updated_at": now}))
            self.manager.start_runs(decision)
        return task_id

    def stop(self, delivery: Delivery) -> str:
        request = decode(STOP, delivery.body)
        service = self.store.service(request.id)
        if service is not None:
            self.manager.reconcile_service(services.stop(service, self.manager.clock()))
            return service.name
        task = self.store.task(request.id)
        if task is None:
            raise Refused(f"unknown task or service {request.id!r}")
        decision = core.request_stop(task, self.manager.clock())
        self.manager.commit(decision)
        self.manager.after_change(decision)
        return task.id

    def scale(self, delivery: Delivery) -> str:
        request = decode(SCALE, delivery.body)
        service = self._service(request.name)
        was = service.replicas if service.desired_state == "running" else 0
        _one_replica_with_volumes(request.replicas, service.spec)
        self._charge(delivery.user_id, request.replicas - was, request.replicas)
        self.manager.reconcile_service(
            services.scale(service, request.replicas, self.manager.clock())
        )
        return service.name

    def update(self, delivery: Delivery) -> str:
        request = decode(UPDATE, delivery.body, max_bytes=MAX_SPEC_BYTES)
        self._mounted(_spec(request.spec))
        service = self._service(request.name)
        if request.spec.name != service.name:
            raise Refused(
                f"spec.name {request.spec.name!r} differs from the service {service.name!r}"
            )
        replicas = request.spec.replicas
        _one_replica_with_volumes(service.replicas if replicas is None else replicas, request.spec)
        self.manager.reconcile_service(services.update(service, request.spec, self.manager.clock()))
        return service.name

    def cordon(self, delivery: Delivery, schedulable: bool) -> str:
        request = decode(NODE, delivery.body)
        node = self._node(request.name)
        self.manager.commit(nodes.cordon(node, schedulable))
        log.info("node %s: %s", node.name, "uncordoned" if schedulable else "cordoned")
        if schedulable:
            self.manager.schedule_pending()
        return node.name

    def configure(self, delivery: Delivery) -> str:
        """An operator's labels and capacity caps for a node (`kube label`, `kube cap`)."""
        settings = decode(SETTINGS, delivery.body)
        node = self._node(settings.name)
        decision = nodes.configure(node, settings)
        self.manager.commit(decision)
        if decision.nodes:
            log.info("node %s: operator settings %s", node.name, decision.nodes[0].operator)
            self.manager.schedule_pending()  # new labels or caps may fit (or unfit) tasks
        return node.name

    def drain(self, delivery: Delivery) -> str:
        request = decode(NODE, delivery.body)
        node = self._node(request.name)
        placed = self.store.tasks_on(node.name, nodes.PLACED)
        decision = nodes.drain(node, placed, self.manager.clock())
        log.info("node %s: draining %d tasks", node.name, len(placed))
        self.manager.commit(decision)
        self.manager.schedule_pending()
        return node.name

    def remove(self, delivery: Delivery) -> Reply:
        """Forget ended tasks and stopped services, all named or none (`kube rm`)."""
        request = decode(REMOVE, delivery.body)
        if request.all_ended:
            decision = self._ended()
        else:
            decision = self._named(request.ids, delivery.redelivered)
        self.manager.commit(decision)
        gone = decision.removed
        log.info("removed %d tasks, services %s", len(gone.tasks), gone.services or "none")
        return Reply(ok=True, result=_removed(decision))

    def _named(self, ids: Sequence[str], redelivered: bool) -> Decision:
        decision, kept = Decision(), []
        for name in dict.fromkeys(ids):
            service = self.store.service(name)
            task = self.store.task(name) if service is None else None
            taken = set(decision.removed.tasks)  # a task named beside its service goes once
            if service is not None:
                tasks = self._tasks_of(service.name)
                why = removal.service_kept(service, tasks)
                step = removal.remove_service(service, [t for t in tasks if t.id not in taken])
            elif task is not None and task.id in taken:
                continue
            elif task is not None:
                why = removal.task_kept(task)
                step = removal.remove_task(task)
            elif redelivered:
                # Removed by this message's first delivery, whose answer was lost with
                # the manager: it is gone, as asked.
                continue
            else:
                why, step = removal.Kept("task or service", name, removal.Why.UNKNOWN), Decision()
            if why is not None:
                kept.append(why)
            decision.extend(step)
        if kept:
            raise Refused(removal.refusal(kept))
        return decision

    def _ended(self) -> Decision:
        """Every ended task, and every stopped service whose tasks all ended."""
        decision = Decision()
        for service in self.store.services():
            tasks = self._tasks_of(service.name)
            if removal.service_kept(service, tasks) is None:
                decision.extend(removal.remove_service(service, tasks))
        taken = set(decision.removed.tasks)
        for task in self.store.tasks(TERMINAL):
            if task.id not in taken:
                decision.extend(removal.remove_task(task))
        return decision

    def _tasks_of(self, service: str) -> list[TaskRecord]:
        return [t for t in self.store.tasks_named(service) if t.service == service]

    def remove_node(self, delivery: Delivery) -> Reply:
        """Forget a down node (`kube rm --node`)."""
        request = decode(NODE, delivery.body)
        node = self.store.node(request.name)
        if node is None:
            if delivery.redelivered:  # removed by the first delivery (see `_named`)
                return Reply(ok=True, result=Removed().model_dump(mode="json"))
            raise Refused(f"unknown node {request.name!r}")
        kept = removal.node_kept(node)
        if kept is not None:
            raise Refused(removal.refusal([kept]))
        decision = removal.remove_node(node)
        self.manager.commit(decision)
        self.manager.orphans.forget(node.name)
        drop_orphans(node.name)
        log.info("node %s: removed", node.name)
        return Reply(ok=True, result=_removed(decision))

    def remove_volume(self, delivery: Delivery) -> Reply:
        """Forget a volume and have its node remove it (`kube volume rm`, docs/volumes.md)."""
        request = decode(VOLUME, delivery.body)
        volume = next((v for v in self.store.volumes() if v.name == request.name), None)
        if volume is None and delivery.redelivered:  # removed by the first delivery
            return Reply(ok=True, id=request.name)
        node = self.store.node(volume.node) if volume is not None else None
        waiting = {t.id for t in self.store.tasks([TaskState.PENDING])} if request.force else set()
        done = volumes.removal(volume, request.name, node, request.force, waiting)
        if isinstance(done, volumes.Refusal):
            raise Refused(done.sentence())
        self.manager.commit(done)
        self.manager.volume_forgotten()
        log.info("volume %s: removed (node %s)", request.name, volume.node if volume else "?")
        return Reply(ok=True, id=request.name)

    def remove_orphans(self, delivery: Delivery) -> Reply:
        """Ask the nodes to remove the orphan containers named (`kube orphans remove`):
        containers no task of this cluster placed (manager/orphans.py)."""
        request = decode(ORPHANS, delivery.body)
        book = self.manager.orphans
        if request.node is not None:
            self._node(request.node)  # an unknown node is said, not taken for one without any
        found = book.find(request.id, request.node, request.cluster)
        if not found and request.id is not None:
            raise Refused(orphans.unknown(book, request.id).sentence())
        if not found and request.cluster is not None:
            raise Refused(f"no orphan container of cluster {request.cluster!r} is reported")
        self.manager.commit(orphans.removal(found))
        book.asked_removal(found)
        for node, orphan in found:
            log.warning(
                "node %s: removing orphan container %s (task %s), as asked",
                node,
                orphan.container_id[:12],
                orphan.task_id,
            )
        # Heartbeats list at most 50 orphans a node: those left out are not asked for now.
        left_out = book.left_out(request.node) if request.id is None else 0
        return Reply(ok=True, result=orphans.listing(found, left_out).model_dump(mode="json"))

    def adopt_orphan(self, delivery: Delivery) -> str:
        """Make an orphan container a task of this cluster (`kube orphans adopt`)."""
        request = decode(ORPHANS, delivery.body)
        if request.id is None:
            raise Refused("adopt one orphan at a time: give its id")
        found = self.manager.orphans.find(request.id, request.node, request.cluster)
        chosen = orphans.choose(found, request.id, self.manager.orphans)
        if isinstance(chosen, orphans.Refused):
            raise Refused(chosen.sentence())
        node, orphan = chosen
        known = self.store.task(orphan.task_id)
        if known is not None and delivery.redelivered and known.container_id == orphan.container_id:
            return known.id  # adopted by the first delivery
        decision = orphans.adopt(
            node,
            orphan,
            known,
            self.store.cluster_id,
            self.manager.clock(),
            self.store.address(node),
            self.manager.orphans.being_removed(orphan),
        )
        if isinstance(decision, orphans.Refused):
            raise Refused(decision.sentence())
        self.manager.commit(decision)
        self.manager.orphans.adopting(node, orphan)
        log.warning(
            "task %s: adopted container %s on node %s, attempt %d",
            orphan.task_id,
            orphan.container_id[:12],
            node,
            orphan.attempt,
        )
        return orphan.task_id

    # -- secrets and configs (manager/secrets.py) ------------------------------------

    def _key(self) -> SecretKey:
        if self.manager.secret_key is None:
            raise Refused(secrets.NO_KEY)
        return self.manager.secret_key

    def _mounted(self, spec: TaskSpec) -> None:
        """Refuse a spec that mounts a secret or config this manager does not have."""
        for kind in FileKind:
            names = secrets.refs(spec, kind)
            if names:
                self._key()
            missing = [name for name in names if self.store.file(kind, name) is None]
            if missing:
                raise Refused(f"no such {kind.value}: {', '.join(missing)}")

    def write_file(self, kind: FileKind, create: bool, delivery: Delivery) -> str:
        """A new secret or config (create), or its next version (update)."""
        key = self._key()
        request = decode(FILE_WRITE, delivery.body)
        name = request.name
        try:
            value = key.opened(request.value(), context(kind, name))
        except SecretError as exc:
            raise Refused(f"{kind.value} {name}: {exc}") from exc
        refusal = secrets.value_refusal(kind, name, value)
        if refusal is not None:
            raise Refused(refusal)
        existing = self.store.file(kind, name)
        same = existing is not None and existing.digest == key.digest(value)
        if create and existing is not None and not (same and delivery.redelivered):
            # Refused whatever the value: were the same value accepted, a create would
            # tell whether a guess of it is right. Only a create redelivered by the broker
            # (the first delivery stored it, its ack was lost) finds its own value there.
            raise Refused(f"{kind.value} {name} exists: use `kube {kind.value} update`")
        if existing is not None and same:
            log.info("%s %s: unchanged at version %d", kind.value, name, existing.version)
            return name  # a create redelivered, or an update to the same value
        if not create and existing is None:
            raise Refused(f"no such {kind.value}: {name}")
        now = self.manager.clock()
        version = 1 if existing is None else existing.version + 1
        self.store.put_file(secrets.stored(key, kind, name, version, value, now))
        log.info("%s %s: version %d stored", kind.value, name, version)
        for service, spec in secrets.rolls(self.store.services(), kind, name, version):
            log.info("service %s: rolling to %s %s version %d", service.name, kind, name, version)
            self.manager.reconcile_service(services.update(service, spec, now))
        return name

    def remove_file(self, kind: FileKind, delivery: Delivery) -> str:
        """Forget a secret or config, every version; refused while anything mounts it."""
        self._key()
        name = decode(FILE_NAMED, delivery.body).name
        if self.store.file(kind, name) is None:
            raise Refused(f"no such {kind.value}: {name}")
        active = self.store.tasks([s for s in TaskState if not s.terminal])
        using = secrets.users(kind, name, self.store.services(), active)
        if using:
            raise Refused(f"{kind.value} {name} is in use by {', '.join(using)}")
        self.store.remove_file(kind, name)
        log.info("%s %s: removed", kind.value, name)
        return name

    def _service(self, name: str) -> ServiceRecord:
        return _known("service", name, self.store.service(name))

    def _node(self, name: str) -> NodeRecord:
        return _known("node", name, self.store.node(name))


def _removed(decision: Decision) -> object:
    """The reply's `result`: what a removal removed."""
    gone = decision.removed
    return Removed(
        tasks=tuple(gone.tasks), services=tuple(gone.services), nodes=tuple(gone.nodes)
    ).model_dump(mode="json")


def _message_id(delivery: Delivery) -> str | None:
    """An AMQP message_id usable as a task id: it makes a raw publish idempotent too."""
    if delivery.message_id and re.match(ID_PATTERN, delivery.message_id):
        return delivery.message_id
    return None


def _one_replica_with_volumes(replicas: int, spec: TaskSpec) -> None:
    """Refuse a scale or update that would give a service with volumes several replicas."""
    try:
        one_replica_with_volumes(replicas, spec.volumes)
    except ValueError as exc:
        raise Refused(str(exc)) from exc
