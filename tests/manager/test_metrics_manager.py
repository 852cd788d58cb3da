"""The manager's metrics: counters from real decisions of the core, gauges from a real store."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, CollectorRegistry

from manager import core, nodes, unplaced
from manager.effects import Decision
from manager.fit import PlacementContext
from manager.gauges import PENDING_REASONS, StoreGauges
from manager.metrics import observe
from manager.restarts import describe
from manager.scheduler import RoundRobin
from manager.store import Store
from shared.messages import TaskUpdate
from shared.models import (
    AttemptEnd,
    NodeRecord,
    NodeStatus,
    Restarted,
    TaskEvent,
    TaskRecord,
    TaskSpec,
)
from shared.placement import Dimension, NodeFilter, NodeMiss, NoFitKind
from shared.states import TaskState

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
GIB = 1024**3


def spec(**fields: object) -> TaskSpec:
    return TaskSpec.model_validate({"name": "web", "image": "busybox", **fields})


def node(name: str, cpus: float = 2.0, status: NodeStatus = NodeStatus.READY) -> NodeRecord:
    return NodeRecord(
        name=name, status=status, cpus=cpus, memory=GIB, disk=10 * GIB, last_heartbeat=NOW
    )


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def update(task: TaskRecord, state: TaskState, **fields: object) -> TaskUpdate:
    assert task.node is not None
    return TaskUpdate(
        node=task.node, task_id=task.id, attempt=task.attempt, state=state, at=NOW, **fields
    )


# -- what a reason is called -----------------------------------------------------------


@pytest.mark.parametrize(
    ("demand", "nodes_", "kind"),
    [
        ({"cpu": 4}, [node("a", cpus=1)], "insufficient_cpu"),
        ({"memory": 2 * GIB}, [node("a")], "insufficient_memory"),
        ({"disk": 20 * GIB}, [node("a")], "insufficient_disk"),
        ({"cpu": 4, "memory": 2 * GIB}, [node("a", cpus=1)], "insufficient_cpu"),
        ({"cpu": 1}, [node("a", status=NodeStatus.DOWN)], "nodes_down"),
        ({"cpu": 4}, [node("a", status=NodeStatus.DOWN), node("b", cpus=1)], "insufficient_cpu"),
        ({"cpu": 1}, [], "no_nodes"),
        ({"cpu": 1}, [node("a").model_copy(update={"engine_ok": False})], "nodes_down"),
        ({"cpu": 1}, [node("a").model_copy(update={"schedulable": False})], "cordoned"),
        ({"constraints": {"zone": "b"}}, [node("a")], "constraints"),
    ],
)
def test_the_schedulers_reasons_get_a_bounded_kind(
    demand: dict[str, object], nodes_: list[NodeRecord], kind: str
) -> None:
    # given nodes that cannot take the task, when the scheduler explains why
    why = unplaced.explain(spec(**demand), nodes_)
    # then the reason's kind is data, one of the metric's label values
    assert why.kind.value == kind
    assert kind in unplaced.KINDS


def test_a_task_cap_and_a_node_passed_over_have_their_kinds() -> None:
    capped = node("a").model_copy(update={"task_count": 3})
    why = unplaced.explain(spec(cpu=1), [capped], PlacementContext(max_tasks_per_node=3))
    assert why.kind == NoFitKind.TASK_CAP
    assert why.dimension_exhausted == {Dimension.TASKS: 1}
    assert unplaced.summarize([NodeMiss(node="a")]).kind == NoFitKind.OTHER


def test_the_counts_cover_every_node_not_only_those_the_sentence_names() -> None:
    # given twelve nodes: eleven too small, the last (by name) down
    nodes_ = [node(f"n{i:02}", cpus=1) for i in range(11)] + [node("n99", status=NodeStatus.DOWN)]
    why = unplaced.explain(spec(cpu=4), nodes_)
    # then the kind is the shortage, and the down node is counted though not named
    assert why.kind == NoFitKind.INSUFFICIENT_CPU
    assert why.nodes_evaluated == 12
    assert why.nodes_exhausted == 11
    assert why.dimension_exhausted == {Dimension.CPU: 11}
    assert why.nodes_filtered == {NodeFilter.DOWN: 1}
    assert len(why.nodes) == unplaced.MAX_REASON_NODES


# -- counters from decisions ------------------------------------------------------------


def test_a_task_placed_and_running_counts_transitions_and_latencies() -> None:
    before = {
        "pending": value("kube_task_transitions_total", state="pending"),
        "running": value("kube_task_transitions_total", state="running"),
        "scheduled": value("kube_task_scheduling_latency_seconds_count"),
        "started": value("kube_task_start_latency_seconds_count"),
        "start_sum": value("kube_task_start_latency_seconds_sum"),
    }
    accepted = core.accept(spec(), "m-run", NOW)
    placed = accepted.extend(core.schedule(accepted.tasks[-1:], [node("a")], RoundRobin(), NOW))
    observe(placed)
    running = core.apply_update(
        placed.tasks[-1], update(placed.tasks[-1], TaskState.RUNNING), NOW + timedelta(seconds=2)
    )
    observe(running)
    assert value("kube_task_transitions_total", state="pending") == before["pending"] + 1
    assert value("kube_task_transitions_total", state="running") == before["running"] + 1
    assert value("kube_task_scheduling_latency_seconds_count") == before["scheduled"] + 1
    assert value("kube_task_start_latency_seconds_count") == before["started"] + 1
    assert value("kube_task_start_latency_seconds_sum") == pytest.approx(before["start_sum"] + 2)


def test_a_failed_attempt_under_on_failure_counts_a_restart_by_cause() -> None:
    task = core.schedule(
        core.accept(spec(), "m-restart", NOW).tasks, [node("a")], RoundRobin(), NOW
    ).tasks[-1]
    before = value("kube_task_restarts_total", cause="failed")
    failed = core.apply_update(task, update(task, TaskState.FAILED, exit_code=3), NOW)
    assert failed.tasks[-1].state == TaskState.PENDING  # restarting
    observe(failed)
    assert value("kube_task_restarts_total", cause="failed") == before + 1
    # The same restart is not counted again when the decision is not recorded twice, and
    # a second attempt's latency is no first placement.
    again = core.schedule(failed.tasks[-1:], [node("a")], RoundRobin(), NOW + timedelta(hours=1))
    latency = value("kube_task_scheduling_latency_seconds_count")
    observe(again)
    assert value("kube_task_scheduling_latency_seconds_count") == latency


def test_a_lost_node_counts_lost_then_a_restart_caused_by_the_loss() -> None:
    task = core.schedule(
        core.accept(spec(), "m-lost", NOW).tasks, [node("a")], RoundRobin(), NOW
    ).tasks[-1]
    lost = value("kube_task_transitions_total", state="lost")
    restarts = value("kube_task_restarts_total", cause="lost")
    observe(nodes.node_lost("a", [task], NOW))
    assert value("kube_task_transitions_total", state="lost") == lost + 1
    assert value("kube_task_restarts_total", cause="lost") == restarts + 1


def test_a_placement_failure_counts_once_per_reason() -> None:
    before = value("kube_placement_failures_total", reason="insufficient_cpu")
    accepted = core.accept(spec(cpu=4), "m-nofit", NOW)
    small = [node("a", cpus=1)]
    first = accepted.extend(core.schedule(accepted.tasks[-1:], small, RoundRobin(), NOW))
    observe(first)
    assert value("kube_placement_failures_total", reason="insufficient_cpu") == before + 1
    # The next tick finds the same reason: core records nothing, and a re-recorded task
    # (same error) is not a new failure either.
    assert core.schedule(first.tasks[-1:], small, RoundRobin(), NOW).empty
    observe(Decision(tasks=[first.tasks[-1]]))
    assert value("kube_placement_failures_total", reason="insufficient_cpu") == before + 1
    # A different shortage is.
    other = core.schedule(first.tasks[-1:], [node("a", cpus=0.5)], RoundRobin(), NOW)
    observe(other)
    assert value("kube_placement_failures_total", reason="insufficient_cpu") == before + 2


# -- gauges from the database -----------------------------------------------------------


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    db = Store(store_url)
    yield db
    db.close()


def gauges(path: str | Path, now: datetime = NOW) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(StoreGauges(path, clock=lambda: now))
    return registry


def test_gauges_read_tasks_pending_work_and_nodes_and_survive_a_restart(
    store: Store, store_url: str
) -> None:
    # given: a node, a scheduled task on it, one that fits nowhere, one in restart backoff
    a = node("a", cpus=2)
    store.record(Decision(nodes=[a, node("b", status=NodeStatus.DOWN)]))
    runs = core.accept(spec(cpu=1, memory=GIB // 2), "g-runs", NOW - timedelta(seconds=30))
    store.record(runs.extend(core.schedule(runs.tasks, [a], RoundRobin(), NOW)))
    big = core.accept(spec(cpu=8), "g-big", NOW - timedelta(seconds=90))
    store.record(big.extend(core.schedule(big.tasks, [a], RoundRobin(), NOW)))
    later = NOW + timedelta(seconds=60)
    waiting = core.accept(spec(), "g-wait", NOW).tasks[0].model_copy(update={"not_before": later})
    store.record(Decision(tasks=[waiting]))
    path = store_url
    store.close()  # when: the manager stops, and a new one opens the same database
    Store(path).close()
    read = gauges(path).get_sample_value

    # then: the gauges say what the database holds
    assert read("kube_tasks", {"state": "scheduled"}) == 1
    assert read("kube_tasks", {"state": "pending"}) == 2
    assert read("kube_tasks", {"state": "failed"}) == 0
    assert read("kube_tasks_pending", {"reason": "insufficient_cpu"}) == 1
    assert read("kube_tasks_pending", {"reason": "backoff"}) == 1
    assert {r for r in PENDING_REASONS if read("kube_tasks_pending", {"reason": r})} == {
        "insufficient_cpu",
        "backoff",
    }
    assert read("kube_tasks_pending_oldest_seconds") == 90  # the backoff one does not count
    assert read("kube_nodes", {"status": "ready"}) == 1
    assert read("kube_nodes", {"status": "down"}) == 1
    assert read("kube_node_ready", {"node": "b"}) == 0
    assert read("kube_node_cpu_cores", {"node": "a"}) == 2
    assert read("kube_node_allocated_cpu_cores", {"node": "a"}) == 1
    assert read("kube_node_allocated_memory_bytes", {"node": "a"}) == GIB // 2
    assert read("kube_node_tasks", {"node": "a"}) == 1
    assert read("kube_node_heartbeat_age_seconds", {"node": "a"}) == 0
    assert read("kube_manager_outbox_messages") > 0  # nothing was published


def test_gauges_of_a_database_not_made_yet_are_empty(tmp_path: Path) -> None:
    registry = gauges(tmp_path / "missing.db")
    assert registry.get_sample_value("kube_tasks", {"state": "pending"}) is None
    assert not (tmp_path / "missing.db").exists()  # read-only: never creates it


# -- reasons are read as data, whatever their sentences say -----------------------------


def test_a_restart_is_counted_by_the_cause_it_carries_not_by_its_sentence() -> None:
    # given a restart whose history line is worded in any way at all
    task = core.accept(spec(), "m-words", NOW).tasks[0]
    restart = Restarted(cause=AttemptEnd.LOST, number=1, delay=0.0)
    event = TaskEvent(
        state=TaskState.PENDING, at=NOW, attempt=1, detail="reworded entirely", restart=restart
    )
    before = value("kube_task_restarts_total", cause="lost")
    # when the decision is observed
    observe(Decision(tasks=[task], events=[(task.id, event)]))
    # then it counts under its cause
    assert value("kube_task_restarts_total", cause="lost") == before + 1


def test_an_attempt_that_ends_and_restarts_carries_its_cause_as_data() -> None:
    task = core.schedule(
        core.accept(spec(), "m-cause", NOW).tasks, [node("a")], RoundRobin(), NOW
    ).tasks[-1]
    failed = core.apply_update(task, update(task, TaskState.FAILED, exit_code=3, error="boom"), NOW)
    restart = failed.events[-1][1].restart
    assert restart is not None
    assert (restart.cause, restart.number, restart.reason) == (AttemptEnd.FAILED, 1, "boom")
    assert restart.limit == task.spec.restart.max_restarts
    assert failed.events[-1][1].detail == describe(restart, 1)


def test_a_placement_failure_is_counted_by_the_kind_it_carries_not_by_its_sentence() -> None:
    # given a pending task whose reason is data, with an error worded in any way at all
    why = unplaced.summarize([NodeMiss(node="a", filtered=NodeFilter.CONSTRAINT)])
    task = core.accept(spec(), "m-kind", NOW).tasks[0]
    worded = task.model_copy(update={"error": "reworded entirely", "unplaced": why})
    before = value("kube_placement_failures_total", reason="constraints")
    # when it is observed
    observe(Decision(tasks=[worded]))
    # then it counts under its kind
    assert value("kube_placement_failures_total", reason="constraints") == before + 1


def test_the_pending_gauge_reads_the_kind_not_the_sentence(store: Store, store_url: str) -> None:
    why = unplaced.summarize([NodeMiss(node="a", filtered=NodeFilter.CORDONED)])
    task = core.accept(spec(), "g-kind", NOW).tasks[0]
    store.record(Decision(tasks=[task.model_copy(update={"error": "any words", "unplaced": why})]))
    store.commit()
    read = gauges(store_url).get_sample_value
    assert read("kube_tasks_pending", {"reason": "cordoned"}) == 1
