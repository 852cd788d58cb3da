"""Silence measured on the manager's monotonic clock, from its start at the earliest."""

from __future__ import annotations

from manager.liveness import Liveness, silence


def test_silence_counts_from_the_last_heartbeat_heard() -> None:
    assert silence(["n1"], {"n1": 105.0}, since=100.0, now=112.0) == {"n1": 7.0}


def test_a_node_not_heard_since_the_start_is_silent_from_the_start() -> None:
    # given a node known from the store, never heard by this manager, and one heard before
    # a reconnect
    silent = silence(["old", "n1"], {"n1": 90.0}, since=100.0, now=103.0)
    # then both get a full interval from the start (or reconnect), not from their last beat
    assert silent == {"old": 3.0, "n1": 3.0}


def test_hearing_is_undone_with_its_delivery() -> None:
    liveness = Liveness(since=0.0)
    liveness.hear("n1", 5.0)
    undo = liveness.hear("n1", 9.0)
    undo()
    assert liveness.heard == {"n1": 5.0}
    liveness.hear("n2", 9.0)()
    assert "n2" not in liveness.heard


def test_a_full_interval_starts_at_a_reconnect() -> None:
    liveness = Liveness(since=0.0)
    liveness.hear("n1", 1.0)
    liveness.full_interval(50.0)
    assert liveness.silent(["n1"], 52.0) == {"n1": 2.0}
