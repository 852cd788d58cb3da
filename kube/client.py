"""The Python client of kube: everything the CLI does, over AMQP, as typed calls.

    with Client.from_env() as kube:
        task_id = kube.submit(TaskSpec(name="web", image="nginx", ports=(80,)))
        task = kube.wait(task_id, {TaskState.RUNNING}, timeout=60)

        for event in kube.watch(["task.*"]):
            print(event.key, event.task.id if event.task else event.node)

Errors: MessagingError (no broker; BrokerUnreachable, LoginRefused, VhostRefused say
which), NoManagerError (no answer in time, or no manager has ever run against the vhost;
Queued: a command unanswered in time, which the broker keeps for the next manager),
RequestError (the manager refused, with its reason),
DecodeError (a spec that does not validate, from `make_spec`), WaitTimeout.
"""

from __future__ import annotations

import base64
import builtins
import re
import time
from collections.abc import Callable, Collection, Generator, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError

from kube import resolve
from kube.sessions import Sessions
from shared import topology
from shared.codec import decode, describe, encode, encode_value
from shared.errors import (
    DecodeError,
    KubeError,
    NoManagerError,
    Queued,
    RequestError,
    SettingsError,
    Unanswered,
)
from shared.execs import EXEC_EVENT_KEY, ExecEvent
from shared.files import FileKind, FileNamed, FileRecord, FileWrite, SealingKey, context
from shared.ids import new_task_id
from shared.kept import AttemptSummary, KeptLogs
from shared.messages import MAX_PAGE, EndpointsQuery, ListQuery, LogsQuery, TaskQuery
from shared.models import (
    JobRecord,
    JobRequest,
    JobRow,
    ManagerInfo,
    NodeRecord,
    NodeRequest,
    NodeSettings,
    OrphanList,
    OrphansRequest,
    Removed,
    RemoveRequest,
    Reply,
    ScaleRequest,
    ServiceEndpoints,
    ServiceRecord,
    StopRequest,
    TaskEvent,
    TaskRecord,
    TaskSpec,
    UpdateRequest,
    VolumeRequest,
)
from shared.rpc import RpcChannel, Subscription
from shared.sealing import seal
from shared.settings import Settings, redact
from shared.states import TaskState
from shared.volumes import VolumeRecord
from shared.wire import ID_PATTERN, MAX_ID_LENGTH

REPLY = TypeAdapter(Reply)
T = TypeVar("T")
TASKS = TypeAdapter(list[TaskRecord])
NODES = TypeAdapter(list[NodeRecord])
MANAGERS = TypeAdapter(list[ManagerInfo])
SERVICES = TypeAdapter(list[ServiceRecord])
JOBS = TypeAdapter(list[JobRow])
JOB = TypeAdapter(JobRecord)
VOLUMES = TypeAdapter(list[VolumeRecord])
EVENTS = TypeAdapter(list[TaskEvent])
ATTEMPTS = TypeAdapter(list[AttemptSummary])
KEPT = TypeAdapter(KeptLogs)
RECORD = TypeAdapter(TaskRecord)
EXEC_EVENT = TypeAdapter(ExecEvent)
NODE = TypeAdapter(NodeRecord)
REMOVED = TypeAdapter(Removed)
ENDPOINTS = TypeAdapter(ServiceEndpoints)
MANAGER = TypeAdapter(ManagerInfo)


QUIET = 5.0
"""Seconds without a task change after which a wait asks whether a manager still answers."""


class WaitTimeout(KubeError):
    """A task did not reach the awaited state in time."""


@dataclass(frozen=True)
class Event:
    """One message of kube.events: a task record (`task.<state>`), a node record
    (`node.<what>`), a service's endpoints (`service.endpoints`), a manager taking the
    lead (`manager.leader`) or a job record (`job.<what>`)."""

    key: str
    task: TaskRecord | None = None
    node: NodeRecord | None = None
    endpoints: ServiceEndpoints | None = None
    manager: ManagerInfo | None = None
    exec: ExecEvent | None = None  # `task.exec`: a kube exec in a task, not a state
    job: JobRecord | None = None

    @classmethod
    def decode(cls, key: str, body: bytes) -> Event:
        if key == EXEC_EVENT_KEY:
            return cls(key, exec=decode(EXEC_EVENT, body))
        if key.startswith("task."):
            return cls(key, task=decode(RECORD, body))
        if key.startswith("node."):
            return cls(key, node=decode(NODE, body))
        if key == "service.endpoints":
            return cls(key, endpoints=decode(ENDPOINTS, body))
        if key.startswith("manager."):
            return cls(key, manager=decode(MANAGER, body))
        if key.startswith("job."):
            return cls(key, job=decode(JOB, body))
        return cls(key)


def make_spec(data: dict[str, Any]) -> TaskSpec:
    """Validate a spec given as a dict, naming each bad field."""
    try:
        return TaskSpec.model_validate_json(encode_value(data), strict=True)
    except ValidationError as exc:
        raise DecodeError(describe(exc)) from exc


def _names(kind: str, names: Collection[str]) -> tuple[str, ...]:
    """Names given by a user, or SettingsError (a usage error) naming each one that
    cannot be an id or name."""
    bad = [name for name in names if not re.match(ID_PATTERN, name)]
    if bad:
        shown = ", ".join(repr(name) for name in bad)
        raise SettingsError(
            f"not a {kind}: {shown} (up to {MAX_ID_LENGTH} characters of A-Z, a-z, 0-9, '_',"
            " '.', '-', starting with a letter or digit)"
        )
    return tuple(names)


ORPHANS: TypeAdapter[OrphanList] = TypeAdapter(OrphanList)


def _removed(reply: Reply) -> Removed:
    return REMOVED.validate_python(reply.result, strict=False)


class Client:
    """A connection to kube through the broker."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._rpc = RpcChannel(settings)
        self.notice: Callable[[str], None] = lambda _: None
        """Where a choice made for the user is told (the CLI: a line on stderr)."""

    @classmethod
    def from_env(cls) -> Client:
        return cls(Settings.from_env())

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._rpc.close()

    def _ask(
        self,
        routing_key: str,
        body: bytes,
        message_id: str | None = None,
        subject: str | None = None,
        timeout: float | None = None,
    ) -> Reply:
        """The manager's reply; Queued when a command (not a query) got none in time: the
        broker keeps it for the next manager, so sending it again would do it twice."""
        try:
            raw = self._rpc.request(
                topology.COMMANDS, routing_key, body, timeout=timeout, message_id=message_id
            )
        except Unanswered as exc:
            if routing_key.startswith(topology.QUERY_PREFIX):  # they expire (QUERY_TTL_MS)
                raise
            raise Queued(str(exc), exc.key, exc.timeout, subject) from exc
        reply = decode(REPLY, raw)
        if not reply.ok:
            raise RequestError(reply.error or "the manager refused the request")
        return reply

    def submit(self, spec: TaskSpec) -> str:
        """Submit a task and return its id; a spec without id gets one here, so a retried
        submit is idempotent."""
        if spec.id is None:
            spec = spec.model_copy(update={"id": new_task_id(spec.name)})
        reply = self._ask(topology.SUBMIT_KEY, encode(spec), message_id=spec.id, subject=spec.id)
        return reply.id or str(spec.id)

    def stop(self, task_id: str, timeout: float | None = None) -> str:
        """Ask a task (or a service, by name) to stop; the id or name the manager stopped.
        `timeout`: how long to wait for the answer (default: the request timeout)."""
        request = encode(StopRequest(id=task_id))
        reply = self._ask(topology.STOP_KEY, request, subject=task_id, timeout=timeout)
        return reply.id or task_id

    def remove(self, names: Collection[str]) -> Removed:
        """Forget ended tasks and stopped services (ids or service names), all or none."""
        request = RemoveRequest(ids=_names("task id or service name", names))
        return _removed(self._ask(topology.REMOVE_KEY, encode(request)))

    def remove_ended(self) -> Removed:
        """Forget every ended task, and every stopped service whose tasks all ended."""
        request = RemoveRequest(all_ended=True)
        return _removed(self._ask(topology.REMOVE_KEY, encode(request)))

    def remove_node(self, node: str) -> Removed:
        """Forget a down node (it joins again if its worker comes back)."""
        request = NodeRequest(name=_names("node name", [node])[0])
        return _removed(self._ask(topology.NODE_REMOVE_KEY, encode(request)))

    def orphans(self) -> OrphanList:
        """The containers the nodes report that no task of this cluster placed."""
        return ORPHANS.validate_python(self._ask("query.orphans", b"{}").result)

    def remove_orphans(
        self, orphan: str | None = None, node: str | None = None, cluster: str | None = None
    ) -> OrphanList:
        """Ask the nodes to remove an orphan container (None: every one, on `node` and of
        `cluster` if given); the orphans asked for."""
        request = OrphansRequest(id=orphan, all=orphan is None, node=node, cluster=cluster)
        reply = self._ask(topology.ORPHANS_REMOVE_KEY, encode(request))
        return ORPHANS.validate_python(reply.result)

    def adopt_orphan(self, orphan: str, node: str | None = None) -> str:
        """Make an orphan container a task of this cluster; its task id."""
        request = OrphansRequest(id=orphan, node=node)
        return str(self._ask(topology.ORPHANS_ADOPT_KEY, encode(request)).id)

    def get(self, task_id: str) -> TaskRecord:
        return self.inspect(task_id)[0]

    def inspect(self, task_id: str) -> tuple[TaskRecord, builtins.list[TaskEvent]]:
        """A task and its state history."""
        task, events, _ = self.inspect_attempts(task_id)
        return task, events

    def inspect_attempts(
        self, task_id: str
    ) -> tuple[TaskRecord, builtins.list[TaskEvent], builtins.list[AttemptSummary]]:
        """A task, its state history and its attempts (none from a manager before them)."""
        reply = self._ask("query.task", encode(TaskQuery(id=task_id)))
        result = reply.result or {}
        task = RECORD.validate_python(result["task"], strict=False)
        events = EVENTS.validate_python(result["events"], strict=False)
        return task, events, ATTEMPTS.validate_python(result.get("attempts", []), strict=False)

    def list(self) -> list[TaskRecord]:
        """Every task, oldest first (asked for a page at a time)."""
        return [task for page in self.pages("query.tasks", TASKS) for task in page]

    def task_id(self, text: str, services: bool = False) -> str:
        """The task id that `text` means: an id, a task's name or an id's start
        (kube/resolve.py); with `services`, a service's name is kept as it is."""
        return self.task_ids([text], services)[0]

    def task_ids(self, texts: Collection[str], services: bool = False) -> builtins.list[str]:
        """`task_id` of each text. A task's id is asked for first (one small query); the
        list of every task, which takes long with many, only for what is not an id."""
        # Text that cannot be an id is left as it is: the request then refuses it, unsent.
        possible = [text for text in texts if re.match(ID_PATTERN, text)]
        named = [text for text in possible if not self._is_task(text)]
        names = {s.name for s in self.services()} if services and named else set()
        tasks = self.list() if any(text not in names for text in named) else []
        return [
            resolve.task_id(text, tasks, names, self.notice) if text in named else text
            for text in texts
        ]

    def _is_task(self, text: str) -> bool:
        try:
            self._ask("query.task", encode(TaskQuery(id=text)))
        except RequestError:  # unknown (or refused: then the command itself says why)
            return False
        return True

    def service(self, name: str) -> ServiceRecord:
        """The service so named, or RequestError."""
        found = next((s for s in self.services() if s.name == name), None)
        if found is None:
            raise RequestError(f"unknown service {name!r}")
        return found

    def nodes(self) -> builtins.list[NodeRecord]:
        return [node for page in self.pages("query.nodes", NODES) for node in page]

    def volumes(self) -> builtins.list[VolumeRecord]:
        """The named volumes, each with the node holding it and the tasks naming it."""
        return [volume for page in self.pages("query.volumes", VOLUMES) for volume in page]

    def remove_volume(self, name: str, force: bool = False) -> str:
        """Forget a volume and have its node remove it; refused while a task uses it."""
        request = VolumeRequest(name=_names("volume name", [name])[0], force=force)
        return self._ask(topology.VOLUME_REMOVE_KEY, encode(request), subject=name).id or name

    def managers(self) -> builtins.list[ManagerInfo]:
        """The managers of the cluster, as the leader's store has seen them."""
        return MANAGERS.validate_python(self._ask("query.managers", b"{}").result, strict=False)

    def services(self) -> builtins.list[ServiceRecord]:
        return [service for page in self.pages("query.services", SERVICES) for service in page]

    def pages(
        self, query: str, adapter: TypeAdapter[builtins.list[T]], limit: int = MAX_PAGE
    ) -> Iterator[builtins.list[T]]:
        """A list query's pages, each one message, until the manager says none is left."""
        after: str | None = None
        while True:
            reply = self._ask(query, encode(ListQuery(after=after, limit=limit)))
            yield adapter.validate_python(reply.result, strict=False)
            if reply.next is None:
                return
            after = reply.next

    def endpoints(self, name: str) -> ServiceEndpoints:
        """Where a service's serving tasks answer (or the serving tasks of a task id or name)."""
        query = EndpointsQuery(name=_names("service name, task id or task name", [name])[0])
        reply = self._ask("query.endpoints", encode(query))
        return ENDPOINTS.validate_python(reply.result, strict=False)

    def jobs(self) -> builtins.list[JobRow]:
        """The scheduled jobs, each with the state of its newest run."""
        return [row for page in self.pages("query.jobs", JOBS) for row in page]

    def remove_job(self, name: str) -> str:
        """Forget a job; its runs that have not ended are stopped."""
        self._ask(topology.JOB_REMOVE_KEY, encode(JobRequest(name=name)), subject=name)
        return name

    def run_job(self, name: str) -> str:
        """Start a run of the job now; the run's task id."""
        reply = self._ask(topology.JOB_RUN_KEY, encode(JobRequest(name=name)), subject=name)
        return reply.id or name

    def scale(self, name: str, replicas: int) -> None:
        """Keep `replicas` tasks of the service running."""
        self._ask(
            topology.SCALE_KEY, encode(ScaleRequest(name=name, replicas=replicas)), subject=name
        )

    def update(self, name: str, spec: TaskSpec) -> None:
        """Roll the service onto a new spec, one task at a time."""
        self._ask(topology.UPDATE_KEY, encode(UpdateRequest(name=name, spec=spec)), subject=name)

    # -- secrets and configs (docs/secrets.md) ----------------------------------------

    def sealing_key(self) -> SealingKey:
        """The manager's public key, which values are sealed for before they leave here."""
        return SealingKey.model_validate(self._ask("query.sealing-key", b"{}").result)

    def write_file(self, kind: FileKind, name: str, value: bytes, create: bool) -> None:
        """Create (or update) a secret or config; the value is sealed for the manager's
        key here, so the broker and its dead-letter queue only ever hold ciphertext."""
        public = base64.b64decode(self.sealing_key().public_key)
        sealed = seal(public, value, context(kind, name))
        body = FileWrite(name=name, sealed=base64.b64encode(sealed).decode())
        verb = "create" if create else "update"
        self._ask(f"{kind.value}.{verb}", encode(body), subject=name)

    def remove_file(self, kind: FileKind, name: str) -> None:
        self._ask(f"{kind.value}.remove", encode(FileNamed(name=name)), subject=name)

    def files(self, kind: FileKind) -> builtins.list[FileRecord]:
        """Secrets or configs: names, versions, sizes; never a value."""
        result = self._ask(f"query.{kind.value}s", b"{}").result
        return [FileRecord.model_validate(item) for item in result]

    def cordon(self, node: str) -> None:
        self._ask(topology.CORDON_KEY, encode(NodeRequest(name=node)), subject=node)

    def uncordon(self, node: str) -> None:
        self._ask(topology.UNCORDON_KEY, encode(NodeRequest(name=node)), subject=node)

    def set_node(self, settings: NodeSettings) -> None:
        """Set an operator's labels or capacity caps on a node (an operator's command)."""
        self._ask(topology.NODE_SET_KEY, encode(settings))

    def drain(self, node: str) -> None:
        """Cordon the node and start moving its tasks elsewhere (returns at once)."""
        self._ask(topology.DRAIN_KEY, encode(NodeRequest(name=node)), subject=node)

    def sessions(self) -> Sessions:
        """Streaming sessions (kube/sessions.py): `kube logs -f`, `kube exec`. Close it (or
        use it as a context manager) to end every session it opened."""
        return Sessions(self._rpc.reply_channel())

    def logs(self, task_id: str, tail: int | None = None) -> str:
        """A task's output: the live container's, or else what the manager kept of it."""
        found = self.task_logs(task_id, tail)
        return found if isinstance(found, str) else found.stdout + found.stderr

    def task_logs(
        self,
        task_id: str,
        tail: int | None = None,
        attempt: int | None = None,
        previous: bool = False,
    ) -> str | KeptLogs:
        """The live container's output (text), or the kept end of an ended attempt's
        output (`KeptLogs`): asked for by `attempt` or `previous`, or given by the manager
        when the live output cannot be had (`why` says why)."""
        query = LogsQuery(id=task_id, tail=tail, attempt=attempt, previous=previous)
        result = self._ask("query.logs", encode(query)).result
        if isinstance(result, dict):
            return KEPT.validate_python(result, strict=False)
        return str(result)

    def watch(
        self, keys: Collection[str] = ("#",), timeout: float | None = None
    ) -> Generator[Event, None, None]:
        """The events on kube.events whose routing key matches one of keys, as they come.

        Keys are AMQP topic patterns: `task.*` (every task change), `task.failed`,
        `node.#`. Read from the events stream (`kube.events.stream`), whose reader is
        attached when watch() returns, so nothing published after that is missed. Ends
        after timeout seconds if given, else never.
        """
        subscription = self._rpc.follow(topology.EVENTS_STREAM, list(keys))
        deadline = None if timeout is None else time.monotonic() + timeout
        return self._events(subscription, deadline)

    @staticmethod
    def _events(subscription: Subscription, deadline: float | None) -> Generator[Event, None, None]:
        """Its queue is deleted when the iteration ends, is closed, or is collected."""
        with subscription:
            for message in subscription:
                if message is not None:
                    yield Event.decode(message.routing_key, message.body)
                if deadline is not None and time.monotonic() > deadline:
                    return

    def task_changes(
        self, timeout: float, every: float = 0.25, quiet: float | None = None
    ) -> Generator[bool, None, None]:
        """Yield True once for each change of any task, or burst of them (at most once
        every `every` seconds, the last change of a burst never left unseen), for
        `timeout` seconds: a cue to look again, not the change itself. Yield False after
        each `quiet` seconds (default QUIET) without a change: a cue to ask whether a
        manager still answers (`still_answered`).

        Follows the events stream, attached when this returns: a look taken after it
        misses no change."""
        subscription = self._rpc.follow(topology.EVENTS_STREAM, ["task.*"])
        return self._changes(
            subscription, time.monotonic() + timeout, every, QUIET if quiet is None else quiet
        )

    @staticmethod
    def _changes(
        subscription: Subscription, deadline: float, every: float, quiet: float = 3600.0
    ) -> Generator[bool, None, None]:
        with subscription:
            seen = False  # a change not yet yielded
            last = float("-inf")
            heard = time.monotonic()  # the last change, or the last quiet cue
            for message in subscription:  # None about every 0.2 s when nothing came
                now = time.monotonic()
                if message is not None:
                    seen, heard = True, now
                if seen and now - last >= every:
                    seen, last = False, now
                    yield True
                elif now - heard >= quiet:
                    heard = now
                    yield False
                if now > deadline:
                    return

    def still_answered(self, what: str) -> None:
        """Ask whether a manager still answers (one small query, `query.managers`, within
        the request timeout), for a wait that heard nothing for a while; NoManagerError
        naming `what` the wait was for, if none does (killed, its host gone).

        Task changes come from the manager, so a wait asks only after QUIET seconds of
        silence: a busy, healthy manager gets no query from it."""
        try:
            self._ask("query.managers", b"{}")
        except Unanswered as exc:
            raise NoManagerError(
                f"stopped waiting for {what}: no manager answers (nothing answered"
                f" {exc.key} within {exc.timeout:g}s from {redact(self.settings.amqp_url)});"
                f" {what} goes on only when a manager runs again: is `kube manager` (or"
                " `kube up`) running?"
            ) from None

    def wait(
        self,
        task_id: str,
        states: Collection[TaskState],
        timeout: float,
        on_change: Callable[[TaskRecord], None] | None = None,
    ) -> TaskRecord:
        """Block until the task is in one of states, or has ended; return its record;
        NoManagerError if no manager answers any more (asked after QUIET seconds without
        a change).

        Follows the events stream (attached before the first look: nothing slips between).
        """
        with self._rpc.follow(topology.EVENTS_STREAM, ["task.*"]) as events:
            task = self.get(task_id)
            deadline = time.monotonic() + timeout
            heard = time.monotonic()
            while task.state not in states and not task.state.terminal:
                now = time.monotonic()
                if now > deadline:
                    raise WaitTimeout(
                        f"task {task_id} is still {task.state.value} after {timeout:g}s"
                        + (f": {task.error}" if task.error else "")
                    )
                message = next(events)
                if message is None:
                    if now - heard >= QUIET:  # silence: is a manager still there?
                        self.still_answered(f"task {task_id}")
                        heard = now
                    continue
                if message.routing_key == EXEC_EVENT_KEY:
                    continue
                heard = now
                record = RECORD.validate_json(message.body)
                if record.id == task_id and record.updated_at >= task.updated_at:
                    task = record
                    if on_change is not None:
                        on_change(task)
        return task
