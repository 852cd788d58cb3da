"""The manager failover benchmark: its ledger's arithmetic, and a burst with a takeover in
the middle in which every task runs exactly once (bench/manager_failover.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bench.driver import Event
from bench.manager_failover import Ledger
from tests.conftest import ROOT, require_broker


def event(at: float, key: str, **body: object) -> Event:
    return Event(at, key, dict(body))


def test_the_ledger_counts_lost_twice_restarted_and_downs() -> None:
    ledger = Ledger()
    for e in [
        event(1.0, "task.scheduled", id="a", attempt=1, node="n1"),
        event(1.1, "task.running", id="a", attempt=1, node="n1"),
        event(1.2, "task.running", id="a", attempt=1, node="n1"),  # an event sent again
        event(2.0, "task.running", id="b", attempt=1, node="n1"),
        event(2.5, "task.running", id="b", attempt=1, node="n2"),  # the same attempt twice
        event(3.0, "task.running", id="c", attempt=2, node="n1"),  # a restart
        event(4.0, "node.down", name="n2"),
    ]:
        ledger(e)
    checks = ledger.checks({"a", "b", "c", "d"})
    assert checks["lost"] == 1  # d never ran
    assert checks["run_twice"] == 1 and checks["restarted"] == 1 and checks["nodes_down"] == 1
    assert list(checks["ran_twice_examples"]) == ["b"]


def test_a_placement_counts_only_after_the_new_leader_announces_itself() -> None:
    ledger = Ledger()
    for e in [
        event(1.0, "task.scheduled", id="a", attempt=1, node="n1"),  # the old leader's
        event(5.0, "manager.leader", name="m2", epoch=2),
        event(5.5, "task.scheduled", id="b", attempt=1, node="n1"),
    ]:
        ledger(e)
    # the placement at 1.0, after the kill at 0.5, is the old leader's last
    assert ledger.placed_after(0.5) == 5.5
    assert ledger.leader_after(0.5) == (5.0, "m2", 2)
    assert ledger.placed_after(6.0) is None


@pytest.mark.e2e
@pytest.mark.postgres
def test_a_burst_with_a_takeover_in_the_middle_runs_every_task_exactly_once() -> None:
    require_broker()
    # given two managers on a PostgreSQL store, two mock workers, 2,000 tasks at once;
    # when the leader is killed once half of them run
    done = subprocess.run(
        [sys.executable, "-m", "bench.manager_failover", "--mode", "burst", "--tasks", "2000"]
        + ["--workers", "2"],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
    )
    assert done.returncode in (0, 1), done.stderr[-4000:]
    result = json.loads(done.stdout.splitlines()[-1])
    # then the standby took over, and every task ran, once, on its first attempt
    assert result["all_ran"], result
    assert result["takeover_pause_seconds"] is not None, result
    assert result["lost"] == 0 and result["nodes_down"] == 0, result
    # (a redelivered heartbeat once started a few again: manager/server.py `heartbeat`)
    assert result["run_twice"] == result["restarted"] == 0, result
    assert result["sound"] and done.returncode == 0, result


@pytest.mark.e2e
@pytest.mark.postgres
def test_two_trials_time_each_takeover_and_lose_nothing() -> None:
    require_broker()
    # given two managers on a PostgreSQL store and tasks flowing; when the leader is
    # killed twice (the one killed first comes back as a standby and leads the second)
    done = subprocess.run(
        [sys.executable, "-m", "bench.manager_failover", "--trials", "2", "--per-trial", "30"],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
    )
    assert done.returncode in (0, 1), done.stderr[-4000:]
    result = json.loads(done.stdout.splitlines()[-1])
    # then each takeover placed a new task, within the lease and a little, and was sound
    assert result["every_trial_placed"], result
    assert [r["new_leader"] for r in result["rounds"]] == ["m2", "m1"], result
    assert 0 < result["max_seconds"] < 15, result
    assert result["lost"] == 0 and result["nodes_down"] == 0, result
    assert result["run_twice"] == result["restarted"] == 0 and result["sound"], result
