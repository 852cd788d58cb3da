"""The public wire models: what clients submit and what kube publishes about tasks and nodes.

Every model is frozen and forbids unknown fields; on the wire, types are strict, so
`"8080"` is not a port. These shapes are the `--json` output of the CLI and the bodies
on `kube.events`; their JSON Schemas are committed under `shared/schemas/`.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any

from pydantic import AfterValidator, Field, model_validator

from shared.execs import ExecRecord
from shared.images import ImageProblem
from shared.placement import Unplaced
from shared.specs import PullPolicy as PullPolicy
from shared.specs import TaskSpec as TaskSpec
from shared.states import TaskState
from shared.wire import ID_PATTERN as ID_PATTERN
from shared.wire import MAX_BODY_BYTES as MAX_BODY_BYTES
from shared.wire import (
    MAX_CPUS,
    MAX_LABELS,
    ByteSize,
    ContainerId,
    Count,
    Endpoint,
    HostAddress,
    Hostname,
    Int64,
    LabelKey,
    Name,
    NodeLabels,
    Pid,
    Port,
    Replicas,
    TaskId,
    Text,
    Timestamp,
    node_labels_valid,
)
from shared.wire import MAX_SPEC_BYTES as MAX_SPEC_BYTES
from shared.wire import WireModel as WireModel


class StopRequest(WireModel):
    """The body of `task.stop` on `kube.commands`."""

    id: TaskId


class JobRequest(WireModel):
    """The body of `job.remove` and `job.run` on `kube.commands`."""

    name: Name


class ScaleRequest(WireModel):
    """The body of `service.scale` on `kube.commands`."""

    name: Name
    replicas: Replicas


class UpdateRequest(WireModel):
    """The body of `service.update`: the service's new spec, replaced a task at a time."""

    name: Name
    spec: TaskSpec


class NodeRequest(WireModel):
    """The body of `node.cordon`, `node.uncordon`, `node.drain` and `node.remove`."""

    name: Name


class VolumeRequest(WireModel):
    """The body of `volume.remove` (docs/volumes.md)."""

    name: Name
    force: bool = Field(
        default=False,
        description="forget the volume even though its node is down or gone; the engine"
        " keeps its data",
    )


class RemoveRequest(WireModel):
    """The body of `task.remove`: forget ended tasks and stopped services, with their history.

    Either `ids` (task ids or service names; all are removed or, if one cannot be, none)
    or `all_ended` (every ended task, and every stopped service whose tasks all ended).
    """

    ids: tuple[TaskId, ...] = Field(
        default=(), max_length=10_000, description="task ids or service names"
    )
    all_ended: bool = False

    @model_validator(mode="after")
    def _one_selection(self) -> RemoveRequest:
        if bool(self.ids) == self.all_ended:
            raise ValueError("give either ids or all_ended: true")
        return self


class Removed(WireModel):
    """The `result` of a `task.remove` or `node.remove` reply: what was removed."""

    tasks: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    nodes: tuple[str, ...] = ()


class OrphansRequest(WireModel):
    """The body of `orphans.remove` and `orphans.adopt`: which orphan containers (a
    container id or a prefix of it, a task id or a container name; with `all`, every
    one), on `node` and of `cluster` if given. Adopting takes one id."""

    id: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    all: bool = False
    node: Name | None = None
    cluster: Annotated[str, Field(min_length=1, max_length=253)] | None = Field(
        default=None, description="only the orphans carrying this cluster id"
    )

    @model_validator(mode="after")
    def _one_way(self) -> OrphansRequest:
        if (self.id is None) == (not self.all):
            raise ValueError("give an orphan's id, or all")
        return self


class OrphanRecord(WireModel):
    """One orphan container as `kube ps --orphans` shows it: on a node, run by no task of
    this cluster, left running (docs/orphans.md)."""

    node: Name
    task_id: TaskId
    attempt: Count
    container_id: Annotated[str, Field(min_length=1, max_length=128)]
    name: Text
    image: str
    cluster: Annotated[str, Field(max_length=253)] | None = Field(
        default=None, description="the cluster id it carries (this one's: the store lost it)"
    )
    since: Timestamp | None = None
    host_ports: dict[str, Annotated[int, Field(ge=1, le=65535)]] = Field(default_factory=dict)
    adoptable: bool = Field(
        description="whether `kube orphans adopt` would take it (if not, `unrecoverable` says why)"
    )
    unrecoverable: Text | None = Field(default=None, description="why it cannot be adopted")


class OrphanList(WireModel):
    """The `result` of `query.orphans`, and of an `orphans.remove` reply (what was asked)."""

    orphans: tuple[OrphanRecord, ...] = ()
    left_out: Count = Field(default=0, description="orphans the nodes or this list left out")


class AttemptEnd(enum.StrEnum):
    """How an attempt that is restarted ended."""

    COMPLETED = "completed"  # exited 0
    FAILED = "failed"  # exited non-zero, could not start, or was found unhealthy or gone
    LOST = "lost"  # its node went down


class Restarted(WireModel):
    """Why a task went back to pending for another attempt, as data (`detail` says it)."""

    cause: AttemptEnd
    number: Count = Field(
        description="this restart's number, from 1; when not counted, the task's node losses"
    )
    limit: Count | None = Field(default=None, description="the policy's max_restarts")
    counted: bool = Field(
        default=True,
        description="false for a replacement after a node loss: max_restarts does not limit it",
    )
    delay: float = Field(ge=0, description="seconds before the next attempt may be placed")
    reason: Text | None = Field(default=None, description="what the worker said ended it")


class TaskEvent(WireModel):
    """One entry of a task's state history."""

    state: TaskState
    at: Timestamp
    attempt: Count
    node: Name | None = None
    detail: Text | None = None
    restart: Restarted | None = None
    superseded: bool = Field(
        default=False,
        description="about an attempt the task had moved on from: the task did not change",
    )
    exec: ExecRecord | None = Field(
        default=None,
        description="a `kube exec` in the task (its state is the task's, unchanged)",
    )


class Health(enum.StrEnum):
    """What a task's health check says."""

    STARTING = "starting"  # in its grace period, or not yet checked
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"  # failed `failures` checks in a row


class DrainingAttempt(WireModel):
    """An attempt left running on a draining node until the task's next attempt runs."""

    node: Name
    attempt: Count


class TaskRecord(WireModel):
    """A task as kube reports it: `kube ps --json` rows and `kube.events` bodies."""

    id: TaskId
    name: Name
    state: TaskState
    desired_state: Annotated[str, Field(pattern="^(running|stopped)$")] = "running"
    node: Name | None = None
    image: str
    container_id: ContainerId | None = None
    host_ports: dict[str, Annotated[int, Field(ge=1, le=65535)]] = Field(
        default_factory=dict, description="container port (as a string) to host port"
    )
    endpoints: tuple[Endpoint, ...] = Field(
        default=(),
        description="where the published ports answer, as host:port (the node's address and"
        " each host port, in the order of the container ports)",
    )
    attempt: Count = 0
    restart_count: Count = Field(
        default=0, description="restarts counted against max_restarts: the task's own failures"
    )
    lost_count: Count = Field(
        default=0, description="attempts lost with their node; never counted against max_restarts"
    )
    exit_code: Int64 | None = None
    error: Text | None = None
    unplaced: Unplaced | None = Field(
        default=None, description="while pending: why no node could take it, as data"
    )
    health: Health | None = None
    last_check: Text | None = Field(default=None, description="the last health check's result")
    image_problem: ImageProblem | None = Field(
        default=None,
        description="why its last attempt's image cannot be pulled (its error says it for"
        " people); cleared when an attempt runs",
    )
    not_before: Timestamp | None = Field(
        default=None, description="a restarting task is not placed before this time"
    )
    service: Name | None = Field(default=None, description="the service this task belongs to")
    job: Name | None = Field(default=None, description="the scheduled job this task is a run of")
    version: Count | None = Field(default=None, description="the service version it runs")
    draining: DrainingAttempt | None = None
    created_at: Timestamp
    updated_at: Timestamp
    spec: TaskSpec


class NodeStats(WireModel):
    """A worker's host usage, measured with psutil at heartbeat time."""

    cpu_percent: Annotated[float, Field(ge=0)] = 0.0
    memory_used: Count = 0
    disk_used: Count = 0
    load_avg: tuple[float, float, float] = (0.0, 0.0, 0.0)


class NodeStatus(enum.StrEnum):
    """Whether a node takes work."""

    READY = "ready"  # heartbeats arrive
    DOWN = "down"  # heartbeats stopped


class NodeOverrides(WireModel):
    """What an operator set on a node (`kube label`, `kube cap`): it wins over what the
    node's worker reports, so a worker cannot claim a label that steers sensitive work to
    it, nor more capacity than the operator allows."""

    labels: NodeLabels = Field(default_factory=dict)
    cpus: Annotated[float, Field(ge=0, le=MAX_CPUS)] | None = None
    memory: Count | None = None
    disk: Count | None = None


class NodeRecord(WireModel):
    """A worker as kube reports it: `kube nodes --json` rows."""

    name: Name
    status: NodeStatus
    cpus: float
    memory: Count
    disk: Count
    allocated_cpu: float = 0.0
    allocated_memory: Int64 = 0
    allocated_disk: Int64 = 0
    task_count: Count = 0
    reserved_ports: tuple[Port, ...] = Field(
        default=(),
        description="host ports held at its address: fixed ones of tasks scheduled or running"
        " there or on a node with the same address, ones the engine gave running tasks, and"
        " those of older attempts' containers not yet gone",
    )
    labels: NodeLabels = Field(default_factory=dict)
    last_heartbeat: Timestamp
    hostname: Hostname | None = Field(default=None, description="the host its worker runs on")
    pid: Pid | None = Field(default=None, description="its worker's process id on that host")
    ready_since: Timestamp | None = Field(
        default=None, description="when it last joined or came back (the manager's clock)"
    )
    engine_ok: bool = Field(default=True, description="false while its container engine is down")
    address: HostAddress | None = Field(
        default=None,
        description="where its tasks' published ports answer, as its worker advertises it",
    )
    schedulable: bool = Field(default=True, description="false while cordoned")
    stats: NodeStats = Field(default_factory=NodeStats)
    operator: NodeOverrides = Field(
        default_factory=NodeOverrides,
        description="labels and capacity caps an operator set; labels, cpus, memory and"
        " disk above already apply them",
    )


class UpdateState(enum.StrEnum):
    """Where a service's rolling update is."""

    IDLE = "idle"  # every task runs the current version
    ROLLING = "rolling"  # replacing tasks one at a time
    PAUSED = "paused"  # a new task failed; old tasks keep running until the next update


class NodeSettings(WireModel):
    """The body of `node.set`, an operator's command: labels (a null value removes the
    operator's label) and capacity caps (`clear_caps` removes them) for a node."""

    name: Name
    labels: Annotated[
        dict[LabelKey, Annotated[str, Field(max_length=253)] | None],
        Field(max_length=MAX_LABELS),
        AfterValidator(node_labels_valid),
    ] = Field(default_factory=dict)
    cpus: Annotated[float, Field(gt=0, le=MAX_CPUS)] | None = None
    memory: Annotated[ByteSize, Field(gt=0)] | None = None
    disk: Annotated[ByteSize, Field(gt=0)] | None = None
    clear_caps: bool = False


class ServiceRecord(WireModel):
    """A service: kube keeps `replicas` tasks of `spec` running (`kube services --json`)."""

    name: Name
    spec: TaskSpec
    replicas: Count
    version: Count = 1
    desired_state: Annotated[str, Field(pattern="^(running|stopped)$")] = "running"
    update_state: UpdateState = UpdateState.IDLE
    update_error: Text | None = None
    endpoints: tuple[Endpoint, ...] = Field(
        default=(),
        description="where its serving tasks answer (running, and healthy if it has a health"
        " check), sorted; a change is announced as `service.endpoints`",
    )
    created_at: Timestamp
    updated_at: Timestamp


class SkipReason(enum.StrEnum):
    """Why a job's tick started no run."""

    STILL_RUNNING = "still-running"  # concurrency forbid, and a previous run has not ended
    MISSED = "missed"  # the manager was down at the tick, and it is past the catch-up window


class SkippedTicks(WireModel):
    """Ticks of a job that started no run, and why (the newest such, and how many)."""

    tick: Timestamp = Field(description="the newest of them")
    reason: SkipReason
    count: Count = Field(default=1, description="missed: all the job's missed ticks so far")
    run: TaskId | None = Field(default=None, description="still-running: the run that was")


class JobRecord(WireModel):
    """A scheduled job: kube starts a run of `spec` (a task) at each tick (`kube jobs --json`)."""

    name: Name
    spec: TaskSpec
    last_tick: Timestamp | None = Field(
        default=None, description="the newest tick decided (run or skipped), in UTC"
    )
    next_tick: Timestamp | None = Field(default=None, description="the next tick, in UTC")
    last_run: TaskId | None = Field(default=None, description="the newest run started")
    last_skip: SkippedTicks | None = None
    missed: Count = Field(
        default=0,
        description="ticks missed while no manager ran, over all outages (up to 10,000)",
    )
    created_at: Timestamp
    updated_at: Timestamp


class JobRow(WireModel):
    """One row of `query.jobs`: the job, and the state of its newest run."""

    job: JobRecord
    last_run_state: TaskState | None = None


class ServiceEndpoints(WireModel):
    """The body of `service.endpoints` on `kube.events`, published whenever a service's
    endpoints change, and the `result` of `query.endpoints`."""

    name: Name = Field(description="the service (or, for query.endpoints, the task) named")
    endpoints: tuple[Endpoint, ...] = Field(description="host:port of each, sorted")
    at: Timestamp


class Reply(WireModel):
    """The answer to any request that carried `reply_to` and `correlation_id`."""

    ok: bool
    id: str | None = None
    error: str | None = None
    result: Any = None
    next: str | None = Field(
        default=None, description="a list was cut: ask again with `after` set to this"
    )


class ManagerRole(enum.StrEnum):
    """What a manager does now (manager/store/lease.py)."""

    LEADER = "leader"  # holds the lease: consumes, decides, writes
    STANDBY = "standby"  # waits for the lease to expire, to take it
    GONE = "gone"  # not seen for more than two leases (forgotten after an hour)


class ManagerInfo(WireModel):
    """A manager, as `kube managers` lists it and the `manager.leader` event announces it."""

    name: Name
    host: Hostname
    pid: Pid
    role: ManagerRole
    epoch: Int64 = Field(ge=0, description="the epoch it leads at (0: a standby)")
    since: Timestamp | None = Field(default=None, description="when it took the lease")
    seen_ago: float = Field(ge=0, le=1e12, description="seconds since it last said so")
    cluster_id: str | None = Field(
        default=None,
        max_length=64,
        description="its store's cluster id (in the lock holder's message: a manager of"
        " another store on the vhost is refused)",
    )
