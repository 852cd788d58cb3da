"""A manager whose store is not the lock holder's (another cluster on the same vhost) is
refused at start (manager/server.py, check_cluster)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from manager.server import check_cluster, lock_taken_by
from shared import topology
from shared.bus import Bus
from shared.codec import encode
from shared.errors import ResourceLocked
from shared.models import ManagerInfo, ManagerRole
from shared.settings import Settings

pytestmark = pytest.mark.broker


def holder(settings: Settings, cluster_id: str) -> Bus:
    """A connection holding the lock, that said who it is, as a leader does."""
    bus = Bus(settings, "holder")
    bus.declare(topology.manager_lock())
    bus.connect()
    info = ManagerInfo(
        name="m1",
        host="host-a",
        pid=101,
        role=ManagerRole.LEADER,
        epoch=3,
        since=datetime.now(UTC),
        seen_ago=0.0,
        cluster_id=cluster_id,
    )
    bus.publish("", topology.MANAGER_HOLDER, encode(info))
    return bus


def test_a_manager_of_another_store_is_refused_naming_the_holder(vhost: str) -> None:
    settings = Settings(amqp_url=vhost)
    # given a leader of cluster aaa holding the vhost's lock
    bus = holder(settings, "aaa")
    try:
        # when a manager whose store is cluster bbb (or a new store) starts, it is refused
        with pytest.raises(ResourceLocked, match="manager m1 \\(pid 101 on host-a, epoch 3\\)"):
            check_cluster(settings, "bbb")
        with pytest.raises(ResourceLocked, match="cluster new"):
            check_cluster(settings, None)
        # and a standby of the same store is not
        check_cluster(settings, "aaa")
    finally:
        bus.close()
    # once the leader is gone, the lock is free: nobody is refused
    assert lock_taken_by(settings) == (False, None)
    check_cluster(settings, "bbb")
