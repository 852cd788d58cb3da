"""The manager's gauges, read from its database each time Prometheus scrapes.

Reading the database rather than counting in memory keeps them true after a restart, a
reconnect or a crash. The store's own connection belongs to the bus thread, so each
scrape opens one of its own (read-only on SQLite, whose WAL lets it read beside the writer).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from pydantic import ValidationError

from manager import unplaced
from manager.holdings import HOLDING
from manager.store import connect
from manager.store.base import Database
from shared.errors import StoreError
from shared.models import NodeRecord, NodeStatus
from shared.states import TaskState

log = logging.getLogger(__name__)

PENDING_REASONS = (*unplaced.KINDS, "backoff", "unscheduled")
"""Why a task is pending: a NoFit kind, waiting out a restart delay, or not yet tried."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


class StoreGauges:
    """A Prometheus collector over the manager's database: tasks, pending work, nodes."""

    def __init__(self, store: str | Path, clock: Callable[[], datetime] = utcnow) -> None:
        self._store = store  # a store URL, or a SQLite file's path
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        try:
            db = connect(self._store, readonly=True)
        except StoreError as exc:  # not created yet, or not reachable: nothing to report
            log.debug("metrics: %s", exc)
            return
        try:
            now = self._clock()
            yield from self._tasks(db)
            yield from self._pending(db, now)
            yield from self._nodes(db, now)
            outbox = GaugeMetricFamily(
                "kube_manager_outbox_messages",
                "Messages recorded but not yet confirmed by the broker.",
            )
            outbox.add_metric([], db.query("SELECT COUNT(*) FROM outbox")[0][0])
            yield outbox
        except StoreError as exc:
            log.warning("metrics: %s", exc)
        finally:
            db.close()

    def _tasks(self, db: Database) -> Iterator[Metric]:
        counts: dict[str, int] = dict(db.query("SELECT state, COUNT(*) FROM tasks GROUP BY state"))
        tasks = GaugeMetricFamily("kube_tasks", "Tasks by state.", labels=["state"])
        for state in TaskState:
            tasks.add_metric([state.value], counts.get(state.value, 0))
        yield tasks

    def _pending(self, db: Database, now: datetime) -> Iterator[Metric]:
        rows = db.query(
            "SELECT unplaced_kind, not_before, created_at FROM tasks WHERE state = ?",
            (TaskState.PENDING.value,),
        )
        by_reason = dict.fromkeys(PENDING_REASONS, 0)
        oldest = 0.0
        for kind, not_before_text, created_text in rows:
            not_before = _time(not_before_text)
            if not_before is not None and not_before > now:
                by_reason["backoff"] += 1
                continue
            # A kind is one of unplaced.KINDS unless a newer manager wrote a kind this one
            # does not know; such a task is counted as "other".
            reason = "unscheduled" if kind is None else kind if kind in by_reason else "other"
            by_reason[reason] += 1
            since = _time(created_text) or now
            if not_before is not None:  # a restart: it has waited since its backoff ended
                since = max(since, not_before)
            oldest = max(oldest, (now - since).total_seconds())
        pending = GaugeMetricFamily(
            "kube_tasks_pending", "Pending tasks, by why they are not placed.", labels=["reason"]
        )
        for reason, count in by_reason.items():
            pending.add_metric([reason], count)
        yield pending
        yield GaugeMetricFamily(
            "kube_tasks_pending_oldest_seconds",
            "How long the longest-waiting placeable pending task has waited (0: none).",
            value=oldest,
        )

    def _nodes(self, db: Database, now: datetime) -> Iterator[Metric]:
        marks = ",".join("?" * len(HOLDING))
        allocated = {
            str(node): (float(cpu), int(memory), int(disk), int(count))
            for node, cpu, memory, disk, count in db.query(
                "SELECT node, SUM(cpu), SUM(memory), SUM(disk), COUNT(*) FROM tasks"
                f" WHERE state IN ({marks}) AND node IS NOT NULL GROUP BY node",
                [state.value for state in HOLDING],
            )
        }
        nodes = []
        for (record,) in db.query("SELECT record FROM nodes ORDER BY name"):
            try:
                nodes.append(NodeRecord.model_validate_json(str(record)))
            except ValidationError:
                continue  # the manager quarantines it when it reads it (manager/store.py)
        by_status = GaugeMetricFamily("kube_nodes", "Nodes by status.", labels=["status"])
        for status in NodeStatus:
            by_status.add_metric([status.value], sum(n.status == status for n in nodes))
        yield by_status
        families = {
            name: GaugeMetricFamily(name, text, labels=["node"])
            for name, text in _NODE_GAUGES.items()
        }
        info = GaugeMetricFamily(
            "kube_node_info",
            "Always 1; its labels say where the node's published ports answer.",
            labels=["node", "address"],
        )
        for node in nodes:
            cpu, memory, disk, count = allocated.get(node.name, (0.0, 0, 0, 0))
            values = {
                "kube_node_ready": float(node.status == NodeStatus.READY),
                "kube_node_engine_up": float(node.engine_ok),
                "kube_node_cpu_cores": node.cpus,
                "kube_node_memory_bytes": node.memory,
                "kube_node_disk_bytes": node.disk,
                "kube_node_allocated_cpu_cores": cpu,
                "kube_node_allocated_memory_bytes": memory,
                "kube_node_allocated_disk_bytes": disk,
                "kube_node_tasks": count,
                "kube_node_heartbeat_age_seconds": _age(now, node.last_heartbeat),
            }
            for name, value in values.items():
                families[name].add_metric([node.name], value)
            info.add_metric([node.name, node.address or ""], 1.0)
        yield from families.values()
        yield info


_NODE_GAUGES = {
    "kube_node_ready": "1 while the node sends heartbeats, 0 once it is marked down.",
    "kube_node_engine_up": "1 while the node's container engine answers, as it last reported.",
    "kube_node_cpu_cores": "Cpus the node offers to tasks.",
    "kube_node_memory_bytes": "Memory the node offers to tasks.",
    "kube_node_disk_bytes": "Disk the node offers to tasks.",
    "kube_node_allocated_cpu_cores": "Cpus reserved by the tasks scheduled or running on it.",
    "kube_node_allocated_memory_bytes": "Memory reserved by the tasks scheduled or running on it.",
    "kube_node_allocated_disk_bytes": "Disk reserved by the tasks scheduled or running on it.",
    "kube_node_tasks": "Tasks scheduled or running on the node.",
    "kube_node_heartbeat_age_seconds": "Seconds since the manager last heard the node's heartbeat.",
}


def _age(now: datetime, then: datetime) -> float:
    """Seconds since `then`, both on the manager's wall clock; never below 0. For up to a
    heartbeat interval after the clock is stepped, an age is off by the step: the
    manager's decisions are measured on its monotonic clock (manager/liveness.py)."""
    return max((now - then).total_seconds(), 0.0)
