"""The manager's metrics: counters derived from each recorded Decision, gauges from the store.

`observe(decision)` runs once per recorded decision (the service's one hook), so every
transition, restart, first placement and placement failure is counted exactly once per
manager process. What is *now* true (tasks by state, nodes, capacity) is read from the
database at scrape time by `manager.gauges.StoreGauges`, so it is right from the first
scrape after a restart.
"""

from __future__ import annotations

import contextlib

from prometheus_client import REGISTRY, Counter, Gauge, Histogram

from manager import unplaced
from manager.effects import Decision
from manager.gauges import StoreGauges
from shared.metrics import MetricsServer, serve
from shared.models import AttemptEnd
from shared.placement import Unplaced
from shared.states import TaskState

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
"""Seconds; from a placement on an idle cluster (tens of ms) to a long image pull."""

RESTART_CAUSES = tuple(cause.value for cause in AttemptEnd)

TRANSITIONS = Counter(
    "kube_task_transitions", "Task state changes, by the state entered.", ["state"]
)
RESTARTS = Counter(
    "kube_task_restarts",
    "Tasks restarted by their policy, by how the attempt ended (failed, completed, lost).",
    ["cause"],
)
PLACEMENT_FAILURES = Counter(
    "kube_placement_failures",
    "Pending tasks found to fit no node, by reason; counted again when the reason changes.",
    ["reason"],
)
SCHEDULING_LATENCY = Histogram(
    "kube_task_scheduling_latency_seconds",
    "Seconds from a task's submission to its first placement on a node.",
    buckets=LATENCY_BUCKETS,
)
START_LATENCY = Histogram(
    "kube_task_start_latency_seconds",
    "Seconds from a task's submission to its first container running.",
    buckets=LATENCY_BUCKETS,
)

ORPHANS = Gauge(
    "kube_orphan_containers",
    "Containers on a node that no task of this cluster placed, left running (kube ps"
    " --orphans), as its latest heartbeat says.",
    ["node"],
)
LEADER = Gauge("kube_manager_leader", "1 while this manager leads, 0 while it is a standby.")
EPOCH = Gauge("kube_manager_epoch", "The lease epoch this manager leads at (0: a standby).")
SESSIONS = Gauge(
    "kube_manager_stream_sessions",
    "Streaming sessions open through this manager (kube logs -f): 0 once every one ended.",
)
TAKEOVERS = Counter("kube_manager_takeovers", "Times this manager took the lease.")


def took_over(epoch: int) -> None:
    LEADER.set(1)
    EPOCH.set(epoch)
    TAKEOVERS.inc()


def stepped_down() -> None:
    LEADER.set(0)
    EPOCH.set(0)


# Every label value exists from the start, at 0: Prometheus's rate() needs a sample
# before the first increment to see it.
for _state in TaskState:
    TRANSITIONS.labels(_state.value)
for _cause in RESTART_CAUSES:
    RESTARTS.labels(_cause)
for _kind in unplaced.KINDS:
    PLACEMENT_FAILURES.labels(_kind)


def observe(decision: Decision) -> None:
    """Count what a recorded decision changed: transitions, restarts, latencies, no-fits."""
    latest = {task.id: task for task in decision.tasks}
    for task_id, event in decision.events:
        if event.superseded:
            continue  # a past attempt's news: no transition
        TRANSITIONS.labels(event.state.value).inc()
        if event.restart is not None:
            RESTARTS.labels(event.restart.cause.value).inc()
        task = latest.get(task_id)
        if task is None or event.attempt != 1:
            continue
        waited = (event.at - task.created_at).total_seconds()
        if event.state == TaskState.SCHEDULED:
            SCHEDULING_LATENCY.observe(waited)
        elif event.state == TaskState.RUNNING:
            START_LATENCY.observe(waited)
    for task in decision.tasks:
        _count_no_fit(task.id, task.unplaced if task.state == TaskState.PENDING else None)


# Why each pending task was last counted as unplaced: a task re-recorded for another
# reason (still pending, same reason) is not another failure. Bounded by the pending tasks.
_last_no_fit: dict[str, Unplaced] = {}


def _count_no_fit(task_id: str, why: Unplaced | None) -> None:
    if why is None:
        _last_no_fit.pop(task_id, None)
    elif _last_no_fit.get(task_id) != why:
        _last_no_fit[task_id] = why
        PLACEMENT_FAILURES.labels(why.kind.value).inc()


def count_orphans(node: str, count: int) -> None:
    """Set a node's orphan count; a node with none has no series once it had some at 0."""
    ORPHANS.labels(node).set(count)


def drop_orphans(node: str) -> None:
    """A node forgotten (`kube rm --node`): its series goes."""
    with contextlib.suppress(KeyError):  # never reported
        ORPHANS.remove(node)


def serve_metrics(port: int, store: str) -> MetricsServer | None:
    """Serve the manager's /metrics on port (0: not at all)."""
    return serve(port, [REGISTRY, StoreGauges(store)])
