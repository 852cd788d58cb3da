"""How a worker runs: the one place its defaults are written (the CLI's flags leave out
what is not given, so these apply)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from worker.naming import this_host
from worker.policy import WorkerPolicy
from worker.stats import Capacity


@dataclass(frozen=True)
class WorkerConfig:
    """How a worker runs; built by the CLI from flags and the environment."""

    name: str = field(default_factory=this_host)
    labels: dict[str, str] = field(default_factory=dict)
    capacity: Capacity | None = None  # None: detect the host's
    heartbeat_interval: float = 2.0
    concurrency: int = 8  # containers started at once; the engine's own limit is near this
    policy: WorkerPolicy = field(default_factory=WorkerPolicy)
    files_dir: Path | None = None  # secrets and configs; None: worker/files.py default_root
    address: str | None = None  # advertised; None: the source address of the broker's route
