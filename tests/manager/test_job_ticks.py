"""A manager's jobs on a stand-in bus, on each store engine: submitted as a spec with a
schedule, run at each tick, once, across a manager killed before or after a commit."""

from __future__ import annotations

import json
from datetime import timedelta

from manager.config import ManagerConfig
from manager.server import Manager
from shared import topology
from shared.models import JobRow
from shared.settings import Settings
from shared.states import TaskState
from tests.support.manager import NOW, advance, checking_bus, command, manager_with_a_node

EVERY_2S = "*/2 * * * * *"


def submit_job(manager: Manager, tag: int, **fields: object) -> None:
    spec = {"name": "tick", "image": "busybox", "schedule": EVERY_2S, **fields}
    manager.commands.on_command(command(tag, topology.SUBMIT_KEY, json.dumps(spec).encode()))
    manager.finish_batch()


def tick(manager: Manager, seconds: float) -> None:
    advance(manager, seconds)
    manager.ticking()
    manager.finish_batch()


def runs(manager: Manager) -> list[str]:
    return [run.id for run in manager.store.runs("tick")]


def test_a_job_runs_once_at_each_tick(store_url: str) -> None:
    # given a manager with a node and a job that ticks every 2 seconds (12:00:00 now)
    manager, bus = manager_with_a_node(store_url)
    submit_job(manager, 1, concurrency="allow")
    # when its timer fires every second for 5 seconds
    for _ in range(5):
        tick(manager, 1)
    # then the ticks at :02 and :04 each started one run, placed on the node
    assert runs(manager) == ["tick-20261126120002", "tick-20261126120004"]
    assert {r.state for r in manager.store.runs("tick")} == {TaskState.SCHEDULED}
    published = [m.routing_key for m in bus.published]
    assert "job.created" in published and published.count("n1") == 2
    # and query.jobs shows it with its last run and its next tick
    manager.on_query(command(9, "query.jobs", b"{}"))
    manager.finish_batch()
    (row,) = [JobRow.model_validate(r) for r in json.loads(bus.published[-1].body)["result"]]
    assert row.job.last_run == "tick-20261126120004"
    assert row.last_run_state == TaskState.SCHEDULED
    assert row.job.next_tick == NOW + timedelta(seconds=6)
    manager.store.close()


def test_a_manager_killed_before_its_commit_loses_no_tick_and_after_it_runs_none_twice(
    store_url: str,
) -> None:
    # given a job with a catch-up window, and a manager that decided the :02 tick but was
    # killed before committing it
    manager, _ = manager_with_a_node(store_url)
    submit_job(manager, 1, concurrency="allow", catch_up=5)
    advance(manager, 2)
    manager.ticking()
    manager.store.close(commit=False)
    # when a new manager starts 3 seconds later, ticks, and is killed after its commit
    again = Manager(Settings(), ManagerConfig(store=store_url), bus=checking_bus(store_url))
    later = NOW + timedelta(seconds=5)
    again.clock = lambda: later
    again.ticking()
    again.finish_batch()
    assert runs(again) == ["tick-20261126120002", "tick-20261126120004"]
    again.store.close(commit=False)  # nothing open: the batch was committed
    # then a third manager, at the same moment, starts nothing more
    third = Manager(Settings(), ManagerConfig(store=store_url), bus=checking_bus(store_url))
    third.clock = lambda: later
    third.ticking()
    third.finish_batch()
    assert runs(third) == ["tick-20261126120002", "tick-20261126120004"]
    third.store.close()


def test_removing_a_job_stops_its_ticks(store_url: str) -> None:
    manager, _ = manager_with_a_node(store_url)
    submit_job(manager, 1)
    tick(manager, 2)
    body = json.dumps({"name": "tick"}).encode()
    manager.commands.on_command(command(2, topology.JOB_REMOVE_KEY, body))
    manager.finish_batch()
    tick(manager, 4)
    assert manager.store.job("tick") is None
    assert runs(manager) == ["tick-20261126120002"]
    (run,) = manager.store.runs("tick")
    assert run.desired_state == "stopped"
    manager.store.close()


def test_run_now_starts_a_run_beside_the_schedule(store_url: str) -> None:
    manager, bus = manager_with_a_node(store_url)
    submit_job(manager, 1)
    advance(manager, 1)
    manager.commands.on_command(command(2, topology.JOB_RUN_KEY, b'{"name": "tick"}'))
    manager.finish_batch()
    assert runs(manager) == ["tick-20261126120001"]
    assert json.loads(bus.published[-1].body)["id"] == "tick-20261126120001"
    manager.store.close()
