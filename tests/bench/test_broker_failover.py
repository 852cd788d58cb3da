"""The broker failover benchmark's arithmetic, and the sweep of a killed run's nodes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench.broker_failover import Tally, clean, longest_gap
from bench.driver import Event
from tests.support.rabbit_cluster import sweep
from tests.support.waiting import wait_for


def event(at: float, key: str, **body: object) -> Event:
    return Event(at, key, dict(body))


def test_longest_gap_is_the_widest_space_between_sorted_times() -> None:
    assert longest_gap([3.0, 1.0, 1.5, 7.5, 8.0]) == (4.5, 3.0)
    assert longest_gap([2.0]) == (0.0, 2.0)
    assert longest_gap([]) == (0.0, 0.0)


def test_tally_counts_first_placements_attempts_and_downs() -> None:
    tally = Tally({"a", "b"})
    for e in [
        event(1.0, "task.scheduled", id="a", attempt=1),
        event(1.1, "task.running", id="a", attempt=1),
        event(1.2, "task.running", id="a", attempt=1),  # a redelivered event: not a rerun
        event(2.0, "task.running", id="other", attempt=1),  # not this round's
        event(3.0, "node.down", name="n1"),
        event(4.0, "task.running", id="b", attempt=1),
        event(5.0, "task.running", id="b", attempt=2),
        event(5.0, "task.lost", id="b", attempt=1),
    ]:
        tally(e)
    assert tally.running == {"a": 1.1, "b": 4.0}
    assert tally.scheduled == {"a": 1.0}
    assert tally.all_running()
    assert tally.twice() == ["b"]
    assert tally.lost == {"b"}
    assert tally.downs == ["n1"]


def test_a_round_is_clean_only_with_nothing_lost_twice_or_down() -> None:
    good = {
        "all_ran": True,
        "not_running": 0,
        "ran_twice": 0,
        "lost_events": 0,
        "nodes_marked_down": [],
    }
    assert clean(good)
    assert not clean({**good, "nodes_marked_down": ["n1"]})
    assert not clean({**good, "ran_twice": 1})
    assert not clean({"all_ran": False, "error": "boom"})


def test_sweep_kills_the_nodes_and_removes_the_files_of_a_run_that_is_gone(
    tmp_path: Path,
) -> None:
    # given a stand-in for a node of a test process that no longer exists (pid above the
    # kernel's pid_max), and its directory
    code = "import time; time.sleep(120)"
    env = {**os.environ, "RABBITMQ_NODENAME": "kubetest99999999n1@localhost"}
    leftover = subprocess.Popen([sys.executable, "-c", code], env=env)
    (tmp_path / "99999999" / "n1").mkdir(parents=True)
    (tmp_path / "keep").mkdir()
    try:
        # when the next run sweeps
        killed = sweep(tmp_path)
        # then the leftover is killed and its directory removed, and nothing else
        assert leftover.pid in killed
        wait_for(lambda: leftover.poll() is not None, what="the leftover killed", timeout=10)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["keep"]
    finally:
        leftover.kill()
        leftover.wait(10)
