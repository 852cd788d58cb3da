"""Messages between kube's own components: dispatches, results and queries."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import Field, TypeAdapter, model_validator

from shared.files import FilesReply, FilesRequest
from shared.images import ImageProblem
from shared.models import Health, NodeStats, TaskSpec
from shared.sessions import StreamFrame, StreamInput, StreamStart
from shared.states import TaskState
from shared.wire import (
    MAX_CPUS,
    MAX_PORTS,
    Attempt,
    ClusterId,
    ContainerId,
    Count,
    Epoch,
    HostAddress,
    Hostname,
    Int64,
    Name,
    NodeLabels,
    Pid,
    Port,
    TaskId,
    Text,
    Timestamp,
    WireModel,
)


class RunTask(WireModel):
    """Manager to worker: run attempt `attempt` of a task."""

    kind: Literal["run"] = "run"
    epoch: Epoch = 0  # second, always: the manager stamps it in place (manager/epochs.py)
    task_id: TaskId
    attempt: Attempt
    spec: TaskSpec
    cluster: ClusterId | None = Field(
        default=None, description="the manager's cluster id, which labels the container"
    )


class StopTask(WireModel):
    """Manager to worker: stop and remove the container of a task's attempt."""

    kind: Literal["stop"] = "stop"
    epoch: Epoch = 0
    task_id: TaskId
    attempt: Attempt


MAX_LOGS_TTL = 300.0
"""Seconds a logs request may live, at most: its asker waits for it (10 s by default)."""


class LogsRequest(WireModel):
    """Manager to worker, on the node's dispatch queue: read a container's output.

    The worker answers with a `LogsReply` on kube.results, the only exchange its broker
    user may write to; the manager relays the answer to whoever asked. The manager
    publishes it with `ttl` as its AMQP expiration: the broker drops a request that waited
    longer, by its own clock, as its asker has given up. No absolute time crosses from the
    manager's clock to the worker's (which may be off by minutes).
    """

    kind: Literal["logs"] = "logs"
    epoch: Epoch = 0
    request_id: Annotated[str, Field(min_length=1, max_length=64)]
    task_id: TaskId
    attempt: Attempt
    tail: Annotated[int, Field(ge=0, le=1_000_000)] | None = None
    ttl: Annotated[float, Field(gt=0, le=MAX_LOGS_TTL)] = Field(
        description="seconds the request may wait for the worker (its AMQP expiration)"
    )


class ClusterInfo(WireModel):
    """Manager to worker: the cluster the node belongs to, sent while the worker's
    heartbeats name none or another. The worker lists and touches only the containers
    labelled with it (worker/runtime/base.py, CLUSTER_LABEL)."""

    kind: Literal["cluster"] = "cluster"
    epoch: Epoch = 0
    cluster: ClusterId


class ClockAhead(WireModel):
    """Manager to worker: its results are refused because they are dated too far ahead of
    the manager's clock (manager/admission.py); sent at most once a minute a node, so that
    the worker can say so instead of failing in silence."""

    kind: Literal["clock-ahead"] = "clock-ahead"
    ahead: float = Field(ge=0, le=10**10, description="seconds ahead of the manager's clock")
    limit: float = Field(ge=0, le=10**10, description="seconds ahead a result may be dated")


class TaskUpdate(WireModel):
    """Worker to manager: what happened to one attempt of a task."""

    kind: Literal["update"] = "update"
    node: Name
    task_id: TaskId
    attempt: Attempt
    state: TaskState
    at: Timestamp
    container_id: ContainerId | None = None
    host_ports: Annotated[dict[PortKey, Port], Field(max_length=MAX_PORTS)] = Field(
        default_factory=dict
    )
    exit_code: Int64 | None = None
    error: Text | None = None
    health: Health | None = None
    last_check: Text | None = None
    disconnected: Annotated[float, Field(ge=0, le=1e9)] | None = Field(
        default=None,
        description="the worker stopped the container itself (on_disconnect) after this many"
        " seconds out of touch with the broker",
    )
    image_problem: ImageProblem | None = Field(
        default=None,
        description="the attempt could not start because its image cannot be had, for"
        " good (no such image, no registry, an invalid name): a task fails, not restarted; a"
        " service's task tries again after the image backoff",
    )


PortKey = Annotated[str, Field(pattern=r"^[1-9][0-9]{0,4}$")]


class HeldTask(WireModel):
    """One container a worker holds, as listed in its heartbeat."""

    task_id: TaskId
    attempt: Attempt
    state: TaskState
    container_id: ContainerId


class Held(WireModel):
    """A container by the attempt it runs."""

    task_id: TaskId
    attempt: Attempt


class Orphan(WireModel):
    """A container on a node that no task of this cluster placed: another cluster's (its
    manager's database was replaced), or one this manager's store does not know. Left
    running; listed so that a person may adopt or remove it."""

    task_id: TaskId
    attempt: Attempt
    container_id: ContainerId
    name: Text = Field(description="the container's name on its engine")
    image: Annotated[str, Field(min_length=1, max_length=255)]
    cluster: Annotated[str, Field(max_length=253)] | None = Field(
        default=None, description="the cluster id it carries (a label: any text)"
    )
    since: Timestamp | None = Field(default=None, description="when it started")
    host_ports: Annotated[dict[PortKey, Port], Field(max_length=MAX_PORTS)] = Field(
        default_factory=dict
    )
    spec: TaskSpec | None = Field(
        default=None, description="the task it runs, as its container says (for adoption)"
    )
    unrecoverable: Text | None = Field(
        default=None, description="why no spec could be read from the container"
    )


MAX_ORPHANS_LISTED = 50
"""Orphans one heartbeat lists, at most; it counts the rest in `orphans_left_out`."""

MAX_ORPHAN_BYTES = 256 * 1024
"""Bytes the orphans of one heartbeat take at most, once encoded (each carries its spec)."""


HELD_PER_PART = 2000
"""Containers one heartbeat message lists. A listed container takes at most ~200 bytes
(a 63-character task id, a 64-character container id), so a part stays well below the
1 MiB a message may have (MAX_BODY_BYTES); a node holding more sends more parts."""


MAX_PARTS = 25
"""Parts one heartbeat may come in: 50,000 containers on a node (kube was measured with
20,500). A heartbeat that claims more is refused, so the manager never holds more than
this many parts, about 25 MB, for a node."""


class Heartbeat(WireModel):
    """Worker to manager, every few seconds: capacity, usage and the containers it holds.

    A node holding more containers than one message lists sends its heartbeat as several
    parts, published together and in order, sharing `at`: part 0 is the heartbeat proper,
    and each part lists the next slice of the containers.
    """

    kind: Literal["heartbeat"] = "heartbeat"
    node: Name
    at: Timestamp
    cpus: Annotated[float, Field(ge=0, le=MAX_CPUS)]
    memory: Count
    disk: Count
    labels: NodeLabels = Field(default_factory=dict)
    stats: NodeStats = Field(default_factory=NodeStats)
    cluster: ClusterId | None = Field(
        default=None, description="the cluster id the worker was told (none yet: null)"
    )
    hostname: Hostname | None = Field(default=None, description="the worker's host")
    pid: Pid | None = Field(default=None, description="the worker's process id there")
    engine_ok: bool = True
    address: HostAddress | None = Field(
        default=None, description="where the node's published ports answer"
    )
    inventory: bool = Field(
        default=False, description="true when tasks lists every container the node runs"
    )
    tasks: Annotated[tuple[HeldTask, ...], Field(max_length=HELD_PER_PART)] = ()
    orphans: Annotated[tuple[Orphan, ...], Field(max_length=MAX_ORPHANS_LISTED)] = Field(
        default=(), description="containers on the node no task of this cluster placed (part 0)"
    )
    orphans_left_out: Count = Field(
        default=0, description="orphans there are beyond those listed (bounded list)"
    )
    part: Annotated[int, Field(ge=0, lt=MAX_PARTS)] = Field(
        default=0, description="which part of the heartbeat this is, from 0"
    )
    parts: Annotated[int, Field(ge=1, le=MAX_PARTS)] = Field(
        default=1, description="how many parts list the node's containers (all share `at`)"
    )

    @model_validator(mode="after")
    def _part_in_range(self) -> Heartbeat:
        if self.part >= self.parts:
            raise ValueError(f"part {self.part} of a heartbeat in {self.parts} parts")
        return self

    def in_parts(self, held: Sequence[HeldTask]) -> list[Heartbeat]:
        """This heartbeat listing the containers held, in as many parts as that takes."""
        slices = [tuple(held[i : i + HELD_PER_PART]) for i in range(0, len(held), HELD_PER_PART)]
        first: dict[str, object] = {}  # the orphans go in part 0 only
        later: dict[str, object] = {"orphans": (), "orphans_left_out": 0}
        return [
            self.model_copy(
                update={
                    "tasks": tasks,
                    "part": part,
                    "parts": len(slices) or 1,
                    **(first if part == 0 else later),
                }
            )
            for part, tasks in enumerate(slices or [()])
        ]


class Disowned(WireModel):
    """Manager to worker: these containers of the node are no task this manager placed
    (its store does not know the task, or knows only older attempts of it). The worker
    leaves them running, stops listing them as held, and lists them as orphans."""

    kind: Literal["disowned"] = "disowned"
    epoch: Epoch = 0
    tasks: Annotated[tuple[Held, ...], Field(max_length=HELD_PER_PART)]


class RemoveOrphan(WireModel):
    """Manager to worker, at a person's request (`kube orphans remove`): stop and remove
    an orphan container, one the worker lists as such and no task of its cluster."""

    kind: Literal["remove-orphan"] = "remove-orphan"
    epoch: Epoch = 0
    container_id: ContainerId


class AdoptOrphan(WireModel):
    """Manager to worker: the orphan container is now a task of this cluster (the manager
    recorded it, `kube orphans adopt`); the worker watches it and reports on it like any
    other. Sent again while the worker lists it as an orphan (a restarted worker forgot)."""

    kind: Literal["adopt-orphan"] = "adopt-orphan"
    epoch: Epoch = 0
    task_id: TaskId
    attempt: Attempt
    container_id: ContainerId


class RemoveVolume(WireModel):
    """Manager to worker, at `kube volume rm`: remove the named volume from the node's
    engine (no task that has not ended names it; the manager checked, docs/volumes.md)."""

    kind: Literal["remove-volume"] = "remove-volume"
    epoch: Epoch = 0
    name: Name


DispatchMessage = (
    RunTask
    | FilesReply
    | StopTask
    | LogsRequest
    | ClusterInfo
    | ClockAhead
    | Disowned
    | RemoveOrphan
    | AdoptOrphan
    | StreamStart
    | StreamInput
    | RemoveVolume
)

Dispatch = Annotated[DispatchMessage, Field(discriminator="kind")]
DISPATCH: TypeAdapter[DispatchMessage] = TypeAdapter(Dispatch)
"""Reads any dispatch (manager to worker), by its `kind`."""


class LogsReply(WireModel):
    """Worker to manager: the answer to a `LogsRequest`, output or the reason there is none."""

    kind: Literal["logs"] = "logs"
    node: Name
    at: Timestamp
    request_id: Annotated[str, Field(min_length=1, max_length=64)]
    task_id: TaskId
    output: str | None = None
    error: Text | None = None


KEPT_OUTPUT_BYTES = 64 * 1024
"""The end of an ended attempt's stdout, and of its stderr, that its worker sends the
manager to keep (the last 64 KiB of each): `kube logs` shows it once the container or its
node is gone. Encoded as JSON the two take at most 12 times that (every byte escaped:
768 KiB), below MAX_BODY_BYTES."""


class KeptOutput(WireModel):
    """Worker to manager: the last lines of an attempt that ended, read from its container
    before the container is removed, for the manager to keep (manager/kept_output.py)."""

    kind: Literal["output"] = "output"
    node: Name
    at: Timestamp = Field(description="when the worker read it: the attempt had ended")
    task_id: TaskId
    attempt: Attempt
    exit_code: Int64 | None = Field(
        default=None, description="the container's exit code, when it exited by itself"
    )
    stdout: Annotated[str, Field(max_length=KEPT_OUTPUT_BYTES)] = Field(
        description="the end of its stdout, decoded as UTF-8"
    )
    stderr: Annotated[str, Field(max_length=KEPT_OUTPUT_BYTES)] = Field(
        default="", description="the end of its stderr, apart (the two are not interleaved)"
    )
    cut: bool = Field(default=False, description="earlier output was left out")


class ResultsProbe(WireModel):
    """Manager to itself, through its own results queue: once it reads its probe back,
    every result that entered the queue before the probe has been read too, heartbeats
    included (manager/silence.py). A probe whose id the manager did not make is ignored."""

    kind: Literal["probe"] = "probe"
    id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")] = Field(
        description="a fresh random id the manager made for this probe"
    )
    at: Timestamp


ResultMessage = (
    TaskUpdate | Heartbeat | LogsReply | KeptOutput | FilesRequest | ResultsProbe | StreamFrame
)
Result = Annotated[ResultMessage, Field(discriminator="kind")]


class TaskQuery(WireModel):
    """Body of `query.task`: one task and its history."""

    id: TaskId


MAX_PAGE = 1000
"""Records one list reply carries at most; fewer when they would not fit in a message."""


class ListQuery(WireModel):
    """Body of `query.tasks`, `query.services` and `query.nodes` (may be empty): one page
    of the list. The reply's `next`, when set, is the `after` of the next page."""

    after: Annotated[str, Field(min_length=1, max_length=256)] | None = Field(
        default=None, description="where the previous page ended: its reply's `next`"
    )
    limit: Annotated[int, Field(ge=1, le=MAX_PAGE)] = MAX_PAGE


class EndpointsQuery(WireModel):
    """Body of `query.endpoints`: where a service's serving tasks answer (or a task's)."""

    name: Name = Field(description="a service's name, a task's id, or a task's name")


class LogsQuery(WireModel):
    """Body of `query.logs`: the output of a task's current container (last `tail` lines)."""

    id: TaskId
    tail: Annotated[int, Field(ge=0, le=1_000_000)] | None = None
    attempt: Attempt | None = Field(
        default=None, description="the kept output of this attempt, once ended (`--attempt`)"
    )
    previous: bool = Field(
        default=False, description="the kept output of the last ended attempt (`--previous`)"
    )
