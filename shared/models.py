"""The public wire models: what clients submit and what kube publishes about tasks and nodes.

Every model is frozen and forbids unknown fields; on the wire, types are strict, so
`"8080"` is not a port. These shapes are the `--json` output of the CLI and the bodies
on `kube.events`; their JSON Schemas are committed under `shared/schemas/`.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
)

from shared.states import TaskState
from shared.units import parse_bytes

MAX_BODY_BYTES = 1024 * 1024
"""Largest message body kube accepts (1 MiB); anything larger is dead-lettered unread."""

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
"""Task ids and names end up in container names, so they keep to Docker's alphabet."""

TaskId = Annotated[str, Field(pattern=ID_PATTERN)]
Name = Annotated[str, Field(pattern=ID_PATTERN)]
Port = Annotated[int, Field(ge=1, le=65535)]
EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
ByteSize = Annotated[
    int,
    BeforeValidator(parse_bytes),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*[a-zA-Z]*\s*$"},
            ],
            "description": "bytes, or a string with a unit: '64m', '1g', '512Mi' (powers of 1024)",
        }
    ),
]


def _no_reserved_labels(labels: dict[str, str]) -> dict[str, str]:
    reserved = sorted(key for key in labels if key.startswith("kube."))
    if reserved:
        raise ValueError(f"label keys starting with 'kube.' are reserved: {', '.join(reserved)}")
    return labels


def _unique_ports(ports: tuple[int, ...]) -> tuple[int, ...]:
    if len(set(ports)) != len(ports):
        raise ValueError("each container port may be listed once")
    return ports


Labels = Annotated[dict[str, str], AfterValidator(_no_reserved_labels)]


class WireModel(BaseModel):
    """Base of every message: immutable and closed to unknown fields.

    Decoding from the wire (`shared.codec.decode`) is strict: `"8080"` is not a port.
    Building a model in Python is lax, so `pull_policy="never"` works there.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")


class PullPolicy(enum.StrEnum):
    """When the worker pulls a task's image."""

    ALWAYS = "always"  # pull before every start
    IF_NOT_PRESENT = "if-not-present"  # pull only when the engine lacks the image
    NEVER = "never"  # use the local image or fail


class TaskSpec(WireModel):
    """What a client asks to run: the body of `task.submit` on `kube.commands`."""

    id: TaskId | None = Field(
        default=None,
        description="client-chosen idempotency key; the same id never makes a second task",
    )
    name: Name
    image: Annotated[str, Field(min_length=1, max_length=255)]
    command: tuple[Annotated[str, Field(max_length=65536)], ...] = ()
    env: dict[EnvName, str] = Field(default_factory=dict)
    ports: Annotated[tuple[Port, ...], AfterValidator(_unique_ports)] = Field(
        default=(), description="container ports to publish; Docker picks the host ports"
    )
    cpu: Annotated[float, Field(ge=0, le=1024)] = Field(default=0.0, description="cores")
    memory: ByteSize = 0
    disk: ByteSize = 0
    labels: Labels = Field(default_factory=dict)
    pull_policy: PullPolicy = PullPolicy.IF_NOT_PRESENT


class StopRequest(WireModel):
    """The body of `task.stop` on `kube.commands`."""

    id: TaskId


class TaskEvent(WireModel):
    """One entry of a task's state history."""

    state: TaskState
    at: datetime
    attempt: int
    node: str | None = None
    detail: str | None = None


class TaskRecord(WireModel):
    """A task as kube reports it: `kube ps --json` rows and `kube.events` bodies."""

    id: TaskId
    name: Name
    state: TaskState
    desired_state: Annotated[str, Field(pattern="^(running|stopped)$")] = "running"
    node: str | None = None
    image: str
    container_id: str | None = None
    host_ports: dict[str, int] = Field(
        default_factory=dict, description="container port (as a string) to host port"
    )
    attempt: int = 0
    restart_count: int = 0
    exit_code: int | None = None
    error: str | None = None
    created_at: datetime
    updated_at: datetime
    spec: TaskSpec


class NodeStats(WireModel):
    """A worker's host usage, measured with psutil at heartbeat time."""

    cpu_percent: float = 0.0
    memory_used: int = 0
    disk_used: int = 0
    load_avg: tuple[float, float, float] = (0.0, 0.0, 0.0)


class NodeStatus(enum.StrEnum):
    """Whether a node takes work."""

    READY = "ready"  # heartbeats arrive
    DOWN = "down"  # heartbeats stopped


class NodeRecord(WireModel):
    """A worker as kube reports it: `kube nodes --json` rows."""

    name: Name
    status: NodeStatus
    cpus: float
    memory: int
    disk: int
    allocated_cpu: float = 0.0
    allocated_memory: int = 0
    allocated_disk: int = 0
    task_count: int = 0
    labels: dict[str, str] = Field(default_factory=dict)
    last_heartbeat: datetime
    stats: NodeStats = Field(default_factory=NodeStats)


class Reply(WireModel):
    """The answer to any request that carried `reply_to` and `correlation_id`."""

    ok: bool
    id: str | None = None
    error: str | None = None
    result: Any = None
