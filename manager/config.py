"""How the manager runs: the one place its defaults are written (the CLI passes only the
flags given, so these apply)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from manager import admission
from manager.quotas import MAX_REPLICAS, TASKS_PER_MINUTE
from manager.retention import Retention
from manager.scheduler import DEFAULT_SCHEDULER
from manager.store.url import sqlite_url


def default_db_path() -> Path:
    """The manager's database under the user's state dir (XDG_STATE_HOME)."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "kube" / "manager.db"


def default_store() -> str:
    """The store URL when none is given: the SQLite file at default_db_path()."""
    return sqlite_url(default_db_path())


@dataclass(frozen=True)
class ManagerConfig:
    """How the manager runs; built by the CLI from flags and the environment."""

    store: str = field(default_factory=default_store)  # a store URL (manager/store/url.py)
    scheduler: str = DEFAULT_SCHEDULER
    heartbeat_interval: float = 2.0
    node_down_after: float = 6.0  # about three missed heartbeats
    max_tasks_per_node: int | None = None  # no cap unless set
    max_nodes: int = admission.MAX_NODES
    retention: Retention = Retention()
    max_replicas: int = MAX_REPLICAS
    max_tasks_per_minute: int = TASKS_PER_MINUTE
    secrets_key_file: Path | None = None  # secrets off without it (manager/secret_key.py)
    purge_interval: float = 30.0  # seconds between passes over ended tasks
