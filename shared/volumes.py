"""Named volumes as the manager records them: which node's engine holds each, since when,
and which tasks use it (docs/volumes.md)."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from shared.wire import Name, TaskId, WireModel


class VolumeRecord(WireModel):
    """A volume of one node's engine, known from the first placement of a task naming it."""

    name: Name
    node: Name = Field(description="the node whose engine holds it")
    created_at: datetime
    used_by: tuple[TaskId, ...] = Field(default=(), description="the tasks not ended that name it")


def engine_volume(node: str, name: str, cluster: str | None = None) -> str:
    """The engine-wide name of a node's volume: two nodes sharing one engine, or two
    clusters (a new `kube up` beside, or after, an old one) never share a volume by
    accident. Without a cluster: the name volumes had before it was part of it."""
    return f"kube.{cluster}.{node}.{name}" if cluster is not None else f"kube.{node}.{name}"
