"""Waiting for the broker's lock is said rarely (manager/lock_wait.py)."""

from __future__ import annotations

import logging

from manager.lock_wait import Notices, Throttle


def record(text: str) -> logging.LogRecord:
    return logging.LogRecord("pika.channel", logging.WARNING, __file__, 1, text, None, None)


def test_resource_locked_warnings_pass_first_then_every_30_s() -> None:
    clock = [0.0]
    throttle = Throttle("RESOURCE_LOCKED", monotonic=lambda: clock[0])
    passed = []
    for _ in range(200):  # 0.27 s apart: 54 s
        passed.append(throttle.filter(record("Channel.Close (405): RESOURCE_LOCKED - ...")))
        clock[0] += 0.27
    assert sum(passed) == 2 and passed[0]
    assert throttle.filter(record("something else"))


def test_a_notice_is_due_at_once_then_every_30_s() -> None:
    notices = Notices()
    assert notices.due(0.0) and not notices.due(29.0) and notices.due(30.5)


def test_a_managers_heartbeat_follows_its_lease() -> None:
    from manager.leadership import Lease
    from manager.server import heartbeat_for
    from shared.bus.connection import HEARTBEAT, connection_parameters
    from shared.settings import Settings

    # three leases, never under 15 s: pika heartbeats only between handlers, and one
    # batch of a large service may hold the bus thread for ten seconds
    assert heartbeat_for(Lease(1, 5.0, 0.0)) == 15
    assert heartbeat_for(Lease(1, 3.0, 0.0)) == 15
    assert heartbeat_for(Lease(1, 10.0, 0.0)) == 30
    assert heartbeat_for(None) == HEARTBEAT == 30
    params = connection_parameters(Settings(), "kube-manager", heartbeat=5)
    assert params.heartbeat == 5
