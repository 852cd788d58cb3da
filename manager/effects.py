"""What a decision of the manager's core asks the service to do, as plain data."""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.models import JobRecord, NodeRecord, ServiceRecord, TaskEvent, TaskRecord
from shared.volumes import VolumeRecord


@dataclass(frozen=True)
class Outgoing:
    """A message to publish after the decision is recorded (the outbox)."""

    exchange: str
    routing_key: str
    body: bytes


@dataclass
class Removal:
    """Records a decision deletes (`kube rm`): tasks with their history, services, nodes,
    jobs."""

    tasks: list[str] = field(default_factory=list)
    services: list[str] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)
    jobs: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)  # `kube volume rm`

    def extend(self, other: Removal) -> None:
        self.tasks.extend(other.tasks)
        self.services.extend(other.services)
        self.nodes.extend(other.nodes)
        self.jobs.extend(other.jobs)
        self.volumes.extend(other.volumes)

    def __bool__(self) -> bool:
        return bool(self.tasks or self.services or self.nodes or self.jobs or self.volumes)


@dataclass
class Decision:
    """Everything one message changes; recorded in one transaction, then published."""

    tasks: list[TaskRecord] = field(default_factory=list)
    events: list[tuple[str, TaskEvent]] = field(default_factory=list)
    nodes: list[NodeRecord] = field(default_factory=list)
    services: list[ServiceRecord] = field(default_factory=list)
    jobs: list[JobRecord] = field(default_factory=list)
    volumes: list[VolumeRecord] = field(default_factory=list)  # new: kept if known already
    outgoing: list[Outgoing] = field(default_factory=list)
    removed: Removal = field(default_factory=Removal)
    # task id -> seconds its replacement is held, kept on the monotonic clock (manager/holds.py)
    holds: dict[str, float] = field(default_factory=dict)
    refused: str | None = None  # why the message was not applied; the service logs it

    def extend(self, other: Decision) -> Decision:
        self.tasks.extend(other.tasks)
        self.events.extend(other.events)
        self.nodes.extend(other.nodes)
        self.services.extend(other.services)
        self.jobs.extend(other.jobs)
        self.volumes.extend(other.volumes)
        self.outgoing.extend(other.outgoing)
        self.removed.extend(other.removed)
        self.holds.update(other.holds)
        self.refused = self.refused or other.refused
        return self

    @property
    def empty(self) -> bool:
        records = self.tasks or self.events or self.nodes or self.services or self.jobs
        return not (records or self.volumes or self.outgoing or self.removed)
