"""The host's capacity and usage, from psutil."""

from __future__ import annotations

import os
from dataclasses import dataclass

import psutil

from shared.models import NodeStats


@dataclass(frozen=True)
class Capacity:
    """What a node offers to tasks."""

    cpus: float
    memory: int
    disk: int


def detect_capacity(disk_path: str = "/") -> Capacity:
    """The whole host: logical cpus, total memory, size of the disk holding disk_path."""
    return Capacity(
        cpus=float(psutil.cpu_count() or 1),
        memory=int(psutil.virtual_memory().total),
        disk=int(psutil.disk_usage(disk_path).total),
    )


def measure(disk_path: str = "/") -> NodeStats:
    """Current usage; cpu_percent is the average since the previous call (non-blocking)."""
    return NodeStats(
        cpu_percent=float(psutil.cpu_percent(interval=None)),
        memory_used=int(psutil.virtual_memory().used),
        disk_used=int(psutil.disk_usage(disk_path).used),
        load_avg=tuple(float(x) for x in os.getloadavg()),  # type: ignore[arg-type]
    )
