"""A worker whose clock runs more than 5 min ahead: its results are dropped, not
dead-lettered, and it is told why once a minute (issue 13: it failed in silence while
kube.dead-letters grew by a heartbeat a second)."""

from __future__ import annotations

import json
from datetime import timedelta

from shared import topology
from shared.codec import encode
from shared.messages import Heartbeat
from tests.support.manager import NOW, manager_with_a_node, result


def test_results_dated_an_hour_ahead_are_dropped_and_the_worker_told_once_a_minute(
    store_url: str,
) -> None:
    # given a manager, and a worker whose clock is an hour ahead
    manager, bus = manager_with_a_node(store_url)
    ticks = [100.0]
    manager.monotonic = lambda: ticks[0]
    beat = Heartbeat(node="n1", at=NOW + timedelta(hours=1), cpus=4, memory=1, disk=1)
    # when it sends heartbeats for 30 s, then again a minute after the first
    for tag in range(1, 31):
        manager.on_result(result(tag, encode(beat)))
        ticks[0] += 1
    ticks[0] = 161.0
    manager.on_result(result(31, encode(beat)))
    manager.finish_batch()
    # then none is dead-lettered, every one is acked
    assert bus.dead_letters == []
    assert [d.tag for d in bus.acked] == list(range(1, 32))
    # and the worker was told twice (once a minute) on its queue, with how far ahead
    told = [p for p in bus.published if p.exchange == topology.DISPATCH]
    assert [p.routing_key for p in told] == ["n1", "n1"]
    assert json.loads(told[0].body) == {"kind": "clock-ahead", "ahead": 3600.0, "limit": 300.0}
    manager.store.close()
